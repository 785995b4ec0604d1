"""The estimator contract every imputation method follows.

Methods are scikit-learn style estimators: ``__init__`` only stores its arguments, ``fit`` learns
from a spots x genes count matrix and returns ``self``, learned state ends in ``_``, and
``transform`` returns imputed values on the input's count scale (expected counts per spot).

``mask`` marks entries the method must not see (the benchmark's held-out entries). They are treated
as unobserved zeros everywhere: in training, in validation and at prediction time. The base class
applies the mask once, in :meth:`BaseImputer.fit`, so subclasses only ever see the masked matrix.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .._errors import InputError
from .._validation import as_csr, check_coords, check_counts, check_seed

__all__ = ["BaseImputer", "apply_mask", "gene_indices"]


def apply_mask(X: sp.csr_matrix, mask) -> sp.csr_matrix:
    """Return ``X`` with the entries marked in ``mask`` set to zero (and eliminated).

    ``X`` itself is never modified: the result is a new matrix, or ``X`` itself when ``mask`` is
    ``None`` or marks no stored non-zero of ``X``.

    Parameters
    ----------
    X
        Canonical CSR counts.
    mask
        ``None``, or a dense array or sparse matrix of the same shape holding booleans or 0/1
        values (``True``/1 = masked; for a sparse matrix, its stored non-zero entries). Other
        values (NaN, 0.3, strings) are refused.
    """
    M = as_mask(mask, X.shape)
    if M is None:
        return X
    hit = X.multiply(M)  # the counts at masked positions
    if hit.nnz == 0:
        return X
    out = (X - hit).tocsr()
    out.eliminate_zeros()
    out.sort_indices()
    return out.astype(np.float32)


def as_mask(mask, shape: tuple[int, int]) -> sp.csr_matrix | None:
    """Validate ``mask`` (see :func:`apply_mask`) and return it as a boolean CSR matrix (``None`` stays ``None``).

    A canonical boolean CSR matrix (sorted, no repeated position) of the right shape is returned as it
    is (no copy).
    """
    if mask is None:
        return None
    if not sp.issparse(mask):
        mask = np.asarray(mask)
    values = mask.data if sp.issparse(mask) else mask
    if values.dtype != bool and (values.dtype.kind not in "iuf" or not np.all(np.isin(values, (0, 1)))):
        msg = (
            f"mask must hold booleans (True = hidden entry) or 0/1 values, got dtype {values.dtype} "
            f"with other values; build it with e.g. mask = held_out_positions.astype(bool)."
        )
        raise InputError(msg)
    if mask.shape != shape:
        msg = f"mask has shape {mask.shape} but the data have shape {shape}."
        raise InputError(msg)
    if sp.issparse(mask):
        if mask.format == "csr" and mask.dtype == bool and mask.has_canonical_format:
            return mask
        # a repeated position would be counted twice by X.multiply(mask) (and give -x below)
        return as_csr(mask, dtype=np.float32).astype(bool)
    return sp.csr_matrix(mask.astype(bool))


def _fingerprint(X: sp.csr_matrix) -> tuple[int, float, int]:
    """Cheap summary of a CSR matrix's stored values and positions (changes when they are edited in place)."""
    return X.nnz, float(X.data.sum(dtype=np.float64)), int(X.indices.sum(dtype=np.int64))


class BaseImputer(BaseEstimator):
    """Base class of spotfill's imputation estimators.

    A scikit-learn estimator (``clone``, pipelines, ``check_is_fitted`` and ``NotFittedError``
    work), with spotfill's own parameter checks: an unknown parameter is an :class:`InputError`.

    Subclasses implement :meth:`_fit` (learn from the masked counts) and :meth:`_predict` (return
    the imputed matrix on the count scale). Class attributes describe the method for the registry
    and the AnnData front end.
    """

    #: Whether observed (non-zero, unmasked) entries are returned unchanged.
    keeps_observed: ClassVar[bool] = False
    #: Whether the method uses a spatial neighbour graph (passed as ``graph=``).
    uses_graph: ClassVar[bool] = False
    #: Whether the method uses spot coordinates (passed as ``coords=``).
    uses_coords: ClassVar[bool] = False
    #: Whether the fitted method has a latent representation (:meth:`_latent`) that
    #: :func:`spotfill.impute` stores in ``obsm`` / ``varm``.
    has_latent: ClassVar[bool] = False

    # --- scikit-learn style parameter handling -------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:  # noqa: ARG002 - sklearn signature
        """Return the constructor parameters of this estimator."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BaseImputer:
        """Set constructor parameters; unknown names raise a clear error."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                msg = f"{type(self).__name__} has no parameter {key!r}; valid parameters: {sorted(valid)}."
                raise InputError(msg)
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # --- public API ----------------------------------------------------------------------------
    def fit(self, X, y=None, *, graph: sp.spmatrix | None = None, coords=None, mask=None) -> BaseImputer:  # noqa: ARG002
        """Learn from counts ``X`` (spots x genes), never looking at entries marked in ``mask``.

        Parameters
        ----------
        X
            Raw counts, dense or sparse, spots x genes. Canonical float32 CSR input (sorted indices,
            no stored zeros) is not copied: the estimator keeps a read-only view of it, so change it
            in place only after the last ``transform()`` (which raises if it was changed).
        y
            Ignored; accepted so that the estimators work in scikit-learn pipelines.
        graph
            Spatial neighbour graph (spots x spots, sparse), e.g.
            ``adata.obsp['spatial_connectivities']``. Required by graph-based methods.
        coords
            Spot coordinates ``(n_spots, 2)``. Required by coordinate-based methods.
        mask
            Entries the method may not use (booleans or 0/1, same shape as ``X``).

        Returns
        -------
        The fitted estimator.
        """
        check_seed(self.get_params().get("seed", 0))
        self._check_flags()
        Xc = check_counts(X, require_integer=False)
        mask = as_mask(mask, Xc.shape)
        Xc = apply_mask(Xc, mask)
        n_obs = Xc.shape[0]
        if graph is not None:
            if not sp.issparse(graph):
                try:
                    graph = np.asarray(graph, dtype=np.float64)
                except (TypeError, ValueError):
                    msg = f"graph must be a spots x spots matrix of edge weights, got {type(graph).__name__}."
                    raise InputError(msg) from None
            if graph.shape != (n_obs, n_obs):
                msg = f"graph has shape {graph.shape}, expected ({n_obs}, {n_obs}) to match the spots."
                raise InputError(msg)
            graph = sp.csr_matrix(graph, dtype=np.float64)
            if graph.nnz and not (np.all(np.isfinite(graph.data)) and graph.data.min() >= 0):
                msg = (
                    "graph has NaN, infinite or negative edge weights: pass a neighbour graph with finite "
                    "non-negative weights (e.g. obsp['spatial_connectivities'] from spotfill.spatial_neighbors)."
                )
                raise InputError(msg)
        elif self.uses_graph and coords is None:
            msg = (
                f"{type(self).__name__} needs a spatial neighbour graph: pass graph= (for AnnData, run "
                "spotfill.spatial_neighbors(adata) first) or coords=."
            )
            raise InputError(msg)
        if coords is not None:
            coords = check_coords(coords, n_obs)
        elif self.uses_coords:
            msg = f"{type(self).__name__} needs spot coordinates: pass coords= (adata.obsm['spatial'])."
            raise InputError(msg)
        if self.uses_graph and graph is None:
            from ..graph import knn_graph

            graph = knn_graph(coords, n_neighs=6)
        # a refit replaces all fitted state (e.g. var_names_ of a loaded model), as in scikit-learn
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, name)
        self.n_obs_, self.n_vars_ = Xc.shape
        self.n_features_in_ = self.n_vars_
        self.mask_ = mask
        self._fit(Xc, graph=graph, coords=coords)
        self._X_fit = Xc
        # canonical float32 CSR input is kept as a read-only view of the caller's matrix, not a copy:
        # remember a fingerprint so that transform() notices if the caller changed it in place
        self._X_fingerprint = None if Xc.data.flags.writeable else _fingerprint(Xc)
        return self

    def transform(self, X=None, *, genes=None) -> np.ndarray | sp.csr_matrix:
        """Return imputed values (count scale) for the fitted spots.

        Parameters
        ----------
        X
            The counts the model was fitted on (or ``None`` to reuse them). The fitted mask is
            applied again, so masked entries stay unseen at prediction time.
        genes
            Integer indices of the genes to return (default: all). Methods with a per-gene
            prediction (the default ``spotfill`` model) then never form the full spots x genes
            array; the others compute it and return the selected columns.
        """
        self._check_fitted()
        if X is None:
            Xc = self._X_fit
            if getattr(self, "_X_fingerprint", None) is not None and _fingerprint(Xc) != self._X_fingerprint:
                msg = (
                    "the counts this model was fitted on were changed in place after fit (e.g. by "
                    "sc.pp.normalize_total or log1p on the same matrix): the model shares them rather than "
                    "copying them. Fit again, or pass the original counts: transform(X)."
                )
                raise InputError(msg)
        else:
            Xc = check_counts(X, require_integer=False)
            if Xc.shape != (self.n_obs_, self.n_vars_):
                msg = (
                    f"transform got shape {Xc.shape} but the model was fitted on {(self.n_obs_, self.n_vars_)}: "
                    "spotfill methods are transductive, pass the fitted data."
                )
                raise InputError(msg)
            Xc = apply_mask(Xc, self.mask_)
        if genes is None:
            return self._predict(Xc)
        return self._predict_genes(Xc, gene_indices(genes, self.n_vars_))

    def fit_transform(self, X, y=None, *, graph: sp.spmatrix | None = None, coords=None, mask=None):  # noqa: ARG002
        """Fit, then return the imputed matrix (see :meth:`fit` and :meth:`transform`; ``y`` is ignored)."""
        return self.fit(X, graph=graph, coords=coords, mask=mask).transform()

    # --- for subclasses ------------------------------------------------------------------------
    def _fit(self, X: sp.csr_matrix, *, graph: sp.csr_matrix | None, coords: np.ndarray | None) -> None:
        raise NotImplementedError

    def _predict(self, X: sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
        raise NotImplementedError

    def _predict_genes(self, X: sp.csr_matrix, genes: np.ndarray) -> np.ndarray | sp.csr_matrix:
        """Predictions for the columns ``genes``; override when they can be computed without the rest."""
        Y = self._predict(X)
        return cast(sp.csr_matrix, Y)[:, genes].tocsr() if sp.issparse(Y) else np.asarray(Y)[:, genes]

    def _check_graph_params(self, params: Mapping[str, Any]) -> None:
        """Refuse a stored graph this method would misread (``params``: its ``uns[...]['params']``).

        :func:`spotfill.impute` calls this with the parameters :func:`spotfill.spatial_neighbors`
        recorded for the graph it passes to :meth:`fit`; a plain matrix carries none. No check by
        default.
        """

    def _latent(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the fitted spot and gene representations (``(n_spots, k)``, ``(n_genes, k)``), if any.

        Methods with ``has_latent = True`` return them; :func:`spotfill.impute` stores them in
        ``obsm`` and ``varm``.
        """
        return None

    def _selected_params(self) -> dict[str, Any]:
        """Values the fit chose for parameters given as ``"auto"`` (recorded by :func:`spotfill.impute`)."""
        return {}

    def _check_values(self) -> None:
        """Check the parameters' values without data (before a long benchmark); more checks run in ``fit``."""
        self._check_flags()

    def _check_flags(self) -> None:
        """Refuse a non-boolean value for a parameter whose default is a boolean (``"false"`` reads as true)."""
        defaults = inspect.signature(type(self).__init__).parameters
        for name, value in self.get_params(deep=False).items():
            default = defaults[name].default if name in defaults else None
            if isinstance(default, bool) and not isinstance(value, bool | np.bool_):
                msg = f"{type(self).__name__}: {name} must be True or False, got {value!r}."
                raise InputError(msg)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_obs_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            msg = f"this {type(self).__name__} is not fitted yet: call fit(X) first."
            raise NotFittedError(msg)


def gene_indices(genes, n_vars: int) -> np.ndarray:
    """``genes`` as a 1-d ``int64`` array of column indices in ``[0, n_vars)``, or a clear :class:`InputError`.

    Empty selections are allowed; names, floats, booleans and out-of-range indices are not.
    """
    idx = np.asarray(genes)
    if idx.ndim != 1:
        msg = f"genes must be a 1-d list of gene indices, got an array of shape {idx.shape}."
        raise InputError(msg)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.dtype.kind not in "iu":
        msg = (
            f"genes must be integer gene indices in [0, {n_vars}), got {idx.dtype} values such as {idx[0]!r}; "
            "pass gene names to spotfill.impute(adata, genes=[...]) instead."
        )
        raise InputError(msg)
    if idx.min() < 0 or idx.max() >= n_vars:
        msg = f"genes must be gene indices in [0, {n_vars}), got values from {idx.min()} to {idx.max()}."
        raise InputError(msg)
    return idx.astype(np.int64)
