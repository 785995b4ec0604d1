"""k-nearest-neighbour and radius graphs on tiny point sets, and edge lengths."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotfill import InputError
from spotfill.graph import edge_lengths, knn_graph, radius_graph

# four points on a line at x = 0, 1, 3, 7
LINE = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])


def edges(W: sp.csr_matrix) -> set[tuple[int, int]]:
    coo = sp.triu(W, k=1).tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_knn_one_neighbour_union(dtype):
    W = knn_graph(LINE.astype(dtype), n_neighs=1)
    # nearest: 0->1, 1->0, 2->1 (2 < 4), 3->2; union keeps 1-2 although 1's nearest is 0
    assert edges(W) == {(0, 1), (1, 2), (2, 3)}
    assert isinstance(W, sp.csr_matrix)
    assert W.dtype == np.float64
    np.testing.assert_array_equal(W.data, 1.0)
    assert abs(W - W.T).max() == 0


def test_knn_two_neighbours():
    W = knn_graph(LINE, n_neighs=2)
    # 0 -> {1, 2}; 1 -> {0, 2}; 2 -> {1, 0}; 3 -> {2, 1}
    assert edges(W) == {(0, 1), (0, 2), (1, 2), (2, 3), (1, 3)}
    np.testing.assert_array_equal(np.diff(W.indptr), [2, 3, 3, 2])


def test_knn_caps_at_all_other_spots():
    W = knn_graph(LINE, n_neighs=10)
    np.testing.assert_array_equal(W.toarray(), 1.0 - np.eye(4))
    assert knn_graph(LINE[:1], n_neighs=3).nnz == 0


def test_knn_duplicates_never_self_loops():
    pts = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    W = knn_graph(pts, n_neighs=1)
    assert np.all(W.diagonal() == 0)
    assert np.all(np.diff(W.indptr) >= 1)
    E = edges(W)
    assert sum(3 in e for e in E) == 1  # the far point links to exactly one copy
    for i in range(3):  # each copy's nearest is another copy, at distance 0
        assert any(i in e and 3 not in e for e in E)


def test_knn_3d_coordinates():
    pts = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 10.0]])
    assert edges(knn_graph(pts, n_neighs=1)) == {(0, 1), (1, 2)}


def test_radius_max_only_inclusive():
    assert edges(radius_graph(LINE, radius=2.0)) == {(0, 1), (1, 2)}
    assert edges(radius_graph(LINE, radius=1.999)) == {(0, 1)}


def test_radius_interval():
    # distances: 0-1 1, 0-2 3, 0-3 7, 1-2 2, 1-3 6, 2-3 4
    W = radius_graph(LINE, radius=(1.5, 4.0))
    assert edges(W) == {(0, 2), (1, 2), (2, 3)}
    np.testing.assert_array_equal(W.data, 1.0)
    assert abs(W - W.T).max() == 0
    assert radius_graph(LINE, radius=0.5).nnz == 0


def test_edge_lengths_follow_the_graph():
    W = knn_graph(LINE, n_neighs=1)
    D = edge_lengths(W, LINE)
    np.testing.assert_array_equal(D.indptr, W.indptr)
    np.testing.assert_array_equal(D.indices, W.indices)
    expected = np.zeros((4, 4))
    for i, j, d in [(0, 1, 1.0), (1, 2, 2.0), (2, 3, 4.0)]:
        expected[i, j] = expected[j, i] = d
    np.testing.assert_allclose(D.toarray(), expected, rtol=0, atol=1e-12)


def test_edge_lengths_keep_coinciding_spots():
    pts = np.array([[1.0, 1.0], [1.0, 1.0]])
    W = knn_graph(pts, n_neighs=1)
    D = edge_lengths(W, pts)
    assert D.nnz == W.nnz == 2
    np.testing.assert_array_equal(D.data, 0.0)


def test_errors():
    with pytest.raises(InputError, match="n_neighs"):
        knn_graph(LINE, n_neighs=0)
    with pytest.raises(InputError, match="shape"):
        knn_graph(LINE[:, :1])
    with pytest.raises(InputError, match="NaN"):
        knn_graph(np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(InputError, match="radius"):
        radius_graph(LINE, radius=-1.0)
    with pytest.raises(InputError, match="radius"):
        radius_graph(LINE, radius=(3.0, 1.0))
    with pytest.raises(InputError, match="pair"):
        radius_graph(LINE, radius=(1.0, 2.0, 3.0))


@pytest.mark.parametrize("n_neighs", [1, 4, 6])
def test_knn_matches_brute_force(n_neighs):
    pts = np.random.default_rng(3).random((150, 2))  # continuous: no distance ties
    dist = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    A = np.zeros_like(dist)
    np.put_along_axis(A, np.argsort(dist, axis=1)[:, :n_neighs], 1.0, axis=1)
    expected = np.maximum(A, A.T)
    np.testing.assert_array_equal(knn_graph(pts, n_neighs=n_neighs).toarray(), expected)


def test_radius_matches_brute_force():
    pts = np.random.default_rng(4).random((150, 2))
    dist = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
    expected = ((dist >= 0.05) & (dist <= 0.12)).astype(float)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_array_equal(radius_graph(pts, radius=(0.05, 0.12)).toarray(), expected)


def test_radius_pair_keeps_pairs_at_exactly_the_minimum_distance():
    # spots at 0, 1, 3 on a line: distances 1, 2, 3; (min, max) = (1, 2) keeps both ends inclusive
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    W = radius_graph(coords, radius=(1.0, 2.0)).toarray()
    np.testing.assert_array_equal(W, [[0, 1, 0], [1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(radius_graph(coords, radius=(2.0, 3.0)).toarray(), [[0, 0, 1], [0, 0, 1], [1, 1, 0]])
