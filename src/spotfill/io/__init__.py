"""Readers and writers: one entry point each, one module per format.

- :func:`read`: ``.h5ad``, 10x Space Ranger folders (Visium, Visium HD bins), original ST count
  tables with their spot selection files, Stereo-seq GEM files (binned), and generic CSV/TSV count
  tables with a coordinates table;
  the format is detected, the result checked once.
- :func:`write`: ``.h5ad`` or a CSV/TSV export of one matrix, atomically, never replacing the input
  file by accident.
- :func:`summarize`: the lines printed by ``spotfill info``.
"""

from __future__ import annotations

from ._read import detect_format, read
from ._summary import summarize
from ._write import write

__all__ = ["detect_format", "read", "summarize", "write"]
