"""Neural matrix factorisation: spot and gene embeddings whose dot product predicts an entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from ._base import BaseModule, LossOutput
from ._losses import GraphTensors, edge_smoothness, expand_neighbours, lookup_entries

__all__ = ["EntryBatch", "MatrixFactorization"]

Penalty = Literal["none", "neighbour_errors", "laplacian"]


@dataclass
class EntryBatch:
    """A minibatch of (spot, gene, value) entries for :class:`MatrixFactorization`.

    Attributes
    ----------
    rows, cols
        Spot and gene indices (int64).
    values
        Observed values on the model's scale.
    weights
        Per-entry weights of the data term (``None``: all 1).
    spatial
        Add the spatial penalty (validation batches set ``False``).
    lap_rows, lap_cols
        Positions drawn uniformly from all spots x genes, where the Laplacian penalty is evaluated.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    weights: torch.Tensor | None = None
    spatial: bool = True
    lap_rows: torch.Tensor | None = None
    lap_cols: torch.Tensor | None = None


class MatrixFactorization(BaseModule):
    """Predict entry ``(i, g)`` as ``<u_i, v_g>`` (``+ b_i + c_g`` when ``bias``).

    The loss is the root of the (weighted) mean squared error of the batch entries, with an optional
    spatial penalty:

    - ``"neighbour_errors"`` (the original study's term): each batch entry ``(i, g)`` also adds
      ``sum_j W_ij (y_jg - yhat_jg)^2`` over neighbours ``j`` whose ``(j, g)`` is an observed
      training entry; the loss is ``sqrt((sum_k e_k + sum_k n_k) / B)``.
    - ``"laplacian"``: ``sqrt(mse) + smooth * P`` with ``P = 0.5 / B' sum_{(i,g)} sum_j W_ij
      (yhat_ig - yhat_jg)^2`` over ``B'`` positions drawn uniformly from all spots x genes, an
      unbiased estimate of ``sum_g yhat_g^T L yhat_g / (n_spots n_genes)``.

    Parameters
    ----------
    n_obs, n_vars
        Number of spots and genes.
    n_latent
        Embedding dimension.
    bias
        Add a spot and a gene bias.
    init_scale
        Embeddings start uniform on ``[0, init_scale)``.
    penalty
        Spatial penalty (see above).
    smooth
        Weight of the Laplacian penalty.
    graph
        Symmetric spots x spots weights ``W`` (needed by the penalties).
    observed
        Training entries (CSR, model scale), looked up by ``"neighbour_errors"``.
    generator
        Random generator of the initialisation.
    sparse_grad
        Produce sparse gradients for the embeddings (much cheaper steps with plain SGD; not
        supported by Adam or by weight decay).
    """

    # buffers for "neighbour_errors" with observed entries, else None (both together)
    obs_keys: torch.Tensor | None
    obs_values: torch.Tensor | None

    def __init__(
        self,
        n_obs: int,
        n_vars: int,
        n_latent: int = 40,
        *,
        bias: bool = False,
        init_scale: float = 0.1,
        penalty: Penalty = "none",
        smooth: float = 1.0,
        graph: sp.spmatrix | None = None,
        observed: sp.csr_matrix | None = None,
        generator: torch.Generator | None = None,
        sparse_grad: bool = False,
    ) -> None:
        super().__init__()
        self.n_obs, self.n_vars, self.n_latent = int(n_obs), int(n_vars), int(n_latent)
        self.penalty, self.smooth = penalty, float(smooth)
        self.sparse_grad = bool(sparse_grad)
        self.spot_emb = torch.nn.Parameter(torch.rand(self.n_obs, self.n_latent, generator=generator) * init_scale)
        self.gene_emb = torch.nn.Parameter(torch.rand(self.n_vars, self.n_latent, generator=generator) * init_scale)
        self.has_bias = bool(bias)
        if self.has_bias:  # one-column tables, so that sparse embedding gradients apply to them too
            self.spot_bias = torch.nn.Parameter(torch.zeros(self.n_obs, 1))
            self.gene_bias = torch.nn.Parameter(torch.zeros(self.n_vars, 1))
        self.graph = GraphTensors(graph) if graph is not None and penalty != "none" else None
        if penalty == "neighbour_errors" and observed is not None:
            obs = sp.csr_matrix(observed, dtype=np.float32)
            obs.sort_indices()
            rows = np.repeat(np.arange(obs.shape[0], dtype=np.int64), np.diff(obs.indptr))
            keys = rows * self.n_vars + obs.indices.astype(np.int64)
            self.register_buffer("obs_keys", torch.from_numpy(keys), persistent=False)
            self.register_buffer("obs_values", torch.from_numpy(obs.data.copy()), persistent=False)
        else:
            self.obs_keys = self.obs_values = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        # models saved before the biases became one-column tables hold them as vectors
        for name in ("spot_bias", "gene_bias"):
            key = prefix + name
            if key in state_dict and state_dict[key].dim() == 1:
                state_dict[key] = state_dict[key][:, None]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def predict(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Return predictions at entries ``(rows[k], cols[k])``."""
        sparse = self.sparse_grad and self.training
        u = F.embedding(rows, self.spot_emb, sparse=sparse)
        pred = (u * F.embedding(cols, self.gene_emb, sparse=sparse)).sum(-1)
        if self.has_bias:
            pred = pred + F.embedding(rows, self.spot_bias, sparse=sparse)[:, 0]
            pred = pred + F.embedding(cols, self.gene_bias, sparse=sparse)[:, 0]
        return pred

    def full(self, rows: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        """Return the spots x genes prediction matrix (for the spots in ``rows``)."""
        pred = self.spot_emb[rows] @ self.gene_emb.T
        if self.has_bias:
            pred = pred + self.spot_bias[rows] + self.gene_bias.T
        return pred

    def forward(self, batch: EntryBatch) -> torch.Tensor:
        """Return predictions at the batch's entries."""
        return self.predict(batch.rows, batch.cols)

    def loss(self, batch: EntryBatch) -> LossOutput:
        """Return the batch loss (see the class docstring)."""
        pred = self(batch)
        se = (batch.values - pred) ** 2
        denom: float | torch.Tensor
        if batch.weights is None:
            se_sum, denom = se.sum(), float(se.numel())
        else:
            se_sum, denom = (batch.weights * se).sum(), batch.weights.sum().clamp_min(1e-12)
        comps = {"mse": (se_sum / denom).detach()}
        graph = self.graph if batch.spatial else None
        if graph is not None and self.penalty == "neighbour_errors" and self.obs_keys is not None:
            assert self.obs_values is not None  # set with obs_keys
            owner, nbr, w = expand_neighbours(graph, batch.rows)
            genes = batch.cols[owner]
            y_nb, found = lookup_entries(self.obs_keys, self.obs_values, nbr * self.n_vars + genes)
            e_nb = w * found * (y_nb - self.predict(nbr, genes)) ** 2
            if batch.weights is not None:
                e_nb = e_nb * batch.weights[owner]
            nb_sum = e_nb.sum()
            comps["neighbour_errors"] = (nb_sum / denom).detach()
            total = ((se_sum + nb_sum) / denom).clamp_min(1e-12).sqrt()
        elif graph is not None and self.penalty == "laplacian" and batch.lap_rows is not None:
            owner, nbr, w = expand_neighbours(graph, batch.lap_rows)
            lap_cols = cast(torch.Tensor, batch.lap_cols)  # given together with lap_rows (see EntryBatch)
            genes = lap_cols[owner]
            p_i = self.predict(batch.lap_rows, lap_cols)[owner]
            lap = edge_smoothness(p_i, self.predict(nbr, genes), w) / batch.lap_rows.numel()
            comps["laplacian"] = lap.detach()
            total = (se_sum / denom).clamp_min(1e-12).sqrt() + self.smooth * lap
        else:
            total = (se_sum / denom).clamp_min(1e-12).sqrt()
        return LossOutput(loss=total, components=comps, n_obs=int(batch.rows.numel()))
