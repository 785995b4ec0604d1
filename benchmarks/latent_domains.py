"""Spatial domains from the default model's latent representation, next to P4 on its imputed counts.

``spotfill.impute`` stores the default model's smoothed spot loadings in
``obsm["imputed_spotfill_latent"]`` (each spot's share of every gene programme). Users of scVI and
STAGATE find domains by clustering such a representation rather than the imputed matrix. For every
labelled section in the shared data this script fits the default model once (seed 0) and prints one
JSON line with

- ``raw_ari``: BENCHMARK.md P4 on the raw counts;
- ``p4_ari``: P4 on the imputed layer (the protocol's score of the method);
- ``latent_ari``: the same KMeans (k = number of labels, ``n_init=10``, seed 0) on the stored latent
  representation as it is (no normalisation, no PCA);
- ``latent_scaled_ari``: the same after scaling each programme to zero mean and unit variance
  (``sc.pp.scale``'s transform);
- ``seconds``: the ``impute`` call.

    nice -n 5 python benchmarks/latent_domains.py [--data-dir ../shared/data/h5ad] [--datasets a,b]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

import spotfill
from spotfill.benchmark import domain_ari

DATASETS = ("dlpfc_151673", "dlpfc_151674", "mob_st_rep11", "her2st_A1", "her2st_B1", "her2st_C1", "her2st_D1")


def kmeans_ari(Z: np.ndarray, labels: pd.Series) -> float:
    """ARI of ``KMeans(k, n_init=10, random_state=0)`` on ``Z`` against the labelled spots (P4's clustering)."""
    known = labels.notna().to_numpy()
    k = labels[known].nunique()
    clusters = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(Z)
    return float(adjusted_rand_score(labels[known].astype(str), clusters[known]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/h5ad"))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    warnings.simplefilter("ignore", spotfill.SpotfillWarning)
    for name in args.datasets.split(","):
        adata = ad.read_h5ad(args.data_dir / f"{name}.h5ad")
        labels = adata.obs["label"]
        t0 = time.perf_counter()
        spotfill.impute(adata, seed=0, progress=False)
        seconds = time.perf_counter() - t0
        Z = np.asarray(adata.obsm["imputed_spotfill_latent"], dtype=np.float64)
        sd = Z.std(0)
        scaled = (Z - Z.mean(0)) / np.where(sd > 0, sd, 1)
        row = {
            "dataset": name,
            "shape": list(adata.shape),
            "selected": {
                k: v.item() if hasattr(v, "item") else v for k, v in adata.uns["imputed_spotfill"]["selected"].items()
            },
            "raw_ari": round(domain_ari(adata.X, labels), 3),
            "p4_ari": round(domain_ari(adata.layers["imputed_spotfill"], labels), 3),
            "latent_ari": round(kmeans_ari(Z, labels), 3),
            "latent_scaled_ari": round(kmeans_ari(scaled, labels), 3),
            "seconds": round(seconds, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
