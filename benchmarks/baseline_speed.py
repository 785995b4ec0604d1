"""Time every baseline imputer (fit_transform) on one real dataset.

Usage::

    nice -n 5 /work/venv/bin/python benchmarks/baseline_speed.py \
        [--data ../shared/data/h5ad/dlpfc_151673.h5ad] [--repeats 3] [--methods mean knn ...]

Prints one Markdown table row per method: best and median wall time over the repeats, the output
type and its size. The numbers go to docs/_sections/baselines.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from spotfill.methods import make_method

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "h5ad" / "dlpfc_151673.h5ad"
BASELINES = ["mean", "median", "mode", "knn", "spatial_knn", "interpolate"]


def _nbytes(Y) -> int:
    if sp.issparse(Y):
        return Y.data.nbytes + Y.indices.nbytes + Y.indptr.nbytes
    return np.asarray(Y).nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=BASELINES)
    args = parser.parse_args()

    adata = ad.read_h5ad(args.data)
    X, coords = adata.X, adata.obsm["spatial"]
    print(f"# {args.data.name}: {adata.n_obs} spots x {adata.n_vars} genes, {X.nnz} non-zeros")
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, repeats {args.repeats}"
    )
    print("| method | best (s) | median (s) | output | output size (MB) |")
    print("|---|---|---|---|---|")
    for name in args.methods:
        times = []
        for _ in range(args.repeats):
            est = make_method(name, seed=0)
            t0 = time.perf_counter()
            Y = est.fit_transform(X, coords=coords)
            times.append(time.perf_counter() - t0)
        kind = f"CSR ({Y.nnz / np.prod(Y.shape):.0%} dense)" if sp.issparse(Y) else "dense"
        print(f"| {name} | {min(times):.2f} | {np.median(times):.2f} | {kind} | {_nbytes(Y) / 2**20:.0f} |")


if __name__ == "__main__":
    main()
