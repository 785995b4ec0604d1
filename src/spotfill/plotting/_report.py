"""The HTML benchmark report: one self-contained file (tables + base64 PNG figures)."""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._errors import InputError
from .._files import atomic_path, check_output_file
from .._normalise import per_10k
from .._validation import MAX_SEED
from ..benchmark._metrics import direction
from ._figures import (
    bar_metrics,
    cost_figure,
    domain_maps,
    error_histogram,
    pred_vs_true,
    spatial_maps,
    spatially_variable_genes,
    to_png_base64,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["report", "summarize"]

logger = logging.getLogger(__name__)

#: Score metrics of each protocol, in table order (cost metrics are shown apart).
SCORE_METRICS: dict[str, tuple[str, ...]] = {
    "p1": ("rmse", "mae", "pearson", "spearman", "zero_log1p", "rmse_counts"),
    "p2": ("nll",),
    "p3": ("rmse", "mae", "pearson", "spearman", "gene_pearson"),
    "p4": ("ari", "ari_raw"),
}
COST_METRICS = ("seconds", "peak_mb", "base_mb")
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
td.best{background:#d8f0d8;font-weight:700}td.failed,span.failed{color:#b00;text-align:left}
td.skipped{color:#777;text-align:left}
img{max-width:100%;margin:0.5em 0}.note{color:#555;font-size:0.9em}
"""


def _read_results(results: str | Path | pd.DataFrame) -> pd.DataFrame:
    if isinstance(results, pd.DataFrame):
        df = results.copy()
    else:
        try:
            df = pd.read_csv(
                results,
                keep_default_na=False,
                na_values=["", "nan", "NaN"],
                dtype=dict.fromkeys(("dataset", "protocol", "method", "metric"), str),
            )
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
    if df.empty:
        msg = "the results table has no rows: run spotfill benchmark first (and check it wrote results)."
        raise InputError(msg)
    for col in ("dataset", "protocol", "method", "metric"):  # names such as "151673" are names, not numbers
        blank = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if blank.any():
            msg = f"the results table has {int(blank.sum())} row(s) without a {col} (first: row {int(blank.idxmax())})."
            raise InputError(msg)
        df[col] = df[col].astype(str)
    seeds = pd.to_numeric(df["seed"], errors="coerce")
    # seeds are integers >= 0 and < 2**32 (as the benchmark takes them); inf would pass a rounding test
    wrong = seeds.isna() | (seeds != np.round(seeds)) | ~seeds.between(0, MAX_SEED)
    if wrong.any():
        bad = df["seed"][wrong].iloc[0]
        msg = f"the results table's seed column must hold whole numbers from 0 to 2**32 - 1, found {str(bad)!r}."
        raise InputError(msg)
    df["seed"] = seeds.astype(np.int64)
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


def _outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, protocol, method): seeds run, seeds failed, seeds skipped, first reason of each."""
    keys = ["dataset", "protocol", "method"]
    rows = []
    for key, g in df.groupby(keys, sort=False):
        seeds = g.groupby("seed")["status"].agg(lambda st: "failed" if (st == "failed").any() else st.iloc[0])
        err = g.loc[g["status"] == "failed", "error"]
        why = g.loc[g["status"] == "skipped", "error"]
        rows.append(
            (
                *key,
                len(seeds),
                int((seeds == "failed").sum()),
                int((seeds == "skipped").sum()),
                err.iloc[0] if len(err) else "",
                why.iloc[0] if len(why) else "",
            )
        )
    return pd.DataFrame(rows, columns=[*keys, "n_seeds", "n_failed", "n_skipped", "error", "reason"])


def _table(
    summary: pd.DataFrame, outcomes: pd.DataFrame, dataset: str, columns: list[tuple[str, str]], methods: list[str]
) -> str:
    """One HTML table. A cell with failed seeds says so (k of n seeds) and is never highlighted best."""
    s = summary[summary["dataset"] == dataset].set_index(["protocol", "method", "metric"])
    o = outcomes[outcomes["dataset"] == dataset].set_index(["protocol", "method"])

    def partial(protocol: str, method: str) -> bool:
        return (protocol, method) in o.index and o.loc[(protocol, method), "n_failed"] > 0

    best: dict[tuple[str, str], float] = {}
    for col in columns:
        d = direction(col[1])
        vals = [s["mean"].get((col[0], m, col[1]), np.nan) for m in methods if not partial(col[0], m)]
        vals = [v for v in vals if np.isfinite(v)]
        if d and len(vals) > 1:
            best[col] = min(vals) if d == "lower" else max(vals)
    head = "".join(f"<th>{html.escape(p.upper())} {html.escape(m)}</th>" for p, m in columns)
    rows = []
    for method in methods:
        cells = [f'<td class="method">{html.escape(method)}</td>']
        for col in columns:
            key = (col[0], method, col[1])
            info = o.loc[(col[0], method)] if (col[0], method) in o.index else None
            n_failed = 0 if info is None else int(info["n_failed"])
            if key in s.index:
                mean, sd = s.loc[key, "mean"], s.loc[key, "sd"]
                text = _fmt(mean) + (f" &plusmn; {_fmt(sd, 2)}" if np.isfinite(sd) else "")
                if info is not None and n_failed:  # (n_failed is 0 without info)
                    ok = int(info["n_seeds"]) - n_failed
                    text += (
                        f' <span class="failed">({ok} of {int(info["n_seeds"])} seeds; failed: '
                        f"{html.escape(str(info['error']))})</span>"
                    )
                is_best = col in best and mean == best[col] and not n_failed  # a tie of a partly failed method
                cls = ' class="best"' if is_best else ""
                cells.append(f"<td{cls}>{text}</td>")
            elif info is not None and n_failed:
                cells.append(f'<td class="failed">failed: {html.escape(str(info["error"]))}</td>')
            elif info is not None and info["n_skipped"]:
                cells.append(f'<td class="skipped">skipped: {html.escape(str(info["reason"]))}</td>')
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
    cost = cost[cost["metric"] != "base_mb"]
    cost = cost.assign(value=cost["value"].where(cost["status"] == "ok"))  # as in the tables: ok seeds only
    g = cost.groupby(["dataset", "method", "metric"], sort=False)
    out = g.agg(
        n_spots=("n_spots", "first"),
        mean=("value", lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else np.nan),
        failed=("status", lambda s: bool((s == "failed").all())),  # partly failed: the ok seeds' mean
    ).reset_index()
    return out


def _data_panels(
    path: str | Path | AnnData,
    methods: list[str],
    *,
    seed: int,
    read_options: Mapping[str, Any] | None = None,
    layer: str | None = None,
    benchmarked: Sequence[str] = (),
) -> list[str]:
    """Re-run ``methods`` in-process on one dataset and draw maps, density, errors and domains.

    Each method's full prediction is reduced (three genes, its P1 held-out values, its clusters) before
    the next one runs, so only one is held at a time. A prediction the benchmark would reject (wrong
    shape, NaN) is reported as failed, not drawn.
    """
    from ..benchmark._external import check_prediction, resolve_method
    from ..benchmark._masks import p1_mask
    from ..benchmark._metrics import domain_ari, take_entries
    from ..benchmark._runner import load_dataset

    ds = load_dataset(path, read_options=read_options, layer=layer)
    parts = [f"<h2>Data: {html.escape(ds.name)} ({ds.shape[0]} spots x {ds.shape[1]} genes)</h2>"]
    if ds.name not in benchmarked:
        parts.append(
            f'<p class="note">{html.escape(ds.name)} is not a dataset of the results table above '
            f"({html.escape(', '.join(benchmarked))}): these panels come from running the methods on it here.</p>"
        )
    names = [m for m in methods if m != "raw"]
    if len(names) > MAX_PANEL_METHODS:
        names = names[:MAX_PANEL_METHODS]
        parts.append(f'<p class="note">Panels show the first {MAX_PANEL_METHODS} methods.</p>')
    mask = p1_mask(ds.X, frac=0.1, seed=seed)
    cols = np.asarray(spatially_variable_genes(ds.X, ds.graph, 3))
    var_names = ds.var_names or [f"gene {i}" for i in range(ds.shape[1])]
    gene_names = [var_names[g] for g in cols]
    notes: list[str] = []

    def domains(P) -> tuple[np.ndarray, float] | None:
        try:
            ari, clusters = domain_ari(P, ds.labels, seed=0, return_clusters=True)
        except InputError as err:  # e.g. a single label category: nothing to cluster against
            notes.append(f"no domain panel: {err}")
            return None
        return clusters, ari

    panels = {"raw": per_10k(ds.X, cols)}
    held: dict[str, np.ndarray] = {"raw": np.zeros(mask.values.size)}
    clusterings: dict[str, tuple[np.ndarray, float]] = {}
    if ds.labels is not None and (raw := domains(ds.X)) is not None:
        clusterings["raw"] = raw
    failed: list[str] = []
    for name in names:
        try:
            fn = resolve_method(name)
            full = check_prediction(fn(ds.X.copy(), coords=ds.coords, graph=ds.graph, seed=seed), ds.shape, name)
            pred = check_prediction(
                fn(mask.X_masked.copy(), coords=ds.coords, graph=ds.graph, seed=seed), ds.shape, name
            )
        except Exception as err:  # noqa: BLE001 - a failing method is reported, the report goes on
            failed.append(f"{name} ({type(err).__name__}: {err})")
            continue
        held[name] = take_entries(pred, mask.rows, mask.cols)
        panels[name] = per_10k(full, cols)
        if clusterings and (found := domains(full)) is not None:  # the raw data clustered: labels usable
            clusterings[name] = found
        del full, pred
    if failed:
        parts.append(f'<p class="note">Failed on this dataset: {html.escape("; ".join(failed))}</p>')

    parts.append(
        "<h3>Spatial maps of the three most spatially autocorrelated genes (Moran's I; log1p counts per 10,000 "
        "of each spot)</h3>"
    )
    parts.append(_img(spatial_maps(ds.coords, gene_names, panels, label="log1p per 10k"), "spatial maps"))
    parts.append(f"<h3>P1 held-out entries (seed {seed}): predicted vs true</h3>")
    parts.append(_img(pred_vs_true(mask.values, held), "predicted vs true"))
    parts.append("<h3>P1 error distribution</h3>")
    parts.append(_img(error_histogram(mask.values, held), "error histogram"))
    if clusterings:
        parts.append("<h3>P4 spatial domains (KMeans on 30 PCs) against expert labels</h3>")
        parts.append(_img(domain_maps(ds.coords, ds.labels, clusterings), "spatial domains"))
    for note in dict.fromkeys(notes):
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    return parts


def report(
    results: str | Path | pd.DataFrame,
    *,
    data: str | Path | AnnData | Sequence[str | Path | AnnData] | None = None,
    out: str | Path = "report.html",
    methods: Sequence[str] | None = None,
    seed: int = 0,
    overwrite: bool = True,
    read_options: Mapping[str, Any] | None = None,
    layer: str | None = None,
    library_key: str | None = None,
) -> Path:
    """Write the benchmark report: one self-contained HTML file.

    Parameters
    ----------
    results
        The results of :func:`spotfill.benchmark.run_benchmark` (DataFrame or its CSV).
    data
        A dataset or a list of them (any format :func:`spotfill.read` reads, with ``read_options``, or
        ``"synthetic:N_SPOTSxN_GENES"``) for the data panels: spatial maps (``log1p`` counts per
        10,000 of each spot) of the three genes with the largest Moran's I over the spatial graph
        (raw and each method), predicted-vs-true density and error histogram on the P1 held-out
        entries (``seed``), and P4 domains next to the expert labels. The methods are re-run in this
        process for these panels (at most six of them); a prediction the benchmark would reject is
        reported as failed, not drawn.
    out
        HTML file to write (``.html``; atomically: a temporary file renamed into place; its folder is
        created). It may not be the results file or one of the ``data`` files.
    methods
        Methods of the data panels (default: those of the results table).
    seed
        Seed of the P1 split and of the methods in the data panels.
    overwrite
        Replace an existing ``out`` (``False``: refuse it before any work; the command line's default).
    read_options
        Options of :func:`spotfill.read` for the ``data`` files (e.g. ``{"coords": "xy.csv"}``).
    layer
        The layer of the ``data`` files that holds the raw counts (default ``X``).
    library_key
        Column of ``obs`` naming each spot's section, for ``data`` holding several stacked sections:
        each section gets its own panels, named ``"<dataset>:<section>"`` as
        :func:`spotfill.benchmark.run_benchmark` names them with the same ``library_key``.

    Returns
    -------
    The path written. The page holds, per dataset, a summary table (mean ± sd over the seeds that
    succeeded; the best value of each metric highlighted: lowest for ``rmse``, ``mae``,
    ``rmse_counts``, ``nll``, ``seconds``, ``peak_mb``, highest for ``pearson``, ``spearman``,
    ``gene_pearson``, ``ari``; a cell with failed seeds says "k of n seeds; failed: ..." and is
    never highlighted; a skipped protocol shows its reason), a cost table, one bar chart per
    protocol, a cost figure, and the data panels; every image is an embedded PNG.
    """
    if isinstance(data, str | os.PathLike) or hasattr(data, "obsm"):
        data = [data]  # one path (or AnnData), not a sequence of characters
    elif data is not None:
        data = list(data)
    read_options = dict(read_options or {})
    from ..io._read import read_option_files

    inputs = [results, *(data or ()), *read_option_files(read_options, len(data or ()), datasets="--data")]
    out = check_output_file(
        out, suffixes=(".html", ".htm"), inputs=inputs, what="report", make_folder=True, overwrite=overwrite
    )
    if library_key is not None and data:
        from ..benchmark._runner import split_sections

        data = split_sections(data, library_key, read_options=read_options)
        read_options = {}
    df = _read_results(results)
    summary = summarize(df)
    outcomes = _outcomes(df)
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
            if (p, m) not in present
            and m == SCORE_METRICS[p][0]
            and (outcomes.loc[outcomes["dataset"] == dataset, "protocol"] == p).any()
        ]
        run_protocols = list(dict.fromkeys(df.loc[df["dataset"] == dataset, "protocol"]))
        cost_cols = [(p, m) for p in run_protocols for m in COST_METRICS if (p, m) in present or m != "base_mb"]
        methods_here = list(dict.fromkeys(df.loc[df["dataset"] == dataset, "method"]))
        parts.append(f"<h2>{html.escape(str(dataset))}</h2>")
        if score_cols:
            parts.append("<h3>Scores</h3>" + _table(summary, outcomes, dataset, score_cols, methods_here))
        parts.append("<h3>Cost (seconds, peak MB)</h3>" + _table(summary, outcomes, dataset, cost_cols, methods_here))

    parts.append("<h2>Scores by protocol</h2>")
    for p in protocols:
        metrics = [m for m in SCORE_METRICS[p] if ((summary["protocol"] == p) & (summary["metric"] == m)).any()]
        if metrics:
            fig = bar_metrics(summary[summary["protocol"] == p], metrics, title=_PROTOCOL_TITLES[p])
            parts.append(f"<h3>{_PROTOCOL_TITLES[p]}</h3>" + _img(fig, p))
    cost = _cost_frame(df)
    if len(cost):
        which = "P5" if (df["protocol"] == "p5").any() else "the first protocol run on each dataset"
        parts.append(f"<h2>Cost: wall time and peak memory of the method call ({which})</h2>")
        parts.append(_img(cost_figure(cost), "cost"))
    for path in data or ():
        parts.extend(
            _data_panels(
                path,
                list(methods) if methods is not None else all_methods,
                seed=seed,
                read_options=read_options,
                layer=layer,
                benchmarked=datasets,
            )
        )
    parts.append("</body></html>")

    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return out
