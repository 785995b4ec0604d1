"""The HTML benchmark report: one self-contained file (tables + base64 PNG figures)."""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._errors import InputError
from .._files import atomic_path, check_output_file
from ..benchmark._metrics import direction
from ._figures import (
    bar_metrics,
    cost_figure,
    domain_maps,
    error_histogram,
    highly_variable_genes,
    pred_vs_true,
    spatial_maps,
    to_png_base64,
)

__all__ = ["report", "summarize"]

logger = logging.getLogger(__name__)

#: Score metrics of each protocol, in table order (cost metrics are shown apart).
SCORE_METRICS: dict[str, tuple[str, ...]] = {
    "p1": ("rmse", "mae", "pearson", "spearman", "zero_log1p"),
    "p2": ("nll",),
    "p3": ("rmse", "mae", "pearson", "spearman", "gene_pearson"),
    "p4": ("ari", "ari_raw"),
}
COST_METRICS = ("seconds", "peak_mb")
#: At most this many methods get data panels (maps, density plots, domains).
MAX_PANEL_METHODS = 6

_PROTOCOL_TITLES = {
    "p1": "P1 masked non-zeros (log1p scale)",
    "p2": "P2 molecular cross-validation (Poisson NLL)",
    "p3": "P3 held-out spots",
    "p4": "P4 spatial domains (ARI)",
    "p5": "P5 cost",
}

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td.method{text-align:left;font-weight:600}
td.best{background:#d8f0d8;font-weight:700}td.failed{color:#b00;text-align:left}
img{max-width:100%;margin:0.5em 0}.note{color:#555;font-size:0.9em}
"""


def _read_results(results: str | Path | pd.DataFrame) -> pd.DataFrame:
    if isinstance(results, pd.DataFrame):
        df = results.copy()
    else:
        try:
            df = pd.read_csv(results, keep_default_na=False, na_values=["", "nan", "NaN"])
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            msg = (
                f"{results} is not a results CSV ({type(err).__name__}): pass the CSV written by spotfill benchmark "
                "first, and datasets with --data."
            )
            raise InputError(msg) from None
    need = {"dataset", "protocol", "method", "seed", "metric", "value"}
    missing = need - set(df.columns)
    if missing:
        msg = f"results table lacks columns {sorted(missing)}: pass the CSV written by spotfill benchmark."
        raise InputError(msg)
    if "status" not in df:
        df["status"] = "ok"
    if "error" not in df:
        df["error"] = ""
    if "n_spots" not in df:
        df["n_spots"] = np.nan
    df["error"] = df["error"].fillna("").astype(str)
    df["status"] = df["status"].fillna("ok").astype(str)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def summarize(results: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every successful (dataset, protocol, method, metric).

    Returns
    -------
    Columns ``dataset``, ``n_spots``, ``protocol``, ``method``, ``metric``, ``mean``, ``sd`` (sample
    standard deviation, ``NaN`` for a single seed) and ``n_seeds``.
    """
    df = _read_results(results)
    ok = df[df["status"] == "ok"]
    keys = ["dataset", "protocol", "method", "metric"]
    g = ok.groupby(keys, sort=False)["value"]
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n_seeds": g.count()}).reset_index()
    spots = df.groupby("dataset", sort=False)["n_spots"].first()
    out.insert(1, "n_spots", out["dataset"].map(spots))
    return out


def _fmt(v: float, digits: int = 4) -> str:
    if not np.isfinite(v):
        return "nan"
    return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"


def _table(
    summary: pd.DataFrame, failures: pd.DataFrame, dataset: str, columns: list[tuple[str, str]], methods: list[str]
) -> str:
    s = summary[summary["dataset"] == dataset].set_index(["protocol", "method", "metric"])
    f = failures[failures["dataset"] == dataset].set_index(["protocol", "method"])["error"]
    best: dict[tuple[str, str], float] = {}
    for col in columns:
        d = direction(col[1])
        vals = [s["mean"].get((col[0], m, col[1]), np.nan) for m in methods]
        vals = [v for v in vals if np.isfinite(v)]
        if d and len(vals) > 1:
            best[col] = min(vals) if d == "lower" else max(vals)
    head = "".join(f"<th>{html.escape(p.upper())} {html.escape(m)}</th>" for p, m in columns)
    rows = []
    for method in methods:
        cells = [f'<td class="method">{html.escape(method)}</td>']
        for col in columns:
            key = (col[0], method, col[1])
            if key in s.index:
                mean, sd = s.loc[key, "mean"], s.loc[key, "sd"]
                text = _fmt(mean) + (f" &plusmn; {_fmt(sd, 2)}" if np.isfinite(sd) else "")
                cls = ' class="best"' if col in best and np.isclose(mean, best[col], rtol=0, atol=0) else ""
                cells.append(f"<td{cls}>{text}</td>")
            elif (col[0], method) in f.index:
                cells.append(f'<td class="failed">failed: {html.escape(str(f.loc[(col[0], method)]))}</td>')
            else:
                cells.append("<td></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"


def _img(fig, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{to_png_base64(fig)}">'


def _cost_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Cost rows for the cost figure: P5 when present, else the first protocol run per dataset."""
    cost = df[df["metric"].isin(COST_METRICS)]
    if (cost["protocol"] == "p5").any():
        cost = cost[cost["protocol"] == "p5"]
    else:
        first = cost.groupby("dataset", sort=False)["protocol"].first()
        cost = cost[cost["protocol"] == cost["dataset"].map(first)]
    g = cost.groupby(["dataset", "method", "metric"], sort=False)
    out = g.agg(
        n_spots=("n_spots", "first"),
        mean=("value", lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else np.nan),
        failed=("status", lambda s: bool((s == "failed").all())),
    ).reset_index()
    return out


def _data_panels(path: str | Path, methods: list[str], *, seed: int) -> list[str]:
    """Re-run ``methods`` in-process on one dataset and draw maps, density, errors and domains."""
    from ..benchmark._external import resolve_method
    from ..benchmark._masks import p1_mask
    from ..benchmark._metrics import domain_ari, take_entries
    from ..benchmark._runner import load_dataset

    ds = load_dataset(path)
    parts = [f"<h2>Data: {html.escape(ds.name)} ({ds.shape[0]} spots x {ds.shape[1]} genes)</h2>"]
    names = [m for m in methods if m != "raw"][:MAX_PANEL_METHODS]
    if len([m for m in methods if m != "raw"]) > MAX_PANEL_METHODS:
        parts.append(f'<p class="note">Panels show the first {MAX_PANEL_METHODS} methods.</p>')
    mask = p1_mask(ds.X, frac=0.1, seed=seed)
    full: dict[str, object] = {}
    held: dict[str, np.ndarray] = {"raw": np.zeros(mask.values.size)}
    failed: list[str] = []
    for name in names:
        try:
            fn = resolve_method(name)
            full[name] = fn(ds.X.copy(), coords=ds.coords, graph=ds.graph, seed=seed)
            pred = fn(mask.X_masked.copy(), coords=ds.coords, graph=ds.graph, seed=seed)
            held[name] = take_entries(pred, mask.rows, mask.cols)
        except Exception as err:  # noqa: BLE001 - a failing method is reported, the report goes on
            full.pop(name, None)
            failed.append(f"{name} ({type(err).__name__}: {err})")
    if failed:
        parts.append(f'<p class="note">Failed on this dataset: {html.escape("; ".join(failed))}</p>')

    genes = highly_variable_genes(ds.X, 3)
    var_names = _var_names(path, ds.shape[1])
    cols = np.asarray(genes)
    panels = {"raw": ds.X[:, cols].toarray()}
    for name, P in full.items():
        panels[name] = P[:, cols].toarray() if sp.issparse(P) else np.asarray(P)[:, cols]
    gene_names = [var_names[g] for g in genes]
    parts.append("<h3>Spatial maps of highly variable genes (log1p counts)</h3>")
    parts.append(_img(spatial_maps(ds.coords, gene_names, panels), "spatial maps"))
    parts.append(f"<h3>P1 held-out entries (seed {seed}): predicted vs true</h3>")
    parts.append(_img(pred_vs_true(mask.values, held), "predicted vs true"))
    parts.append("<h3>P1 error distribution</h3>")
    parts.append(_img(error_histogram(mask.values, held), "error histogram"))
    if ds.labels is not None:
        ari, clusters = domain_ari(ds.X, ds.labels, seed=0, return_clusters=True)
        clusterings = {"raw": (clusters, ari)}
        for name, P in full.items():
            ari, clusters = domain_ari(P, ds.labels, seed=0, return_clusters=True)
            clusterings[name] = (clusters, ari)
        parts.append("<h3>P4 spatial domains (KMeans on 30 PCs) against expert labels</h3>")
        parts.append(_img(domain_maps(ds.coords, ds.labels, clusterings), "spatial domains"))
    return parts


def _var_names(path: str | Path, n: int) -> list[str]:
    try:
        from anndata import read_h5ad

        if str(path).endswith(".h5ad"):
            return list(read_h5ad(path, backed="r").var_names)
    except Exception:  # noqa: BLE001 - gene names are cosmetic
        logger.debug("could not read gene names of %s", path)
    return [f"gene {i}" for i in range(n)]


def report(
    results: str | Path | pd.DataFrame,
    *,
    data: Sequence[str | Path] | None = None,
    out: str | Path = "report.html",
    methods: Sequence[str] | None = None,
    seed: int = 0,
    overwrite: bool = True,
) -> Path:
    """Write the benchmark report: one self-contained HTML file.

    Parameters
    ----------
    results
        The results of :func:`spotfill.benchmark.run_benchmark` (DataFrame or its CSV).
    data
        Datasets (``.h5ad`` or ``"synthetic:N_SPOTSxN_GENES"``) for the data panels: spatial maps
        of three highly variable genes (raw and each method), predicted-vs-true density and error
        histogram on the P1 held-out entries (``seed``), and P4 domains next to the expert labels.
        The methods are re-run in this process for these panels (at most six of them).
    out
        HTML file to write (``.html``; atomically: a temporary file renamed into place; its folder is
        created). It may not be the results file or one of the ``data`` files.
    methods
        Methods of the data panels (default: those of the results table).
    seed
        Seed of the P1 split and of the methods in the data panels.
    overwrite
        Replace an existing ``out`` (``False``: refuse it before any work; the command line's default).

    Returns
    -------
    The path written. The page holds, per dataset, a summary table (mean ± sd over seeds, the best
    value of each metric highlighted: lowest for ``rmse``, ``mae``, ``nll``, ``seconds``,
    ``peak_mb``, highest for ``pearson``, ``spearman``, ``gene_pearson``, ``ari``), a cost table,
    one bar chart per protocol, a cost figure, and the data panels; every image is an embedded PNG.
    """
    inputs = [results, *(data or ())]
    out = check_output_file(
        out, suffixes=(".html", ".htm"), inputs=inputs, what="report", make_folder=True, overwrite=overwrite
    )
    df = _read_results(results)
    summary = summarize(df)
    failures = (
        df[df["status"] == "failed"].groupby(["dataset", "protocol", "method"], sort=False)["error"].first()
    ).reset_index()
    all_methods = list(dict.fromkeys(df["method"]))
    datasets = list(dict.fromkeys(df["dataset"]))
    protocols = [p for p in SCORE_METRICS if p in set(df["protocol"])]

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>spotfill benchmark</title>",
        f"<style>{_CSS}</style></head><body><h1>spotfill benchmark report</h1>",
        '<p class="note">Protocols as in BENCHMARK.md. Scores on log1p counts; mean &plusmn; sd over seeds '
        f"({', '.join(str(s) for s in sorted(df['seed'].unique()))}); best value per column highlighted. "
        "zero_log1p is P1's over-imputation check (mean log1p prediction on entries that are zero in the data); "
        "ari_raw is the ARI of the raw data. Read P1 next to it, P2 and P4.</p>",
    ]
    for dataset in datasets:
        sub = summary[summary["dataset"] == dataset]
        present = set(zip(sub["protocol"], sub["metric"], strict=True))
        score_cols = [(p, m) for p in protocols for m in SCORE_METRICS[p] if (p, m) in present]
        score_cols += [
            (p, m)
            for p in protocols
            for m in SCORE_METRICS[p]
            if (p, m) not in present and m == SCORE_METRICS[p][0] and (failures["protocol"] == p).any()
        ]
        run_protocols = list(dict.fromkeys(df.loc[df["dataset"] == dataset, "protocol"]))
        cost_cols = [(p, m) for p in run_protocols for m in COST_METRICS]
        methods_here = list(dict.fromkeys(df.loc[df["dataset"] == dataset, "method"]))
        parts.append(f"<h2>{html.escape(str(dataset))}</h2>")
        if score_cols:
            parts.append("<h3>Scores</h3>" + _table(summary, failures, dataset, score_cols, methods_here))
        parts.append("<h3>Cost (seconds, peak MB)</h3>" + _table(summary, failures, dataset, cost_cols, methods_here))

    parts.append("<h2>Scores by protocol</h2>")
    for p in protocols:
        metrics = [m for m in SCORE_METRICS[p] if ((summary["protocol"] == p) & (summary["metric"] == m)).any()]
        if metrics:
            fig = bar_metrics(summary[summary["protocol"] == p], metrics, title=_PROTOCOL_TITLES[p])
            parts.append(f"<h3>{_PROTOCOL_TITLES[p]}</h3>" + _img(fig, p))
    cost = _cost_frame(df)
    if len(cost):
        parts.append("<h2>P5 cost: wall time and peak memory of the method call</h2>")
        parts.append(_img(cost_figure(cost), "cost"))
    for path in data or ():
        parts.extend(_data_panels(path, list(methods) if methods is not None else all_methods, seed=seed))
    parts.append("</body></html>")

    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return out
