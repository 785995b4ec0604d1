"""Shared output steps of the benchmark scripts: results CSV and Markdown table, each written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spotfill._files import atomic_path


def write_csv(df: pd.DataFrame, csv: str | Path) -> None:
    """Write ``df`` to ``csv`` (temporary file + rename), so an interrupted run never leaves half a table."""
    csv = Path(csv)
    csv.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)


def write_markdown(md: str | Path, text: str, *, csv: str | Path) -> None:
    """Write ``text`` to ``md`` (creating its folder, temporary file + rename) and say where the results went."""
    md = Path(md)
    md.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(md) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {csv} and {md}")
