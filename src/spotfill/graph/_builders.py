"""Graphs from free coordinates: k nearest neighbours and fixed radius (``coord_type="generic"``).

Both use :class:`scipy.spatial.cKDTree` and return binary, symmetric CSR connectivities with an
empty diagonal. (squidpy's kNN graph for generic coordinates is directed: a spot lists its own k
nearest neighbours; spotfill keeps an edge when either end lists the other, so every spot has at
least k neighbours.) :func:`edge_lengths` gives the matching Euclidean distance matrix for any graph.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from .._errors import InputError
from .._validation import check_coords

__all__ = ["edge_lengths", "knn_graph", "radius_graph"]


def knn_graph(coords, *, n_neighs: int = 6) -> sp.csr_matrix:
    """Symmetric k-nearest-neighbour graph of spots.

    Parameters
    ----------
    coords
        ``(n_spots, 2 or 3)`` spot positions.
    n_neighs
        Number of nearest neighbours of each spot (capped at ``n_spots - 1``).

    Returns
    -------
    Binary ``(n_spots, n_spots)`` CSR matrix (float64): ``1.0`` where either spot is among the
    other's ``n_neighs`` nearest (union), empty diagonal. Ties at equal distance are broken by the
    KD-tree; spots at identical positions are neighbours of each other, never of themselves.
    """
    X = check_coords(coords)
    if isinstance(n_neighs, bool) or not isinstance(n_neighs, int | np.integer) or n_neighs < 1:
        msg = f"n_neighs must be a positive integer, got {n_neighs!r}."
        raise InputError(msg)
    n = X.shape[0]
    k = min(int(n_neighs), n - 1)
    if k < 1:
        return sp.csr_matrix((n, n), dtype=np.float64)
    tree = cKDTree(X)
    # query in the tree's leaf order (neighbouring queries touch the same nodes: ~3x faster on 1e6
    # random points), then put the rows back in the spots' order
    leaf_order = tree.indices
    idx = np.empty((n, k + 1), dtype=np.int64)
    idx[leaf_order] = tree.query(X[leaf_order], k=k + 1)[1]
    # drop each spot itself; when duplicates push it out of the k + 1 hits, drop the farthest hit
    drop = idx == np.arange(n)[:, None]
    drop[~drop.any(axis=1), -1] = True
    cols = idx[~drop]
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    return _symmetric_binary(rows, cols, n)


def radius_graph(coords, *, radius: float | tuple[float, float]) -> sp.csr_matrix:
    """Graph linking every pair of spots within a distance.

    Parameters
    ----------
    coords
        ``(n_spots, 2 or 3)`` spot positions.
    radius
        Maximum distance (inclusive), or a ``(min, max)`` pair keeping the pairs with
        ``min <= distance <= max``. Same units as ``coords``.

    Returns
    -------
    Binary symmetric ``(n_spots, n_spots)`` CSR matrix (float64), empty diagonal.
    """
    X = check_coords(coords)
    lo, hi = _check_radius(radius)
    n = X.shape[0]
    pairs = cKDTree(X).query_pairs(r=hi, output_type="ndarray").astype(np.int64, copy=False)
    if lo > 0 and pairs.size:
        d = np.sqrt(np.sum((X[pairs[:, 0]] - X[pairs[:, 1]]) ** 2, axis=1))
        pairs = pairs[d >= lo]
    return _symmetric_binary(pairs[:, 0], pairs[:, 1], n)


def edge_lengths(W: sp.csr_matrix, coords: np.ndarray) -> sp.csr_matrix:
    """Euclidean distance between the spots of each edge of ``W``, with exactly the structure of ``W``.

    Coinciding spots keep an explicitly stored ``0.0`` so the two matrices stay aligned.
    """
    W = sp.csr_matrix(W)
    n = W.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(W.indptr))
    sq = np.zeros(rows.size, dtype=np.float64)
    for x in np.asarray(coords, dtype=np.float64).T:  # one contiguous axis at a time (2 or 3)
        diff = x[rows]
        diff -= x[W.indices]
        sq += diff * diff
    d = np.sqrt(sq, out=sq)
    return sp.csr_matrix((d, W.indices.copy(), W.indptr.copy()), shape=W.shape)


def section_groups(sections: np.ndarray) -> list[np.ndarray]:
    """Return the spot indices of each section (ascending; sections in sorted order), from one sort."""
    order = np.argsort(sections, kind="stable")
    _, starts = np.unique(sections[order], return_index=True)
    return np.split(order, starts[1:])


def block_diagonal(build: Callable[[np.ndarray], sp.csr_matrix], sections: np.ndarray, n: int) -> sp.csr_matrix:
    """Apply ``build(index)`` to each section's spots and assemble the graphs without cross edges."""
    rows, cols, vals = [], [], []
    for idx in section_groups(sections):
        G = build(idx).tocoo()
        rows.append(idx[G.row])
        cols.append(idx[G.col])
        vals.append(G.data)
    W = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float64
    )
    W.sort_indices()
    return W


def _symmetric_binary(rows: np.ndarray, cols: np.ndarray, n: int) -> sp.csr_matrix:
    ones = np.ones(rows.size, dtype=np.float64)
    A = sp.csr_matrix((ones, (rows, cols)), shape=(n, n))
    W = (A + A.T).tocsr()
    W.data[:] = 1.0
    W.sort_indices()
    return W


def _check_radius(radius) -> tuple[float, float]:
    if radius is None:
        msg = "radius is required: a maximum distance, or a (min, max) pair, in coordinate units."
        raise InputError(msg)
    vals = np.atleast_1d(np.asarray(radius, dtype=np.float64))
    if vals.size == 1:
        lo, hi = 0.0, float(vals[0])
    elif vals.size == 2:
        lo, hi = float(vals[0]), float(vals[1])
    else:
        msg = f"radius must be a number or a (min, max) pair, got {radius!r}."
        raise InputError(msg)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi <= 0 or lo > hi:
        msg = f"radius must satisfy 0 <= min <= max with max > 0 (finite), got {radius!r}."
        raise InputError(msg)
    return lo, hi
