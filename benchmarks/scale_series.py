"""P5 scale series: wall time and peak memory of a full imputation on synthetic data of growing size.

Usage::

    nice -n 5 python benchmarks/scale_series.py --methods spatial_knn,spotfill --sizes 1000,10000,100000 \
        --genes 2000 --timeout 900

Each call runs in its own process (its peak memory is its own); a call killed for memory or over the
time limit is recorded as "failed (out of memory / over time)". Writes benchmarks/results/scale_series.csv
and a Markdown table to docs/_sections/scale_series.md.
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from _tables import write_markdown

from spotfill._params import split_top_level
from spotfill.benchmark import scale_series

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="spatial_knn,spotfill")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--csv", default=str(ROOT / "benchmarks" / "results" / "scale_series.csv"))
    parser.add_argument("--md", default=str(ROOT / "docs" / "_sections" / "scale_series.md"))
    args = parser.parse_args()
    methods = split_top_level(args.methods)
    sizes = [int(s) for s in args.sizes.split(",")]
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    df = scale_series(methods, sizes=sizes, n_genes=args.genes, timeout=args.timeout, out=args.csv)
    lines = [
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} CPUs) by",
        f"`python benchmarks/scale_series.py --methods {args.methods} --sizes {args.sizes} --genes {args.genes}"
        f" --timeout {args.timeout:g}`.",
        "",
        "| data | method | wall s | peak MB | status |",
        "|---|---|---:|---:|---|",
    ]
    for (dataset, method), g in df.groupby(["dataset", "method"], sort=False):
        v = g.set_index("metric")["value"]
        status = g["status"].iloc[0] if (g["status"] == "ok").all() else f"failed: {g['error'].dropna().iloc[0]}"
        sec = f"{v['seconds']:.1f}" if "seconds" in v and status == "ok" else "-"
        mem = f"{v['peak_mb']:.0f}" if "peak_mb" in v and status == "ok" else "-"
        lines.append(f"| {dataset} | {method} | {sec} | {mem} | {status} |")
    write_markdown(args.md, "\n".join(lines) + "\n", csv=args.csv)


if __name__ == "__main__":
    main()
