"""The bundled mouse olfactory bulb dataset (original ST platform, replicate 11)."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import anndata as ad

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["mouse_olfactory_bulb"]

_MOB_FILE = "mob_st_rep11.h5ad"


def mouse_olfactory_bulb() -> AnnData:
    """Load the bundled mouse olfactory bulb sample (Spatial Transcriptomics, Stahl et al. 2016).

    Replicate 11 of the original ST array (100 um spots on a square grid of spacing 1), with the
    five layer annotations distributed by the MERINGUE package. The file ships inside the package,
    so no network access is needed; every call reads it again and returns an independent object.

    Returns
    -------
    A 262 spots x 16,218 genes :class:`~anndata.AnnData` with

    ``X``
        Raw UMI counts, CSR float32.
    ``obsm['spatial']``
        Spot centres in array units (x = column, y = row), float64.
    ``obs['array_row']``, ``obs['array_col']``
        Integer grid position of each spot.
    ``obs['label']``
        Layer annotation (categorical, 5 layers from granular cell to olfactory nerve layer;
        NaN for 2 unlabelled spots).
    ``uns['dataset']``
        ``name`` and ``description`` (provenance).

    Examples
    --------
    >>> import spotfill
    >>> adata = spotfill.datasets.mouse_olfactory_bulb()
    >>> adata.shape
    (262, 16218)
    """
    source = resources.files(__package__).joinpath("data", _MOB_FILE)
    with resources.as_file(source) as path:
        return ad.read_h5ad(path)
