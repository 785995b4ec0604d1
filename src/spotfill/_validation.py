"""Input checks shared by every entry point.

The checks run once, at the public boundary, and raise :class:`~spotfill._errors.InputError`
with a message that names the problem and the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import scipy.sparse as sp

from ._errors import InputError

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "as_csr",
    "check_counts",
    "check_coords",
    "check_seed",
    "check_unique_names",
    "get_counts",
    "get_coords",
    "get_matrix",
    "non_integer",
]


def as_csr(X, *, dtype=np.float32) -> sp.csr_matrix:
    """Return ``X`` as a canonical CSR matrix (sorted indices, no explicit zeros, no duplicates).

    A dense array is converted. A sparse matrix that is already canonical CSR of ``dtype`` is not
    copied (a Visium HD count matrix takes about 2 GB): the result shares its arrays through read-only
    views, so no later step can write into the caller's matrix. Anything else is copied.
    """
    if sp.issparse(X) and X.format == "csr" and X.dtype == dtype and _is_canonical(X):
        M = sp.csr_matrix((_read_only(X.data), _read_only(X.indices), _read_only(X.indptr)), shape=X.shape)
        M.has_canonical_format = True
        return M
    if sp.issparse(X):
        M = sp.csr_matrix(X, dtype=dtype, copy=False)
        # a dtype change copies only the data: indices/indptr may still be X's, and the in-place
        # canonicalisation below would then corrupt the caller's matrix; copy just the shared arrays
        names = ("data", "indices", "indptr")
        shared = {a for a in names if hasattr(X, a) and np.shares_memory(getattr(M, a), getattr(X, a))}
        if M is X:
            M = M.copy()
        elif shared:
            parts = tuple(getattr(M, a).copy() if a in shared else getattr(M, a) for a in names)
            M = sp.csr_matrix(parts, shape=M.shape)
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            msg = f"expected a 2-D spots x genes matrix, got an array of shape {arr.shape}."
            raise InputError(msg)
        M = sp.csr_matrix(arr.astype(dtype, copy=False))
    M.sum_duplicates()
    M.eliminate_zeros()
    M.sort_indices()
    return M


def _is_canonical(X) -> bool:
    """Sorted indices, no duplicates and no stored zeros (checked without copying ``X``)."""
    return bool(len(X.data) == X.indptr[-1] and X.has_canonical_format and np.count_nonzero(X.data) == len(X.data))


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False  # the view only: the caller's array stays writeable
    return view


def check_counts(X, *, require_integer: bool = True, name: str = "X") -> sp.csr_matrix:
    """Validate a count matrix and return it as canonical float32 CSR.

    Parameters
    ----------
    X
        Spots x genes matrix, dense or sparse.
    require_integer
        Raise when values are not whole numbers (counts are required).
    name
        How to call the matrix in error messages (for example ``"layers['counts']"``).

    Raises
    ------
    InputError
        Empty matrix, NaN or infinite values, negative values, or non-integer values when
        ``require_integer``.
    """
    if X is None:
        msg = f"{name} is missing: store raw counts in adata.X or name a layer with layer=."
        raise InputError(msg)
    if not sp.issparse(X) and not hasattr(X, "shape"):  # nested lists
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            msg = (
                f"{name} must be a numeric spots x genes matrix (numpy array, scipy sparse matrix or nested "
                f"lists of numbers), got {type(X).__name__}."
            )
            raise InputError(msg) from None
    shape = X.shape
    if len(shape) != 2:
        msg = f"{name} must be a 2-D spots x genes matrix, got shape {tuple(shape)}."
        raise InputError(msg)
    if shape[0] == 0 or shape[1] == 0:
        msg = f"{name} is empty (shape {tuple(shape)}): load a matrix with at least one spot and one gene."
        raise InputError(msg)
    M = as_csr(X, dtype=np.float32)
    data = M.data
    if not np.all(np.isfinite(data)):
        n_bad = int(np.sum(~np.isfinite(data)))
        msg = f"{name} contains {n_bad} NaN or infinite values: replace them (e.g. with 0) before imputing."
        raise InputError(msg)
    if data.size and data.min() < 0:
        msg = (
            f"{name} contains negative values (min {data.min():g}): spotfill needs raw counts, "
            "not centred, scaled or log-ratio data. Pass the raw counts (layer=, --layer)."
        )
        raise InputError(msg)
    if require_integer and non_integer(data)[0]:
        msg = (
            f"{name} contains non-integer values: spotfill needs raw counts, not normalised or "
            "log-transformed data. Pass the raw counts (layer=, --layer), or round them if they are "
            "expected counts from another tool."
        )
        raise InputError(msg)
    return M


_BLOCK = 1 << 20  # entries per block of the whole-matrix checks: a few MB of temporaries


def non_integer(values: np.ndarray) -> tuple[int, float]:
    """Return how many entries of ``values`` are not whole numbers, and the first of them (``nan`` if none).

    Checked block by block: the temporaries stay a few MB whatever the size of ``values`` (a
    Visium HD matrix has 240 M stored values).
    """
    values = np.asarray(values).ravel()
    if values.dtype.kind in "biu":
        return 0, float("nan")
    count, first = 0, float("nan")
    for start in range(0, values.size, _BLOCK):
        block = values[start : start + _BLOCK]
        bad = block != np.round(block)
        n_bad = int(np.count_nonzero(bad))
        if n_bad and not count:
            first = float(block[bad][0])
        count += n_bad
    return count, first


def warn_non_integer(values: np.ndarray, where: str) -> None:
    """Warn (:class:`~spotfill.SpotfillWarning`) when ``values``, the counts of ``where``, are not all whole numbers."""
    count, first = non_integer(values)
    if count:
        from ._logging import warn

        warn(
            f"{where} holds {count} non-integer values (e.g. {first:.4g}): spotfill's methods model raw "
            "counts, and results are on the scale of their input; if these are normalised or log values, pass "
            "the raw counts (layer=, --layer)",
            stacklevel=4,
        )


def get_matrix(adata: AnnData, layer: str | None = None) -> tuple[Any, str]:
    """Return ``(adata.X or adata.layers[layer], its name for messages)``, refusing an unknown layer."""
    if layer is None:
        return adata.X, "adata.X"
    if layer not in adata.layers:
        msg = (
            f"layer {layer!r} (--layer) not found; available layers: {sorted(adata.layers) or 'none'}. "
            "Use layer=None (no --layer) for adata.X."
        )
        raise InputError(msg)
    return adata.layers[layer], f"adata.layers[{layer!r}]"


def get_counts(adata: AnnData, layer: str | None = None, *, require_integer: bool = True) -> sp.csr_matrix:
    """Fetch and validate the count matrix of ``adata`` (``X`` or ``layers[layer]``)."""
    if adata.isbacked and layer is None:
        msg = "adata is in backed mode (X stays on disk): load it into memory first with adata = adata.to_memory()."
        raise InputError(msg)
    X, name = get_matrix(adata, layer)
    check_unique_names(adata)
    return check_counts(X, require_integer=require_integer, name=name)


MAX_SEED = 2**32 - 1  # the largest seed scikit-learn's random_state takes (numpy and torch take more)


def is_int(x: object) -> TypeGuard[int | np.integer]:
    """Whether ``x`` is an integer (Python or numpy; ``bool`` is not)."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def is_number(x: object) -> TypeGuard[int | float | np.integer | np.floating]:
    """Whether ``x`` is a finite real number (Python or numpy; ``bool`` is not)."""
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool) and bool(np.isfinite(x))


def is_seed(x: object) -> bool | np.bool_:
    """Whether ``x`` is an integer in ``[0, 2**32 - 1]`` (bools are not), a seed every library accepts."""
    # np.bool_ when x is a numpy integer (its comparisons give numpy bools)
    return is_int(x) and 0 <= x <= MAX_SEED


def check_seed(seed: object) -> None:
    """Raise unless ``seed`` is a valid seed (:func:`is_seed`)."""
    if not is_seed(seed):
        msg = f"seed must be an integer >= 0 and < 2**32 (scikit-learn's limit), got {seed!r}."
        raise InputError(msg)


def check_unique_names(adata: AnnData) -> None:
    """Raise when spot or gene names repeat."""
    for axis, names, fix in (
        ("spot", adata.obs_names, "adata.obs_names_make_unique()"),
        ("gene", adata.var_names, "adata.var_names_make_unique()"),
    ):
        if not names.is_unique:
            dup = names[names.duplicated()].unique()[:3].tolist()
            msg = f"duplicate {axis} names (e.g. {dup}): make them unique first, e.g. with {fix}."
            raise InputError(msg)


def check_coords(coords, n_obs: int | None = None, *, name: str = "coordinates") -> np.ndarray:
    """Validate an ``(n_spots, 2 or 3)`` coordinate array and return it as float64."""
    arr = np.asarray(coords, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        msg = f"{name} must have shape (n_spots, 2) or (n_spots, 3), got {arr.shape}."
        raise InputError(msg)
    if n_obs is not None and arr.shape[0] != n_obs:
        msg = f"{name} has {arr.shape[0]} rows but the data have {n_obs} spots."
        raise InputError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"{name} contain NaN or infinite values: drop those spots or fix their positions."
        raise InputError(msg)
    return arr


def get_coords(adata: AnnData, spatial_key: str = "spatial") -> np.ndarray:
    """Return ``adata.obsm[spatial_key]`` validated, or raise a helpful error when absent."""
    if spatial_key not in adata.obsm:
        msg = (
            f"no spot coordinates: adata.obsm[{spatial_key!r}] is missing. Store an (n_spots, 2) array of "
            "x/y positions there (readers for Space Ranger and ST folders do it for you)."
        )
        raise InputError(msg)
    return check_coords(adata.obsm[spatial_key], adata.n_obs, name=f"adata.obsm[{spatial_key!r}]")
