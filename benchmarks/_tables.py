"""Shared output step of the benchmark scripts: write the Markdown table next to the results CSV."""

from __future__ import annotations

from pathlib import Path


def write_markdown(md: str | Path, text: str, *, csv: str | Path) -> None:
    """Write ``text`` to ``md`` (creating its folder) and say where the results went."""
    md = Path(md)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    print(f"wrote {csv} and {md}")
