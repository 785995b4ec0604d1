"""The AnnData entry point :func:`spatial_neighbors` and its reader :func:`get_graph`."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._anndata import h5ad_safe
from .._errors import InputError
from .._validation import get_coords
from ._builders import block_diagonal, edge_lengths, knn_graph, radius_graph
from ._laplacian import neighbor_counts
from ._lattice import (
    _check_n_rings,
    _check_ring_weights,
    _lattice_graph,
    _positions,
    check_hex_orientation,
    resolve_lattice,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["get_graph", "spatial_neighbors"]

logger = logging.getLogger(__name__)

_GRID_DEGREE = {"square": 4, "hex": 6}


def spatial_neighbors(
    adata: AnnData,
    *,
    coord_type: Literal["grid", "generic"] | None = None,
    lattice: Literal["auto", "square", "hex"] = "auto",
    n_rings: int = 1,
    ring_weights: Sequence[float] | np.ndarray | None = None,
    n_neighs: int = 6,
    radius: float | tuple[float, float] | None = None,
    library_key: str | None = None,
    spatial_key: str = "spatial",
    key_added: str = "spatial",
    copy: bool = False,
) -> AnnData | None:
    """Build the spatial neighbour graph of the spots (squidpy-compatible keys).

    Parameters
    ----------
    adata
        Spots x genes data with ``obsm[spatial_key]`` and, for grids, integer
        ``obs['array_row']`` / ``obs['array_col']``.
    coord_type
        ``"grid"``: neighbour rings on the array lattice (ST square grid or Visium hexagonal grid,
        see :mod:`spotfill.graph`). ``"generic"``: k nearest neighbours, or a radius graph when
        ``radius`` is given, on ``obsm[spatial_key]``. ``None``: ``"grid"`` when ``obs`` has
        ``array_row`` and ``array_col`` and no ``radius`` is given, else ``"generic"``.
    lattice
        Grid type for ``coord_type="grid"``; ``"auto"`` recognises it from the array positions.
    n_rings
        Grid only: highest neighbour order (1 = the 4 or 6 adjacent spots; 2 adds the next ring).
    ring_weights
        Grid only: connectivity weight of an order-``k`` neighbour, one per ring (default all 1.0).
    n_neighs
        Generic only: number of nearest neighbours (the graph is the symmetric union).
    radius
        Generic only: link all spots within this distance, or a ``(min, max)`` pair keeping
        distances in that interval (coordinate units). Replaces the kNN graph.
    library_key
        ``obs`` column naming the section of each spot: one graph per section, no edges across.
    spatial_key
        ``obsm`` key of the spot coordinates (distances are measured in its units).
    key_added
        Prefix of the keys written.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes

    - ``obsp[f"{key_added}_connectivities"]``: symmetric CSR weights (``ring_weights[k-1]`` for an
      order-``k`` grid neighbour, 1.0 for generic neighbours), empty diagonal;
    - ``obsp[f"{key_added}_distances"]``: CSR Euclidean distance in ``obsm[spatial_key]`` units, on
      exactly the same edges;
    - ``uns[f"{key_added}_neighbors"]``: ``{"connectivities_key", "distances_key", "params"}``.

    Raises
    ------
    InputError
        Missing coordinates or array positions, an unrecognised lattice, duplicated positions,
        bad options.
    """
    if coord_type not in (None, "grid", "generic"):
        msg = f"coord_type must be 'grid', 'generic' or None, got {coord_type!r}."
        raise InputError(msg)
    has_array = "array_row" in adata.obs and "array_col" in adata.obs
    if coord_type is None:
        coord_type = "grid" if has_array and radius is None else "generic"
    coords = get_coords(adata, spatial_key)
    n = adata.n_obs
    sections = _sections(adata, library_key)

    if coord_type == "grid":
        if radius is not None:
            msg = "radius= applies to coord_type='generic' only: drop it, or pass coord_type='generic'."
            raise InputError(msg)
        if not has_array:
            msg = (
                "coord_type='grid' needs integer array positions in adata.obs['array_row'] and "
                "adata.obs['array_col'] (Space Ranger's tissue_positions / ST spot coordinates): add them, "
                "or use coord_type='generic' for a nearest-neighbour graph on obsm coordinates."
            )
            raise InputError(msg)
        _check_n_rings(n_rings)
        weights = _check_ring_weights(ring_weights, n_rings)
        row, col = _positions(adata.obs["array_row"].to_numpy(), adata.obs["array_col"].to_numpy())
        kind = resolve_lattice(row, col, lattice, sections) if n else "square"
        if kind == "hex":
            check_hex_orientation(row, col, coords, sections)
        W = _lattice_graph(row, col, lattice=kind, n_rings=n_rings, ring_weights=weights, sections=sections)
        params = {
            "n_neighbors": _GRID_DEGREE[kind],
            "coord_type": "grid",
            "radius": None,
            "transform": None,
            "lattice": kind,
            "n_rings": int(n_rings),
            "ring_weights": [float(w) for w in weights],
        }
    else:
        if radius is None:

            def build(idx: np.ndarray) -> sp.csr_matrix:
                return knn_graph(coords[idx], n_neighs=n_neighs)
        else:

            def build(idx: np.ndarray) -> sp.csr_matrix:
                return radius_graph(coords[idx], radius=radius)

        W = build(np.arange(n)) if sections is None else block_diagonal(build, sections, n)
        params = {
            "n_neighbors": int(n_neighs),
            "coord_type": "generic",
            "radius": None if radius is None else [float(v) for v in np.atleast_1d(radius)],
            "transform": None,
        }
    params.update({"library_key": library_key, "spatial_key": spatial_key})
    D = edge_lengths(W, coords)

    counts = neighbor_counts(W)
    logger.info(
        "spatial graph (%s): %d spots, %d edges, median %d neighbours, %d isolated",
        params.get("lattice", "generic"),
        n,
        W.nnz // 2,
        int(np.median(counts)) if n else 0,
        int(np.sum(counts == 0)),
    )

    target = adata.copy() if copy else adata
    conn_key, dist_key = f"{key_added}_connectivities", f"{key_added}_distances"
    target.obsp[conn_key] = W
    target.obsp[dist_key] = D
    target.uns[f"{key_added}_neighbors"] = {
        "connectivities_key": conn_key,
        "distances_key": dist_key,
        "params": h5ad_safe(params),
    }
    return target if copy else None


def get_graph(adata: AnnData, *, connectivity_key: str = "spatial_connectivities") -> sp.csr_matrix:
    """Return the spatial connectivities stored in ``adata.obsp[connectivity_key]`` as CSR.

    Parameters
    ----------
    adata
        Data with a spatial graph (from :func:`spotfill.spatial_neighbors` or squidpy).
    connectivity_key
        ``obsp`` key of the connectivities.

    Returns
    -------
    ``(n_spots, n_spots)`` CSR matrix (float64).

    Raises
    ------
    InputError
        When ``adata.obsp[connectivity_key]`` is missing.
    """
    if connectivity_key not in adata.obsp:
        have = sorted(adata.obsp.keys())
        msg = (
            f"no spatial graph: adata.obsp[{connectivity_key!r}] is missing. Build it with "
            "spotfill.spatial_neighbors(adata) (writes 'spatial_connectivities'), or pass connectivity_key= "
            f"naming an existing graph (adata.obsp has {have})."
        )
        raise InputError(msg)
    return sp.csr_matrix(adata.obsp[connectivity_key], dtype=np.float64)


def _sections(adata: AnnData, library_key: str | None) -> np.ndarray | None:
    """Integer section code of each spot, or ``None`` without ``library_key``."""
    if library_key is None:
        return None
    if library_key not in adata.obs:
        msg = (
            f"library_key={library_key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)}): "
            "name the column that holds each spot's section, or pass library_key=None for a single section."
        )
        raise InputError(msg)
    codes = pd.Categorical(adata.obs[library_key]).codes.astype(np.int64)
    if np.any(codes < 0):
        msg = f"adata.obs[{library_key!r}] has missing values: give every spot a section."
        raise InputError(msg)
    return codes


def section_columns(adata: AnnData) -> Iterator[tuple[str, np.ndarray]]:
    """Yield the categorical ``obs`` columns that could name sections (2-100 groups, none missing), with codes."""
    for column in adata.obs.columns:
        values = adata.obs[column]
        if isinstance(values.dtype, pd.CategoricalDtype) and 2 <= values.nunique() <= 100:
            codes = values.cat.codes.to_numpy()
            if (codes >= 0).all():
                yield str(column), codes


def stacked_sections(adata: AnnData) -> str | None:
    """Return the ``obs`` column whose groups look like stacked sections by their array positions, else ``None``.

    Sections concatenated with ``anndata.concat`` repeat array positions: many positions (at least
    10 spots and 1 %) are taken twice overall, but none twice within a group of the column. A few
    repeated spots within one section (whose categorical columns, e.g. domain labels, may differ)
    are not sections.
    """
    if "array_row" not in adata.obs or "array_col" not in adata.obs:
        return None
    pos = adata.obs[["array_row", "array_col"]].reset_index(drop=True)
    if pos.duplicated(keep=False).sum() < max(10, 0.01 * len(pos)):
        return None
    for column, codes in section_columns(adata):
        if not pos.assign(_section=codes).duplicated().any():
            return column
    return None
