"""The one training loop of spotfill: optimiser, ``backward()``, validation and early stopping.

Every torch model in the package is trained here. The estimator builds a module (see
:class:`spotfill.nn.BaseModule`) and two batch factories; :func:`train` owns everything else.

Determinism: the loop runs inside :func:`torch.random.fork_rng` seeded with ``config.seed``, and
shuffling uses ``np.random.default_rng(config.seed)``, so on the CPU the same seed and the same
inputs give bit-identical parameters, and the caller's global torch random state is left untouched.
(On CUDA some kernels are not bitwise deterministic; results then agree only up to rounding.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .._errors import InputError, SpotfillError
from .._logging import progress
from ..nn._base import BaseModule, LossOutput
from ._device import resolve_device

__all__ = ["History", "TrainConfig", "train"]

logger = logging.getLogger(__name__)

_OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass
class TrainConfig:
    """Options of :func:`train`.

    Attributes
    ----------
    max_epochs
        Upper bound on the number of passes over the training batches.
    lr
        Learning rate.
    optimizer
        ``"sgd"`` (plain stochastic gradient descent, the original study's choice), ``"adam"`` or
        ``"adamw"``.
    weight_decay
        L2 penalty (decoupled for ``"adamw"``).
    batch_size
        Batch size; read by the estimator that builds the batches, not by the loop itself.
    patience
        Stop after this many epochs without an improvement of the monitored loss by more than
        ``min_delta`` (the validation loss when there is one, else the training loss); the
        parameters of the best epoch are restored. ``None`` disables early stopping.
    min_delta
        Smallest decrease of the monitored loss that counts as an improvement.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :func:`spotfill.train.resolve_device`).
    seed
        Seed of the shuffling generator and of torch's random state inside the loop.
    progress
        Show a tqdm progress bar over epochs.
    """

    max_epochs: int = 200
    lr: float = 0.1
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    weight_decay: float = 0.0
    batch_size: int = 128
    patience: int | None = 10
    min_delta: float = 0.0
    device: str = "auto"
    seed: int = 0
    progress: bool = True

    def validate(self) -> None:
        """Raise :class:`~spotfill.InputError` on an option out of range."""
        problems = []
        if int(self.max_epochs) < 1:
            problems.append(f"max_epochs must be >= 1 (got {self.max_epochs})")
        if not (float(self.lr) > 0 and math.isfinite(float(self.lr))):
            problems.append(f"lr must be a positive number (got {self.lr})")
        if self.optimizer not in _OPTIMIZERS:
            problems.append(f"optimizer must be one of {_OPTIMIZERS} (got {self.optimizer!r})")
        if float(self.weight_decay) < 0:
            problems.append(f"weight_decay must be >= 0 (got {self.weight_decay})")
        if int(self.batch_size) < 1:
            problems.append(f"batch_size must be >= 1 (got {self.batch_size})")
        if self.patience is not None and int(self.patience) < 1:
            problems.append(f"patience must be >= 1 or None to disable early stopping (got {self.patience})")
        if float(self.min_delta) < 0:
            problems.append(f"min_delta must be >= 0 (got {self.min_delta})")
        if problems:
            msg = "invalid training options: " + "; ".join(problems) + "."
            raise InputError(msg)


@dataclass
class History:
    """What happened during :func:`train`.

    Attributes
    ----------
    train_loss
        Mean training loss per epoch (batches weighted by their ``n_obs``), measured while the
        parameters were being updated.
    val_loss
        Validation loss per epoch, after the epoch's updates (empty without validation batches).
    components
        Per-epoch means of the loss components: training ones under their own name, validation
        ones prefixed ``"val_"``.
    best_epoch
        Index (from 0) of the epoch whose parameters were kept.
    stopped_early
        Whether early stopping ended training before ``max_epochs``.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    components: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = -1
    stopped_early: bool = False

    @property
    def n_epochs(self) -> int:
        """Number of epochs run."""
        return len(self.train_loss)


def _make_optimizer(module: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        msg = f"{type(module).__name__} has no trainable parameters."
        raise SpotfillError(msg)
    lr, wd = float(config.lr), float(config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


class _Mean:
    """Running n_obs-weighted means of a loss and its components, kept on the device (no syncs)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.parts: dict[str, torch.Tensor | float] = {}
        self.weight = 0
        self.n_batches = 0

    def add(self, out: LossOutput) -> None:
        w = int(out.n_obs) if out.n_obs and out.n_obs > 0 else 1
        self.total = self.total + out.loss.detach() * w
        for name, value in out.components.items():
            v = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(float(value))
            self.parts[name] = self.parts.get(name, 0.0) + v * w
        self.weight += w
        self.n_batches += 1

    def result(self) -> tuple[float, dict[str, float]]:
        def as_float(x: torch.Tensor | float) -> float:
            return float(x.item()) if isinstance(x, torch.Tensor) else float(x)

        return as_float(self.total) / self.weight, {k: as_float(v) / self.weight for k, v in self.parts.items()}


def _check_loss(out: Any, module: torch.nn.Module) -> LossOutput:
    if not isinstance(out, LossOutput):
        msg = f"{type(module).__name__}.loss must return a spotfill.nn.LossOutput, got {type(out).__name__}."
        raise TypeError(msg)
    return out


def _diverged(module: torch.nn.Module, config: TrainConfig, epoch: int, what: str) -> None:
    msg = (
        f"training of {type(module).__name__} diverged at epoch {epoch} ({what}): lower the learning rate "
        f"(lr={config.lr}) or the weight of a penalty term (e.g. smooth, or large graph edge weights), or put the "
        "inputs on a smaller scale (a log1p transform of counts)."
    )
    raise SpotfillError(msg)


def train(
    module: BaseModule,
    *,
    train_batches: Callable[[np.random.Generator], Iterable[Any]],
    val_batches: Callable[[], Iterable[Any]] | None = None,
    config: TrainConfig,
) -> History:
    """Train ``module`` by minimising ``module.loss(batch)`` over minibatches.

    The module is moved to ``config.device``; the batches must already live there (estimators
    call :func:`spotfill.train.resolve_device` with the same option when building them). Each epoch
    draws a fresh pass ``train_batches(rng)`` (shuffled with the loop's generator), takes one
    optimiser step per batch, then computes the validation loss under :func:`torch.no_grad`. When
    training ends (``max_epochs`` or early stopping) the parameters of the best epoch are restored
    and the module is left in ``eval()`` mode.

    Parameters
    ----------
    module
        A :class:`spotfill.nn.BaseModule` (anything with ``loss(batch) -> LossOutput`` works).
    train_batches
        Called once per epoch with the loop's :class:`numpy.random.Generator`; returns the epoch's
        batches, in the order to use them.
    val_batches
        Called once per epoch (no arguments); returns the validation batches. ``None``: early
        stopping monitors the training loss.
    config
        Optimiser, stopping rule, device, seed and progress options.

    Returns
    -------
    The training :class:`History`.

    Raises
    ------
    SpotfillError
        The loss became NaN or infinite (lower ``lr``, or transform the data), or an epoch had no
        batches.
    """
    config.validate()
    device = resolve_device(config.device)
    module.to(device)
    rng = np.random.default_rng(config.seed)
    history = History()
    monitor_name = "validation" if val_batches is not None else "training"
    best = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    wait = 0
    cuda_devices = []
    if device.type == "cuda":
        cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()]

    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(int(config.seed))
        optimizer = _make_optimizer(module, config)
        bar = progress(range(int(config.max_epochs)), enabled=config.progress, desc=type(module).__name__, unit="epoch")
        for epoch in bar:
            module.train()
            acc = _Mean()
            for batch in train_batches(rng):
                out = _check_loss(module.loss(batch), module)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                optimizer.step()
                acc.add(out)
            if acc.n_batches == 0:
                msg = "the training data produced no batches: check that the data have observed entries."
                raise SpotfillError(msg)
            train_loss, parts = acc.result()
            if not math.isfinite(train_loss):
                terms = ", ".join(f"{k} {v:.3g}" for k, v in parts.items())
                _diverged(module, config, epoch, f"loss {train_loss}" + (f"; terms: {terms}" if terms else ""))
            if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
                # the epoch's mean loss is measured before each update: the last one can still break the model
                _diverged(module, config, epoch, "non-finite parameters after the epoch's last update")
            history.train_loss.append(train_loss)
            for name, value in parts.items():
                history.components.setdefault(name, []).append(value)

            monitored = train_loss
            if val_batches is not None:
                module.eval()
                vacc = _Mean()
                with torch.no_grad():
                    for batch in val_batches():
                        vacc.add(_check_loss(module.loss(batch), module))
                if vacc.n_batches:
                    val_loss, vparts = vacc.result()
                    if not math.isfinite(val_loss):
                        _diverged(module, config, epoch, f"validation loss {val_loss}")
                    history.val_loss.append(val_loss)
                    for name, value in vparts.items():
                        history.components.setdefault(f"val_{name}", []).append(value)
                    monitored = val_loss
            if hasattr(bar, "set_postfix"):
                post = {"loss": f"{train_loss:.4g}"}
                if history.val_loss and len(history.val_loss) == epoch + 1:
                    post["val"] = f"{history.val_loss[-1]:.4g}"
                bar.set_postfix(post)
            logger.debug("epoch %d: train loss %.6g, monitored (%s) %.6g", epoch, train_loss, monitor_name, monitored)

            if monitored < best - float(config.min_delta) or best_state is None:
                if monitored < best:
                    best = monitored
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                history.best_epoch = epoch
                wait = 0
            else:
                wait += 1
                if config.patience is not None and wait >= int(config.patience):
                    history.stopped_early = True
                    break
        if hasattr(bar, "close"):
            bar.close()

    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    logger.info(
        "%s: %d epochs%s, best epoch %d (%s loss %.6g)",
        type(module).__name__,
        history.n_epochs,
        " (stopped early)" if history.stopped_early else "",
        history.best_epoch,
        monitor_name,
        best,
    )
    return history
