"""The default model at Visium HD size: fit on every gene, predict a gene subset (``impute(genes=...)``).

A synthetic Visium HD-like section (``spotfill.datasets.synthetic``, sparse, never dense) is generated,
its spatial graph built, and ``spotfill.impute(adata, genes=...)`` runs the default model (automatic
selection on ``max_spots_tune`` spots in contiguous patches, final fit on every bin and gene) and
predicts ``--n-out`` genes into ``obsm``. Prints one JSON line with the size, the seconds of each step
and the peak resident memory of the process (``ru_maxrss``, generation included).

    nice -n 5 python benchmarks/visium_hd.py --spots 600000 --genes 18000 --depth 500 --n-out 100
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spots", type=int, default=600_000)
    parser.add_argument("--genes", type=int, default=18_000)
    parser.add_argument("--depth", type=float, default=500.0, help="mean UMIs per bin")
    parser.add_argument("--n-out", type=int, default=100, help="number of genes to predict (the most expressed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import spotfill
    from spotfill.datasets import synthetic

    out: dict = {"host": platform.node(), "spots": args.spots, "genes": args.genes, "depth": args.depth}
    t0 = time.perf_counter()
    adata = synthetic(args.spots, args.genes, depth=args.depth, seed=args.seed, truth=False)
    out["generate_s"] = round(time.perf_counter() - t0, 1)
    out["nnz"] = int(adata.X.nnz)
    out["zeros"] = round(1 - adata.X.nnz / (args.spots * args.genes), 4)
    out["peak_after_generate_gb"] = round(_peak_gb(), 2)
    t0 = time.perf_counter()
    spotfill.spatial_neighbors(adata)
    out["graph_s"] = round(time.perf_counter() - t0, 1)
    totals = np.asarray(adata.X.sum(axis=0)).ravel()
    genes = list(adata.var_names[np.argsort(-totals)[: args.n_out]])
    t0 = time.perf_counter()
    spotfill.impute(adata, genes=genes)
    out["impute_s"] = round(time.perf_counter() - t0, 1)
    out["peak_gb"] = round(_peak_gb(), 2)
    info = adata.uns["imputed_spotfill"]
    out["n_out"] = len(info["genes"])
    out["output_shape"] = list(adata.obsm["imputed_spotfill"].shape)
    out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
