"""The package logger and progress-bar helper."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

logger = logging.getLogger("spotfill")
logger.addHandler(logging.NullHandler())


def warn(message: str, *, stacklevel: int = 3) -> None:
    """Warn the user about the input (a :class:`~spotfill.SpotfillWarning`, shown by default).

    Progress and details go to :data:`logger`; what may make a result wrong or surprising comes here.
    """
    from ._errors import SpotfillWarning

    warnings.warn(message, SpotfillWarning, stacklevel=stacklevel)


def progress(iterable: Iterable[T], *, enabled: bool = True, **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm progress bar when ``enabled`` (a no-op otherwise)."""
    if not enabled:
        return iterable
    return tqdm(iterable, **kwargs)
