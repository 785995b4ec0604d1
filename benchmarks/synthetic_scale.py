"""Time and peak memory of ``spotfill.datasets.synthetic`` at Visium / Visium HD scale.

Each size runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its own.

    nice -n 10 python benchmarks/synthetic_scale.py --sizes 10000,100000 --genes 18000 --depth 2000

Prints one markdown table row per size: spots, genes, seconds, peak RSS, RSS after imports, nnz,
fraction of zeros, bytes of the CSR matrix.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: kilobytes


def run_one(n_spots: int, n_genes: int, depth: float, seed: int) -> dict:
    from spotfill.datasets import synthetic

    base = _peak_rss_gb()
    t0 = time.perf_counter()
    adata = synthetic(n_spots, n_genes, depth=depth, seed=seed, truth=False)
    seconds = time.perf_counter() - t0
    X = adata.X
    return {
        "n_spots": n_spots,
        "n_genes": n_genes,
        "depth": depth,
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(_peak_rss_gb(), 2),
        "rss_after_imports_gb": round(base, 2),
        "nnz": int(X.nnz),
        "zeros": round(1.0 - X.nnz / (n_spots * n_genes), 4),
        "csr_gb": round((X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 1024**3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,600000", help="comma-separated numbers of spots")
    parser.add_argument("--genes", type=int, default=18000)
    parser.add_argument("--depth", type=float, default=2000.0, help="mean UMIs per spot")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()

    if args.one is not None:
        print(json.dumps(run_one(args.one, args.genes, args.depth, args.seed)))
        return

    print("| spots | genes | depth | seconds | peak RSS (GiB) | RSS after imports (GiB) | nnz | zeros | CSR (GiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        cmd = [sys.executable, __file__, "--one", str(n), "--genes", str(args.genes)]
        cmd += ["--depth", str(args.depth), "--seed", str(args.seed)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"| {n:,} | {args.genes:,} | {args.depth:g} | failed (exit {done.returncode}) | | | | | |")
            print(done.stderr[-2000:], file=sys.stderr)
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {r['n_spots']:,} | {r['n_genes']:,} | {r['depth']:g} | {r['seconds']} | {r['peak_rss_gb']} | "
            f"{r['rss_after_imports_gb']} | {r['nnz']:,} | {r['zeros']:.1%} | {r['csr_gb']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
