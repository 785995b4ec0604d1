"""Cost of wide smoothing operators: the explicit power ``S^q`` against ``S`` applied ``q`` times.

The default model smooths its spot loadings with ``S^q``, ``S = (1 - a) I + a P``. Up to
``_MAX_STORED_POWER`` (2) steps the power is formed once; wider operators are applied step by step.
This script fits the model with fixed settings (no selection) on a synthetic Visium-like section for
several ``q``, once each way, and prints one JSON line per run: seconds to build the operator and to
fit, the non-zeros stored for ``S`` and ``S^T``, and the largest output difference between the two ways.

    nice -n 5 python benchmarks/wide_operator.py --spots 100000 --genes 1000 --steps 2,4,8,16,32
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spots", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=1_000)
    parser.add_argument("--depth", type=float, default=200.0)
    parser.add_argument("--steps", default="2,4,8,16,32")
    parser.add_argument("--max-explicit", type=int, default=16, help="largest q also run as an explicit power")
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()

    import scipy.sparse as sp

    import spotfill
    import spotfill.methods.default as default
    from spotfill.datasets import synthetic

    adata = synthetic(args.spots, args.genes, depth=args.depth, seed=0, truth=False)
    spotfill.spatial_neighbors(adata)
    X = sp.csr_matrix(adata.X, dtype=np.float32)
    G = sp.csr_matrix(adata.obsp["spatial_connectivities"])
    for q in (int(s) for s in args.steps.split(",")):
        loadings = {}
        for way, stored in (("current", 2), ("explicit power", 32)):
            if way == "explicit power" and (q <= 2 or q > args.max_explicit):  # q <= 2: current is the power
                continue
            default._MAX_STORED_POWER = stored
            t0 = time.perf_counter()
            S, ST = default._operator_pair(G, 0.7, q, lambda B: B)
            build = time.perf_counter() - t0
            model = default.SpotfillModel(
                n_latent=10, smooth=0.7, smooth_steps=q, max_iter=args.iters, tol=0.0, shrink="none", progress=False
            )
            t0 = time.perf_counter()
            model.fit(X, graph=G)
            fit = time.perf_counter() - t0
            loadings[way] = model.loadings_
            row = {
                "spots": args.spots,
                "genes": args.genes,
                "nnz_counts": int(X.nnz),
                "q": q,
                "way": way,
                "operator_nnz": int(S.B.nnz + ST.B.nnz),
                "operator_mb": round((S.B.nnz + ST.B.nnz) * 12 / 1e6, 1),
                "build_s": round(build, 2),
                "fit_s": round(fit, 1),
                "updates": args.iters,
            }
            if len(loadings) == 2:
                a, b = loadings.values()
                row["max_rel_diff_vs_current"] = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300)))
            row["host"] = platform.node()
            row["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
