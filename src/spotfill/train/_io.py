"""Saving and loading trained torch models: ``model.pt`` (state_dict) + ``params.json`` (+ ``mask.npz``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._errors import InputError
from .._files import atomic_path
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


def _write(path: Path, write) -> str:
    """Write ``path`` atomically (``write(tmp_path)``) and return the sha256 of what was written."""
    with atomic_path(path, suffix=path.suffix) as tmp:
        write(tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return digest


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    renamed into place, so an interrupted save never leaves a truncated file behind. ``params.json``
    is written last and records the sha256 of the other files: a save interrupted between files
    (over an earlier model in the same folder) is refused by :func:`load_state` instead of mixing
    two models' files.

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
    files = {MODEL_FILE: _write(folder / MODEL_FILE, lambda tmp: torch.save(state, tmp)), MASK_FILE: None}
    if mask is None:
        (folder / MASK_FILE).unlink(missing_ok=True)
    else:
        held = sp.csr_matrix(mask, dtype=bool)
        files[MASK_FILE] = _write(folder / MASK_FILE, lambda tmp: sp.save_npz(tmp, held))
    meta["files"] = files
    text = json.dumps(meta, indent=1).encode()
    _write(folder / PARAMS_FILE, lambda tmp: tmp.write_bytes(text))
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
    _check_files(folder, meta.get("files"))
    state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
    return state, meta


def _check_files(folder: Path, files: Mapping[str, str | None] | None) -> None:
    """Refuse a folder whose model or mask file is not the one ``params.json`` was written with.

    Models saved before spotfill recorded the digests (no ``files`` entry) are read unchecked.
    """
    if files is None:
        return
    for name, digest in files.items():
        path = folder / name
        if digest is None:
            ok = not path.exists()
        else:
            ok = path.is_file() and _digest(path) == digest
        if not ok:
            msg = (
                f"{folder} holds an incomplete or mixed save: {name} is not the file {PARAMS_FILE} was written "
                "with (a save into this folder was interrupted, or a file was replaced); save the model again."
            )
            raise InputError(msg)
