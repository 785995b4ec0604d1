"""Time and peak memory of spatial graph construction for 1,000,000 synthetic spots.

Cases (each runs in its own subprocess so its peak RSS is its own):

- ``hex``: :func:`spotfill.graph.lattice_graph` on a Visium-like hexagonal grid of 1000 x 1000 spots
  (row + col even), spots in random order, order 1 (6 neighbours) and order 2 (18 neighbours);
- ``knn``: :func:`spotfill.graph.knn_graph` (n_neighs=6) on uniform random points in the unit square;
- ``adata``: :func:`spotfill.spatial_neighbors` on the hex grid in an AnnData (lattice detection,
  connectivities and Euclidean distances).

Usage::

    nice -n 10 /work/venv/bin/python benchmarks/graph_scale.py [--n-spots 1000000] [--case hex knn adata]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def hex_grid(n_spots: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    side = int(round(np.sqrt(n_spots)))
    r, j = np.divmod(np.arange(side * side, dtype=np.int64), side)
    c = 2 * j + (r % 2)
    perm = np.random.default_rng(seed).permutation(r.size)
    return r[perm], c[perm]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_case(case: str, n_spots: int) -> dict:
    from spotfill.graph import knn_graph, lattice_graph, neighbor_counts

    out: dict = {"case": case}
    if case == "hex":
        r, c = hex_grid(n_spots)
        out["n_spots"] = int(r.size)
        out["rss_before_mb"] = peak_rss_mb()
        for n_rings in (1, 2):
            t0 = time.perf_counter()
            W = lattice_graph(r, c, lattice="hex", n_rings=n_rings)
            out[f"order{n_rings}_s"] = time.perf_counter() - t0
            out[f"order{n_rings}_nnz"] = int(W.nnz)
            out[f"order{n_rings}_median_degree"] = float(np.median(neighbor_counts(W)))
            del W
        t0 = time.perf_counter()
        W = lattice_graph(r, c, lattice="auto")
        out["auto_detect_order1_s"] = time.perf_counter() - t0
    elif case == "knn":
        xy = np.random.default_rng(0).random((n_spots, 2))
        out["n_spots"] = n_spots
        out["rss_before_mb"] = peak_rss_mb()
        t0 = time.perf_counter()
        W = knn_graph(xy, n_neighs=6)
        out["knn6_s"] = time.perf_counter() - t0
        out["knn6_nnz"] = int(W.nnz)
        out["knn6_mean_degree"] = float(W.nnz / n_spots)
    elif case == "adata":
        import anndata as ad
        import pandas as pd
        import scipy.sparse as sp

        from spotfill import spatial_neighbors

        r, c = hex_grid(n_spots)
        adata = ad.AnnData(
            X=sp.csr_matrix((r.size, 1), dtype=np.float32),
            obs=pd.DataFrame({"array_row": r, "array_col": c}),
        )
        adata.obsm["spatial"] = np.column_stack([c * 50.0, r * 100.0 * np.sqrt(3) / 2])
        out["n_spots"] = int(r.size)
        out["rss_before_mb"] = peak_rss_mb()
        t0 = time.perf_counter()
        spatial_neighbors(adata)
        out["spatial_neighbors_s"] = time.perf_counter() - t0
        out["nnz"] = int(adata.obsp["spatial_connectivities"].nnz)
    else:
        msg = f"unknown case {case!r}"
        raise ValueError(msg)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-spots", type=int, default=1_000_000)
    parser.add_argument("--case", nargs="+", default=["hex", "knn", "adata"])
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(run_case(args.case[0], args.n_spots)))
        return
    for case in args.case:
        cmd = [sys.executable, __file__, "--inner", "--case", case, "--n-spots", str(args.n_spots)]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        result = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
