"""AnnData ``.h5ad`` files."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata
from anndata import AnnData

from .._errors import InputError

__all__ = ["read_h5ad"]

logger = logging.getLogger(__name__)


def read_h5ad(path: Path) -> AnnData:
    """Read an ``.h5ad`` file into memory, keeping names exactly as stored.

    anndata's warning about repeated names is silenced here because :func:`spotfill.io.read`
    reports them as an error (with ``validate=True``) instead of renaming anything. So is anndata
    0.10's warning that an empty file's index is converted to strings: the empty matrix is an error.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*names are not unique.*", category=UserWarning)
        warnings.filterwarnings("ignore", message="Transforming to str index", category=UserWarning)
        try:
            adata = anndata.read_h5ad(path)
        except (OSError, KeyError) as err:
            msg = f"cannot read {path} as an .h5ad file ({err}): is it a complete AnnData file?"
            raise InputError(msg) from None
    return adata
