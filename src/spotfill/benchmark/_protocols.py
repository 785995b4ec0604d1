"""Protocols P1-P5 of ``BENCHMARK.md``: split, call the method, score.

Each protocol is a function ``(dataset, call, *, seed, frac) -> list of rows``; a row is a dict with
``metric``, ``value``, ``status`` (``"ok"``, ``"failed"`` or ``"skipped"``) and ``error``. ``call``
runs the method on the matrix it is given (see :mod:`spotfill.benchmark._runner`) and is the only
way a method meets the data: the harness checks, before every call, that the matrix it hands over
is zero at every held-out position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._errors import InputError
from ._masks import assert_hidden, p1_mask, p2_split, p3_folds, zero_rows
from ._metrics import domain_ari, log_scores, matrix_log_scores, poisson_nll, take_entries, take_rows

__all__ = ["PROTOCOLS", "CallResult", "Dataset", "run_p1", "run_p2", "run_p3", "run_p4", "run_p5"]

Row = dict[str, Any]


@dataclass
class Dataset:
    """One dataset as the harness holds it.

    Attributes
    ----------
    name
        Name used in the results table.
    X
        Canonical CSR float32 raw counts.
    coords
        ``(n_spots, 2)`` spot coordinates (``obsm['spatial']``).
    graph
        Spatial connectivities (``obsp['spatial_connectivities']`` built by
        :func:`spotfill.spatial_neighbors`), passed to registry methods.
    labels
        ``obs['label']`` (object array, ``None``/NaN where unlabelled) or ``None``.
    var_names
        Gene names (``None`` when unknown).
    cache
        Splits and reference scores computed once per dataset (keyed by protocol and seed).
    """

    name: str
    X: sp.csr_matrix
    coords: np.ndarray
    graph: sp.csr_matrix | None = None
    labels: np.ndarray | None = None
    var_names: list[str] | None = None
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_spots, n_genes)``."""
        return self.X.shape


@dataclass
class CallResult:
    """Outcome of one method call: the prediction or the error, wall time and peak memory."""

    pred: np.ndarray | sp.csr_matrix | None
    seconds: float
    peak_mb: float
    base_mb: float = float("nan")
    error: str | None = None


Call = Callable[[sp.csr_matrix], CallResult]


def _cost_rows(res: CallResult) -> list[Row]:
    status = "ok" if res.error is None else "failed"
    err = res.error or ""
    return [
        {"metric": "seconds", "value": res.seconds, "status": status, "error": err},
        {"metric": "peak_mb", "value": res.peak_mb, "status": status, "error": err},
    ]


def _ok(metrics: dict[str, float]) -> list[Row]:
    return [{"metric": k, "value": float(v), "status": "ok", "error": ""} for k, v in metrics.items()]


def run_p1(ds: Dataset, call: Call, *, seed: int = 0, frac: float = 0.1) -> list[Row]:
    """P1: hold out ``frac`` of the non-zeros, score the prediction there.

    Rows: ``rmse``, ``mae``, ``pearson``, ``spearman`` on the held entries; ``zero_log1p`` (mean
    ``log1p(p)`` on the entries drawn among the zeros of the original data: the over-imputation
    check); ``rmse_counts`` (RMSE on the count scale, for comparison with the seed study's numbers);
    ``seconds``, ``peak_mb``.
    """
    key = ("p1", seed, frac)
    if key not in ds.cache:
        ds.cache[key] = p1_mask(ds.X, frac=frac, seed=seed)
    mask = ds.cache[key]
    assert_hidden(mask.X_masked, mask.rows, mask.cols)
    res = call(mask.X_masked)
    if res.error is not None:
        return _cost_rows(res)
    held = take_entries(res.pred, mask.rows, mask.cols)
    scores = log_scores(mask.values, held)
    # the seed study reported its raw-count trials' RMSE in counts: kept for that comparison only
    scores["rmse_counts"] = float(np.sqrt(np.mean((np.clip(held, 0.0, None) - mask.values) ** 2)))
    zeros = np.clip(take_entries(res.pred, mask.zero_rows, mask.zero_cols), 0.0, None)
    scores["zero_log1p"] = float(np.mean(np.log1p(zeros))) if zeros.size else float("nan")
    return _ok(scores) + _cost_rows(res)


def run_p2(ds: Dataset, call: Call, *, seed: int = 0, frac: float = 0.1) -> list[Row]:  # noqa: ARG001
    """P2: molecular cross-validation. Rows: ``nll`` (mean Poisson NLL, lower is better), cost.

    Counts that are not integers cannot be split into molecules: such a dataset gives one ``skipped``
    row (the reason in ``error``) and the run goes on.
    """
    key = ("p2", seed)
    if key not in ds.cache:
        try:
            ds.cache[key] = p2_split(ds.X, seed=seed)
        except InputError as err:  # non-integer counts cannot be thinned: this dataset has no P2
            ds.cache[key] = str(err)
    if isinstance(ds.cache[key], str):
        return [{"metric": "nll", "value": float("nan"), "status": "skipped", "error": ds.cache[key]}]
    X_train, X_test = ds.cache[key]
    res = call(X_train)
    if res.error is not None:
        return _cost_rows(res)
    return _ok({"nll": poisson_nll(X_test, res.pred)}) + _cost_rows(res)


def run_p3(ds: Dataset, call: Call, *, seed: int = 0, frac: float = 0.1) -> list[Row]:  # noqa: ARG001
    """P3: five folds of whole spots.

    The method gets all spots and coordinates with the held-out spots' rows emptied (every count of
    those spots set to 0), one call per fold. Every spot is held out once; the predictions at each
    fold's held-out spots are put together, and scored once over all their entries (zeros included;
    dense ``n_spots x n_genes`` arrays of the truth and the predictions): ``rmse``, ``mae``,
    ``pearson``, ``spearman`` as in P1 and ``gene_pearson``, the median over genes of the per-gene
    Pearson correlation across the spots (genes constant there are left out). ``seconds`` is the
    total and ``peak_mb`` the largest of the five calls. Scoring (:func:`matrix_log_scores`) holds
    the pooled predictions and the ``log1p`` values and ranks the Spearman correlation needs, about
    64 bytes per entry (1.2 GB for 3,639 spots x 5,000 genes), outside the measured calls.
    """
    folds = p3_folds(ds.shape[0], seed=seed)
    P = np.zeros(ds.shape, dtype=np.float64)
    seconds = 0.0
    peak = 0.0
    for fold in folds:
        X_seen = zero_rows(ds.X, fold)
        if X_seen[fold].nnz:
            msg = "benchmark harness bug: held-out spots are visible to the method."
            raise RuntimeError(msg)
        res = call(X_seen)
        seconds += res.seconds
        peak = max(peak, res.peak_mb)
        if res.error is not None:
            res.seconds = seconds
            return _cost_rows(res)
        P[fold] = take_rows(res.pred, fold)
    return _ok(matrix_log_scores(ds.X, P, overwrite_p=True)) + _cost_rows(CallResult(None, seconds, peak))


def run_p4(ds: Dataset, call: Call, *, seed: int = 0, frac: float = 0.1) -> list[Row]:  # noqa: ARG001
    """P4: spatial domains. Rows: ``ari`` of the imputed data, ``ari_raw`` of the raw data, cost.

    Clustering always uses seed 0 (PCA and KMeans), as the protocol says; ``seed`` is the method's.
    Datasets without ``obs['label']`` give one ``skipped`` row.
    """
    if ds.labels is None:
        return [{"metric": "ari", "value": float("nan"), "status": "skipped", "error": "no obs['label']"}]
    if "p4_raw" not in ds.cache:
        try:
            ds.cache["p4_raw"] = domain_ari(ds.X, ds.labels, seed=0)
        except InputError as err:  # fewer than two label categories
            ds.cache["p4_raw"] = str(err)
    if isinstance(ds.cache["p4_raw"], str):
        return [{"metric": "ari", "value": float("nan"), "status": "skipped", "error": ds.cache["p4_raw"]}]
    res = call(ds.X)
    if res.error is not None:
        return _cost_rows(res)
    ari = domain_ari(res.pred, ds.labels, seed=0)
    return _ok({"ari": ari, "ari_raw": ds.cache["p4_raw"]}) + _cost_rows(res)


def run_p5(ds: Dataset, call: Call, *, seed: int = 0, frac: float = 0.1) -> list[Row]:  # noqa: ARG001
    """P5: cost of imputing the full matrix. Rows: ``seconds``, ``peak_mb`` and ``base_mb``.

    ``base_mb`` is the resident memory of the worker before the call (interpreter, libraries and
    the data): ``peak_mb - base_mb`` is what the method itself added at its peak.
    """
    res = call(ds.X)
    rows = _cost_rows(res)
    status = rows[0]["status"]
    rows.append({"metric": "base_mb", "value": res.base_mb, "status": status, "error": rows[0]["error"]})
    return rows


#: Protocol name -> function.
PROTOCOLS: dict[str, Callable[..., list[Row]]] = {
    "p1": run_p1,
    "p2": run_p2,
    "p3": run_p3,
    "p4": run_p4,
    "p5": run_p5,
}
