"""Lattice rings on hand-built square (ST) and hexagonal (Visium) grids."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotfill import InputError, SpotfillWarning
from spotfill.graph import detect_lattice, lattice_graph, ring_offsets


def square_grid(n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    return r.ravel(), c.ravel()


def hex_grid(n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Visium layout: row + col even, same-row spots 2 columns apart."""
    r, c = square_grid(n_rows, n_cols)
    keep = (r + c) % 2 == 0
    return r[keep], c[keep]


def neighbours(W: sp.csr_matrix, r: np.ndarray, c: np.ndarray, spot: tuple[int, int]) -> dict[tuple[int, int], float]:
    """Map of (row, col) -> weight of the neighbours of the spot at ``spot``."""
    i = int(np.flatnonzero((r == spot[0]) & (c == spot[1]))[0])
    row = W.getrow(i)
    return {(int(r[j]), int(c[j])): float(w) for j, w in zip(row.indices, row.data, strict=True)}


def as_set(pairs) -> set[tuple[int, int]]:
    return {tuple(p) for p in pairs}


# --- ring offsets ------------------------------------------------------------------------------


def test_ring_offsets_exact_sets():
    sq1, sq2 = ring_offsets("square", 2)
    assert as_set(sq1.tolist()) == {(1, 0), (-1, 0), (0, 1), (0, -1)}
    assert as_set(sq2.tolist()) == {(2, 0), (-2, 0), (0, 2), (0, -2), (1, 1), (1, -1), (-1, 1), (-1, -1)}
    hx1, hx2 = ring_offsets("hex", 2)
    assert as_set(hx1.tolist()) == {(0, 2), (0, -2), (1, 1), (1, -1), (-1, 1), (-1, -1)}
    assert as_set(hx2.tolist()) == {
        (0, 4), (0, -4), (1, 3), (1, -3), (-1, 3), (-1, -3),
        (2, 2), (2, -2), (-2, 2), (-2, -2), (2, 0), (-2, 0),
    }  # fmt: skip


@pytest.mark.parametrize(("lattice", "per_ring"), [("square", 4), ("hex", 6)])
def test_ring_sizes_grow_linearly(lattice, per_ring):
    rings = ring_offsets(lattice, 5)
    assert [len(o) for o in rings] == [per_ring * k for k in range(1, 6)]
    all_offsets = np.concatenate(rings)
    assert len(as_set(all_offsets.tolist())) == len(all_offsets)  # rings are disjoint
    assert (0, 0) not in as_set(all_offsets.tolist())


# --- square grid -------------------------------------------------------------------------------


def test_square_order1_interior_edge_corner():
    r, c = square_grid(5, 5)
    W = lattice_graph(r, c, lattice="square")
    assert neighbours(W, r, c, (2, 2)) == {(1, 2): 1.0, (3, 2): 1.0, (2, 1): 1.0, (2, 3): 1.0}
    assert neighbours(W, r, c, (0, 2)) == {(1, 2): 1.0, (0, 1): 1.0, (0, 3): 1.0}
    assert neighbours(W, r, c, (0, 0)) == {(1, 0): 1.0, (0, 1): 1.0}
    assert neighbours(W, r, c, (4, 4)) == {(3, 4): 1.0, (4, 3): 1.0}
    # 5 x 5 grid: 2 * 5 * 4 = 40 undirected edges
    assert W.nnz == 80


def test_square_order2_with_ring_weights():
    r, c = square_grid(5, 5)
    W = lattice_graph(r, c, lattice="square", n_rings=2, ring_weights=[1.0, 0.25])
    assert neighbours(W, r, c, (2, 2)) == {
        (1, 2): 1.0, (3, 2): 1.0, (2, 1): 1.0, (2, 3): 1.0,
        (0, 2): 0.25, (4, 2): 0.25, (2, 0): 0.25, (2, 4): 0.25,
        (1, 1): 0.25, (1, 3): 0.25, (3, 1): 0.25, (3, 3): 0.25,
    }  # fmt: skip
    assert neighbours(W, r, c, (0, 0)) == {(1, 0): 1.0, (0, 1): 1.0, (2, 0): 0.25, (0, 2): 0.25, (1, 1): 0.25}
    assert neighbours(W, r, c, (0, 2)) == {
        (0, 1): 1.0, (0, 3): 1.0, (1, 2): 1.0,
        (0, 0): 0.25, (0, 4): 0.25, (2, 2): 0.25, (1, 1): 0.25, (1, 3): 0.25,
    }  # fmt: skip


# --- hexagonal grid ----------------------------------------------------------------------------


def test_hex_order1_interior_edge_corner():
    r, c = hex_grid(5, 10)
    W = lattice_graph(r, c, lattice="hex")
    assert neighbours(W, r, c, (2, 4)) == {(2, 2): 1, (2, 6): 1, (1, 3): 1, (1, 5): 1, (3, 3): 1, (3, 5): 1}
    assert neighbours(W, r, c, (0, 4)) == {(0, 2): 1, (0, 6): 1, (1, 3): 1, (1, 5): 1}
    assert neighbours(W, r, c, (0, 0)) == {(0, 2): 1, (1, 1): 1}
    assert neighbours(W, r, c, (1, 1)) == {(0, 0): 1, (0, 2): 1, (1, 3): 1, (2, 0): 1, (2, 2): 1}


def test_hex_order2_with_ring_weights():
    r, c = hex_grid(5, 10)
    W = lattice_graph(r, c, lattice="hex", n_rings=2, ring_weights=(2.0, 0.5))
    nb = neighbours(W, r, c, (2, 4))
    assert {k for k, w in nb.items() if w == 2.0} == {(2, 2), (2, 6), (1, 3), (1, 5), (3, 3), (3, 5)}
    assert {k for k, w in nb.items() if w == 0.5} == {
        (2, 0), (2, 8), (1, 1), (1, 7), (3, 1), (3, 7), (0, 2), (0, 6), (4, 2), (4, 6), (0, 4), (4, 4),
    }  # fmt: skip
    assert len(nb) == 18
    corner = neighbours(W, r, c, (0, 0))
    assert corner == {(0, 2): 2.0, (1, 1): 2.0, (0, 4): 0.5, (1, 3): 0.5, (2, 2): 0.5, (2, 0): 0.5}


def test_ring_defined_on_full_lattice_when_middle_spot_missing():
    r, c = square_grid(1, 3)  # (0,0) (0,1) (0,2)
    keep = c != 1
    W = lattice_graph(r[keep], c[keep], lattice="square", n_rings=2, ring_weights=[1.0, 0.5])
    np.testing.assert_array_equal(W.toarray(), [[0.0, 0.5], [0.5, 0.0]])
    assert lattice_graph(r[keep], c[keep], lattice="square").nnz == 0


def hop_distance(r, c, lattice):
    dr = np.abs(r[:, None] - r[None, :])
    dc = np.abs(c[:, None] - c[None, :])
    if lattice == "square":
        return dr + dc
    return dr + np.maximum(0, (dc - dr) // 2)


@pytest.mark.parametrize("lattice", ["square", "hex"])
def test_matches_brute_force_hop_distance(lattice):
    rng = np.random.default_rng(0)
    r, c = square_grid(12, 14) if lattice == "square" else hex_grid(12, 14)
    keep = rng.random(r.size) < 0.7  # ragged tissue with holes
    r, c = r[keep], c[keep]
    perm = rng.permutation(r.size)  # spot order must not matter
    r, c = r[perm], c[perm]
    W = lattice_graph(r, c, lattice=lattice, n_rings=3, ring_weights=[1.0, 2.0, 3.0])
    hops = hop_distance(r, c, lattice)
    expected = np.where((hops >= 1) & (hops <= 3), hops, 0).astype(float)
    np.testing.assert_array_equal(W.toarray(), expected)


@pytest.mark.parametrize("lattice", ["square", "hex"])
def test_graph_is_symmetric_csr_without_diagonal(lattice):
    r, c = square_grid(6, 6) if lattice == "square" else hex_grid(6, 12)
    W = lattice_graph(r, c, n_rings=2, ring_weights=[1.0, 0.3])
    assert isinstance(W, sp.csr_matrix)
    assert W.dtype == np.float64
    assert abs(W - W.T).max() == 0
    assert np.all(W.diagonal() == 0)


def test_zero_ring_weight_drops_the_ring():
    r, c = square_grid(4, 4)
    W = lattice_graph(r, c, lattice="square", n_rings=2, ring_weights=[0.0, 1.0])
    assert W.nnz == lattice_graph(r, c, lattice="square", n_rings=2).nnz - lattice_graph(r, c, lattice="square").nnz
    assert np.all(W.data == 1.0)


def test_float_whole_number_positions_accepted():
    r, c = hex_grid(3, 6)
    W = lattice_graph(r.astype(float), c.astype(np.float32))
    assert (W != lattice_graph(r, c)).nnz == 0


# --- lattice detection -------------------------------------------------------------------------


def test_detect_lattice():
    assert detect_lattice(*square_grid(4, 5)) == "square"
    assert detect_lattice(*hex_grid(4, 10)) == "hex"
    r, c = hex_grid(4, 10)
    assert detect_lattice(r, c + 1) == "hex"  # odd parity everywhere is still a hex grid
    r, c = square_grid(4, 4)
    assert detect_lattice(2 * r, 2 * c) is None  # spacing-2 square grid: no diagonal neighbours
    assert detect_lattice([0], [0]) is None
    assert detect_lattice([0.5, 1.0], [0.0, 1.0]) is None
    assert detect_lattice([0, np.nan], [0, 1]) is None
    rng = np.random.default_rng(1)
    assert detect_lattice(rng.choice(10_000, 50, replace=False), rng.choice(10_000, 50, replace=False)) is None


def test_detect_hex_tolerates_a_stray_spot():
    r, c = hex_grid(20, 20)  # 200 spots
    r = np.append(r, 30)
    c = np.append(c, 31)  # odd parity, 0.5 % of spots
    with pytest.warns(SpotfillWarning, match="1 spot\\(s\\) off the lattice parity"):
        assert detect_lattice(r, c) == "hex"


# --- errors ------------------------------------------------------------------------------------


def test_errors():
    r, c = square_grid(3, 3)
    with pytest.raises(InputError, match="share an array position"):
        lattice_graph(np.append(r, 0), np.append(c, 0), lattice="square")
    # every spot at one position: the duplicates are named, not an unrecognised grid type
    with pytest.raises(InputError, match=r"29 spot\(s\) share an array position"):
        lattice_graph(np.zeros(30, dtype=int), np.zeros(30, dtype=int), lattice="auto")
    with pytest.raises(InputError, match="whole numbers"):
        lattice_graph(r + 0.5, c)
    with pytest.raises(InputError, match="one weight per ring"):
        lattice_graph(r, c, n_rings=2, ring_weights=[1.0])
    with pytest.raises(InputError, match="non-negative"):
        lattice_graph(r, c, ring_weights=[-1.0])
    with pytest.raises(InputError, match="n_rings"):
        lattice_graph(r, c, n_rings=0)
    with pytest.raises(InputError, match="lattice='hex'"):
        lattice_graph(2 * r, 2 * c)
    with pytest.raises(InputError, match="lattice must be"):
        lattice_graph(r, c, lattice="triangle")
    with pytest.raises(InputError, match="same length"):
        lattice_graph(r, c[:-1])
    with pytest.raises(InputError, match="1-D"):
        lattice_graph(r.reshape(3, 3), c.reshape(3, 3))
    with pytest.raises(InputError, match="n_rings"):
        lattice_graph(r, c, n_rings=True)  # a bool is not a ring count
    with pytest.raises(InputError, match="finite"):
        lattice_graph(r, c, n_rings=2, ring_weights=[1.0, np.nan])
    with pytest.raises(InputError, match="too large for a grid graph"):
        lattice_graph([0, 2**32], [0, 2**32], lattice="square")  # pixel coordinates: int64 keys would overflow


def test_detect_lattice_thresholds_are_inclusive():
    r, c = hex_grid(9, 22)  # 99 spots
    r, c = np.append(r, 30), np.append(c, 31)  # 1 of 100 off parity: exactly the 1 % allowed
    with pytest.warns(SpotfillWarning, match="1 spot\\(s\\) off the lattice parity"):
        assert detect_lattice(r, c) == "hex"
    # mixed parity, scattered spots: two adjacent pairs make 4 of 8 spots connected, exactly the half needed
    r = np.array([0, 0, 10, 10, 20, 23, 30, 41])
    c = np.array([0, 1, 20, 21, 5, 14, 8, 2])
    assert detect_lattice(r, c) == "square"
    # a row of 3 and 5 scattered spots: 3 of 8 connected is too few
    r = np.array([0, 0, 0, 10, 13, 20, 27, 30])
    c = np.array([0, 1, 2, 20, 14, 5, 30, 8])
    assert detect_lattice(r, c) is None


def test_five_percent_of_spots_off_the_hex_parity_is_no_grid():
    r, c = np.mgrid[0:10, 0:20]
    keep = (r + c) % 2 == 0
    r, c = r[keep].ravel(), c[keep].ravel().copy()  # 100 hexagonal positions
    c[:5] += 1  # 5 % off parity: beyond the tolerance of stray spots
    assert detect_lattice(r, c) is None
