"""Figures and the self-contained HTML benchmark report.

- :func:`report`: benchmark results (and, optionally, datasets) -> one HTML file with embedded PNGs.
- :func:`summarize`: mean and sd over seeds of a results table.
"""

from __future__ import annotations

from ._report import report, summarize

__all__ = ["report", "summarize"]
