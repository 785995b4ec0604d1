"""P3 (held-out spots, spatial interpolation) for methods on every dataset in ../shared/data/h5ad.

Usage::

    nice -n 5 python benchmarks/held_out_spots.py --methods spotfill,spatial_knn,interpolate,knn,mean,libsize_mean \
        --csv benchmarks/results/held_out_spots.csv --md docs/_sections/held_out_spots.md

Five folds of whole spots (BENCHMARK.md P3, seed 0): each method sees the other spots' counts and every
coordinate and predicts every gene at the held-out spots. The Markdown has one row per dataset and
method: log1p RMSE, MAE and Pearson over all entries of the held-out spots (zeros included), the median
per-gene Pearson, and the seconds of the five calls together.
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from _tables import command_line, write_csv, write_markdown

from spotfill._params import split_top_level
from spotfill.benchmark import run_benchmark

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "h5ad"
METRICS = (("rmse", "RMSE"), ("mae", "MAE"), ("pearson", "Pearson"), ("gene_pearson", "median gene Pearson"))


def markdown(df: pd.DataFrame, *, command: str) -> str:
    """One table: datasets x methods, the P3 scores and the seconds of the five calls."""
    head = "| dataset | method | " + " | ".join(label for _, label in METRICS) + " | seconds (5 calls) |"
    lines = [
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} CPUs) by",
        f"`{command}`.",
        "",
        head,
        "|" + "---|" * (len(METRICS) + 3),
    ]
    for (dataset, method), sub in df.groupby(["dataset", "method"], sort=False):
        values = dict(zip(sub["metric"], sub["value"], strict=False))
        cells = [("-" if pd.isna(values.get(m)) else f"{values[m]:.3f}") for m, _ in METRICS]
        secs = values.get("seconds")
        lines.append(f"| {dataset} | {method} | " + " | ".join(cells) + f" | {secs:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=[str(p) for p in sorted(SHARED.glob("*.h5ad"))])
    parser.add_argument("--methods", required=True)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--csv", default=str(ROOT / "benchmarks" / "results" / "held_out_spots.csv"))
    parser.add_argument("--md", default=str(ROOT / "docs" / "_sections" / "held_out_spots.md"))
    args = parser.parse_args()

    methods = split_top_level(args.methods)
    csv = Path(args.csv)
    csv.parent.mkdir(parents=True, exist_ok=True)
    frames = []
    for path in args.data:
        frames.append(run_benchmark([path], protocols=["p3"], methods=methods, seeds=[0], timeout=args.timeout))
        write_csv(pd.concat(frames, ignore_index=True), csv)
    df = pd.concat(frames, ignore_index=True)
    write_markdown(args.md, markdown(df, command=command_line()), csv=csv)


if __name__ == "__main__":
    main()
