"""Time every baseline imputer (fit_transform) on one real dataset.

Usage::

    nice -n 5 /work/venv/bin/python benchmarks/baseline_speed.py \
        [--data ../shared/data/h5ad/dlpfc_151673.h5ad] [--repeats 3] [--methods mean knn ...] [--p1]

Prints one Markdown table row per method: best and median wall time over the repeats, the output
type and its size. With ``--p1`` it also prints an informal P1 check (seed 0, 10 % of the non-zeros
held out, see BENCHMARK.md; the benchmark package's runner is the reference implementation):
log1p RMSE and Pearson on the held-out entries, and the mean log1p prediction on 20,000 zero entries
(over-imputation). The numbers go to docs/baselines.md.
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


def _p1(X: sp.csr_matrix, coords: np.ndarray, methods: list[str], seed: int = 0, frac: float = 0.1) -> None:
    X = sp.csr_matrix(X, dtype=np.float32)
    X.sort_indices()
    rng = np.random.default_rng(seed)
    held = rng.choice(X.nnz, size=round(frac * X.nnz), replace=False)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[held]
    cols, y = X.indices[held], X.data[held]
    mask = sp.csr_matrix((np.ones(held.size, dtype=bool), (rows, cols)), shape=X.shape)
    # 20,000 entries that are zero in X (rejection sampling on uniform positions)
    flat = rng.integers(0, X.shape[0] * X.shape[1], size=200_000)
    zr, zc = np.divmod(flat, X.shape[1])
    is_zero = np.asarray(X[zr, zc]).ravel() == 0
    zr, zc = zr[is_zero][:20_000], zc[is_zero][:20_000]
    print(f"\n# P1 (seed {seed}, {held.size} held-out entries): log1p scores")
    print("| method | RMSE | Pearson | mean log1p(p) on zeros |")
    print("|---|---|---|---|")
    ly = np.log1p(y)
    print(f"| zeros | {np.sqrt(np.mean(ly**2)):.3f} | - | 0.000 |")
    for name in methods:
        Y = make_method(name, seed=0).fit_transform(X, coords=coords, mask=mask)
        p = np.asarray(Y[rows, cols]).ravel().clip(0)
        pz = np.asarray(Y[zr, zc]).ravel().clip(0)
        lp = np.log1p(p)
        rmse = np.sqrt(np.mean((ly - lp) ** 2))
        print(f"| {name} | {rmse:.3f} | {np.corrcoef(ly, lp)[0, 1]:.3f} | {np.log1p(pz).mean():.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=BASELINES)
    parser.add_argument("--p1", action="store_true", help="also print an informal P1 check (seed 0)")
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
    if args.p1:
        _p1(X, coords, args.methods)


if __name__ == "__main__":
    main()
