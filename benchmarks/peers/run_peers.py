"""Run the peer tools through the spotfill benchmark harness (P2 seed 0, P4, P1) and print a summary.

Run it with the interpreter of the peers environment (benchmarks/peers/setup_envs.sh), where the tools
and spotfill (editable, --no-deps) are installed, so each isolated method call imports the tool itself:

    nice -n 15 /work/peer-envs/peers/bin/python benchmarks/peers/run_peers.py \
        --methods halra magic smoother scvi stagate --datasets mob_st_rep11 dlpfc_151673 \
        --out benchmarks/peers/results

Each (dataset, method) pair is written to its own CSV (OUT/DATASET__METHOD.csv) so that a long run
can be resumed; --summary only reads the CSVs and prints the table.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from pathlib import Path

import pandas as pd

from spotfill._files import write_csv
from spotfill.benchmark import run_benchmark

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "h5ad"


def run(datasets: list[str], methods: list[str], seeds: list[int], out: Path, protocols: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for ds in datasets:
        path = SHARED / f"{ds}.h5ad"
        for method in methods:
            for seed in seeds:
                csv = out / f"{ds}__{method}__seed{seed}.csv"
                if csv.exists() and (pd.read_csv(csv)["status"] == "ok").all():
                    logging.info("skip %s (exists, all ok)", csv)
                    continue
                prots = protocols if seed == 0 else ["p1"]
                t0 = time.perf_counter()
                df = run_benchmark(
                    [path], protocols=prots, methods=[method], seeds=[seed], isolate=True, progress=False
                )
                df["host"] = platform.node()
                df["date"] = time.strftime("%Y-%m-%d")
                write_csv(df, csv)  # atomic: a killed run leaves no half CSV that a later run would skip
                logging.info("%s %s seed %d: %.0f s", ds, method, seed, time.perf_counter() - t0)


def summary(out: Path) -> pd.DataFrame:
    frames = [pd.read_csv(f) for f in sorted(out.glob("*.csv"))]
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    bad = df[df["status"] != "ok"]
    if len(bad):
        print(bad[["dataset", "method", "protocol", "seed", "metric", "error"]].drop_duplicates().to_string())
    ok = df[df["status"] == "ok"]
    tab = ok.groupby(["dataset", "method", "protocol", "metric"])["value"].agg(["mean", "std", "count"])
    return tab


COLUMNS = (
    ("p1", "rmse", "P1 RMSE"),
    ("p1", "pearson", "P1 Pearson"),
    ("p1", "zero_log1p", "mean log1p at true zeros"),
    ("p2", "nll", "P2 Poisson NLL"),
    ("p4", "ari", "P4 ARI"),
    ("p2", "seconds", "P2 wall s"),
)


def markdown(out: Path, datasets: list[str], reference: Path | None, reference_methods: list[str]) -> str:
    """Per-dataset Markdown tables, seed 0: the peers of ``out`` and ``reference_methods`` of ``reference``.

    ``reference`` is a results CSV of ``benchmarks/all_methods.py`` (spotfill's methods, run in process
    there, so its wall seconds exclude the interpreter start-up that the peers' isolated calls include).
    """
    frames = [pd.read_csv(f) for f in sorted(out.glob("*.csv"))]
    if reference is not None:
        ref = pd.read_csv(reference)
        frames.append(ref[ref["method"].isin(reference_methods)])
    df = pd.concat(frames, ignore_index=True)
    df = df[(df["status"] == "ok") & (df["seed"] == 0)]
    parts = []
    for ds in datasets:
        sub = df[df["dataset"] == ds]
        if sub.empty:
            continue
        raw = sub[(sub["protocol"] == "p4") & (sub["metric"] == "ari_raw")]["value"]
        head = f"#### {ds} (raw-data P4 ARI {raw.iloc[0]:.3f})" if len(raw) else f"#### {ds}"
        lines = [head, "", "| method | " + " | ".join(c[2] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        for method in [*reference_methods, *sorted(set(sub["method"]) - set(reference_methods))]:
            m = sub[sub["method"] == method]
            if m.empty:
                continue
            cells = []
            for prot, metric, _ in COLUMNS:
                v = m[(m["protocol"] == prot) & (m["metric"] == metric)]["value"]
                digits = 4 if metric == "nll" else (1 if metric == "seconds" else 3)
                cells.append(f"{v.iloc[0]:.{digits}f}" if len(v) else "-")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", nargs="+", default=["mob_st_rep11", "dlpfc_151673"])
    ap.add_argument("--methods", nargs="+", default=["halra", "magic", "smoother", "scvi", "stagate"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--protocols", nargs="+", default=["p2", "p4", "p1"])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--summary", action="store_true", help="only print the table of the CSVs in --out")
    ap.add_argument(
        "--markdown",
        action="store_true",
        help="only print Markdown tables (seed 0) of the CSVs in --out for --datasets, with --reference rows",
    )
    ap.add_argument("--reference", type=Path, default=None, help="an all_methods.py results CSV to add rows from")
    ap.add_argument("--reference-methods", nargs="+", default=["raw", "libsize_mean", "spatial_knn", "spotfill"])
    args = ap.parse_args()
    if args.markdown:
        print(markdown(args.out, args.datasets, args.reference, args.reference_methods), end="")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.summary:
        run(args.datasets, args.methods, args.seeds, args.out, args.protocols)
    with pd.option_context("display.max_rows", 500, "display.width", 200):
        print(summary(args.out))


if __name__ == "__main__":
    main()
