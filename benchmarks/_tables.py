"""Shared output steps of the benchmark scripts: results CSV and Markdown table, each written atomically."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from spotfill._files import atomic_path, write_csv

__all__ = ["write_csv", "write_markdown"]  # write_csv: temporary file + rename, never half a table


def write_markdown(md: str | Path, text: str, *, csv: str | Path) -> None:
    """Write ``text`` to ``md`` (creating its folder, temporary file + rename) and say where the results went."""
    md = Path(md)
    md.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(md) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {csv} and {md}")


def command_line() -> str:
    """This script's command as run (every option given, shell-quoted), for the "Generated ... by" lines."""
    script = Path(sys.argv[0])
    return shlex.join(["python", f"benchmarks/{script.name}", *sys.argv[1:]])
