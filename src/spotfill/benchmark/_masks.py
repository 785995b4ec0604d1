"""The held-out sets of the protocols: P1 masked non-zeros, P2 binomial split, P3 spot folds.

Every split is a pure function of the data and the seed (``np.random.default_rng(seed)``), so two
runs, two methods or two machines score on exactly the same entries. See ``BENCHMARK.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._errors import InputError
from .._validation import check_counts

__all__ = ["P1Mask", "assert_hidden", "p1_mask", "p2_split", "p3_folds", "sample_zero_entries", "zero_rows"]

#: Number of zero entries of the original data drawn for P1's over-imputation check.
N_ZERO_CHECK = 20_000


@dataclass(frozen=True)
class P1Mask:
    """The P1 split of one dataset and seed.

    Attributes
    ----------
    X_masked
        Canonical CSR counts with the held entries removed: what the method sees.
    rows, cols, values
        Positions and true counts of the held entries, in the order of ``held``.
    held
        Indices of the held entries among the stored values of the canonical CSR (CSR order).
    zero_rows, zero_cols
        Positions of the entries drawn for the over-imputation check (zero in the original data).
    """

    X_masked: sp.csr_matrix
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    held: np.ndarray
    zero_rows: np.ndarray
    zero_cols: np.ndarray


def _check_frac(frac: float) -> float:
    if not 0.0 < float(frac) < 1.0:
        msg = f"frac must be in (0, 1), got {frac!r}."
        raise InputError(msg)
    return float(frac)


def p1_mask(X, *, frac: float = 0.1, seed: int = 0, n_zero_check: int = N_ZERO_CHECK) -> P1Mask:
    """Hold out a random fraction of the non-zero entries (protocol P1).

    1. ``X`` is made canonical CSR (sorted indices, duplicates summed, explicit zeros removed); its
       ``nnz`` stored values, in CSR order, are the candidates.
    2. ``rng = np.random.default_rng(seed)``;
       ``held = rng.choice(nnz, size=round(frac * nnz), replace=False)`` (Python's ``round``).
    3. The method sees ``X`` with the held entries removed.
    4. With the same ``rng``, after step 2, ``n_zero_check`` entries that are zero in ``X`` are drawn
       by :func:`sample_zero_entries`.

    Parameters
    ----------
    X
        Raw counts, spots x genes, dense or sparse.
    frac
        Fraction of the non-zero entries to hold out.
    seed
        Seed of the split.
    n_zero_check
        Number of zero entries drawn for the over-imputation check.

    Returns
    -------
    The split (see :class:`P1Mask`).

    Raises
    ------
    InputError
        When ``round(frac * nnz)`` is 0 (nothing would be held out).
    """
    frac = _check_frac(frac)
    Xc = check_counts(X, require_integer=False)
    nnz = Xc.nnz
    n_held = round(frac * nnz)
    if n_held == 0:
        msg = (
            f"P1 with frac={frac:g} holds out 0 of the {nnz} non-zero entries, so there is nothing to score; "
            f"raise frac (--frac) above {0.5 / nnz:.3g}."
        )
        raise InputError(msg)
    rng = np.random.default_rng(seed)
    held = rng.choice(nnz, size=n_held, replace=False)
    row_of = np.repeat(np.arange(Xc.shape[0], dtype=np.int64), np.diff(Xc.indptr))
    rows = row_of[held]
    cols = Xc.indices[held].astype(np.int64)
    values = Xc.data[held].astype(np.float64)
    keep = np.ones(nnz, dtype=bool)
    keep[held] = False
    X_masked = sp.csr_matrix((Xc.data[keep], (row_of[keep], Xc.indices[keep])), shape=Xc.shape, dtype=np.float32)
    X_masked.sort_indices()
    zero_rows, zero_cols = sample_zero_entries(Xc, n_zero_check, rng)
    return P1Mask(X_masked, rows, cols, values, held, zero_rows, zero_cols)


def sample_zero_entries(X: sp.csr_matrix, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` distinct entries uniformly among the zero entries of ``X``, without densifying it.

    The definition (deterministic given ``rng``'s state): entries are numbered row-major,
    ``flat = row * n_genes + col``. In rounds, ``m = max(2 * still_needed, 1024)`` flat indices are
    drawn with ``rng.integers(0, n_spots * n_genes, size=m)``; draws that land on a stored non-zero
    of ``X`` or repeat an earlier draw (of this or a previous round) are rejected, the others are
    kept in draw order, until ``n`` are kept (the last round is cut at ``n``). When ``X`` has at most
    ``n`` zero entries, all of them are returned in row-major order and ``rng`` is not used.

    Parameters
    ----------
    X
        Canonical CSR matrix (sorted indices, no explicit zeros).
    n
        Number of zero entries wanted.
    rng
        The generator to draw from (advanced in place).

    Returns
    -------
    ``(rows, cols)`` of the drawn entries, int64.
    """
    n_obs, n_vars = X.shape
    total = n_obs * n_vars
    row_of = np.repeat(np.arange(n_obs, dtype=np.int64), np.diff(X.indptr))
    nz_keys = row_of * n_vars + X.indices.astype(np.int64)  # ascending: canonical CSR is row-major sorted
    n_zero = total - nz_keys.size
    if n <= 0 or n_zero == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if n_zero <= n:
        flat = np.setdiff1d(np.arange(total, dtype=np.int64), nz_keys, assume_unique=True)
    else:
        kept: list[np.ndarray] = []
        n_kept = 0
        seen = np.zeros(0, dtype=np.int64)
        while n_kept < n:
            draw = rng.integers(0, total, size=max(2 * (n - n_kept), 1024), dtype=np.int64)
            pos = np.searchsorted(nz_keys, draw)
            is_nz = (pos < nz_keys.size) & (nz_keys[np.minimum(pos, nz_keys.size - 1)] == draw)
            draw = draw[~is_nz]
            # first occurrence within the round, then not seen in earlier rounds; keep draw order
            _, first = np.unique(draw, return_index=True)
            draw = draw[np.sort(first)]
            draw = draw[~np.isin(draw, seen)]
            draw = draw[: n - n_kept]
            kept.append(draw)
            seen = np.concatenate([seen, draw])
            n_kept += draw.size
        flat = np.concatenate(kept)
    return flat // n_vars, flat % n_vars


def p2_split(X, *, seed: int = 0, p_train: float = 0.9) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split the molecules of ``X`` into a training and a test matrix (protocol P2).

    ``rng = np.random.default_rng(seed)``; ``X_train = rng.binomial(X, p_train)`` drawn on the stored
    non-zeros of the canonical CSR in CSR order (zeros stay zeros: the same law as drawing on every
    entry); ``X_test = X - X_train``.

    Parameters
    ----------
    X
        Raw integer counts, spots x genes.
    seed
        Seed of the split.
    p_train
        Probability that a molecule goes to the training matrix.

    Returns
    -------
    ``(X_train, X_test)``, canonical float32 CSR, summing to ``X``.
    """
    Xc = check_counts(X, require_integer=True)
    rng = np.random.default_rng(seed)
    train = rng.binomial(Xc.data.astype(np.int64), p_train).astype(np.float32)
    X_train = sp.csr_matrix((train, Xc.indices.copy(), Xc.indptr.copy()), shape=Xc.shape)
    X_test = sp.csr_matrix((Xc.data - train, Xc.indices.copy(), Xc.indptr.copy()), shape=Xc.shape)
    X_train.eliminate_zeros()
    X_test.eliminate_zeros()
    return X_train, X_test


def p3_folds(n_spots: int, *, seed: int = 0, n_folds: int = 5) -> list[np.ndarray]:
    """Split the spots into ``n_folds`` folds (protocol P3).

    ``np.array_split(np.random.default_rng(seed).permutation(n_spots), n_folds)``; each fold is
    returned sorted.
    """
    if n_spots < n_folds:
        msg = f"P3 needs at least {n_folds} spots for {n_folds} folds, got {n_spots}."
        raise InputError(msg)
    perm = np.random.default_rng(seed).permutation(n_spots)
    return [np.sort(f) for f in np.array_split(perm, n_folds)]


def zero_rows(X: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """Return a copy of canonical CSR ``X`` whose ``rows`` hold no entries (P3: held-out spots)."""
    keep = np.ones(X.shape[0], dtype=np.float32)
    keep[rows] = 0.0
    out = sp.csr_matrix(sp.diags(keep) @ X, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def assert_hidden(X_seen: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> None:
    """Raise ``RuntimeError`` unless ``X_seen`` is zero at every held-out position ``(rows, cols)``.

    The harness calls this on every matrix it hands to a method: a held-out value reaching a method
    is a bug of the harness, never of the method.
    """
    if rows.size == 0:
        return
    seen = np.asarray(X_seen[rows, cols]).ravel()
    if np.any(seen != 0):
        msg = f"benchmark harness bug: {int(np.sum(seen != 0))} held-out entries are visible to the method."
        raise RuntimeError(msg)
