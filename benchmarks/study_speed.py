"""Wall time of the study's models (default settings) on a Visium section.

Run: nice -n 5 /work/venv/bin/python benchmarks/study_speed.py [dataset] ; numbers go to docs/study.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import anndata as ad
import numpy as np
import torch

from spotfill.methods.study import GeneAutoencoder, NeuralMF

PATH = "/work/shared/data/h5ad/{}.h5ad"


def main(name: str = "dlpfc_151673") -> None:
    adata = ad.read_h5ad(PATH.format(name))
    print(f"# {name}: {adata.n_obs} spots x {adata.n_vars} genes, {adata.X.nnz} non-zeros")
    print(
        f"# {datetime.date.today()} {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    for cls in (NeuralMF, GeneAutoencoder):
        est = cls(progress=False)
        t0 = time.perf_counter()
        Y = est.fit_transform(adata.X)
        dt = time.perf_counter() - t0
        h = est.history_
        print(
            f"{cls.__name__}: {dt:.1f} s (fit + predict), {h.n_epochs} epochs ({dt / h.n_epochs:.1f} s/epoch), "
            f"best epoch {h.best_epoch}, val RMSE {h.val_loss[h.best_epoch]:.4f}, "
            f"output {Y.shape} mean {float(np.mean(Y)):.3f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="dlpfc_151673", help="name of a file in ../shared/data/h5ad")
    main(parser.parse_args().dataset)
