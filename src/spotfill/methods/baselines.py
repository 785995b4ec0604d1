"""Baseline imputers: per-gene statistics and neighbour smoothers.

These are the reference points every other method is measured against. All are closed-form,
deterministic (``knn``'s PCA takes a seed) and vectorised over spots (the per-gene fills loop over
genes once, which keeps their memory at 8 bytes per stored value).

Per-gene fills (``mean``, ``median``, ``mode``)
    Every zero of a gene is replaced by a statistic of that gene's observed non-zero values;
    observed values are returned unchanged. Output: dense ``float32`` (``4 * n_spots * n_genes``
    bytes, e.g. 72.8 MB for 3,639 x 5,000 and 43 GB for 600k x 18k).
Neighbour smoothers (``knn``, ``spatial_knn``, ``interpolate``)
    Each spot becomes a weighted mean of the raw counts of its neighbours: in expression space
    (``knn``) or in space (``spatial_knn``, ``interpolate``). The weights form one sparse
    row-normalised spots x spots matrix ``W``, built once, and the result is the sparse product
    ``W @ X`` for all genes at once. Output: CSR ``float32`` (an entry is zero only where no
    neighbour expresses the gene).

Masked entries (``mask=`` in :meth:`~spotfill.methods.BaseImputer.fit`) are never read: the per-gene
statistics leave them out, and the smoothers see them as zeros (in ``knn``'s profiles and in every
neighbour average), exactly like entries that were never measured.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from .._errors import InputError
from .._logging import warn
from .._normalise import spot_scale
from .._validation import is_int, is_number
from ..graph import row_normalize
from ._base import BaseImputer
from ._registry import register

__all__ = [
    "ExpressionKNN",
    "GeneMean",
    "GeneMedian",
    "GeneMode",
    "SpatialInterpolation",
    "SpatialKNN",
]

logger = logging.getLogger(__name__)


class _ParamFlag:
    """A capability flag that follows a constructor parameter on instances.

    On the class it reads as ``default`` (what :func:`~spotfill.list_methods` shows); on an
    instance it reads the parameter ``param``, so ``impute`` and :meth:`BaseImputer.fit` see the
    behaviour the user asked for.
    """

    def __init__(self, param: str, default: bool) -> None:
        self.param = param
        self.default = default

    def __get__(self, obj: Any, objtype: type | None = None) -> bool:
        if obj is None:
            return self.default
        return bool(getattr(obj, self.param))


# ------------------------------------------------------------------------------------------------
# small array helpers
# ------------------------------------------------------------------------------------------------
def _gene_columns(X: sp.csr_matrix, *, sort: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(values, indptr)``: the stored values grouped by gene (CSC order), sorted within each gene if ``sort``.

    ``indptr`` delimits each gene's block. One CSC copy of the values (``X``'s dtype), sorted in
    place gene by gene (a loop over genes: a vectorised sort would need an int64 gene id and sort
    order per value, 16 more bytes each): 4 bytes per stored float32 value besides the input (its
    row indices are dropped). Nothing is densified.
    """
    C = X.tocsc(copy=True)  # sorted in place below: never the caller's arrays
    values, indptr = C.data, C.indptr
    del C  # the row indices are not needed
    if sort:
        for start, stop in zip(indptr[:-1], indptr[1:], strict=True):
            if stop - start > 1:
                values[start:stop].sort()
    return values, indptr


def _fill_zeros(X: sp.csr_matrix, fill: np.ndarray) -> np.ndarray:
    """Dense ``float32`` copy of ``X`` whose zeros in column ``j`` are set to ``fill[j]``."""
    Y = np.empty(X.shape, dtype=np.float32)
    Y[...] = fill.astype(np.float32)[None, :]
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    Y[rows, X.indices] = X.data
    return Y


# spots per block when building interpolate's weights (about 34 pairs each at the Gaussian default)
_INTERPOLATE_BLOCK = 50_000


def _row_normalise(W: sp.csr_matrix) -> sp.csr_matrix:
    """Scale the rows of ``W`` to sum to one (empty rows stay empty), canonical CSR float64."""
    out = row_normalize(W)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _neighbour_matrix(neighbours: np.ndarray, *, include_self: bool) -> sp.csr_matrix:
    """Row-normalised equal-weight matrix from an ``(n_spots, k)`` array of neighbour indices (-1: none)."""
    n, k = neighbours.shape
    rows = np.repeat(np.arange(n), k)
    cols = neighbours.ravel()
    keep = cols >= 0
    W = sp.csr_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, n))
    if include_self:
        W = W + sp.identity(n, format="csr")
    return _row_normalise(W)


def _check_n_neighs(n_neighs: int, n_obs: int) -> int:
    if not (is_int(n_neighs) and 1 <= n_neighs < n_obs):  # bool is not a count of neighbours
        msg = f"n_neighs must be an integer between 1 and n_spots - 1 = {n_obs - 1}, got {n_neighs!r}."
        raise InputError(msg)
    return int(n_neighs)


def _snap(E: np.ndarray, bits: int = 30) -> np.ndarray:
    """Round ``E`` to a power-of-two grid about ``max|E| / 2**bits``, so that last-bit noise cannot reorder neighbours.

    ARPACK's result differs between calls by ~1e-13 (threaded BLAS), and spots with identical
    profiles are exactly tied in distance: without rounding, that noise decides which of the tied
    spots are neighbours, and the same seed gives different results.
    """
    scale = float(np.max(np.abs(E))) if E.size else 0.0
    if scale == 0.0 or not np.isfinite(scale):
        return E
    step = 2.0 ** (np.floor(np.log2(scale)) - bits)  # a power of two: the grid itself does not jitter
    return np.round(E / step) * step


def _spot_spacing(coords: np.ndarray) -> float:
    """Median distance from each spot to its nearest other spot (zero distances ignored)."""
    if coords.shape[0] < 2:
        msg = "at least two spots are needed to estimate the spot spacing; pass spacing= explicitly."
        raise InputError(msg)
    dist, _ = cKDTree(coords).query(coords, k=2)
    d = dist[:, 1]
    d = d[d > 0]
    if d.size == 0:
        n_distinct = len(np.unique(coords, axis=0))
        what = (
            "all spots share the same coordinates"
            if n_distinct == 1
            else f"every spot has an exact duplicate position ({n_distinct} distinct positions for {len(coords)} spots;"
            " stacked sections without offsets?)"
        )
        msg = f"{what}: cannot estimate the spot spacing; check obsm['spatial'], or pass spacing= explicitly."
        raise InputError(msg)
    return float(np.median(d))


# ------------------------------------------------------------------------------------------------
# per-gene fills
# ------------------------------------------------------------------------------------------------
class _GeneFill(BaseImputer):
    """Shared machinery of the per-gene fills: learn ``statistic_`` then fill the zeros with it."""

    keeps_observed = True
    _sorted = True  # whether _statistic needs each gene's values sorted

    def __init__(self) -> None:
        pass

    def _statistic(self, values: np.ndarray, indptr: np.ndarray, n_genes: int) -> np.ndarray:
        raise NotImplementedError

    def _fit(self, X: sp.csr_matrix, *, graph: sp.csr_matrix | None, coords: np.ndarray | None) -> None:
        values, indptr = _gene_columns(X, sort=self._sorted)
        self.statistic_ = self._statistic(values, indptr, X.shape[1])
        self.n_observed_ = np.diff(indptr)

    def _predict(self, X: sp.csr_matrix) -> np.ndarray:
        return _fill_zeros(X, self.statistic_)

    def _predict_genes(self, X: sp.csr_matrix, genes: np.ndarray) -> np.ndarray:
        return _fill_zeros(X[:, genes], self.statistic_[genes])  # gene by gene: only these columns


@register(
    "mean",
    family="baseline",
    description="Fill each gene's zeros with the mean of its observed non-zero counts",
)
class GeneMean(_GeneFill):
    """Fill every zero of a gene with the mean of the gene's observed non-zero counts.

    Observed values are kept. A gene with no observed non-zero value stays 0. This is the P1
    reference point ("gene mean of non-zero values", see the benchmark protocols): it is hard to beat
    on P1 RMSE because P1 scores only entries that were non-zero, while it over-imputes every zero.

    Memory: the output is dense ``float32``, ``4 * n_spots * n_genes`` bytes; fitting needs one
    copy of the stored values (4 bytes each for float32 counts), in gene order.

    Attributes
    ----------
    statistic_
        The fill value of each gene, shape ``(n_genes,)``.
    n_observed_
        Number of observed non-zero values of each gene.
    """

    _sorted = False

    def _statistic(self, values: np.ndarray, indptr: np.ndarray, n_genes: int) -> np.ndarray:
        counts = np.diff(indptr).astype(np.float64)
        sums = np.zeros(n_genes)
        for j in np.flatnonzero(counts):  # gene by gene, in float64, without a float64 copy of every value
            sums[j] = values[indptr[j] : indptr[j + 1]].sum(dtype=np.float64)
        return np.divide(sums, counts, out=np.zeros(n_genes), where=counts > 0)


@register(
    "median",
    family="baseline",
    description="Fill each gene's zeros with the median of its observed non-zero counts",
)
class GeneMedian(_GeneFill):
    """Fill every zero of a gene with the median of the gene's observed non-zero counts.

    With an even number of values the median is the mean of the two middle ones (as
    :func:`numpy.median`). Observed values are kept; a gene with no observed non-zero value stays 0.
    The median is found by sorting the stored values within each gene (no densifying).

    Memory: the output is dense ``float32``, ``4 * n_spots * n_genes`` bytes; fitting sorts one copy
    of the stored values.

    Attributes
    ----------
    statistic_
        The fill value of each gene, shape ``(n_genes,)``.
    n_observed_
        Number of observed non-zero values of each gene.
    """

    def _statistic(self, values: np.ndarray, indptr: np.ndarray, n_genes: int) -> np.ndarray:
        counts = np.diff(indptr)
        has = counts > 0
        lo = indptr[:-1] + (counts - 1) // 2
        hi = indptr[:-1] + counts // 2
        out = np.zeros(n_genes)
        out[has] = 0.5 * (values[lo[has]].astype(np.float64) + values[hi[has]])
        return out


@register(
    "mode",
    family="baseline",
    description="Fill each gene's zeros with the most frequent of its observed non-zero counts",
)
class GeneMode(_GeneFill):
    """Fill every zero of a gene with the most frequent of the gene's observed non-zero counts.

    Ties go to the smallest value. Observed values are kept; a gene with no observed non-zero value
    stays 0. Runs of equal values are found in the per-gene sorted stored values (no densifying).

    Memory: the output is dense ``float32``, ``4 * n_spots * n_genes`` bytes; fitting sorts one copy
    of the stored values.

    Attributes
    ----------
    statistic_
        The fill value of each gene, shape ``(n_genes,)``.
    n_observed_
        Number of observed non-zero values of each gene.
    """

    def _statistic(self, values: np.ndarray, indptr: np.ndarray, n_genes: int) -> np.ndarray:
        out = np.zeros(n_genes)
        if values.size == 0:
            return out
        new_run = np.empty(values.size, dtype=bool)
        new_run[0] = True
        np.not_equal(values[1:], values[:-1], out=new_run[1:])
        new_run[indptr[:-1][np.diff(indptr) > 0]] = True  # each gene starts a run
        starts = np.flatnonzero(new_run)
        del new_run
        lengths = np.diff(np.append(starts, values.size))
        run_gene = np.searchsorted(indptr, starts, side="right") - 1  # the (non-empty) gene holding each run
        run_value = values[starts].astype(np.float64)
        # per gene: longest run first, then the smallest value
        order = np.lexsort((run_value, -lengths, run_gene))
        g = run_gene[order]
        first = order[np.r_[True, g[1:] != g[:-1]]]
        out[run_gene[first]] = run_value[first]
        return out


# ------------------------------------------------------------------------------------------------
# neighbour smoothers
# ------------------------------------------------------------------------------------------------
class _Smoother(BaseImputer):
    """Shared machinery: ``_fit`` builds ``weights_`` (row-normalised, spots x spots); predict = ``W @ X``."""

    keeps_observed = _ParamFlag("keep_observed", default=False)
    keep_observed: bool

    def _weights(self, X: sp.csr_matrix, *, graph: sp.csr_matrix | None, coords: np.ndarray | None) -> sp.csr_matrix:
        raise NotImplementedError

    def _fit(self, X: sp.csr_matrix, *, graph: sp.csr_matrix | None, coords: np.ndarray | None) -> None:
        W = self._weights(X, graph=graph, coords=coords)
        # a spot without any count (unmeasured, held out, fully masked) is no evidence of zero
        # expression: it is nobody's neighbour, and the other weights of each row are rescaled
        has_counts = np.diff(X.indptr) > 0
        if not has_counts.all():
            W = _row_normalise(W @ sp.diags(has_counts.astype(np.float64)))
            logger.info("%d spots without counts are not used as neighbours", int((~has_counts).sum()))
        empty = int(np.sum(np.diff(W.indptr) == 0))
        if empty:
            warn(f"{empty} spots have no neighbour with counts: their predictions are 0")
        self.weights_ = W.astype(np.float32)

    def _predict(self, X: sp.csr_matrix) -> sp.csr_matrix:
        Y = sp.csr_matrix(self.weights_ @ X, dtype=np.float32)
        if self.keep_observed:
            seen = X.copy()
            seen.data[:] = 1.0
            Y = sp.csr_matrix(Y - Y.multiply(seen) + X, dtype=np.float32)
        Y.eliminate_zeros()
        Y.sort_indices()
        return Y

    def _predict_genes(self, X: sp.csr_matrix, genes: np.ndarray) -> sp.csr_matrix:
        return self._predict(sp.csr_matrix(X[:, genes]))  # each column is smoothed on its own


@register(
    "knn",
    family="expression",
    description="Mean counts of each spot's k most similar spots in PCA space of log-normalised expression",
    key_params=("n_neighs", "n_comps", "include_self", "keep_observed"),
)
class ExpressionKNN(_Smoother):
    """Average each spot with its ``n_neighs`` most similar spots by expression (kNN smoothing).

    Each spot is normalised to ``target_sum`` total counts and ``log1p``-transformed; PCA (ARPACK on
    the sparse matrix, centred implicitly, seeded) reduces it to ``n_comps`` components; the
    ``n_neighs`` nearest spots in that space (Euclidean) are found. The prediction for a spot is the
    plain mean of the **raw counts** of those neighbours and, with ``include_self=True`` (default),
    of the spot itself, so the output is on the input's count scale. The spot is included by default
    because the method estimates each spot's own expected counts (denoising); with it, a masked
    entry (an unobserved zero) is averaged with one zero, i.e. scaled by ``n_neighs / (n_neighs+1)``.

    Observed values are smoothed (``keep_observed=False``, default); with ``keep_observed=True``
    observed non-zero values are returned unchanged and only zeros are filled.

    Spots without any count (unmeasured, held out, or fully masked) have no expression profile: they
    are nobody's neighbour, get no neighbours themselves and are predicted as 0 (a warning says so;
    use a spatial method for them). The PCA uses the spots with counts only.

    Memory: one CSR copy of the log-normalised counts (float64 values: 12 bytes per stored value, 20
    while it is built; measured on 200,000 x 2,000 synthetic spots), the ``(n_spots, n_comps)`` embedding and the
    output CSR, whose density is that of the union of each spot's neighbours' supports (at most
    ``12 * n_spots * n_genes`` bytes; on DLPFC about 3.5x the input's non-zeros).

    Parameters
    ----------
    n_neighs
        Number of neighbours in expression space (the spot itself not counted).
    n_comps
        Number of principal components; clipped to ``min(n_spots, n_genes) - 1``. ``None`` searches
        neighbours in the full log-normalised space.
    include_self
        Average the spot's own counts with its neighbours'.
    keep_observed
        Return observed non-zero values unchanged (fill zeros only).
    target_sum
        Total counts each spot is scaled to before ``log1p`` (for the neighbour search only).
    seed
        Seed of the PCA's ARPACK start vector.

    Attributes
    ----------
    neighbors_
        ``(n_spots, n_neighs)`` indices of each spot's neighbours; ``-1`` fills the rows of spots
        without counts (they have none) and any places beyond the number of spots with counts.
    weights_
        Row-normalised spots x spots CSR averaging matrix.
    n_comps_
        Number of principal components used (0 when ``n_comps=None``).
    """

    def __init__(
        self,
        n_neighs: int = 10,
        n_comps: int | None = 30,
        include_self: bool = True,
        keep_observed: bool = False,
        target_sum: float = 1e4,
        seed: int = 0,
    ) -> None:
        self.n_neighs = n_neighs
        self.n_comps = n_comps
        self.include_self = include_self
        self.keep_observed = keep_observed
        self.target_sum = target_sum
        self.seed = seed

    def _embedding(self, X: sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
        if not (is_number(self.target_sum) and self.target_sum > 0):
            msg = f"target_sum must be a finite number > 0 (counts per spot after normalising): {self.target_sum!r}."
            raise InputError(msg)
        L = sp.csr_matrix(sp.diags(spot_scale(X, self.target_sum)) @ X, dtype=np.float64)
        L.data = np.log1p(L.data)
        if self.n_comps is not None and not (is_int(self.n_comps) and self.n_comps >= 1):
            msg = f"n_comps must be a positive integer or None, got {self.n_comps!r}."
            raise InputError(msg)
        max_comps = min(L.shape) - 1
        if self.n_comps is None or max_comps < 1:
            self.n_comps_ = 0
            return L
        from sklearn.decomposition import PCA

        self.n_comps_ = min(int(self.n_comps), max_comps)
        pca = PCA(n_components=self.n_comps_, svd_solver="arpack", random_state=self.seed)
        return _snap(pca.fit_transform(L))

    def _weights(self, X: sp.csr_matrix, *, graph: sp.csr_matrix | None, coords: np.ndarray | None) -> sp.csr_matrix:
        from sklearn.neighbors import NearestNeighbors

        n = X.shape[0]
        k = _check_n_neighs(self.n_neighs, n)
        # a spot without counts has no expression profile to compare: it gets no neighbours (and
        # is nobody's), and the embedding is computed from the spots with counts only
        measured = np.flatnonzero(np.diff(X.indptr) > 0)
        k_used = min(k, measured.size - 1)
        if k_used < k:
            warn(f"only {measured.size} spots have counts: each gets at most {max(k_used, 0)} neighbours")
        self.neighbors_ = np.full((n, k), -1, dtype=np.int64)
        if k_used < 1:
            self.n_comps_ = 0
        else:
            emb = self._embedding(X if measured.size == n else X[measured])
            nn = NearestNeighbors(n_neighbors=k_used).fit(emb)
            # the spot itself is never its own neighbour
            self.neighbors_[measured, :k_used] = measured[nn.kneighbors(return_distance=False)]
        return _neighbour_matrix(self.neighbors_, include_self=self.include_self)


@register(
    "spatial_knn",
    family="spatial",
    description="Mean counts of each spot and its k nearest spots in space",
    key_params=("n_neighs", "include_self", "use_graph", "keep_observed"),
)
class SpatialKNN(_Smoother):
    """Average each spot with its ``n_neighs`` nearest spots in space.

    Neighbours are the ``n_neighs`` nearest spots by Euclidean distance of the coordinates
    (``use_graph=False``, default; ties broken by the tree search, deterministically), or the
    non-zero entries of the spatial graph passed as ``graph=`` (``use_graph=True``; the graph's
    weights and diagonal are ignored, every neighbour counts once, ``n_neighs`` is unused; with
    :func:`spotfill.impute` this is ``adata.obsp[connectivity_key]``, built when missing; a direct
    ``fit`` with ``coords=`` but no ``graph=`` gets the symmetric 6-nearest-neighbour graph). The
    prediction is the plain mean of the raw counts of the neighbours and, with ``include_self=True``
    (default), of the spot itself: on a Visium array with ``n_neighs=6`` that is the spot and its first hexagonal ring.

    Observed values are smoothed (``keep_observed=False``, default); with ``keep_observed=True``
    observed non-zero values are returned unchanged and only zeros are filled.

    Spots without any count (unmeasured, held out, or fully masked) are not used as neighbours: a
    zero there was never measured. Each row's other weights are rescaled to sum to one.

    Memory: the ``(n_spots, n_neighs)`` neighbour table and the output CSR (density: the union of
    the neighbours' supports, at most ``12 * n_spots * n_genes`` bytes).

    Parameters
    ----------
    n_neighs
        Number of spatial neighbours (the spot itself not counted).
    include_self
        Average the spot's own counts with its neighbours'.
    use_graph
        Take the neighbours from ``graph=`` instead of a kNN search on the coordinates.
    keep_observed
        Return observed non-zero values unchanged (fill zeros only).

    Attributes
    ----------
    weights_
        Row-normalised spots x spots CSR averaging matrix.
    """

    uses_coords = _ParamFlag("_needs_coords", default=True)
    uses_graph = _ParamFlag("use_graph", default=False)

    def __init__(
        self,
        n_neighs: int = 6,
        include_self: bool = True,
        use_graph: bool = False,
        keep_observed: bool = False,
    ) -> None:
        self.n_neighs = n_neighs
        self.include_self = include_self
        self.use_graph = use_graph
        self.keep_observed = keep_observed

    @property
    def _needs_coords(self) -> bool:
        return not self.use_graph

    def _weights(self, X: sp.csr_matrix, *, graph: sp.csr_matrix | None, coords: np.ndarray | None) -> sp.csr_matrix:
        n = X.shape[0]
        if self.use_graph:
            if graph is None:
                msg = "use_graph=True needs graph= (e.g. adata.obsp['spatial_connectivities'])."
                raise InputError(msg)
            G = sp.coo_matrix(graph)
            off = (G.row != G.col) & (G.data != 0)
            W = sp.csr_matrix((np.ones(int(off.sum())), (G.row[off], G.col[off])), shape=(n, n))
            W.sum_duplicates()
            W.data[:] = 1.0
            if self.include_self:
                W = W + sp.identity(n, format="csr")
            return _row_normalise(W)
        from sklearn.neighbors import NearestNeighbors

        k = _check_n_neighs(self.n_neighs, n)
        nn = NearestNeighbors(n_neighbors=k).fit(coords)
        neighbours = nn.kneighbors(return_distance=False)  # the spot itself is never its own neighbour
        return _neighbour_matrix(neighbours, include_self=self.include_self)


@register(
    "interpolate",
    family="spatial",
    description="Kernel-weighted mean (Gaussian or inverse distance) of the surrounding spots within a radius",
    key_params=("kernel", "bandwidth", "radius", "include_self"),
)
class SpatialInterpolation(_Smoother):
    """Interpolate every gene at each spot from the surrounding spots with a distance kernel.

    Distances are measured in **spot spacings** ``s``: the median distance from a spot to its
    nearest other spot (``spacing_``), or ``spacing`` when given. With stacked sections
    (``spotfill.impute(..., library_key=...)``) and no ``spacing``, each section is measured in its own
    spacing (slides imaged at different scales keep the same kernel in spots). Every spot ``j != i`` within
    ``radius`` spacings of spot ``i`` gets the weight

    - ``kernel="gaussian"``: ``w = exp(-u**2 / (2 * bandwidth**2))``, ``u = d / s``;
    - ``kernel="idw"`` (inverse distance): ``w = max(u, 0.5) ** -power`` (distances below half a
      spacing count as half a spacing, so duplicates stay finite).

    The prediction is ``sum_j w_ij x_j / sum_j w_ij`` on the raw counts. By default
    (``include_self=False``) the spot itself is left out, so this is a genuine interpolation from the
    surroundings (what predicting a held-out spot needs); with ``include_self=True`` it joins with
    the kernel's weight at ``u = 0`` (1 for Gaussian, ``2 ** power`` for IDW). Spots with no other
    spot within the radius are predicted as 0 (with a :class:`~spotfill.SpotfillWarning`; with
    ``include_self=True`` they keep their own counts).

    The default radius (``radius=None``) is ``3.25 * bandwidth`` spacings for the Gaussian kernel
    (weights below 0.5 % are cut) and 2.5 spacings for IDW; both fall between the rings of square
    (ST) and hexagonal (Visium) arrays, so a ring is never cut in half by pixel noise.

    Observed values are smoothed (``keep_observed=False``, default); with ``keep_observed=True``
    observed non-zero values are returned unchanged and only zeros are filled.

    Spots without any count (unmeasured, held out, or fully masked) are not used as neighbours: a
    zero there was never measured. Each row's other weights are rescaled to sum to one.

    Memory: the sparse weight matrix (about ``34 * n_spots`` entries at the Gaussian default on a
    hexagonal array, 12 bytes each when built; about 63 bytes each at the peak of building it, in
    blocks of 50,000 spots: 426 MB for 200,000 spots) and the
    output CSR (density: the union of the neighbours' supports, at most ``12 * n_spots * n_genes`` bytes).

    Parameters
    ----------
    kernel
        ``"gaussian"`` or ``"idw"``.
    bandwidth
        Gaussian standard deviation, in spot spacings (unused by IDW).
    radius
        Neighbours farther than this many spot spacings are ignored; ``None`` for the default above.
    power
        IDW exponent (unused by the Gaussian kernel).
    include_self
        Include the spot's own counts in its interpolation.
    spacing
        Spot spacing in coordinate units; ``None`` estimates it.
    keep_observed
        Return observed non-zero values unchanged (fill zeros only).

    Attributes
    ----------
    spacing_
        Spot spacing used, in coordinate units.
    radius_
        Radius used, in spot spacings.
    weights_
        Row-normalised spots x spots CSR interpolation matrix.
    """

    uses_coords = True

    def __init__(
        self,
        kernel: Literal["gaussian", "idw"] = "gaussian",
        bandwidth: float = 1.0,
        radius: float | None = None,
        power: float = 2.0,
        include_self: bool = False,
        spacing: float | None = None,
        keep_observed: bool = False,
    ) -> None:
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.radius = radius
        self.power = power
        self.include_self = include_self
        self.spacing = spacing
        self.keep_observed = keep_observed

    def _kernel(self, u: np.ndarray) -> np.ndarray:
        if self.kernel == "gaussian":
            return np.exp(-0.5 * (u / self.bandwidth) ** 2)
        return np.maximum(u, 0.5) ** (-float(self.power))

    def _radius(self) -> float:
        """Return the search radius in spot spacings: ``radius``, else where the kernel has faded."""
        if self.radius is not None:
            return float(self.radius)
        return 3.25 * float(self.bandwidth) if self.kernel == "gaussian" else 2.5

    def _spacing_of(self, coords: np.ndarray) -> float:
        """Return the spot spacing: ``spacing``, else the median nearest-neighbour distance."""
        return _spot_spacing(coords) if self.spacing is None else float(self.spacing)

    def _reach(self, coords: np.ndarray) -> float:
        """Return the farthest distance, in coordinate units, at which a spot can be a neighbour."""
        self._check_options()
        return self._radius() * self._spacing_of(coords)

    def _check_options(self) -> None:
        if self.kernel not in ("gaussian", "idw"):
            msg = f"kernel must be 'gaussian' or 'idw', got {self.kernel!r}."
            raise InputError(msg)
        for name in ("bandwidth", "power") + (() if self.radius is None else ("radius",)):
            value = getattr(self, name)
            if not (is_number(value) and value > 0):
                msg = f"{name} must be a positive number, got {value!r}."
                raise InputError(msg)
        if self.spacing is not None and not (is_number(self.spacing) and self.spacing > 0):
            msg = f"spacing must be a positive number or None, got {self.spacing!r}."
            raise InputError(msg)

    def _weights(self, X: sp.csr_matrix, *, graph: sp.csr_matrix | None, coords: np.ndarray | None) -> sp.csr_matrix:
        self._check_options()
        assert coords is not None  # uses_coords: fit() refuses to run without coordinates
        n = X.shape[0]
        s = self._spacing_of(coords)
        r = self._radius()
        self.spacing_, self.radius_ = s, r
        tree = cKDTree(coords)
        blocks = []
        for start in range(0, n, _INTERPOLATE_BLOCK):  # the pair lists of one block of spots at a time
            stop = min(start + _INTERPOLATE_BLOCK, n)
            pairs = cKDTree(coords[start:stop]).sparse_distance_matrix(tree, r * s, output_type="ndarray")
            i, j = pairs["i"].astype(np.int64) + start, pairs["j"]
            off = i != j
            i, j, w = i[off], j[off], self._kernel(pairs["v"][off] / s)
            del pairs
            if self.include_self:
                idx = np.arange(start, stop)
                i, j = np.concatenate([i, idx]), np.concatenate([j, idx])
                w = np.concatenate([w, np.full(idx.size, self._kernel(np.zeros(1))[0])])
            block = sp.csr_matrix((w, (i - start, j)), shape=(stop - start, n))
            block.sort_indices()  # rows summed in column order, whatever the blocks
            blocks.append(block)
        W = sp.vstack(blocks, format="csr") if len(blocks) != 1 else blocks[0]
        return _row_normalise(W)
