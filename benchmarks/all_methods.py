"""Run methods on every dataset in ../shared/data/h5ad under P1, P2 and P4 and write Markdown tables.

Usage::

    nice -n 5 python benchmarks/all_methods.py --methods raw,libsize_mean,mean,spatial_knn,spotfill \
        --seeds 0,1,2 --csv benchmarks/results/all_methods.csv --md docs/_sections/all_methods.md

P1 runs every seed given; P2 and P4 run seed 0 (as in BENCHMARK.md's tables). Each method call runs in
its own process. Results are appended per dataset to the CSV (re-running with ``--resume`` skips
(dataset, method) pairs whose every requested seed ran ok), and the Markdown has one table per dataset in the layout of
the issue tracker's peer tables: P1 RMSE and Pearson (mean ± sd over seeds), mean log1p at true zeros,
P2 Poisson NLL, P4 ARI (raw data's ARI in the header) and the wall time of one P2 call.
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from _tables import command_line, write_csv, write_markdown

from spotfill._params import split_top_level
from spotfill.benchmark import run_benchmark
from spotfill.plotting import summarize

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "h5ad"


def _cell(sub: pd.DataFrame, protocol: str, method: str, metric: str, digits: int = 3) -> str:
    sel = sub[(sub.protocol == protocol) & (sub.method == method) & (sub.metric == metric)]
    if sel.empty:
        return "-"
    mean, sd = float(sel["mean"].iloc[0]), float(sel["sd"].iloc[0])
    text = f"{mean:.{digits}f}"
    return text + (f" ± {sd:.{digits}f}" if np.isfinite(sd) and sel["n_seeds"].iloc[0] > 1 else "")


def markdown(df: pd.DataFrame, *, command: str) -> str:
    """One Markdown table per dataset."""
    summary = summarize(df)
    lines = [
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} CPUs) by",
        f"`{command}`.",
        "",
    ]
    failed = df[df["status"] != "ok"].groupby(["dataset", "method"], sort=False)["error"].first()
    for dataset in dict.fromkeys(df["dataset"]):
        sub = summary[summary["dataset"] == dataset]
        n_spots, n_genes = df.loc[df["dataset"] == dataset, ["n_spots", "n_genes"]].iloc[0]
        raw_ari = sub[(sub.protocol == "p4") & (sub.metric == "ari_raw")]["mean"]
        raw_txt = f"{raw_ari.iloc[0]:.3f}" if len(raw_ari) else "-"
        lines += [
            f"### {dataset} ({n_spots:,} spots x {n_genes:,} genes; raw-data P4 ARI {raw_txt})",
            "",
            "| method | P1 RMSE | P1 Pearson | mean log1p at true zeros | P2 Poisson NLL | P4 ARI | P2 wall s |",
            "|---|---|---|---|---|---|---|",
        ]
        for method in dict.fromkeys(df.loc[df["dataset"] == dataset, "method"]):
            cells = [
                _cell(sub, "p1", method, "rmse"),
                _cell(sub, "p1", method, "pearson"),
                _cell(sub, "p1", method, "zero_log1p"),
                _cell(sub, "p2", method, "nll", 4),
                _cell(sub, "p4", method, "ari"),
                _cell(sub, "p2", method, "seconds", 1),
            ]
            note = ""
            if (dataset, method) in failed.index:
                note = f" (failed: {str(failed[(dataset, method)])[:80]})"
            lines.append(f"| {method}{note} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=[str(p) for p in sorted(SHARED.glob("*.h5ad"))])
    parser.add_argument("--methods", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--csv", default=str(ROOT / "benchmarks" / "results" / "all_methods.csv"))
    parser.add_argument("--md", default=str(ROOT / "docs" / "_sections" / "all_methods.md"))
    parser.add_argument("--in-process", action="store_true", help="no process per call (faster; memory not isolated)")
    parser.add_argument("--resume", action="store_true", help="keep --csv rows; skip pairs whose every seed ran ok")
    args = parser.parse_args()

    methods = split_top_level(args.methods)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    csv = Path(args.csv)
    csv.parent.mkdir(parents=True, exist_ok=True)
    old = pd.read_csv(csv) if args.resume and csv.exists() else None
    frames = [] if old is None else [old]
    iso = not args.in_process
    for path in args.data:
        name = Path(path).stem
        todo = methods
        if old is not None:  # a pair is done when every requested seed ran ok
            mine = old[old["dataset"] == name]
            ok = mine[mine["status"] == "ok"].groupby("method")["seed"].agg(set)
            done = {m for m in methods if m in ok.index and set(seeds) <= ok[m]}
            todo = [m for m in methods if m not in done]
            frames[0] = old[~((old["dataset"] == name) & old["method"].isin(todo))]  # re-run pairs start afresh
            old = frames[0]
        if not todo:
            continue
        parts = [
            run_benchmark([path], protocols=["p1"], methods=todo, seeds=seeds, timeout=args.timeout, isolate=iso),
            run_benchmark([path], protocols=["p2", "p4"], methods=todo, seeds=[0], timeout=args.timeout, isolate=iso),
        ]
        frames.extend(parts)
        write_csv(pd.concat(frames, ignore_index=True), csv)
    df = pd.concat(frames, ignore_index=True)
    write_csv(df, csv)
    write_markdown(args.md, markdown(df, command=command_line()), csv=csv)


if __name__ == "__main__":
    main()
