"""Scores of the protocols: log1p errors and correlations, Poisson NLL, per-gene Pearson, domain ARI.

All scores are computed on ``log1p`` (natural log) of counts, with predictions clipped at 0.
Correlations are computed with numpy (a constant vector gives ``nan``, not a warning).
"""

from __future__ import annotations

import warnings
from typing import Literal, overload

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from .._errors import InputError

__all__ = [
    "LOWER_IS_BETTER",
    "HIGHER_IS_BETTER",
    "domain_ari",
    "gene_pearson",
    "libsize_mean_rates",
    "log_scores",
    "pearson",
    "poisson_nll",
    "spearman",
    "take_entries",
    "take_rows",
]

#: Metrics for which a smaller value is better (the report highlights the minimum).
LOWER_IS_BETTER = frozenset({"rmse", "mae", "rmse_counts", "nll", "seconds", "peak_mb"})
#: Metrics for which a larger value is better (the report highlights the maximum).
HIGHER_IS_BETTER = frozenset({"pearson", "spearman", "gene_pearson", "ari"})

#: Entries per dense block when a computation walks over spots.
CHUNK_ENTRIES = 4_000_000


def pearson(a, b) -> float:
    """Pearson correlation of two vectors; ``nan`` when either is constant or they are empty."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / den) if den > 0 else float("nan")


def spearman(a, b) -> float:
    """Spearman correlation (Pearson of average ranks, ties averaged)."""
    return pearson(rankdata(np.asarray(a).ravel()), rankdata(np.asarray(b).ravel()))


def log_scores(y, p) -> dict[str, float]:
    """RMSE, MAE, Pearson and Spearman of ``log1p(y)`` against ``log1p(max(p, 0))``.

    Parameters
    ----------
    y
        True counts.
    p
        Predicted counts (same length), clipped at 0 before ``log1p``.

    Returns
    -------
    ``{"rmse", "mae", "pearson", "spearman"}``.
    """
    ly = np.log1p(np.asarray(y, dtype=np.float64).ravel())
    lp = np.log1p(np.clip(np.asarray(p, dtype=np.float64).ravel(), 0.0, None))
    if ly.shape != lp.shape:
        msg = f"truth and prediction differ in length: {ly.shape} vs {lp.shape}."
        raise InputError(msg)
    if ly.size == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "pearson": float("nan"), "spearman": float("nan")}
    d = lp - ly
    return {
        "rmse": float(np.sqrt(np.mean(d * d))),
        "mae": float(np.mean(np.abs(d))),
        "pearson": pearson(ly, lp),
        "spearman": spearman(ly, lp),
    }


def matrix_log_scores(
    Y: sp.csr_matrix, P: np.ndarray, *, block: int = 2**22, overwrite_p: bool = False
) -> dict[str, float]:
    """:func:`log_scores` over every entry of counts ``Y`` against predictions ``P``, plus ``gene_pearson``.

    The same numbers as ``log_scores(Y.toarray(), P)`` and the median of ``gene_pearson``, in row
    blocks of about ``block`` entries: sums for the RMSE, MAE and (per gene) Pearson correlations,
    and only the ``log1p`` values the Spearman ranks need (float32 truth, exact for counts below
    about a million; float64 predictions) held whole, and the ranks: about 64 bytes per entry with
    ``overwrite_p`` (measured on 3,639 x 5,000), against 105 for the dense scores.

    Parameters
    ----------
    Y
        True counts, spots x genes (sparse).
    P
        Predictions, dense, same shape.
    block
        Entries per row block.
    overwrite_p
        Reuse ``P`` (float64) for its ``log1p`` values instead of a copy: ``P`` is destroyed.
    """
    Y = sp.csr_matrix(Y)
    n, m = Y.shape
    if P.shape != (n, m):
        msg = f"truth and prediction differ in shape: {(n, m)} vs {P.shape}."
        raise InputError(msg)
    if n * m == 0:
        return {"rmse": np.nan, "mae": np.nan, "pearson": np.nan, "spearman": np.nan, "gene_pearson": np.nan}
    ly_all = np.empty((n, m), dtype=np.float32)
    reuse = overwrite_p and isinstance(P, np.ndarray) and P.dtype == np.float64 and P.flags.c_contiguous
    lp_all = P if reuse else np.empty((n, m), dtype=np.float64)
    sq = ab = 0.0
    col = {k: np.zeros(m) for k in ("x", "y", "xx", "yy", "xy")}
    lo_x, hi_x = np.full(m, np.inf), np.full(m, -np.inf)
    lo_y, hi_y = np.full(m, np.inf), np.full(m, -np.inf)
    step = max(1, block // max(m, 1))
    for s in range(0, n, step):
        ly = np.log1p(Y[s : s + step].toarray().astype(np.float64))
        lp = np.log1p(np.clip(np.asarray(P[s : s + step], dtype=np.float64), 0.0, None))
        ly_all[s : s + step], lp_all[s : s + step] = ly, lp
        d = lp - ly
        sq += float(np.sum(d * d))
        ab += float(np.sum(np.abs(d)))
        for key, v in (("x", ly), ("y", lp), ("xx", ly * ly), ("yy", lp * lp), ("xy", ly * lp)):
            col[key] += v.sum(axis=0)
        lo_x, hi_x = np.minimum(lo_x, ly.min(axis=0)), np.maximum(hi_x, ly.max(axis=0))
        lo_y, hi_y = np.minimum(lo_y, lp.min(axis=0)), np.maximum(hi_y, lp.max(axis=0))
    N = float(n * m)

    def corr(sx, sy, sxx, syy, sxy, count):
        cov = sxy - sx * sy / count
        den = np.sqrt(np.maximum(sxx - sx * sx / count, 0.0) * np.maximum(syy - sy * sy / count, 0.0))
        return cov, den

    tot_x, tot_y, tot_xx, tot_yy, tot_xy = (col[k].sum() for k in ("x", "y", "xx", "yy", "xy"))
    cov, den = corr(tot_x, tot_y, tot_xx, tot_yy, tot_xy, N)
    pearson_all = float(cov / den) if den > 0 else float("nan")
    cov_g, den_g = corr(col["x"], col["y"], col["xx"], col["yy"], col["xy"], float(n))
    ok = (hi_x > lo_x) & (hi_y > lo_y) & (den_g > 0)
    genes = np.full(m, np.nan)
    genes[ok] = cov_g[ok] / den_g[ok]
    out = {
        "rmse": float(np.sqrt(sq / N)),
        "mae": ab / N,
        "pearson": pearson_all,
        "spearman": spearman(ly_all, lp_all),
        "gene_pearson": float(np.nanmedian(genes)) if ok.any() else float("nan"),
    }
    return out


def take_entries(P, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values of a dense or sparse matrix at ``(rows, cols)``, as float64."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float64)
    if sp.issparse(P):
        return np.asarray(sp.csr_matrix(P)[rows, cols], dtype=np.float64).ravel()
    return np.asarray(P[rows, cols], dtype=np.float64).ravel()


def take_rows(P, rows: np.ndarray) -> np.ndarray:
    """Dense float64 block of the given rows of a dense or sparse matrix."""
    if sp.issparse(P):
        return sp.csr_matrix(P)[rows].toarray().astype(np.float64)
    return np.asarray(P[rows], dtype=np.float64)


def _row_chunks(n_obs: int, n_vars: int) -> list[slice]:
    step = max(1, CHUNK_ENTRIES // max(n_vars, 1))
    return [slice(i, min(i + step, n_obs)) for i in range(0, n_obs, step)]


def poisson_nll(X_test: sp.csr_matrix, p, *, scale: float = 0.1 / 0.9, floor: float = 1e-6) -> float:
    """Mean Poisson negative log-likelihood of ``X_test`` under ``mu = max(p * scale, floor)`` (P2).

    ``mean(mu - X_test * log(mu))`` over **all** spots x genes entries (the constant
    ``log(X_test!)`` is left out). Walks over blocks of spots, so only one block of ``p`` is ever
    dense.

    Parameters
    ----------
    X_test
        Held-out counts, CSR.
    p
        Denoised rates on the count scale of the training matrix, dense or sparse, same shape.
    scale
        Factor from the training to the test depth (``0.1 / 0.9`` for a 90/10 split).
    floor
        Smallest rate.
    """
    X_test = sp.csr_matrix(X_test)
    if p.shape != X_test.shape:
        msg = f"prediction has shape {p.shape} but the data have shape {X_test.shape}."
        raise InputError(msg)
    n_obs, n_vars = X_test.shape
    total = 0.0
    for sl in _row_chunks(n_obs, n_vars):
        mu = np.maximum(take_rows(p, np.arange(sl.start, sl.stop)) * scale, floor)
        block = X_test[sl]
        row = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        total += float(mu.sum()) - float(np.dot(block.data.astype(np.float64), np.log(mu[row, block.indices])))
    return total / (n_obs * n_vars)


def libsize_mean_rates(X) -> np.ndarray:
    """Return the gene mean x library size model ``p_ig = lib_i * sum_i X_ig / sum_i lib_i`` (dense float32).

    The P2 control (and a usable imputer): every spot gets the pooled gene profile at its depth.
    """
    X = sp.csr_matrix(X)
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    gene = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
    total = lib.sum()
    if total == 0:
        return np.zeros(X.shape, dtype=np.float32)
    return np.outer(lib, gene / total).astype(np.float32)


def gene_pearson(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Per-gene (column) Pearson correlation of ``log1p(Y)`` and ``log1p(max(P, 0))``.

    Genes constant in either matrix get ``nan``.
    """
    ly = np.log1p(np.asarray(Y, dtype=np.float64))
    lp = np.log1p(np.clip(np.asarray(P, dtype=np.float64), 0.0, None))
    # constant columns are found before centring: a centred constant keeps rounding noise (~1e-17),
    # whose "correlation" would be noise rather than nan
    varies = (np.ptp(ly, axis=0) > 0) & (np.ptp(lp, axis=0) > 0)
    ly = ly - ly.mean(axis=0)
    lp = lp - lp.mean(axis=0)
    den = np.sqrt((ly * ly).sum(axis=0) * (lp * lp).sum(axis=0))
    num = (ly * lp).sum(axis=0)
    out = np.full(num.shape, np.nan)
    ok = varies & (den > 0)
    out[ok] = num[ok] / den[ok]
    return out


def domain_embedding(X, *, n_comps: int = 30, target_sum: float = 1e4, seed: int = 0) -> np.ndarray:
    """PCA embedding used by P4: normalise each spot to ``target_sum``, ``log1p``, PCA (dense).

    PCA is :class:`sklearn.decomposition.PCA` with ``svd_solver="randomized"`` and
    ``random_state=seed`` on the dense normalised matrix; ``n_comps`` is capped at
    ``min(n_spots, n_genes) - 1``. Spots with no counts stay at zero. The randomized solver is the one
    scikit-learn's default picks for the shared datasets, and reproduces the reference ARIs of the
    project's peer table; an exact PCA moves the ARI of the small sections by up to 0.08
    (docs/benchmarks.md).
    """
    from sklearn.decomposition import PCA

    A = X.toarray() if sp.issparse(X) else np.array(X, dtype=np.float64)
    A = np.clip(A.astype(np.float64, copy=False), 0.0, None)
    lib = A.sum(axis=1, keepdims=True)
    A = np.divide(A * target_sum, lib, out=np.zeros_like(A), where=lib > 0)
    np.log1p(A, out=A)
    k = max(1, min(n_comps, min(A.shape) - 1))
    return PCA(n_components=k, svd_solver="randomized", random_state=seed).fit_transform(A)


@overload
def domain_ari(X, labels, *, n_comps: int = ..., seed: int = ..., return_clusters: Literal[False] = ...) -> float: ...
@overload
def domain_ari(
    X, labels, *, n_comps: int = ..., seed: int = ..., return_clusters: Literal[True]
) -> tuple[float, np.ndarray]: ...
@overload
def domain_ari(
    X, labels, *, n_comps: int = ..., seed: int = ..., return_clusters: bool = ...
) -> float | tuple[float, np.ndarray]: ...
def domain_ari(
    X,
    labels,
    *,
    n_comps: int = 30,
    seed: int = 0,
    return_clusters: bool = False,
) -> float | tuple[float, np.ndarray]:
    """Score KMeans domains by their Adjusted Rand Index against expert labels (protocol P4).

    Normalise each spot to 10,000 total, ``log1p``, PCA to ``n_comps`` (see :func:`domain_embedding`),
    ``KMeans(n_clusters=k, n_init=10, random_state=seed)`` with ``k`` the number of label categories,
    ARI on the labelled spots (missing labels are ignored, but those spots are clustered).

    Parameters
    ----------
    X
        Counts (raw or imputed), spots x genes.
    labels
        One label per spot; ``NaN``/``None`` for unlabelled spots.
    n_comps
        Number of principal components.
    seed
        ``random_state`` of PCA and KMeans.
    return_clusters
        Also return the cluster of every spot.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import adjusted_rand_score

    lab = pd.Series(np.asarray(labels, dtype=object))
    known = lab.notna().to_numpy()
    k = int(lab[known].nunique())
    if k < 2:
        msg = "P4 needs at least two label categories in obs['label']."
        raise InputError(msg)
    emb = domain_embedding(X, n_comps=n_comps, seed=seed)
    with warnings.catch_warnings():
        # an imputer that makes all spots alike leaves fewer distinct points than clusters: a result, not an error
        warnings.simplefilter("ignore", ConvergenceWarning)
        clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(emb)
    ari = float(adjusted_rand_score(lab[known].astype(str).to_numpy(), clusters[known]))
    return (ari, clusters) if return_clusters else ari


Direction = Literal["lower", "higher", None]


def direction(metric: str) -> Direction:
    """``"lower"``/``"higher"`` when a lower/higher value of ``metric`` is better, else ``None``."""
    if metric in LOWER_IS_BETTER:
        return "lower"
    if metric in HIGHER_IS_BETTER:
        return "higher"
    return None
