"""Matrices derived from a neighbour graph: Laplacians, row-normalised weights, degrees."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._errors import InputError
from .._logging import logger
from .._sparse import drop_diagonal

__all__ = ["graph_laplacian", "neighbor_counts", "row_normalize"]


def graph_laplacian(W, *, normalized: bool = False) -> sp.csr_matrix:
    """Graph Laplacian of a (symmetric, non-negative) weighted adjacency matrix.

    Parameters
    ----------
    W
        ``(n_spots, n_spots)`` connectivities, sparse or dense.
    normalized
        ``False``: ``L = D - W`` with ``D`` the diagonal of row sums. ``True``: the symmetric
        normalised Laplacian ``I - D^-1/2 W D^-1/2``.

    Returns
    -------
    ``(n_spots, n_spots)`` CSR matrix (float64).

    Notes
    -----
    An isolated spot (no neighbours, row sum 0) has an all-zero row and column in both forms:
    it is neither smoothed nor penalised. This matches
    :func:`scipy.sparse.csgraph.laplacian` with ``normed=True``.

    Self loops (squidpy's ``set_diag=True``) are dropped: they do not enter the smoothness penalty
    ``f^T L f = 1/2 sum_ij w_ij (f_i - f_j)^2``. A non-symmetric ``W`` (a directed k-nearest-neighbour
    graph, as squidpy's generic ``spatial_neighbors`` builds) is replaced by ``(W + W^T) / 2``, which
    has the same penalty.
    """
    A = _as_square_csr(W, "W")
    if A.nnz and A.data.min() < 0:
        msg = "graph weights must be non-negative for a Laplacian: build W with spotfill.spatial_neighbors."
        raise InputError(msg)
    A = drop_diagonal(A)
    A.eliminate_zeros()
    if (A != A.T).nnz:
        logger.info("the graph is not symmetric (a directed neighbour graph): using (W + W.T) / 2")
        A = ((A + A.T) * 0.5).tocsr()
    d = np.asarray(A.sum(axis=1)).ravel()
    if not normalized:
        return (sp.diags(d) - A).tocsr()
    connected = d > 0
    inv_sqrt = np.zeros_like(d)
    inv_sqrt[connected] = 1.0 / np.sqrt(d[connected])
    S = sp.diags(inv_sqrt) @ A @ sp.diags(inv_sqrt)
    return (sp.diags(connected.astype(np.float64)) - S).tocsr()


def row_normalize(W) -> sp.csr_matrix:
    """Scale each row of ``W`` to sum to 1 (a neighbour-averaging operator).

    Parameters
    ----------
    W
        ``(n_spots, n_spots)`` connectivities, sparse or dense.

    Returns
    -------
    CSR matrix (float64) whose non-empty rows sum to 1; rows without neighbours stay all zero.
    """
    A = _as_square_csr(W, "W")
    d = np.asarray(A.sum(axis=1)).ravel()
    scale = np.zeros_like(d)
    nz = d != 0
    scale[nz] = 1.0 / d[nz]
    return (sp.diags(scale) @ A).tocsr()


def neighbor_counts(W) -> np.ndarray:
    """Count the neighbours of each spot: non-zero, off-diagonal entries per row of ``W``.

    Parameters
    ----------
    W
        ``(n_spots, n_spots)`` connectivities, sparse or dense.

    Returns
    -------
    ``(n_spots,)`` int64 array.
    """
    A = _as_square_csr(W, "W")
    A.eliminate_zeros()
    counts = np.diff(A.indptr).astype(np.int64)
    counts -= (A.diagonal() != 0).astype(np.int64)
    return counts


def _as_square_csr(W, name: str) -> sp.csr_matrix:
    A = sp.csr_matrix(W, dtype=np.float64, copy=True) if sp.issparse(W) else sp.csr_matrix(np.asarray(W, dtype=float))
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        msg = f"{name} must be a square spots x spots matrix, got shape {A.shape}."
        raise InputError(msg)
    A.sum_duplicates()
    return A
