"""The AnnData front end: ``spotfill.impute``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .._anndata import latent_key, result_slot, store_result, stored_latent
from .._errors import InputError
from .._logging import logger, warn
from .._validation import check_seed, get_coords, get_counts, warn_non_integer
from ._base import BaseImputer
from ._registry import build_method, get_method

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["DEFAULT_METHOD", "impute"]

#: The method ``impute`` uses when none is named.
DEFAULT_METHOD = "spotfill"


def _resolve_default() -> str:
    from ._registry import _REGISTRY, _ensure_loaded

    _ensure_loaded()
    return DEFAULT_METHOD if DEFAULT_METHOD in _REGISTRY else "spatial_knn"


def _instance_name(est: BaseImputer) -> str:
    """Return the registered name of an estimator's class (first preset-free entry), else the class name."""
    from ._registry import _REGISTRY, _ensure_loaded

    _ensure_loaded()
    for spec in _REGISTRY.values():
        if spec.cls is type(est) and not spec.preset:
            return spec.name
    return type(est).__name__.lower()


def impute(
    adata: AnnData,
    method: str | BaseImputer | None = None,
    *,
    layer: str | None = None,
    key_added: str | None = None,
    connectivity_key: str = "spatial_connectivities",
    spatial_key: str = "spatial",
    library_key: str | None = None,
    mask=None,
    genes: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    copy: bool = False,
    **params: Any,
) -> AnnData | None:
    """Impute and denoise the counts of ``adata`` with a spatially aware method.

    Parameters
    ----------
    adata
        Spots x genes, raw counts in ``X`` (or ``layers[layer]``), coordinates in
        ``obsm[spatial_key]``.
    method
        A registered method name (see :func:`spotfill.list_methods`) or an estimator instance
        (used as given: ``seed`` and ``device`` are not applied to it, ``**params`` are set on it).
        ``None`` uses the recommended default.
    layer
        Layer holding the raw counts; ``None`` reads ``adata.X``.
    key_added
        Name of the output layer and ``uns`` entry; defaults to ``"imputed_<method>"``. An earlier
        spotfill result under that name is replaced; any other entry of that name (the input layer,
        ``obsm['spatial']``, ``uns['spatial_neighbors']``, a user's layer) is refused with an error.
    connectivity_key
        Key in ``adata.obsp`` of the spatial graph for graph-based methods. Built with
        :func:`spotfill.spatial_neighbors` (default settings) when the default key is missing; a
        custom key that is missing is an error.
    spatial_key
        Key in ``adata.obsm`` of the coordinates.
    library_key
        Column of ``adata.obs`` naming each spot's section, for several sections in one AnnData (as
        squidpy's ``library_key``), for the methods that use the graph or the coordinates: it is
        passed to :func:`spotfill.spatial_neighbors` when the graph is built here, a stored graph
        with edges between sections is refused by graph-based methods, and coordinate-based methods
        (``spatial_knn``, ``interpolate``) search each section separately. Methods that use neither
        (``mean``, ``median``, ``mode``, ``knn``, the study models without a spatial loss) pool all
        spots. ``None`` takes
        the ``library_key`` that :func:`spotfill.spatial_neighbors` recorded for the stored graph,
        if any (squidpy records none: name it; coordinate-based methods warn when the stored graph
        has no edge between the groups of a categorical ``obs`` column).
    mask
        Entries the method may not see (booleans or 0/1, spots x genes), e.g. held-out entries.
    genes
        Names of the genes to return (default: every gene). The method still fits on every gene, but
        only these are predicted, and the result goes to ``adata.obsm[key_added]`` (a DataFrame,
        spots x ``genes``) instead of a layer: the way to impute large data, e.g. Visium HD's
        600k bins x 18k genes, whose full imputed matrix (43 GB in float32) would not fit in memory.
    seed
        Random seed, passed to methods with random steps.
    device
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"`` or ``"cuda"``, for methods that run on torch
        (the default model, the study's models). A method that runs only on the CPU ignores it, with a
        :class:`~spotfill.SpotfillWarning` when a GPU was asked for.
    copy
        Return a modified copy instead of writing into ``adata``.
    **params
        Method parameters (see :func:`spotfill.list_methods`).

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.layers[key_added]``
        Imputed expected counts, spots x genes (``X`` is never modified).
    ``adata.obsm[key_added]``
        Instead of the layer when ``genes`` is given: a DataFrame of the imputed genes.
    ``adata.obsm[key_added + "_latent"]``, ``adata.varm[key_added + "_latent"]``
        For methods with a latent representation (the default model): the spot representation,
        spots x ``k`` (the default model's smoothed loadings: each spot's share of every gene
        programme, rows summing to about 1; a representation for domains, e.g.
        ``sc.pp.neighbors(adata, use_rep="imputed_spotfill_latent")``), and the gene
        representation, genes x ``k`` (its programmes, columns summing to 1). Also with ``genes``.
    ``adata.uns[key_added]``
        ``method``, ``params``, ``layer``, ``connectivity_key``, ``version`` and ``seconds`` (and with
        ``genes``: ``genes`` and ``stored_in="obsm"``; for the default method, ``selected``: the
        ``n_latent``, ``smooth``, ``smooth_steps`` and number of updates its automatic tuning chose,
        and ``latent``: the ``obsm`` / ``varm`` key above).
    """
    check_seed(seed)
    if copy:
        adata = adata.copy()
    X = get_counts(adata, layer, require_integer=False)
    where = "adata.X" if layer is None else f"layer {layer!r}"
    if not X.data.any():
        msg = (
            f"{where} holds no non-zero count ({adata.n_obs} x "
            f"{adata.n_vars}, all zero): nothing to impute. Check that this is the right file, or pass the layer "
            "with the counts (layer=, --layer)."
        )
        raise InputError(msg)
    warn_non_integer(X.data, where)
    if method is None:
        method = _resolve_default()
    if isinstance(method, BaseImputer):
        if params:
            method.set_params(**params)
        est, name = method, _instance_name(method)
    elif isinstance(method, str):
        spec = get_method(method)
        est = build_method(method, {"seed": seed, "device": device, **params})
        name = spec.name
    else:
        msg = f"method must be a registered name or an estimator instance, got {type(method).__name__}."
        raise InputError(msg)
    if key_added is None:
        key_added = f"imputed_{name}"
    gene_idx = None if genes is None else _gene_indices(adata, genes)
    if est.uses_graph:
        _refuse_distances(adata, connectivity_key)
    if library_key is not None and not (est.uses_graph or est.uses_coords):
        warn(
            f"method {name!r} uses neither the spatial graph nor the coordinates: it pools the spots of all "
            f"sections, and library_key={library_key!r} (--library-key) has no effect; to impute each section "
            "separately, impute the subsets adata[adata.obs[library_key] == section].copy().",
        )
        library_key = None
    if library_key is None and (est.uses_graph or est.uses_coords):
        library_key = stored_library_key(adata, connectivity_key)
    if library_key is None and est.uses_coords:
        _warn_unnamed_sections(adata, connectivity_key)
    sections = None
    if library_key is not None:
        from ..graph._api import _sections

        sections = _sections(adata, library_key)
    graph = coords = None
    if est.uses_graph:
        if connectivity_key not in adata.obsp and connectivity_key != "spatial_connectivities":
            msg = (
                f"adata.obsp[{connectivity_key!r}] not found (available: {sorted(adata.obsp)}); build it with "
                "spotfill.spatial_neighbors(adata, key_added=...) or leave connectivity_key at its default."
            )
            raise InputError(msg)
        if connectivity_key not in adata.obsp:
            from ..graph import spatial_neighbors

            logger.info("no adata.obsp[%r]: building a spatial graph with default settings", connectivity_key)
            spatial_neighbors(adata, spatial_key=spatial_key, library_key=library_key)
        graph = adata.obsp[connectivity_key]
        if sections is not None:
            assert library_key is not None  # sections are only read from a library_key
            _refuse_cross_edges(graph, sections, connectivity_key, library_key)
        est._check_graph_params(_graph_params(adata, connectivity_key))
    if est.uses_coords:
        coords = get_coords(adata, spatial_key)
        if sections is not None:
            assert library_key is not None  # sections are only read from a library_key
            names = adata.obs[library_key].to_numpy()
            coords = _separate_sections(coords, sections, names, est, library_key)
    # after the graph is built (it writes uns['spatial_neighbors']), before the long fit
    _check_key_added(adata, key_added, layer=layer, slot="layers" if genes is None else "obsm", latent=est.has_latent)

    t0 = time.perf_counter()
    Y = est.fit(X, graph=graph, coords=coords, mask=mask).transform(genes=gene_idx)
    seconds = time.perf_counter() - t0
    if not sp.issparse(Y):
        Y = np.asarray(Y, dtype=np.float32)
    logger.info("imputed %d x %d with %s in %.1f s", adata.n_obs, Y.shape[1], name, seconds)
    store_result(
        adata,
        Y,
        key_added=key_added,
        method=name,
        params=est.get_params(),
        layer=layer,
        connectivity_key=connectivity_key if est.uses_graph else None,
        extra={
            "seconds": float(seconds),
            **({"library_key": library_key} if library_key is not None else {}),
            **({"selected": sel} if (sel := est._selected_params()) else {}),
        },
        genes=None if gene_idx is None else list(adata.var_names[gene_idx]),
        latent=est._latent(),
    )
    return adata if copy else None


# names scanpy and squidpy give their own meaning in uns/obsm (images and scale factors, coordinates)
_RESERVED_KEYS = frozenset({"spatial"})
_GRAPH_SUFFIXES = ("_neighbors", "_connectivities", "_distances")


def _check_key_added(adata: AnnData, key: str, *, layer: str | None, slot: str, latent: bool = False) -> None:
    """Refuse a ``key_added`` that would overwrite the input or an entry spotfill did not write.

    Re-running with the key of an earlier result replaces it, as scanpy does (the earlier result's
    layer or obsm entry goes); anything else under that name in ``layers``, ``obsm`` or ``uns`` (the
    counts layer, ``obsm['spatial']``, ``uns['spatial_neighbors']``, ...) is kept and the key refused.
    """
    if not isinstance(key, str) or not key:
        msg = f"key_added must be a non-empty string (the output's name), got {key!r}."
        raise InputError(msg)
    if "/" in key:
        msg = (
            f"key_added={key!r} contains '/', which .h5ad files read as a group path (the written file could not "
            f"be read back); choose a name without '/', e.g. {key.replace('/', '_')!r}."
        )
        raise InputError(msg)
    if key == layer:
        msg = f"key_added={key!r} is the input layer: the result would overwrite the counts; choose another key_added."
        raise InputError(msg)
    if key in _RESERVED_KEYS:
        msg = (
            f"key_added={key!r} is reserved: scanpy and squidpy keep coordinates in obsm['spatial'] and images "
            "in uns['spatial']; choose another key_added."
        )
        raise InputError(msg)
    if key.endswith(_GRAPH_SUFFIXES):
        msg = (
            f"key_added={key!r} ends like the names of neighbour graphs (obsp['<key>_connectivities'], "
            "uns['<key>_neighbors'], which scanpy and squidpy write and overwrite); choose another key_added."
        )
        raise InputError(msg)
    old = result_slot(adata, key)
    taken = [
        f"{where}[{key!r}]"
        for where in (slot, *(w for w in ("layers", "obsm") if w != slot), "uns")
        if key in getattr(adata, where) and where != old and not (where == "uns" and old)
    ]
    if latent:
        name, own = latent_key(key), stored_latent(adata, key)
        taken += [f"{where}[{name!r}]" for where in ("obsm", "varm") if name in getattr(adata, where) and name != own]
    if taken:
        what = (
            f"adata.{taken[0]}, which is not a spotfill result"
            if len(taken) == 1
            else ("entries that are not a spotfill result: " + ", ".join(f"adata.{t}" for t in taken))
        )
        msg = f"key_added={key!r} would overwrite {what}; choose another key_added (or delete those entries first)."
        raise InputError(msg)


def _graph_params(adata: AnnData, connectivity_key: str) -> dict[str, Any]:
    """Return the ``params`` that ``spatial_neighbors`` (spotfill's or squidpy's) stored for the graph."""
    for value in adata.uns.values():
        if isinstance(value, dict) and value.get("connectivities_key") == connectivity_key:
            params = value.get("params")
            return dict(params) if isinstance(params, dict) else {}
    return {}


def _refuse_distances(adata: AnnData, connectivity_key: str) -> None:
    """Refuse an ``obsp`` key that a ``spatial_neighbors`` record names as distances, not connectivities."""
    for name, value in adata.uns.items():
        if isinstance(value, dict) and value.get("distances_key") == connectivity_key:
            msg = (
                f"adata.obsp[{connectivity_key!r}] holds distances (uns[{name!r}]['distances_key']), not edge "
                f"weights: far neighbours would weigh the most. Pass connectivity_key="
                f"{value.get('connectivities_key', 'spatial_connectivities')!r}."
            )
            raise InputError(msg)


def _refuse_cross_edges(graph, sections: np.ndarray, connectivity_key: str, library_key: str) -> None:
    """Refuse a graph with edges between spots of different sections."""
    G = sp.coo_matrix(graph)
    cross = int(np.count_nonzero((sections[G.row] != sections[G.col]) & (G.data != 0)))
    if cross:
        msg = (
            f"adata.obsp[{connectivity_key!r}] has {cross} edges between spots of different sections "
            f"(obs[{library_key!r}]): rebuild it per section with spotfill.spatial_neighbors(adata, "
            f"library_key={library_key!r}) (or squidpy's, with library_key)."
        )
        raise InputError(msg)


def _separate_sections(
    coords: np.ndarray, sections: np.ndarray, names: np.ndarray, est: BaseImputer, library_key: str
) -> np.ndarray:
    """Shift each section's coordinates along x so that no neighbour search of ``est`` crosses sections.

    Sections are placed side by side with gaps larger than any section's diameter, so every spot is
    closer to each spot of its own section than to any spot of another: a k-nearest-neighbour search
    (with more than ``n_neighs`` spots per section) stays within the section. A method with a
    search radius (``_reach``, e.g. ``interpolate``) gets gaps wider than that radius too. A method
    that measures distances in spot spacings it estimates (``interpolate`` without ``spacing``) gets
    each section in units of that section's own spacing.
    """
    from ..graph._builders import section_groups

    groups = section_groups(sections)
    k = getattr(est, "n_neighs", 0)
    k = int(k) if isinstance(k, int | np.integer) else 0
    small = [(names[g[0]], g.size) for g in groups if g.size <= k]
    if small:
        msg = (
            f"section {small[0][0]!r} of obs[{library_key!r}] has {small[0][1]} spots, not more than n_neighs={k}: "
            "its neighbours would come from other sections; lower n_neighs or leave the section out."
        )
        raise InputError(msg)
    if hasattr(est, "_spacing_of") and getattr(est, "spacing", 0) is None:
        # a method that measures distances in estimated spot spacings measures each section in its own:
        # separate slides are often imaged at different scales (pixels per micrometre)
        coords = coords.astype(np.float64, copy=True)
        for g in groups:
            try:
                coords[g] /= est._spacing_of(coords[g])
            except InputError as err:
                msg = f"section {names[g[0]]!r} of obs[{library_key!r}]: {err}"
                raise InputError(msg) from None
    lo = np.array([coords[g].min(axis=0) for g in groups])
    hi = np.array([coords[g].max(axis=0) for g in groups])
    gap = 2.0 * float(np.linalg.norm(hi - lo, axis=1).max()) + 1.0

    def place(gap: float) -> np.ndarray:
        out = coords.astype(np.float64, copy=True)
        start = 0.0
        for g, low, high in zip(groups, lo, hi, strict=True):
            out[g, 0] += start - low[0]
            out[g, 1:] -= low[1:]
            start += (high[0] - low[0]) + gap
        return out

    out = place(gap)
    reach = float(est._reach(out)) if hasattr(est, "_reach") else 0.0  # spacing measured within sections
    return place(gap + reach) if reach >= gap else out


def stored_library_key(adata: AnnData, connectivity_key: str = "spatial_connectivities") -> str | None:
    """Return the ``library_key`` the stored graph was built with (spotfill records it; squidpy does not), or ``None``.

    A recorded column that ``adata.obs`` no longer has is ignored with a warning.
    """
    if connectivity_key not in adata.obsp:
        return None
    stored = _graph_params(adata, connectivity_key).get("library_key")
    if not isinstance(stored, str) or stored in ("", "None"):
        return None
    if stored not in adata.obs:
        warn(
            f"the spatial graph was built per section of obs[{stored!r}], which adata.obs no longer has: sections "
            "are not used (pass library_key=, --library-key, to name another column)"
        )
        return None
    return stored


def _warn_unnamed_sections(adata: AnnData, connectivity_key: str) -> None:
    """Warn when the stored graph has no edge between the groups of a categorical obs column.

    squidpy's ``spatial_neighbors(library_key=...)`` builds such a graph without recording the
    column, and a coordinate-based method would then search across the sections. Without a stored
    graph, warn when a categorical column separates spots that share an array position (sections
    stacked with ``anndata.concat``), as the grid builder refuses them.
    """
    if connectivity_key not in adata.obsp:
        _warn_stacked_sections(adata)
        return
    G = sp.coo_matrix(adata.obsp[connectivity_key])
    if G.nnz == 0:
        return
    from ..graph._api import section_columns

    for column, codes in section_columns(adata):
        if not np.any(codes[G.row] != codes[G.col]):
            warn(
                f"adata.obsp[{connectivity_key!r}] has no edge between the groups of obs[{column!r}]: if these are "
                f"sections, pass library_key={column!r}, or spatial_knn/interpolate will search across them",
                stacklevel=4,  # the caller of impute
            )
            return


def _warn_stacked_sections(adata: AnnData) -> None:
    """Warn when the array positions show sections stacked without a ``library_key`` (see ``stacked_sections``)."""
    from ..graph._api import stacked_sections

    column = stacked_sections(adata)
    if column is not None:
        warn(
            f"spots of different groups of obs[{column!r}] share array positions: if these are sections, pass "
            f"library_key={column!r} (--library-key), or spatial_knn/interpolate will search across them",
            stacklevel=5,  # the caller of impute
        )


def _gene_indices(adata: AnnData, genes: Sequence[str]) -> np.ndarray:
    """Column indices of the gene names ``genes`` (duplicates dropped, order kept), with a clear error."""
    if isinstance(genes, str):
        genes = [genes]
    genes = list(genes)
    bad = [g for g in genes if not isinstance(g, str)]
    if bad:
        msg = (
            f"genes must be gene names (str) from adata.var_names, got {type(bad[0]).__name__} {bad[0]!r}; "
            "for column positions use list(adata.var_names[positions])."
        )
        raise InputError(msg)
    names = list(dict.fromkeys(genes))
    if not names:
        msg = "genes is empty: name at least one gene, or pass genes=None to impute every gene."
        raise InputError(msg)
    if not adata.var_names.is_unique:
        msg = "adata.var_names has duplicates, so genes= is ambiguous: call adata.var_names_make_unique() first."
        raise InputError(msg)
    idx = adata.var_names.get_indexer(names)
    missing = [g for g, i in zip(names, idx, strict=True) if i < 0]
    if missing:
        msg = (
            f"{len(missing)} of the requested genes are not in adata.var_names (e.g. {missing[:5]}); "
            "check the spelling, or that var_names holds symbols rather than Ensembl ids."
        )
        raise InputError(msg)
    return idx.astype(np.int64)
