"""A printable description of a dataset, for ``spotfill info``."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._errors import SpotfillError, SpotfillWarning
from .._validation import get_matrix, non_integer

__all__ = ["summarize"]

logger = logging.getLogger(__name__)

_GRID_NAMES = {
    "hex": "hexagonal (Visium-like)",
    "square": "square (ST-like)",
    None: "none (generic coordinates)",
}
# order-1 neighbour offsets (d_row, d_col) used when spotfill.graph is unavailable
_OFFSETS = {
    "hex": ((0, 2), (0, -2), (1, 1), (1, -1), (-1, 1), (-1, -1)),
    "square": ((0, 1), (0, -1), (1, 0), (-1, 0)),
}
_MAX_LABELS = 12


def summarize(
    adata: AnnData, *, path: str | os.PathLike[str] | None = None, layer: str | None = None
) -> dict[str, object]:
    """Describe ``adata`` in a few printable lines: format, size, sparsity, grid, neighbours, labels, layers.

    Nothing is densified; the neighbour count builds the default spatial graph on a copy holding
    only the positions.

    Parameters
    ----------
    adata
        The data, typically from :func:`spotfill.io.read`.
    path
        The file or folder the data came from (default: ``uns['spotfill_io']['path']`` when present).
    layer
        Describe ``layers[layer]`` (e.g. raw counts kept in ``layers["counts"]``) instead of ``X``.

    Returns
    -------
    An ordered ``{name: value}`` mapping of strings and numbers: ``format``, ``path``,
    ``spots x genes``, ``zeros`` (fraction of zero entries), ``counts`` (integer or not),
    ``total counts per spot (median)``, ``grid`` (``hexagonal (Visium-like)``, ``square (ST-like)``
    or ``none (generic coordinates)``), ``x range``, ``y range``, ``neighbours per spot (order 1)``
    (min / median / max), ``sections`` (only when the array positions show several sections stacked in
    one AnnData: how many, and the ``obs`` column naming them), ``spatial graph`` (only when the
    default graph that :func:`spotfill.impute` would build is refused: the reason, e.g. spots sharing
    an array position), ``labels`` (``obs['label']`` categories with their counts) and ``layers``.
    """
    info = adata.uns.get("spotfill_io")
    info = info if isinstance(info, dict) else {}
    out: dict[str, object] = {}
    out["format"] = str(info.get("format", "AnnData (in memory)"))
    where = path if path is not None else info.get("path")
    if where is not None:
        out["path"] = str(where)
    out["spots x genes"] = f"{adata.n_obs} x {adata.n_vars}"

    X, _ = get_matrix(adata, layer)
    if layer is not None:
        out["matrix"] = f"layers[{layer!r}]"
    n_entries = adata.n_obs * adata.n_vars
    if X is not None and n_entries:
        nnz = int(X.count_nonzero()) if sp.issparse(X) else int(np.count_nonzero(np.asarray(X)))
        out["zeros"] = f"{1 - nnz / n_entries:.1%}"
        values = X.data if sp.issparse(X) else np.asarray(X)
        n_bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        n_negative = int(np.count_nonzero(values < 0))
        if n_bad:
            out["counts"] = f"{n_bad} NaN or infinite values (not counts: spotfill refuses them)"
        elif n_negative:
            out["counts"] = f"{n_negative} negative values (not counts: spotfill refuses them)"
        elif non_integer(values)[0]:
            out["counts"] = "non-integer values (raw counts expected)"
        else:
            out["counts"] = "integers"
        totals = np.asarray(X.sum(axis=1)).ravel()
        out["total counts per spot (median)"] = _number(np.median(totals))

    lattice = _lattice(adata)
    out["grid"] = _GRID_NAMES[lattice]
    from ..graph._api import stacked_sections

    if (column := stacked_sections(adata)) is not None:
        n = adata.obs[column].nunique()
        out["sections"] = (
            f"{n} stacked in obs[{column!r}] (they share array positions): name it with library_key= (--library-key)"
        )
    coords = adata.obsm.get("spatial")
    if coords is not None and len(coords):
        xy = np.asarray(coords, dtype=np.float64)
        out["x range"] = f"{_number(xy[:, 0].min())} to {_number(xy[:, 0].max())}"
        out["y range"] = f"{_number(xy[:, 1].min())} to {_number(xy[:, 1].max())}"
        out["neighbours per spot (order 1)"], refused = _neighbour_stats(adata, lattice)
        if refused is not None:  # what impute's default graph would say about these positions
            out["spatial graph"] = f"refused with the defaults: {refused}"
    else:
        out["x range"] = out["y range"] = "no coordinates (obsm['spatial'] missing)"
    out["labels"] = _labels(adata)
    out["layers"] = ", ".join(adata.layers.keys()) if len(adata.layers) else "none"
    return out


def _number(value: float) -> int | float:
    value = float(value)
    if not np.isfinite(value):
        return value  # nan or inf, printed as such
    return int(value) if value == round(value) else round(value, 2)


def _grid_positions(adata: AnnData) -> tuple[np.ndarray, np.ndarray] | None:
    if "array_row" not in adata.obs or "array_col" not in adata.obs:
        return None
    row = pd.to_numeric(adata.obs["array_row"], errors="coerce").to_numpy(dtype=np.float64)
    col = pd.to_numeric(adata.obs["array_col"], errors="coerce").to_numpy(dtype=np.float64)
    if not (np.all(np.isfinite(row)) and np.all(np.isfinite(col))):
        return None
    if np.any(row != np.round(row)) or np.any(col != np.round(col)):
        return None  # not array indices: no grid (spotfill.spatial_neighbors refuses them as one too)
    return row.astype(np.int64), col.astype(np.int64)


def _lattice(adata: AnnData) -> Literal["hex", "square"] | None:
    grid = _grid_positions(adata)
    if grid is None:
        return None
    row, col = grid
    try:
        from ..graph import detect_lattice
    except ImportError:  # the graph module is not there yet: a local check
        return _local_lattice(row, col)
    try:
        return detect_lattice(row, col)
    except (NotImplementedError, SpotfillError):
        return _local_lattice(row, col)


def _local_lattice(row: np.ndarray, col: np.ndarray) -> Literal["hex", "square"] | None:
    """Visium's hexagonal grid only uses positions with one parity of ``row + col``; a square grid uses both."""
    if row.size < 2:
        return None
    parity = (row + col) % 2
    return "hex" if np.all(parity == parity[0]) else "square"


def _neighbour_stats(adata: AnnData, lattice: Literal["hex", "square"] | None) -> tuple[str, str | None]:
    """Neighbour counts of the default graph, and why the default graph was refused (``None`` when built)."""
    degree, refused = _graph_degree(adata)
    if degree is None and lattice is not None:
        grid = _grid_positions(adata)
        if grid is not None:
            degree = _lattice_degree(*grid, lattice)
    if degree is None:
        return "not available (spotfill.graph could not build a graph)", refused
    return f"min {int(degree.min())}, median {_number(np.median(degree))}, max {int(degree.max())}", refused


def _graph_degree(adata: AnnData) -> tuple[np.ndarray | None, str | None]:
    """Degrees of the graph ``spotfill.spatial_neighbors`` builds by default, or the reason it refuses to.

    A graph stored in ``obsp['spatial_connectivities']`` is what ``impute`` would use, so a refusal
    of the default one is not reported then.
    """
    try:
        from ..graph import spatial_neighbors
    except ImportError:
        return None, None
    # a light copy: positions only, so the counts are not duplicated; the array columns whenever they exist,
    # as spatial_neighbors sees them (it refuses positions that are not whole numbers instead of ignoring them)
    grid = [c for c in ("array_row", "array_col") if c in adata.obs]
    light = AnnData(
        X=sp.csr_matrix((adata.n_obs, 1), dtype=np.float32),
        obs=adata.obs[grid].copy(),
        obsm={"spatial": np.asarray(adata.obsm["spatial"])},
    )
    light.obs_names = adata.obs_names
    try:
        with warnings.catch_warnings():  # the grid's warnings were given when it was recognised
            warnings.simplefilter("ignore", SpotfillWarning)
            result = spatial_neighbors(light, copy=True)
    except (NotImplementedError, SpotfillError) as err:
        logger.info("neighbour statistics from the grid instead of spotfill.graph (%s)", err)
        refused = isinstance(err, SpotfillError) and "spatial_connectivities" not in adata.obsp
        return None, (str(err) if refused else None)
    graph = result.obsp["spatial_connectivities"] if result is not None else light.obsp["spatial_connectivities"]
    graph = sp.csr_matrix(graph)
    graph.eliminate_zeros()
    return graph.getnnz(axis=1) - (graph.diagonal() != 0), None


def _lattice_degree(row: np.ndarray, col: np.ndarray, lattice: Literal["hex", "square"]) -> np.ndarray:
    """Count the occupied order-1 lattice positions around each spot (vectorised over spots)."""
    span = int(col.max() - col.min()) + 5
    base = (row - row.min() + 2) * span + (col - col.min() + 2)
    occupied = np.unique(base)
    degree = np.zeros(row.size, dtype=np.int64)
    for d_row, d_col in _OFFSETS[lattice]:
        degree += np.isin(base + d_row * span + d_col, occupied)
    return degree


def _labels(adata: AnnData) -> str:
    if "label" not in adata.obs:
        return "none"
    labels = adata.obs["label"]
    counts = labels.value_counts(dropna=True, sort=True)
    counts = counts[counts > 0]
    parts = [f"{name} ({n})" for name, n in counts.iloc[:_MAX_LABELS].items()]
    if len(counts) > _MAX_LABELS:
        parts.append(f"... {len(counts) - _MAX_LABELS} more")
    n_missing = int(labels.isna().sum())
    if n_missing:
        parts.append(f"unlabelled ({n_missing})")
    return f"{len(counts)} categories: " + ", ".join(parts)
