"""Benchmark spotfill's default model on dlpfc_151673 and mob_st_rep11 (BENCHMARK.md P1, P2, P4).

Run from the repository root (the shared data live in ../shared or /work/shared)::

    nice -n 5 python benchmarks/default_model.py [--data-dir /work/shared/data/h5ad]

Prints one table per dataset with the peers' published numbers beside spotfill's, and the time of
each fit (wall and process CPU seconds; the CPU time is the fairer number on a shared machine).
The protocol code below follows /work/shared/BENCHMARK.md step by step; it stands in for
``spotfill.benchmark`` until that lands.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
from scipy.stats import pearsonr, spearmanr
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from spotfill.graph import spatial_neighbors
from spotfill.methods.default import SpotfillModel

PEERS = {
    "dlpfc_151673": {
        "P2 NLL": "scVI 0.0806, gene mean x lib 0.0819, raw 0.1677, MAGIC 0.0901, Smoother 0.0856",
        "P4 ARI": "raw 0.210, spatial kNN 0.496, halra 0.444, scVI 0.414",
        "P1 Pearson": "MAGIC 0.806, scVI 0.802, spatial kNN 0.736",
        "P1 RMSE": "STAGATE 0.515, scVI 0.539, spatial kNN 0.580",
        "P1 zero log1p": "scVI 0.083",
    },
    "mob_st_rep11": {
        "P2 NLL": "gene mean x lib 0.2549, Smoother 0.2509, MAGIC 0.2630",
        "P4 ARI": "raw 0.480, scVI 0.679, halra 0.652",
        "P1 Pearson": "MAGIC 0.818",
        "P1 RMSE": "STAGATE 0.507, spatial kNN 0.596",
        "P1 zero log1p": "-",
    },
}


def load(path: Path):
    adata = ad.read_h5ad(path)
    spatial_neighbors(adata)
    X = sp.csr_matrix(adata.X, dtype=np.float32)
    X.sum_duplicates()
    X.eliminate_zeros()
    X.sort_indices()
    return X, sp.csr_matrix(adata.obsp["spatial_connectivities"]), adata.obs["label"]


def timed_fit(X: sp.csr_matrix, G: sp.csr_matrix) -> tuple[np.ndarray, float, float, SpotfillModel]:
    t0, c0 = time.perf_counter(), time.process_time()
    model = SpotfillModel(progress=False, seed=0)
    P = model.fit_transform(X, graph=G)
    return np.asarray(P, dtype=np.float64), time.perf_counter() - t0, time.process_time() - c0, model


def p1(X, G, seed: int, frac: float = 0.1) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    held = rng.choice(X.nnz, size=round(frac * X.nnz), replace=False)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    hr, hc, hy = rows[held], X.indices[held], X.data[held].astype(np.float64)
    Xm = X.copy()
    Xm.data = Xm.data.copy()
    Xm.data[held] = 0
    Xm.eliminate_zeros()
    n, m = X.shape
    zeros, got = [], 0
    while got < 20000:  # 20,000 entries that are zero in the original X, same rng after step 2
        flat = rng.integers(0, n * m, size=60000)
        flat = flat[np.asarray(X[flat // m, flat % m]).ravel() == 0]
        zeros.append(flat)
        got += len(flat)
    zflat = np.concatenate(zeros)[:20000]
    P, wall, cpu, _ = timed_fit(Xm, G)
    ly, lp = np.log1p(hy), np.log1p(np.clip(P[hr, hc], 0, None))
    return {
        "rmse": float(np.sqrt(np.mean((ly - lp) ** 2))),
        "mae": float(np.mean(np.abs(ly - lp))),
        "pearson": float(pearsonr(ly, lp)[0]),
        "spearman": float(spearmanr(ly, lp)[0]),
        "zero_log1p": float(np.mean(np.log1p(np.clip(P[zflat // m, zflat % m], 0, None)))),
        "wall": wall,
        "cpu": cpu,
    }


def p2(X, G, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    Xt = X.copy()
    Xt.data = rng.binomial(X.data.astype(np.int64), 0.9).astype(np.float32)
    Xtest = sp.csr_matrix(X - Xt)
    Xt.eliminate_zeros()
    Xtest.eliminate_zeros()
    P, wall, cpu, model = timed_fit(Xt, G)
    mu = np.maximum(P * 0.1 / 0.9, 1e-6)
    T = Xtest.tocoo()
    nll = (mu.sum() - np.sum(T.data * np.log(mu[T.row, T.col]))) / mu.size
    return {"nll": float(nll), "wall": wall, "cpu": cpu, "n_latent": model.n_latent_, "smooth": model.smooth_}


def p4(X, G, labels) -> dict[str, float]:
    P, wall, cpu, model = timed_fit(X, G)
    ok = ~labels.isna().to_numpy()
    k = labels[ok].nunique()
    s = P.sum(axis=1, keepdims=True)
    s[s == 0] = 1
    pcs = PCA(n_components=30, random_state=0).fit_transform(np.log1p(P / s * 1e4))
    km = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(pcs)
    ari = adjusted_rand_score(labels.to_numpy()[ok].astype(str), km[ok])
    return {"ari": float(ari), "wall": wall, "cpu": cpu, "n_latent": model.n_latent_, "smooth": model.smooth_}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/work/shared/data/h5ad")
    parser.add_argument("--datasets", nargs="+", default=["dlpfc_151673", "mob_st_rep11"])
    args = parser.parse_args()
    for name in args.datasets:
        X, G, labels = load(Path(args.data_dir) / f"{name}.h5ad")
        r2 = p2(X, G)
        r4 = p4(X, G, labels)
        r1 = [p1(X, G, seed) for seed in (0, 1, 2)]

        def ms(key: str, r1=r1) -> str:
            v = np.array([r[key] for r in r1])
            return f"{v.mean():.4f} +- {v.std():.4f}"

        peers = PEERS.get(name, {})
        print(f"\n## {name} ({X.shape[0]} x {X.shape[1]})")
        print("| score | spotfill | peers |\n|---|---|---|")
        print(f"| P2 Poisson NLL (seed 0) | {r2['nll']:.5f} | {peers.get('P2 NLL', '')} |")
        print(f"| P4 ARI | {r4['ari']:.3f} | {peers.get('P4 ARI', '')} |")
        print(f"| P1 Pearson (seeds 0-2) | {ms('pearson')} | {peers.get('P1 Pearson', '')} |")
        print(f"| P1 RMSE | {ms('rmse')} | {peers.get('P1 RMSE', '')} |")
        print(f"| P1 MAE | {ms('mae')} | |")
        print(f"| P1 Spearman | {ms('spearman')} | |")
        print(f"| P1 mean log1p at true zeros | {ms('zero_log1p')} | {peers.get('P1 zero log1p', '')} |")
        print(
            f"| chosen (n_latent, smooth) | P2 fit {r2['n_latent']}, {r2['smooth']}; "
            f"P4 fit {r4['n_latent']}, {r4['smooth']} | |"
        )
        print(f"| time: fit + predict, full data (P4 fit) | {r4['wall']:.1f} s wall, {r4['cpu']:.1f} s CPU | |")
        print(f"| time: P1 fits | {ms('wall')} s wall, {ms('cpu')} s CPU | |", flush=True)


if __name__ == "__main__":
    main()
