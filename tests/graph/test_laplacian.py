"""Laplacians, row normalisation and neighbour counts against hand-computed matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotfill import InputError
from spotfill.graph import graph_laplacian, neighbor_counts, row_normalize

# path 0 - 1 - 2 with weights 1 and 2, plus an isolated spot 3
W_DENSE = np.array(
    [
        [0.0, 1.0, 0.0, 0.0],
        [1.0, 0.0, 2.0, 0.0],
        [0.0, 2.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
)


@pytest.fixture(params=["dense", "csr"])
def W(request):
    return W_DENSE.copy() if request.param == "dense" else sp.csr_matrix(W_DENSE)


def test_combinatorial_laplacian(W):
    L = graph_laplacian(W)
    expected = np.array(
        [
            [1.0, -1.0, 0.0, 0.0],
            [-1.0, 3.0, -2.0, 0.0],
            [0.0, -2.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    assert isinstance(L, sp.csr_matrix)
    np.testing.assert_allclose(L.toarray(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(L @ np.ones(4), 0.0, atol=1e-12)


def test_normalized_laplacian(W):
    L = graph_laplacian(W, normalized=True)
    # degrees 1, 3, 2, 0: off-diagonals -w_ij / sqrt(d_i d_j); isolated spot stays all zero
    expected = np.array(
        [
            [1.0, -1.0 / np.sqrt(3.0), 0.0, 0.0],
            [-1.0 / np.sqrt(3.0), 1.0, -2.0 / np.sqrt(6.0), 0.0],
            [0.0, -2.0 / np.sqrt(6.0), 1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_allclose(L.toarray(), expected, rtol=0, atol=1e-12)
    eig = np.linalg.eigvalsh(L.toarray())
    assert eig.min() > -1e-12
    assert eig.max() < 2.0 + 1e-12


def test_row_normalize(W):
    P = row_normalize(W)
    expected = np.array(
        [
            [0.0, 1.0, 0.0, 0.0],
            [1.0 / 3.0, 0.0, 2.0 / 3.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    assert isinstance(P, sp.csr_matrix)
    np.testing.assert_allclose(P.toarray(), expected, rtol=0, atol=1e-12)


def test_neighbor_counts(W):
    counts = neighbor_counts(W)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [1, 2, 1, 0])


def test_neighbor_counts_ignore_diagonal_and_explicit_zeros():
    M = sp.csr_matrix((np.array([5.0, 0.0, 1.0]), (np.array([0, 0, 1]), np.array([0, 1, 0]))), shape=(2, 2))
    np.testing.assert_array_equal(neighbor_counts(M), [0, 1])


def test_inputs_left_untouched():
    M = sp.csr_matrix(W_DENSE)
    M.data[0] = 0.0  # an explicit zero (edge 0 - 1), which the functions drop from their own copy only
    before = M.toarray().copy()
    graph_laplacian(M, normalized=True)
    row_normalize(M)
    neighbor_counts(M)
    np.testing.assert_array_equal(M.toarray(), before)
    assert M.nnz == 4


def test_duplicate_entries_are_summed():
    # CSR with the edge 0 - 1 stored twice in row 0 (weights 1 + 1), as some converters write it
    M = sp.csr_matrix((np.array([1.0, 1.0, 2.0]), np.array([1, 1, 0]), np.array([0, 2, 3])), shape=(2, 2))
    np.testing.assert_array_equal(neighbor_counts(M), [1, 1])
    np.testing.assert_allclose(graph_laplacian(M).toarray(), [[2.0, -2.0], [-2.0, 2.0]])


def test_graph_without_edges_has_zero_laplacian():
    for normalized in (False, True):
        L = graph_laplacian(sp.csr_matrix((3, 3)), normalized=normalized)
        assert L.shape == (3, 3)
        assert L.nnz == 0


def test_errors():
    with pytest.raises(InputError, match="square"):
        graph_laplacian(np.ones((2, 3)))
    with pytest.raises(InputError, match="non-negative"):
        graph_laplacian(-W_DENSE)


def test_self_loops_dropped_and_directed_graphs_symmetrised():
    from scipy.sparse.csgraph import laplacian as scipy_laplacian

    looped = W_DENSE + np.diag([1.0, 0.5, 0.0, 2.0])  # squidpy's set_diag=True
    for normed in (False, True):
        np.testing.assert_allclose(
            graph_laplacian(looped, normalized=normed).toarray(), scipy_laplacian(W_DENSE, normed=normed)
        )
    directed = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [4.0, 0.0, 0.0]])  # one-way edges
    L = graph_laplacian(directed).toarray()
    np.testing.assert_allclose(L, L.T)
    f = np.array([1.0, -2.0, 0.5])
    penalty = 0.5 * sum(directed[i, j] * (f[i] - f[j]) ** 2 for i in range(3) for j in range(3))
    assert f @ L @ f == pytest.approx(penalty)  # the directed weights' smoothness penalty, unchanged
