"""Choosing the torch device."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

from .._errors import InputError

__all__ = ["cpu_threads", "device_type", "resolve_device"]


def _name(device: str | torch.device) -> str:
    return str(device) if isinstance(device, torch.device) else str(device).strip().lower()


def device_type(device: str | torch.device) -> Literal["auto", "cpu", "cuda"]:
    """Check a device option's name (without asking whether CUDA is there) and return its kind.

    Raises
    ------
    InputError
        The option is not ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or such a :class:`torch.device`.
    """
    name = _name(device)
    if name == "auto":
        return "auto"
    try:
        kind = torch.device(name).type
    except (RuntimeError, ValueError):
        msg = f"device={device!r} is not a device name: use 'auto', 'cpu' or 'cuda' (or 'cuda:<index>')."
        raise InputError(msg) from None
    if kind not in ("cpu", "cuda"):
        msg = f"device={device!r} is not supported: use 'auto', 'cpu' or 'cuda'."
        raise InputError(msg)
    return "cpu" if kind == "cpu" else "cuda"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device option into a :class:`torch.device`.

    Parameters
    ----------
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``,
        or a :class:`torch.device`.

    Returns
    -------
    The device to use.

    Raises
    ------
    InputError
        CUDA was asked for but is not available, or the option is not a device name.
    """
    if device_type(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(_name(device))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            msg = (
                f"device={device!r} asks for CUDA, but this torch build or machine has no CUDA GPU "
                f"(torch {torch.__version__}). Use device='cpu' or device='auto'."
            )
            raise InputError(msg)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            msg = f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible."
            raise InputError(msg)
    return dev


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, restoring the previous number afterwards.

    Minibatches of a few hundred entries are too small for intra-op parallelism: on a busy machine
    the threads' synchronisation costs more than the work. ``None`` changes nothing.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
