"""Gene-wise autoencoder: each sample is one gene's vector over all spots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import scipy.sparse as sp
import torch

from ._base import BaseModule, LossOutput
from ._losses import GraphTensors, dense_laplacian_quadratic, dense_neighbour_errors

__all__ = ["GeneAE", "GeneBatch"]

Output = Literal["linear", "softplus", "sigmoid"]
Penalty = Literal["none", "neighbour_errors", "laplacian"]


@dataclass
class GeneBatch:
    """A minibatch of genes for :class:`GeneAE` (all tensors genes x spots).

    Attributes
    ----------
    x
        The input: the gene's values over spots, with every unobserved entry (masked, held out for
        validation) set to 0.
    target
        Values the output is compared with.
    weight
        Which entries enter the data term (0/1).
    spatial
        Add the spatial penalty (validation batches set ``False``).
    """

    x: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor
    spatial: bool = True


class GeneAE(BaseModule):
    """Encoder ``n_spots -> hidden... -> n_latent`` with ReLU, mirrored decoder, output activation.

    The latent layer is linear; ``output`` is the last activation: ``"softplus"`` (non-negative),
    ``"linear"``, or ``"sigmoid"`` (the original study's choice, which caps every prediction at 1,
    i.e. at ``expm1(1) = 1.72`` counts on log1p data).

    The loss is the root of the weighted mean squared error over the batch's entries, plus:

    - ``"neighbour_errors"``: ``sqrt((sum_gi M_gi E_gi + sum_gi M_gi sum_j W_ij M_gj E_gj) / sum M)``
      with ``E`` the squared errors and ``M`` the weights (the study's term);
    - ``"laplacian"``: ``sqrt(mse) + smooth * sum_g yhat_g^T L yhat_g / (n_genes n_spots)``,
      exact for every gene in the batch.

    Parameters
    ----------
    n_spots
        Input (and output) size.
    hidden
        Sizes of the hidden layers of the encoder (the decoder mirrors them).
    n_latent
        Bottleneck size.
    output
        Output activation.
    penalty
        Spatial penalty.
    smooth
        Weight of the Laplacian penalty.
    graph
        Symmetric spots x spots weights (needed by the penalties).
    """

    def __init__(
        self,
        n_spots: int,
        *,
        hidden: Sequence[int] = (500, 250),
        n_latent: int = 40,
        output: Output = "softplus",
        penalty: Penalty = "none",
        smooth: float = 1.0,
        graph: sp.spmatrix | None = None,
    ) -> None:
        super().__init__()
        sizes = [int(n_spots), *(int(h) for h in hidden), int(n_latent)]
        enc: list[torch.nn.Module] = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            enc.append(torch.nn.Linear(a, b))
            if k < len(sizes) - 2:
                enc.append(torch.nn.ReLU())
        back = sizes[::-1]
        dec: list[torch.nn.Module] = []
        for k, (a, b) in enumerate(zip(back[:-1], back[1:], strict=True)):
            dec.append(torch.nn.Linear(a, b))
            if k < len(back) - 2:
                dec.append(torch.nn.ReLU())
        if output == "softplus":
            dec.append(torch.nn.Softplus())
        elif output == "sigmoid":
            dec.append(torch.nn.Sigmoid())
        self.encoder = torch.nn.Sequential(*enc)
        self.decoder = torch.nn.Sequential(*dec)
        self.penalty, self.smooth = penalty, float(smooth)
        self.graph = GraphTensors(graph) if graph is not None and penalty != "none" else None

    def forward(self, x: torch.Tensor | GeneBatch) -> torch.Tensor:
        """Reconstruct genes x spots input ``x`` (or a batch's ``x``)."""
        if isinstance(x, GeneBatch):
            x = x.x
        return self.decoder(self.encoder(x))

    def loss(self, batch: GeneBatch) -> LossOutput:
        """Return the batch loss (see the class docstring)."""
        yhat = self(batch.x)
        err = (batch.target - yhat) ** 2
        wsum = batch.weight.sum()
        denom = wsum.clamp_min(1e-12)
        se_sum = (batch.weight * err).sum()
        comps = {"mse": (se_sum / denom).detach()}
        graph = self.graph if batch.spatial else None
        if graph is not None and self.penalty == "neighbour_errors":
            nb = dense_neighbour_errors(err, batch.weight, graph.sparse())
            comps["neighbour_errors"] = (nb / denom).detach()
            total = ((se_sum + nb) / denom).clamp_min(1e-12).sqrt()
        elif graph is not None and self.penalty == "laplacian":
            lap = dense_laplacian_quadratic(yhat, graph.sparse(), graph.degree) / yhat.numel()
            comps["laplacian"] = lap.detach()
            total = (se_sum / denom).clamp_min(1e-12).sqrt() + self.smooth * lap
        else:
            total = (se_sum / denom).clamp_min(1e-12).sqrt()
        return LossOutput(loss=total, components=comps, n_obs=int(wsum.item()))
