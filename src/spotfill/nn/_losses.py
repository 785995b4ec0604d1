"""Loss terms shared by the study's models (plain torch functions, vectorised, no Python loops).

Notation: ``y`` observed values and ``yhat`` predictions on the model's scale (counts or log1p
counts), ``W`` a symmetric spots x spots weight matrix. For one gene ``g``:

- *neighbour errors* (the original study's spatial term): every spot ``i`` in the loss adds its
  neighbours' weighted squared errors, ``sum_j W_ij (y_gj - yhat_gj)^2``. Summed over spots this
  only reweights each spot's own error by its weighted degree: it does not ask neighbours'
  predictions to agree. Reproduced for comparison.
- *Laplacian smoothness*: ``yhat_g^T L yhat_g = sum over edges {i, j} of W_ij (yhat_gi - yhat_gj)^2``
  with ``L = D - W``: a true smoothness prior on the predictions.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "GraphTensors",
    "dense_laplacian_quadratic",
    "dense_neighbour_errors",
    "edge_smoothness",
    "expand_neighbours",
    "lookup_entries",
]


class GraphTensors(torch.nn.Module):
    """A sparse spots x spots weight matrix as CSR tensors, held as non-persistent buffers.

    The buffers follow the module to its device but are not part of its ``state_dict`` (they are
    rebuilt from the data's graph when needed).
    """

    # the buffers registered in __init__ (torch types them as ``Tensor | Module`` otherwise)
    indptr: torch.Tensor
    indices: torch.Tensor
    data: torch.Tensor
    rows: torch.Tensor
    degree: torch.Tensor

    def __init__(self, W: sp.spmatrix) -> None:
        super().__init__()
        W = sp.csr_matrix(W, dtype=np.float32)
        W.sum_duplicates()
        W.sort_indices()
        self.n = W.shape[0]
        self.register_buffer("indptr", torch.from_numpy(W.indptr.astype(np.int64)), persistent=False)
        self.register_buffer("indices", torch.from_numpy(W.indices.astype(np.int64)), persistent=False)
        self.register_buffer("data", torch.from_numpy(W.data.astype(np.float32)), persistent=False)
        rows = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(W.indptr))
        self.register_buffer("rows", torch.from_numpy(rows), persistent=False)
        deg = np.asarray(W.sum(axis=1), dtype=np.float32).ravel()
        self.register_buffer("degree", torch.from_numpy(deg), persistent=False)

    def sparse(self) -> torch.Tensor:
        """Return the matrix as a coalesced torch sparse COO tensor."""
        idx = torch.stack([self.rows, self.indices])
        return torch.sparse_coo_tensor(idx, self.data, size=(self.n, self.n), is_coalesced=True, check_invariants=False)


def expand_neighbours(graph: GraphTensors, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """List the graph neighbours of each spot in ``rows``.

    Returns ``(owner, nbr, w)``: for every stored edge ``rows[owner[k]] -> nbr[k]`` its weight
    ``w[k]``; ``owner`` indexes into ``rows``.
    """
    start = graph.indptr[rows]
    counts = graph.indptr[rows + 1] - start
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts)
    first = torch.cumsum(counts, 0) - counts  # exclusive cumulative sum
    pos = start[owner] + torch.arange(owner.numel(), device=rows.device) - first[owner]
    return owner, graph.indices[pos], graph.data[pos]


def lookup_entries(keys: torch.Tensor, values: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Look up sparse entries by flat key ``row * n_cols + col``.

    ``keys`` must be sorted (canonical CSR order gives that). Returns ``(value, found)``, with
    ``value = 0`` where the key is absent.
    """
    if keys.numel() == 0:
        zeros = torch.zeros(query.shape, dtype=values.dtype, device=query.device)
        return zeros, torch.zeros(query.shape, dtype=torch.bool, device=query.device)
    pos = torch.searchsorted(keys, query).clamp_max(keys.numel() - 1)
    found = keys[pos] == query
    return torch.where(found, values[pos], torch.zeros((), dtype=values.dtype, device=values.device)), found


def edge_smoothness(pred_i: torch.Tensor, pred_j: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum_k w_k (pred_i[k] - pred_j[k])^2`` over directed edges listed both ways.

    With a symmetric graph every undirected edge appears twice in a full listing, so the result over
    all spots equals the Laplacian quadratic form ``yhat^T L yhat``.
    """
    return 0.5 * (w * (pred_i - pred_j) ** 2).sum()


def dense_laplacian_quadratic(Yhat: torch.Tensor, W: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
    """Return ``sum_b yhat_b^T L yhat_b`` for the rows ``yhat_b`` of ``Yhat`` (genes x spots), ``L = D - W``.

    ``W`` is a (sparse COO or dense) symmetric spots x spots tensor and ``degree`` its row sums.
    Uses ``y^T L y = sum_i d_i y_i^2 - y^T W y`` with one sparse product.
    """
    WY = torch.sparse.mm(W, Yhat.T) if W.is_sparse else W @ Yhat.T  # spots x genes
    return (degree * Yhat**2).sum() - (Yhat.T * WY).sum()


def dense_neighbour_errors(err_sq: torch.Tensor, mask: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Return the study's spatial term on a genes x spots block: ``sum_{g,i} M_gi sum_j W_ij M_gj E_gj``.

    ``err_sq`` holds squared errors ``E`` and ``mask`` (0/1) the entries in the loss: each entry in
    the loss adds the weighted squared errors of its neighbours that are in the loss too.
    """
    masked = (err_sq * mask).T  # spots x genes
    WE = torch.sparse.mm(W, masked) if W.is_sparse else W @ masked
    return (mask.T * WE).sum()
