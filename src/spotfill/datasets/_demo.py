"""``spotfill demo``: impute the bundled olfactory bulb sample and draw a few marker genes."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .._files import atomic_path
from .._normalise import per_10k
from ._mob import mouse_olfactory_bulb

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["MOB_MARKERS", "run_demo"]

logger = logging.getLogger(__name__)

#: Layer markers of the olfactory bulb: granule cells (Penk), mitral cells (Doc2g, Cdhr1) and the
#: olfactory nerve layer (Apod).
MOB_MARKERS = ("Penk", "Doc2g", "Cdhr1", "Apod")


def run_demo(*, out: str | Path = "spotfill_demo", method: str | None = None, seed: int = 0) -> list[str]:
    """Impute the bundled mouse olfactory bulb data and write the result and a figure.

    Loads :func:`mouse_olfactory_bulb`, builds its spatial graph with
    :func:`spotfill.spatial_neighbors`, runs :func:`spotfill.impute`, and writes

    - ``out/mob_imputed.h5ad``: the data with the imputed layer;
    - ``out/mob_markers.png``: spatial maps of four layer markers (:data:`MOB_MARKERS`), raw counts
      above and imputed values below, as ``log1p`` of counts per 10,000 of each spot (so that the
      maps show the layers, not each spot's sequencing depth), scale shared per gene.

    Existing files of those names are replaced.

    Parameters
    ----------
    out
        Output folder, created when missing.
    method
        Imputation method (see :func:`spotfill.list_methods`); ``None`` uses the default.
    seed
        Random seed passed to the method.

    Returns
    -------
    Human-readable summary lines: method, run time, fraction of zeros before and after, and the
    paths written.
    """
    from .._validation import check_seed
    from ..graph import spatial_neighbors
    from ..io import write
    from ..methods import get_method, impute

    if method is not None:
        get_method(method)  # an unknown name is refused before the folder is made
    check_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    adata = mouse_olfactory_bulb()
    spatial_neighbors(adata)
    before = set(adata.layers)
    t0 = time.perf_counter()
    impute(adata, method, seed=seed)
    seconds = time.perf_counter() - t0
    (key,) = set(adata.layers) - before
    imputed = adata.layers[key]

    h5ad_path = out / "mob_imputed.h5ad"
    png_path = out / "mob_markers.png"
    write(adata, h5ad_path, overwrite=True)
    _plot_markers(adata, key, png_path)

    n_entries = adata.n_obs * adata.n_vars
    zeros_raw = 1.0 - adata.X.nnz / n_entries
    zeros_imputed = _zero_fraction(imputed)
    return [
        f"data: mouse olfactory bulb (ST), {adata.n_obs} spots x {adata.n_vars} genes",
        f"method: {adata.uns[key]['method']} (layer {key!r}, seed {seed})",
        f"time: {seconds:.1f} s",
        f"zeros: {zeros_raw:.1%} raw -> {zeros_imputed:.1%} imputed",
        f"wrote {h5ad_path}",
        f"wrote {png_path}",
    ]


def _zero_fraction(Y: np.ndarray | sp.spmatrix) -> float:
    if sp.issparse(Y):
        return 1.0 - np.count_nonzero(Y.data) / (Y.shape[0] * Y.shape[1])
    return float(np.mean(np.asarray(Y) == 0))


def _plot_markers(adata: AnnData, key: str, path: Path) -> None:
    """Spatial maps of the marker genes, raw (top row) and imputed (bottom row)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    genes = [g for g in MOB_MARKERS if g in adata.var_names]
    idx = adata.var_names.get_indexer(genes)
    rows = {
        "raw counts": np.log1p(per_10k(adata.X, idx)),
        f"imputed ({adata.uns[key]['method']})": np.log1p(per_10k(adata.layers[key], idx)),
    }
    xy = np.asarray(adata.obsm["spatial"])
    fig = Figure(figsize=(3.2 * len(genes), 5.2), layout="constrained")
    axes = fig.subplots(len(rows), len(genes), squeeze=False)
    for j, gene in enumerate(genes):
        vmax = max(float(v[:, j].max()) for v in rows.values()) or 1.0
        for i, (title, values) in enumerate(rows.items()):
            ax = axes[i, j]
            dots = ax.scatter(xy[:, 0], xy[:, 1], c=values[:, j], s=28, cmap="viridis", vmin=0.0, vmax=vmax)
            ax.set_aspect("equal")
            ax.invert_yaxis()  # image convention: rows grow downwards
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{gene}: {title}", fontsize=9)
        fig.colorbar(dots, ax=axes[:, j], shrink=0.6, label="log1p per 10k")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    logger.info("wrote %s", path)
