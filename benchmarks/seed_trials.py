"""Re-run the seed study's five trials and every baseline under protocol P1 and write docs/seed_trials.md.

Usage::

    nice -n 5 /work/venv/bin/python benchmarks/seed_trials.py \
        [--data ../shared/data/h5ad/mob_st_rep11.h5ad ../shared/data/h5ad/dlpfc_151673.h5ad] \
        [--seeds 0,1,2] [--methods ...] [--timeout 3600] [--in-process] [--report docs/seed_trials.html]

Methods (default): the controls ``raw`` (predict 0 = the raw data) and ``libsize_mean``, every
registered baseline (families ``baseline``, ``expression``, ``spatial``) and the five ``seed-*``
presets, in that order. Each method call runs in its own process (wall time and peak memory are its
own) unless ``--in-process``. The tidy results go to ``benchmarks/results/seed_trials.csv`` and the
Markdown tables (mean ± sd over seeds, one table per dataset) to ``docs/seed_trials.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from _tables import command_line, write_markdown

from spotfill._params import split_top_level
from spotfill.benchmark import run_benchmark
from spotfill.methods import list_methods
from spotfill.plotting import summarize

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "h5ad"
DEFAULT_DATA = [SHARED / "mob_st_rep11.h5ad", SHARED / "dlpfc_151673.h5ad"]
SEED_PRESETS = [
    "seed-nmf-baseline",
    "seed-nmf-log",
    "seed-nmf-log-nonzero",
    "seed-ae-log-nonzero",
    "seed-ae-log-nonzero-spatial",
]
BASELINE_FAMILIES = ("baseline", "expression", "spatial")
COLUMNS = [  # (metric, header, lower is better)
    ("rmse", "RMSE", True),
    ("rmse_counts", "RMSE (counts)", True),
    ("mae", "MAE", True),
    ("pearson", "Pearson", False),
    ("spearman", "Spearman", False),
    ("zero_log1p", "log1p on zeros", None),
    ("seconds", "seconds", True),
    ("peak_mb", "peak MB", True),
]


def default_methods() -> list[str]:
    table = list_methods()
    baselines = table.loc[table["family"].isin(BASELINE_FAMILIES), "name"].tolist()
    missing = [m for m in SEED_PRESETS if m not in set(table["name"])]
    if missing:
        msg = f"seed presets not registered yet: {missing}"
        raise SystemExit(msg)
    return ["raw", "libsize_mean", *baselines, *SEED_PRESETS, RAW_NONZERO_NMF]


# The study reports its non-zero-loss NMF (2.37) on raw counts (its stale cache silently skipped the
# log1p): this run is that trial as it ran, beside the preset's intended log1p run.
RAW_NONZERO_NMF = "nmf[data_transform=none,loss=rmse_nonzero]"


def _cell(mean: float, sd: float) -> str:
    if not np.isfinite(mean):
        return "nan"
    return f"{mean:.3f}" + (f" ± {sd:.3f}" if np.isfinite(sd) else "")


def markdown(df: pd.DataFrame, *, command: str) -> str:
    summary = summarize(df[df["protocol"] == "p1"])
    failed = df[df["status"] == "failed"].groupby(["dataset", "method"], sort=False)["error"].first()
    seeds = ", ".join(str(s) for s in sorted(df["seed"].unique()))
    lines = [
        "# Seed study trials under P1",
        "",
        "The five trials of the seed study (`seed-*` presets) and every baseline, scored with protocol P1 of "
        "`BENCHMARK.md`: 10 % of the non-zero entries held out, scores on log1p counts, mean ± sd over seeds "
        f"{seeds}. **Bold**: best of the column. `log1p on zeros` is the over-imputation check (mean log1p "
        "prediction on 20,000 entries that are zero in the data; `raw` = 0): P1 rewards filling every zero "
        "with a typical expressed value, so read RMSE next to it. `seconds` and `peak MB` are the wall time "
        "and peak resident memory of one fit + predict in its own process (interpreter included).",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} CPUs) by",
        f"`{command}`.",
        "",
    ]
    for dataset in dict.fromkeys(df["dataset"]):
        sub = summary[summary["dataset"] == dataset].set_index(["method", "metric"])
        n_spots, n_genes = df.loc[df["dataset"] == dataset, ["n_spots", "n_genes"]].iloc[0]
        lines += [f"## {dataset} ({n_spots} spots x {n_genes} genes)", ""]
        lines.append("| method | " + " | ".join(h for _, h, _ in COLUMNS) + " |")
        lines.append("|---|" + "---:|" * len(COLUMNS))
        best = {}
        for metric, _, lower in COLUMNS:
            if lower is None or metric not in sub.index.get_level_values("metric"):
                continue
            vals = sub.xs(metric, level="metric")["mean"].dropna()
            vals = vals.drop(["raw"], errors="ignore") if metric in ("pearson", "spearman") else vals
            if len(vals):
                best[metric] = vals.min() if lower else vals.max()
        for method in dict.fromkeys(df.loc[df["dataset"] == dataset, "method"]):
            if (dataset, method) in failed.index and (method, "rmse") not in sub.index:
                lines.append(f"| {method} | failed: {failed[(dataset, method)]} |" + " |" * (len(COLUMNS) - 1))
                continue
            cells = []
            for metric, _, _ in COLUMNS:
                if (method, metric) not in sub.index:
                    cells.append("")
                    continue
                mean, sd = sub.loc[(method, metric), ["mean", "sd"]]
                text = _cell(mean, sd)
                cells.append(f"**{text}**" if metric in best and mean == best[metric] else text)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += comparison(summary)
    return "\n".join(lines)


# The seed study's reported test RMSEs (Visium mouse olfactory bulb): (preset, value, scale).
STUDY = [
    ("seed-nmf-baseline", 6.42, "counts"),
    ("seed-nmf-log", None, "log1p"),
    ("seed-nmf-log-nonzero", None, "counts"),
    (RAW_NONZERO_NMF, 2.37, "counts"),
    ("seed-ae-log-nonzero", 0.73, "log1p"),
    ("seed-ae-log-nonzero-spatial", 0.76, "log1p"),
]


def comparison(summary: pd.DataFrame) -> list[str]:
    """Markdown comparing our P1 numbers for the seed presets with the study's reported ones."""
    lines = [
        "## Comparison with the seed study's reported numbers",
        "",
        "The study reported one test RMSE per trial: NMF on raw counts 6.42 (all-entries loss) and 2.37 "
        "(non-zero loss), in counts; the autoencoder on log1p 0.73, and 0.76 with its spatial term. Our "
        "column for each trial is on the same scale as the study's number (counts or log1p), on the "
        "held-out entries of P1, mean over seeds.",
        "",
        "| trial | study | " + " | ".join(dict.fromkeys(summary["dataset"])) + " |",
        "|---|---:|" + "---:|" * summary["dataset"].nunique(),
    ]
    for preset, value, scale in STUDY:
        metric = "rmse_counts" if scale == "counts" else "rmse"
        cells = []
        for dataset in dict.fromkeys(summary["dataset"]):
            sel = summary[
                (summary["dataset"] == dataset) & (summary["method"] == preset) & (summary["metric"] == metric)
            ]
            cells.append(f"{sel['mean'].iloc[0]:.3f} ({scale})" if len(sel) else "")
        study = "not reported" if value is None else f"{value:.2f} ({scale})"
        lines.append(f"| {preset} | {study} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "What differs, plainly:",
        "",
        "- **Scales.** The study mixed scales: its raw-count NMF trials were scored in counts and its log1p "
        "trials on log1p, so its numbers are not comparable across trials. Every P1 score above is on log1p "
        "counts (count-scale RMSE is shown only for this comparison).",
        "- **Leak.** The study's autoencoder saw the held-out values at test time (they were in its input); "
        "here masked entries are zeros in the input at training and prediction time. Our autoencoder RMSEs "
        "are nonetheless lower than the study's 0.73/0.76, so the leak is not what separates the numbers: the "
        "data, the held-out set and the training budget differ too (below). On dlpfc_151673 the capped SGD "
        "autoencoder barely learns (Pearson 0.08-0.39): its RMSE reflects predicting a typical expressed "
        "value, not a fitted one.",
        "- **Which number is which.** The study reports its 2.37 for NMF with the non-zero loss on raw counts "
        "(consistent with its stale cache, which silently skipped the log1p), in counts; it is set beside the "
        "same run here, "
        f"`{RAW_NONZERO_NMF}`, while the preset `seed-nmf-log-nonzero` is the trial as intended (log1p), "
        "scored in counts for comparison. The study reported no number for the log1p all-entries NMF.",
        "- **Held-out set.** The study held out entries its own way; here P1 holds out 10 % of the non-zero "
        "entries, so every score is on entries that were truly expressed.",
        "- **Data.** The study used the 10x Visium adult mouse olfactory bulb sample (1,185 spots); it is not "
        "available offline. `mob_st_rep11` is the same tissue on the original ST platform (262 spots, "
        "16,218 genes, 40 % non-zero), and `dlpfc_151673` a Visium section of human cortex.",
        "- **Training budget.** Our NMF and autoencoder presets keep the study's SGD (lr 0.1, batch 128, "
        "patience 10) but cap the epochs (see `spotfill methods`) so that each fits in about 2 minutes on "
        "2 CPU cores; the study trained to early stopping.",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=[str(p) for p in DEFAULT_DATA])
    parser.add_argument("--methods", default=None, help="comma-separated (default: controls, baselines, seed-*)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per method call")
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--csv", default=str(ROOT / "benchmarks" / "results" / "seed_trials.csv"))
    parser.add_argument("--md", default=str(ROOT / "docs" / "seed_trials.md"))
    parser.add_argument("--report", default=None, help="also write an HTML report there")
    args = parser.parse_args()

    methods = split_top_level(args.methods) if args.methods else default_methods()
    df = run_benchmark(
        args.data,
        protocols=["p1"],
        methods=methods,
        seeds=[int(s) for s in args.seeds.split(",") if s.strip()],
        out=args.csv,
        isolate=not args.in_process,
        timeout=args.timeout,
    )
    write_markdown(args.md, markdown(df, command=command_line()), csv=args.csv)
    if args.report:
        from spotfill.plotting import report

        print(f"wrote {report(df, out=args.report)}")


if __name__ == "__main__":
    main()
