"""Saving and loading trained torch models: ``model.pt`` (state_dict) + ``params.json`` (+ ``mask.npz``)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._errors import InputError
from .._version import __version__

__all__ = ["load_mask", "load_state", "save_model"]

MODEL_FILE = "model.pt"
PARAMS_FILE = "params.json"
MASK_FILE = "mask.npz"


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_safe(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    return repr(value)


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(
    folder: str | os.PathLike,
    module: torch.nn.Module,
    params: Mapping[str, Any],
    var_names: Iterable[str] | None,
    extra: Mapping[str, Any] | None = None,
    mask: sp.spmatrix | None = None,
) -> Path:
    """Write a trained module to ``folder`` (created if needed).

    Writes ``model.pt`` (the module's ``state_dict``, moved to the CPU) and ``params.json``
    (``params``, ``var_names``, ``extra``, the module's class name and the spotfill version), and
    ``mask.npz`` (the held-out entries, boolean CSR) when a mask is given; an earlier ``mask.npz`` in
    ``folder`` is removed otherwise. Each file is written to a temporary file in ``folder`` and
    renamed into place, so an interrupted save never leaves a truncated file behind.

    Parameters
    ----------
    folder
        Destination folder.
    module
        The trained module.
    params
        The estimator's constructor parameters (JSON-serialisable after numpy scalars are converted).
    var_names
        Gene names, in the order of the model's genes (``None`` when unknown).
    extra
        Anything else the loader needs (e.g. data statistics used to build the module).
    mask
        The entries the model was not allowed to see, so that a loaded model hides them again.

    Returns
    -------
    The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "class": type(module).__name__,
        "spotfill_version": __version__,
        "params": _json_safe(dict(params)),
        "var_names": None if var_names is None else [str(v) for v in var_names],
        "extra": _json_safe(dict(extra or {})),
    }
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    _atomic_write(folder / MODEL_FILE, lambda fh: torch.save(state, fh))
    if mask is None:
        (folder / MASK_FILE).unlink(missing_ok=True)
    else:
        held = sp.csr_matrix(mask, dtype=bool)
        _atomic_write(folder / MASK_FILE, lambda fh: sp.save_npz(fh, held))
    text = json.dumps(meta, indent=1).encode()
    _atomic_write(folder / PARAMS_FILE, lambda fh: fh.write(text))
    return folder


def load_mask(folder: str | os.PathLike, shape: tuple[int, int]) -> sp.csr_matrix | None:
    """Return the mask :func:`save_model` wrote to ``folder`` (boolean CSR), or ``None`` without one.

    Parameters
    ----------
    folder
        A folder written by :func:`save_model`.
    shape
        The model's ``(spots, genes)``: a mask of another shape is refused.
    """
    path = Path(folder) / MASK_FILE
    if not path.is_file():
        return None
    mask = sp.load_npz(path).tocsr().astype(bool)
    if mask.shape != tuple(shape):
        msg = f"{path} holds a {mask.shape} mask but the model has shape {tuple(shape)}: save the model again."
        raise InputError(msg)
    return mask


def load_state(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_model` wrote.

    The state dict is read with ``torch.load(..., weights_only=True)`` onto the CPU: a model file
    cannot run code when loaded.

    Parameters
    ----------
    folder
        A folder written by :func:`save_model`.

    Returns
    -------
    ``(state_dict, meta)``, with ``meta`` the content of ``params.json``.
    """
    folder = Path(folder)
    missing = [name for name in (MODEL_FILE, PARAMS_FILE) if not (folder / name).is_file()]
    if missing:
        msg = f"{folder} is not a saved spotfill model: {', '.join(missing)} missing (write one with .save(folder))."
        raise InputError(msg)
    meta = json.loads((folder / PARAMS_FILE).read_text())
    state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
    return state, meta
