"""spotfill: spatially aware imputation and denoising of spatial transcriptomics counts.

Typical use::

    import spotfill

    adata = spotfill.read("path/to/spaceranger/outs")
    spotfill.spatial_neighbors(adata)
    spotfill.impute(adata)                      # -> adata.layers["imputed_spotfill"]
"""

from __future__ import annotations

from . import datasets
from ._errors import InputError, SpotfillError, SpotfillWarning
from ._version import __version__
from .graph import spatial_neighbors
from .io import read, write
from .methods import impute, list_methods

__all__ = [
    "InputError",
    "SpotfillError",
    "SpotfillWarning",
    "__version__",
    "benchmark",
    "datasets",
    "impute",
    "list_methods",
    "read",
    "spatial_neighbors",
    "write",
]


def __getattr__(name: str):
    # heavier sub-packages load on first use
    if name in {"benchmark", "plotting"}:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
