"""The contract of spotfill's torch modules: they compute, the training loop trains.

A module implements ``forward(batch)`` (the predictions for a batch) and ``loss(batch)``, which
returns a :class:`LossOutput`: the scalar to minimise plus named parts for logging. What a *batch*
is belongs to the module (a tuple of index tensors, a dense block, ...); the estimator that builds
the module also builds its batches. Modules never own an optimiser and never call ``backward()``:
that happens in one place, :func:`spotfill.train.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["BaseModule", "LossOutput"]


@dataclass
class LossOutput:
    """What :meth:`BaseModule.loss` returns.

    Attributes
    ----------
    loss
        Scalar tensor, the total to minimise (keeps its graph for ``backward()``).
    components
        Named parts of the loss, for logging (detached scalars are fine).
    n_obs
        How many observations the batch's loss averages over; the training loop weights batch
        losses by it when averaging an epoch (``0`` counts the batch once).
    """

    loss: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    n_obs: int = 0


class BaseModule(torch.nn.Module):
    """Base class of spotfill's torch modules: ``forward(batch)`` and ``loss(batch) -> LossOutput``."""

    def forward(self, batch: Any) -> torch.Tensor:  # pragma: no cover - abstract
        """Return the module's predictions for ``batch``."""
        raise NotImplementedError

    def loss(self, batch: Any) -> LossOutput:  # pragma: no cover - abstract
        """Return the loss of ``batch`` (see :class:`LossOutput`)."""
        raise NotImplementedError
