"""The package logger and progress-bar helper."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

logger = logging.getLogger("spotfill")
logger.addHandler(logging.NullHandler())


def progress(iterable: Iterable[T], *, enabled: bool = True, **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm progress bar when ``enabled`` (a no-op otherwise)."""
    if not enabled:
        return iterable
    return tqdm(iterable, **kwargs)
