"""Neighbour rings on the integer spot grids of ST and Visium arrays.

Two lattices are recognised, both addressed by the integer ``(array_row, array_col)`` of each spot:

``"square"``
    Original ST arrays (spacing 1). The order-1 neighbours of a spot are the 4 cells at
    ``(±1, 0)`` and ``(0, ±1)``.
``"hex"``
    10x Visium. Spots on the same row are 2 columns apart and consecutive rows are shifted by one
    column, so ``row + col`` has the same parity for every spot. The order-1 neighbours are the 6
    cells at ``(0, ±2)`` and ``(±1, ±1)``.

**Ring k** (an *order-k* neighbour) is defined on the infinite lattice: the cells at hop distance
exactly ``k`` from the spot in the order-1 lattice graph. Ring ``k`` has ``4k`` cells on the square
lattice (``|drow| + |dcol| = k``) and ``6k`` on the hexagonal one. For ``k = 2``:

- square, 8 cells: ``(±2, 0)``, ``(0, ±2)``, ``(±1, ±1)``;
- hex, 12 cells: ``(0, ±4)``, ``(±1, ±3)``, ``(±2, ±2)``, ``(±2, 0)``.

Because rings are defined on the full lattice, a spot two hops away is an order-2 neighbour even
when the spot between them is missing from the data (off tissue or filtered out).

Spot lookup hashes each ``(row, col)`` into one ``int64`` key and finds every offset with a single
:func:`numpy.searchsorted` over all spots, so building the graph is a handful of vectorised passes
(one per offset) with no dense spots x spots matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, overload

import numpy as np
import scipy.sparse as sp

from .._errors import InputError
from .._logging import warn
from ._builders import section_groups

__all__ = ["detect_lattice", "lattice_graph", "ring_offsets"]

logger = logging.getLogger(__name__)

Lattice = Literal["square", "hex"]

_ORDER1: dict[Lattice, tuple[tuple[int, int], ...]] = {
    "square": ((1, 0), (-1, 0), (0, 1), (0, -1)),
    "hex": ((0, 2), (0, -2), (1, 1), (1, -1), (-1, 1), (-1, -1)),
}
# detect_lattice: share of spots allowed off the majority parity before a grid stops being "hex",
# and share of spots that must have at least one order-1 neighbour to accept a lattice
_PARITY_TOLERANCE = 0.01
_MIN_CONNECTED = 0.5
# sections with fewer spots than this do not vote on the grid type when larger sections exist
_MIN_SECTION = 20
# on a Visium grid the (0, ±2) and (±1, ±1) neighbours are equally far apart in image pixels; with
# array_row and array_col swapped the (0, ±2) pairs are sqrt(3) spacings apart. Coordinates in array
# units (x = array_col, y = array_row, as BayesSpace and spatialLIBD store them) give sqrt(2) either
# way round, so the limit sits between sqrt(2) and sqrt(3)
_HEX_SWAP_RATIO = 1.57


def ring_offsets(lattice: Lattice, n_rings: int) -> list[np.ndarray]:
    """Return the ``(row, col)`` offsets of rings ``1..n_rings`` of ``lattice``.

    Parameters
    ----------
    lattice
        ``"square"`` (original ST) or ``"hex"`` (Visium).
    n_rings
        Highest ring order.

    Returns
    -------
    One ``(m_k, 2)`` int64 array per ring ``k = 1..n_rings``, sorted lexicographically, with
    ``m_k = 4k`` (square) or ``6k`` (hex).
    """
    if lattice not in _ORDER1:
        msg = f"lattice must be 'square' or 'hex', got {lattice!r}."
        raise InputError(msg)
    _check_n_rings(n_rings)
    steps = _ORDER1[lattice]
    seen = {(0, 0)}
    frontier = {(0, 0)}
    rings = []
    # breadth-first search over offsets (at most 3 n_rings (n_rings + 1) cells, never over spots)
    for _ in range(n_rings):
        nxt = {(r + dr, c + dc) for r, c in frontier for dr, dc in steps} - seen
        seen |= nxt
        frontier = nxt
        rings.append(np.array(sorted(nxt), dtype=np.int64).reshape(-1, 2))
    return rings


def detect_lattice(array_row, array_col) -> Lattice | None:
    """Recognise the spot grid from integer array positions.

    Parameters
    ----------
    array_row, array_col
        Integer grid position of each spot (``adata.obs['array_row']``, ``adata.obs['array_col']``).

    Returns
    -------
    ``"hex"``, ``"square"``, or ``None`` when the positions fit neither.

    Notes
    -----
    The rules, in order:

    1. Positions that are not finite whole numbers, or fewer than 2 spots: ``None``.
    2. On a Visium hexagonal grid every spot has the same parity of ``row + col``; on a square ST
       grid both parities occur about equally. If at most 1 % of the spots break the majority
       parity the candidate is ``"hex"``, otherwise ``"square"``.
    3. The candidate is accepted only when at least half of the spots have a neighbour at one of
       its characteristic order-1 offsets: ``(±1, ±1)`` for hex (a square grid scaled by 2, whose
       spots are never diagonal, fails here), ``(±1, 0), (0, ±1)`` for square (scattered integer
       positions fail here). Otherwise ``None``.
    """
    r, c = _positions(array_row, array_col, strict=False)
    if r is None or c is None or r.size < 2:  # both None or neither
        return None
    parity = (r + c) & 1
    minority = min(parity.mean(), 1.0 - parity.mean())
    if minority <= _PARITY_TOLERANCE:
        candidate: Lattice = "hex"
        check = np.array([(1, 1), (1, -1), (-1, 1), (-1, -1)], dtype=np.int64)
    else:
        candidate = "square"
        check = np.array(_ORDER1["square"], dtype=np.int64)
    keys, width = _encode(r, c, pad=1)
    sorted_keys = np.sort(keys)
    connected = np.zeros(r.size, dtype=bool)  # in sorted order: only the share matters
    for dr, dc in check:
        connected |= _lookup(sorted_keys, sorted_keys + (dr * width + dc))[1]
    if connected.mean() < _MIN_CONNECTED:
        return None
    if candidate == "hex" and minority > 0:
        warn(
            f"hexagonal grid with {int(round(minority * r.size))} spot(s) off the lattice parity: they only "
            "connect to each other"
        )
    return candidate


def lattice_graph(
    array_row,
    array_col,
    *,
    lattice: Literal["auto", "square", "hex"] = "auto",
    n_rings: int = 1,
    ring_weights: Sequence[float] | np.ndarray | None = None,
) -> sp.csr_matrix:
    """Weighted neighbour graph of spots on a square (ST) or hexagonal (Visium) grid.

    Parameters
    ----------
    array_row, array_col
        Integer grid position of each spot.
    lattice
        ``"square"``, ``"hex"``, or ``"auto"`` to recognise it with :func:`detect_lattice`.
    n_rings
        Highest neighbour order included (1 = the 4 or 6 adjacent spots).
    ring_weights
        Weight of an order-``k`` neighbour, one value per ring (default all 1.0). A ring of
        weight 0 is left out of the graph.

    Returns
    -------
    Symmetric ``(n_spots, n_spots)`` CSR matrix (float64) holding ``ring_weights[k-1]`` for each
    order-``k`` neighbour pair and nothing on the diagonal.

    Raises
    ------
    InputError
        Non-integer or duplicated positions, a lattice that cannot be recognised, bad ring options.
    """
    return _lattice_graph(array_row, array_col, lattice=lattice, n_rings=n_rings, ring_weights=ring_weights)


def resolve_lattice(array_row, array_col, lattice: str, sections: np.ndarray | None = None) -> Lattice:
    """Return ``lattice``, or the one recognised (per section, all agreeing) when ``"auto"``."""
    if lattice in _ORDER1:
        return lattice
    if lattice != "auto":
        msg = f"lattice must be 'auto', 'square' or 'hex', got {lattice!r}."
        raise InputError(msg)
    r, c = _positions(array_row, array_col)
    groups = [np.arange(r.size)] if sections is None else section_groups(sections)
    # sections too small to show their grid (a few spots left by filtering) take the type the
    # larger ones agree on
    large = [g for g in groups if g.size >= _MIN_SECTION] or groups
    known = {detect_lattice(r[g], c[g]) for g in large}
    only = next(iter(known)) if len(known) == 1 else None
    if only is not None:
        return only
    what = "sections disagree on the grid type" if len(known) > 1 else "the grid type could not be recognised"
    msg = (
        f"{what} (found {sorted(map(str, known))}) from the array positions: build the graph with "
        "spotfill.spatial_neighbors(adata, lattice='hex') (Visium) or lattice='square' (original ST), "
        "or a k-nearest-neighbour graph with coord_type='generic'."
    )
    raise InputError(msg)


def _refuse_shared_positions(sorted_keys: np.ndarray, order: np.ndarray, r: np.ndarray, c: np.ndarray) -> None:
    """Raise when two spots (of the same section) have the same array position (equal sorted keys)."""
    dup = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if dup.size:
        i, j = order[dup[0]], order[dup[0] + 1]
        msg = (
            f"{dup.size} spot(s) share an array position with another spot (e.g. spots {i} and {j} at row "
            f"{r[i]}, col {c[i]}): drop duplicated spots, or name the column of sections when several are stacked: "
            "library_key= (--library-key)."
        )
        raise InputError(msg)


def _lattice_graph(
    array_row,
    array_col,
    *,
    lattice: str,
    n_rings: int,
    ring_weights: Sequence[float] | np.ndarray | None,
    sections: np.ndarray | None = None,
) -> sp.csr_matrix:
    r, c = _positions(array_row, array_col)
    n = r.size
    _check_n_rings(n_rings)
    weights = _check_ring_weights(ring_weights, n_rings)
    if sections is not None:
        sections = np.asarray(sections, dtype=np.int64)
        if sections.shape != (n,):
            msg = f"sections has shape {sections.shape}, expected ({n},)."
            raise InputError(msg)
    if n == 0:
        return sp.csr_matrix((0, 0), dtype=np.float64)
    # the keys are padded for either lattice's rings, so that duplicates are found (from the same sort)
    # before recognising the grid, which duplicated positions would confuse
    pad = max(int(max(np.abs(o).max() for o in ring_offsets(kind, n_rings))) for kind in _ORDER1)
    keys, width = _encode(r, c, pad=pad, sections=sections)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    _refuse_shared_positions(sorted_keys, order, r, c)
    kind = resolve_lattice(r, c, lattice, sections)
    rings = ring_offsets(kind, n_rings)
    # one column per kept offset: the neighbour found there (-1 when absent), in the spots' own order;
    # queries run over the sorted keys, so each searchsorted walks its table once (cache friendly)
    offsets = [(w, o) for w, ring in zip(weights, rings, strict=True) if w > 0 for o in ring]
    if not offsets:
        return sp.csr_matrix((n, n), dtype=np.float64)
    nb = np.empty((n, len(offsets)), dtype=np.int64)
    for k, (_, (dr, dc)) in enumerate(offsets):
        pos, hit = _lookup(sorted_keys, sorted_keys + (dr * width + dc))
        nb[order, k] = np.where(hit, order[pos], -1)
    found = nb >= 0
    vals = np.broadcast_to(np.array([w for w, _ in offsets], dtype=np.float64), nb.shape)[found]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(found.sum(axis=1), out=indptr[1:])
    W = sp.csr_matrix((vals, nb[found], indptr), shape=(n, n))
    W.sort_indices()
    return W


@overload
def _positions(array_row, array_col, *, strict: Literal[True] = ...) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def _positions(array_row, array_col, *, strict: bool) -> tuple[np.ndarray | None, np.ndarray | None]: ...
def _positions(array_row, array_col, *, strict: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return integer ``(row, col)`` arrays; raise (``strict``) or return ``None`` when not whole numbers."""
    r = np.asarray(array_row)
    c = np.asarray(array_col)
    if r.ndim != 1 or r.shape != c.shape:
        msg = f"array_row and array_col must be 1-D of the same length, got shapes {r.shape} and {c.shape}."
        raise InputError(msg)
    if r.dtype.kind in "iu" and c.dtype.kind in "iu":
        return r.astype(np.int64, copy=False), c.astype(np.int64, copy=False)
    try:
        rf = r.astype(np.float64)
        cf = c.astype(np.float64)
    except (TypeError, ValueError):
        rf = cf = np.array([np.nan])
    ok = all(np.all(np.isfinite(v)) and np.all(v == np.round(v)) for v in (rf, cf))
    if not ok:
        if not strict:
            return None, None
        msg = (
            "array_row / array_col must be whole numbers (the spot's integer position on the array) with no "
            "missing values: fix or drop those spots, or build a graph from obsm coordinates with coord_type='generic'."
        )
        raise InputError(msg)
    return rf.astype(np.int64), cf.astype(np.int64)


def _encode(r: np.ndarray, c: np.ndarray, *, pad: int, sections: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Hash ``(section, row, col)`` into int64 keys; offsets within ``pad`` never wrap across rows or sections."""
    r0 = r - r.min() + pad
    c0 = c - c.min() + pad
    width = int(c0.max()) + pad + 1
    height = int(r0.max()) + pad + 1
    n_sections = 1 if sections is None else int(sections.max()) + 1
    if float(width) * height * n_sections >= 2.0**62:
        msg = (
            f"array positions span {height} rows x {width} columns: too large for a grid graph. Check that "
            "array_row / array_col hold array indices (not pixel coordinates), or use coord_type='generic'."
        )
        raise InputError(msg)
    keys = r0 * width + c0
    if sections is not None:
        keys = keys + sections * (height * width)
    return keys, width


def _lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``queries`` in ``sorted_keys`` and whether each was found."""
    pos = np.searchsorted(sorted_keys, queries)
    np.minimum(pos, sorted_keys.size - 1, out=pos)
    return pos, sorted_keys[pos] == queries


def _check_n_rings(n_rings: int) -> None:
    if isinstance(n_rings, bool) or not isinstance(n_rings, int | np.integer) or n_rings < 1:
        msg = f"n_rings must be a positive integer (1 = adjacent spots only), got {n_rings!r}."
        raise InputError(msg)


def _check_ring_weights(ring_weights: Sequence[float] | np.ndarray | None, n_rings: int) -> np.ndarray:
    if ring_weights is None:
        return np.ones(n_rings, dtype=np.float64)
    w = np.asarray(ring_weights, dtype=np.float64).ravel()
    if w.size != n_rings:
        msg = f"ring_weights has {w.size} value(s) but n_rings={n_rings}: give one weight per ring order."
        raise InputError(msg)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        msg = f"ring_weights must be finite and non-negative, got {w.tolist()}."
        raise InputError(msg)
    return w


def check_hex_orientation(r: np.ndarray, c: np.ndarray, coords: np.ndarray, sections: np.ndarray | None = None) -> None:
    """Refuse hexagonal array positions whose rows and columns look swapped, judged by the coordinates.

    On Visium's grid (columns doubled) the neighbours at ``(0, ±2)`` and ``(±1, ±1)`` are one spot
    spacing away. If ``array_row`` and ``array_col`` were swapped, the parity and the diagonal
    neighbours look the same, but the ``(0, ±2)`` pairs are ``sqrt(3)`` spacings apart: their median
    distance in ``coords`` is compared with that of the ``(±1, ±1)`` pairs and refused above 1.57.
    Coordinates in array units (ratio sqrt(2) either way round) cannot show a swap and pass.
    """
    if r.size < 2:
        return
    keys, width = _encode(r, c, pad=2, sections=sections)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]

    def median_length(offsets: list[tuple[int, int]]) -> float:
        lengths = []
        for dr, dc in offsets:
            pos, found = _lookup(sorted_keys, keys + (dr * width + dc))
            j = order[pos[found]]
            lengths.append(np.linalg.norm(coords[found] - coords[j], axis=1))
        values = np.concatenate(lengths)
        return float(np.median(values)) if values.size else float("nan")

    across, diagonal = median_length([(0, 2)]), median_length([(1, 1), (1, -1)])
    if np.isfinite(across) and np.isfinite(diagonal) and diagonal > 0 and across > _HEX_SWAP_RATIO * diagonal:
        msg = (
            f"array_row and array_col look swapped: on a Visium grid spots two columns apart are neighbours, "
            f"as close as diagonal ones, but here they are {across / diagonal:.2f} times as far apart in the "
            "coordinates (sqrt(3) = 1.73 when the two are swapped). Swap adata.obs['array_row'] and "
            "adata.obs['array_col'], or build a k-nearest-neighbour graph with coord_type='generic'."
        )
        raise InputError(msg)
