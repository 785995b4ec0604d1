"""Figures of the benchmark report, drawn on bare :class:`matplotlib.figure.Figure` objects.

No ``pyplot``: the figures never touch the global state or an interactive backend, and
:func:`to_png_base64` renders them with Agg.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .._normalise import spot_scale
from .._sparse import drop_diagonal

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType  # matplotlib >= 3.9; only for the type checker

__all__ = [
    "bar_metrics",
    "cost_figure",
    "domain_maps",
    "error_histogram",
    "pred_vs_true",
    "spatial_maps",
    "spatially_variable_genes",
    "to_png_base64",
]


_PLAIN_TEXT: dict[RcKeyType, Any] = {"text.parse_math": False}  # names such as "price_$1" are text, not mathtext


def _plain_text(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure with mathtext off: method, dataset and gene names are printed as given."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> Figure:
        with rc_context(_PLAIN_TEXT):
            return draw(*args, **kwargs)

    return wrapper


def to_png_base64(fig: Figure, *, dpi: int = 90) -> str:
    """Render ``fig`` with Agg and return the PNG as base64 text."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with rc_context(_PLAIN_TEXT):  # tick labels are made when drawn
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _grid(n: int, *, ncols: int = 4) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return int(np.ceil(n / ncols)), ncols


@_plain_text
def bar_metrics(summary: pd.DataFrame, metrics: Sequence[str], *, title: str = "") -> Figure:
    """Bar chart of each metric: datasets on the x axis, one bar per method, error bars = sd over seeds.

    Parameters
    ----------
    summary
        Columns ``dataset``, ``method``, ``metric``, ``mean``, ``sd``.
    metrics
        Metrics to draw, one panel each.
    title
        Figure title.
    """
    nrows, ncols = _grid(len(metrics), ncols=3)
    fig = Figure(figsize=(4.6 * ncols, 3.2 * nrows), layout="constrained")
    methods = list(dict.fromkeys(summary["method"]))
    datasets = list(dict.fromkeys(summary["dataset"]))
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(datasets))
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        sub = summary[summary["metric"] == metric].set_index(["dataset", "method"])
        for j, method in enumerate(methods):
            mean = np.array([sub["mean"].get((d, method), np.nan) for d in datasets], dtype=np.float64)
            sd = [sub["sd"].get((d, method), np.nan) for d in datasets]
            # no error bars without a finite mean (matplotlib 3.7 warns "All-NaN axis encountered")
            yerr = np.nan_to_num(sd) if np.isfinite(mean).any() else None
            ax.bar(x + (j - (len(methods) - 1) / 2) * width, mean, width, yerr=yerr, label=method)
        ax.set_xticks(x, datasets, rotation=20, ha="right", fontsize=8)
        ax.set_title(metric)
    if methods:
        fig.axes[0].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


@_plain_text
def cost_figure(cost: pd.DataFrame) -> Figure:
    """Wall time and peak memory per method.

    ``cost`` has columns ``dataset``, ``n_spots``, ``method``, ``metric`` (``seconds``/``peak_mb``),
    ``mean``, ``failed`` (bool). With several sizes of data (the P5 scale series) both panels are
    log-log lines against the number of spots, failed runs drawn as crosses on the top edge (only
    when every dataset is ``synthetic:...``); otherwise bars per dataset.
    """
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    methods = list(dict.fromkeys(cost["method"]))
    # a scale series: several sizes of synthetic data (real datasets differ in more than size)
    synthetic = cost["dataset"].astype(str).str.startswith("synthetic:").all() if len(cost) else False
    series = bool(synthetic and cost.groupby("method")["n_spots"].nunique().max() > 1)
    for k, (metric, label) in enumerate((("seconds", "wall time (s)"), ("peak_mb", "peak memory (MB)"))):
        ax = fig.add_subplot(1, 2, k + 1)
        sub = cost[cost["metric"] == metric]
        if series:
            for method in methods:
                m = sub[sub["method"] == method].sort_values("n_spots")
                ok = m[~m["failed"]]
                (line,) = ax.plot(ok["n_spots"], ok["mean"], marker="o", label=method)
                bad = m[m["failed"]]
                if len(bad):
                    ax.plot(
                        bad["n_spots"],
                        np.ones(len(bad)),
                        "x",
                        color=line.get_color(),
                        ms=10,
                        transform=ax.get_xaxis_transform(),
                        clip_on=False,
                    )
            ax.set_xscale("log")
            ax.set_yscale("log")
            # ticks at 1, 2, 5 x 10^k, plain numbers; on an x axis of more than two decades the
            # spot counts (10000, 20000, 50000, ...) are too wide to sit side by side: 10^k only
            wide = np.ptp(np.log10(cost["n_spots"].clip(lower=1).to_numpy(dtype=float))) > 2
            for axis in (ax.xaxis, ax.yaxis):
                subs = (1.0,) if axis is ax.xaxis and wide else (1.0, 2.0, 5.0)
                axis.set_major_locator(LogLocator(base=10, subs=subs))
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                axis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("spots")
        else:
            datasets = list(dict.fromkeys(sub["dataset"]))
            x = np.arange(len(datasets))
            width = 0.8 / max(len(methods), 1)
            idx = sub.set_index(["dataset", "method"])["mean"]
            for j, method in enumerate(methods):
                vals = [idx.get((d, method), np.nan) for d in datasets]
                ax.bar(x + (j - (len(methods) - 1) / 2) * width, vals, width, label=method)
            ax.set_xticks(x, datasets, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(label)
    if methods:
        fig.axes[0].legend(fontsize=7, frameon=False)
    return fig


def spatially_variable_genes(X: sp.csr_matrix, graph: sp.spmatrix, n: int = 3, *, min_frac: float = 0.1) -> np.ndarray:
    """Return the indices of the ``n`` genes with the largest Moran's I over the spatial graph.

    Moran's I of each gene's ``log1p`` counts per 10,000 (``I = (N / W) * z^T A z / z^T z``, ``z`` the
    centred values, ``A`` the graph, ``W`` its total weight): genes whose neighbouring spots look
    alike, i.e. that draw tissue structure rather than noise or depth. Computed on the sparse matrix
    (``O(nnz(X) * mean degree)``). Only genes detected in at least ``min_frac`` of the spots are
    considered (all genes when fewer than ``n`` pass).
    """
    X = sp.csr_matrix(X, dtype=np.float64)
    n_spots = X.shape[0]
    L = sp.csr_matrix(sp.diags(spot_scale(X)) @ X)
    L.data = np.log1p(L.data)
    A = drop_diagonal(sp.csr_matrix(graph, dtype=np.float64))
    A.eliminate_zeros()
    total = A.sum()
    mean = np.asarray(L.mean(axis=0)).ravel()
    # z^T A z = x^T A x - m (r + c)^T x + m^2 total, with r, c the row and column sums of A
    xax = np.asarray(L.multiply(A @ L).sum(axis=0)).ravel()
    rc = np.asarray(A.sum(axis=1)).ravel() + np.asarray(A.sum(axis=0)).ravel()
    zaz = xax - mean * np.asarray(L.T @ rc).ravel() + mean**2 * total
    zz = np.asarray(L.multiply(L).sum(axis=0)).ravel() - n_spots * mean**2
    moran = np.divide(n_spots * zaz, total * zz, out=np.full_like(zz, -np.inf), where=(zz > 1e-12) & (total > 0))
    detected = np.diff(sp.csc_matrix(X).indptr) / max(n_spots, 1)
    ok = detected >= min_frac
    if ok.sum() < n:
        ok[:] = True
    return np.argsort(-np.where(ok, moran, -np.inf), kind="stable")[: min(n, X.shape[1])]


def _spot_size(coords: np.ndarray, panel: tuple[float, float]) -> float:
    """Marker area (points^2) whose disc is about one spot spacing wide in a ``panel`` (inches) map.

    The map fills about 80 % of its panel at equal aspect: one data unit is
    ``min(0.8 * width / x range, 0.8 * height / y range)`` inches.
    """
    if coords.shape[0] == 0:
        return 1.0
    spacing = _spacing(coords)
    extent = np.ptp(coords, axis=0) + 1.2 * spacing  # the padding of _setup_map
    per_unit = 72.0 * min(0.8 * panel[0] / extent[0], 0.8 * panel[1] / extent[1])  # points per data unit
    return float(np.clip((0.95 * spacing * per_unit) ** 2, 0.3, 400.0))


def _spacing(coords: np.ndarray) -> float:
    """Median distance from a spot to its nearest neighbour (1 for fewer than two spots)."""
    if coords.shape[0] < 2:
        return 1.0
    from scipy.spatial import cKDTree

    d, _ = cKDTree(coords).query(coords, k=2)
    spacing = float(np.median(d[:, 1]))
    return spacing if spacing > 0 else 1.0


def _setup_map(ax, coords: np.ndarray) -> None:
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    pad = 0.6 * _spacing(coords)  # room for the edge spots' discs, whatever the coordinates' units
    ax.set_xlim(coords[:, 0].min() - pad, coords[:, 0].max() + pad)
    ax.set_ylim(coords[:, 1].max() + pad, coords[:, 1].min() - pad)  # image convention: y down


@_plain_text
def spatial_maps(
    coords: np.ndarray, genes: Sequence[str], panels: Mapping[str, np.ndarray], *, label: str = "log1p"
) -> Figure:
    """Spatial maps of ``log1p`` expression: one row per gene, one column per panel (raw, methods).

    Parameters
    ----------
    coords
        ``(n_spots, 2)`` positions.
    genes
        Gene names (row titles).
    panels
        Panel title -> dense ``(n_spots, len(genes))`` values of those genes (counts, or counts per
        10,000 of each spot so that sequencing depth does not dominate the maps).
    label
        Colour bar label.
    """
    names = list(panels)
    fig = Figure(figsize=(2.6 * len(names), 2.5 * len(genes)), layout="constrained")
    s = _spot_size(coords, (2.6 * 0.85, 2.5))  # the colour bar takes part of each row
    for g, gene in enumerate(genes):
        vals = {k: np.log1p(np.clip(np.asarray(v[:, g], dtype=np.float64), 0, None)) for k, v in panels.items()}
        vmax = max(float(np.nanpercentile(v, 99)) for v in vals.values()) or 1.0
        for j, name in enumerate(names):
            ax = fig.add_subplot(len(genes), len(names), g * len(names) + j + 1)
            sc = ax.scatter(
                coords[:, 0], coords[:, 1], c=vals[name], s=s, cmap="viridis", vmin=0, vmax=vmax, linewidths=0
            )
            _setup_map(ax, coords)
            ax.set_title(f"{gene} - {name}", fontsize=8)
        fig.colorbar(sc, ax=fig.axes[-1], shrink=0.8, label=label)
    return fig


@_plain_text
def pred_vs_true(truth: np.ndarray, preds: Mapping[str, np.ndarray], *, max_points: int = 200_000) -> Figure:
    """Density (hexbin, log colour) of ``log1p`` predicted against ``log1p`` true held-out counts."""
    names = list(preds)
    nrows, ncols = _grid(len(names), ncols=4)
    fig = Figure(figsize=(3.2 * ncols, 3.0 * nrows), layout="constrained")
    rng = np.random.default_rng(0)
    take = np.arange(truth.size) if truth.size <= max_points else rng.choice(truth.size, max_points, replace=False)
    ly = np.log1p(truth[take])
    hi = float(
        max(ly.max(initial=1.0), max(np.log1p(np.clip(p[take], 0, None)).max(initial=1.0) for p in preds.values()))
    )
    for k, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        lp = np.log1p(np.clip(preds[name][take], 0, None))
        ax.hexbin(ly, lp, gridsize=40, bins="log", extent=(0, hi, 0, hi), cmap="magma_r", mincnt=1)
        ax.plot([0, hi], [0, hi], color="0.5", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("log1p true")
        ax.set_ylabel("log1p predicted")
    return fig


@_plain_text
def error_histogram(truth: np.ndarray, preds: Mapping[str, np.ndarray]) -> Figure:
    """Histogram of ``log1p(p) - log1p(y)`` on the held-out entries, one outline per method."""
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ly = np.log1p(truth)
    errs = {k: np.log1p(np.clip(p, 0, None)) - ly for k, p in preds.items()}
    lo = min(float(e.min(initial=0)) for e in errs.values())
    hi = max(float(e.max(initial=0)) for e in errs.values())
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
    for name, e in errs.items():
        ax.hist(e, bins=bins, histtype="step", label=name, density=True)  # type: ignore[arg-type]  # stub: no arrays
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel("log1p(predicted) - log1p(true)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, frameon=False)
    return fig


def _align(clusters: np.ndarray, codes: np.ndarray, known: np.ndarray, k: int) -> np.ndarray:
    """Relabel clusters to the label codes they overlap most (Hungarian), for matching colours."""
    from scipy.optimize import linear_sum_assignment

    n = max(k, int(clusters.max(initial=0)) + 1)
    table = np.zeros((n, n))
    np.add.at(table, (clusters[known], codes[known]), 1)
    r, c = linear_sum_assignment(-table)
    mapping = np.arange(n)
    mapping[r] = c
    return mapping[clusters]


@_plain_text
def domain_maps(coords: np.ndarray, labels: np.ndarray, clusterings: Mapping[str, tuple[np.ndarray, float]]) -> Figure:
    """Expert labels next to the KMeans domains of each panel (title: the panel's ARI)."""
    from matplotlib import colormaps

    lab = pd.Categorical(pd.Series(labels, dtype=object))
    codes = np.asarray(lab.codes)
    known = codes >= 0
    k = len(lab.categories)
    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    names = ["expert labels", *clusterings]
    nrows, ncols = _grid(len(names), ncols=4)
    fig = Figure(figsize=(3.0 * ncols, 3.0 * nrows), layout="constrained")
    s = _spot_size(coords, (3.0, 3.0))
    for j, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, j + 1)
        if j == 0:
            colors = [cmap(c % cmap.N) if c >= 0 else (0.85, 0.85, 0.85, 1.0) for c in codes]
            title = name
            for c, cat in enumerate(lab.categories):
                ax.scatter([], [], color=cmap(c % cmap.N), label=str(cat), s=15)
            ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
        else:
            clusters, ari = clusterings[name]
            aligned = _align(np.asarray(clusters), codes, known, k)
            colors = [cmap(c % cmap.N) for c in aligned]
            title = f"{name} (ARI {ari:.3f})"
        ax.scatter(coords[:, 0], coords[:, 1], c=colors, s=s, linewidths=0)
        _setup_map(ax, coords)
        ax.set_title(title, fontsize=9)
    return fig
