"""10x Genomics Space Ranger output folders (Visium, and Visium HD ``binned_outputs/square_*``).

A folder (or its ``outs/`` parent) holds a feature-barcode matrix (``filtered_feature_bc_matrix.h5``
or the ``filtered_feature_bc_matrix/`` Matrix Market folder) and ``spatial/tissue_positions.csv``
(Space Ranger >= 2.0, with a header), ``spatial/tissue_positions_list.csv`` (older, no header) or
``spatial/tissue_positions.parquet`` (Visium HD).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._errors import InputError
from .._logging import warn
from ._table import BROKEN_FILE, broken_file_message, first_line

__all__ = ["SpaceRangerFiles", "find_spaceranger", "read_visium"]

logger = logging.getLogger(__name__)

POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
_POSITION_FILES = ("tissue_positions.csv", "tissue_positions_list.csv", "tissue_positions.parquet")
_MATRIX_NAMES = ("filtered_feature_bc_matrix", "raw_feature_bc_matrix")


@dataclass(frozen=True)
class SpaceRangerFiles:
    """The files of one Space Ranger output used by the reader."""

    folder: Path
    matrix: Path
    positions: Path


def _find_matrix(folder: Path) -> Path | None:
    for name in _MATRIX_NAMES:
        h5 = folder / f"{name}.h5"
        if h5.is_file():
            return h5
        mtx = folder / name
        if (mtx / "matrix.mtx.gz").is_file() or (mtx / "matrix.mtx").is_file():
            return mtx
    return None


def _find_positions(folder: Path) -> Path | None:
    for name in _POSITION_FILES:
        candidate = folder / "spatial" / name
        if candidate.is_file():
            return candidate
    return None


def find_spaceranger(path: Path) -> SpaceRangerFiles | None:
    """Locate the matrix and positions of a Space Ranger output at ``path`` or ``path/outs``.

    Returns ``None`` when ``path`` does not look like a Space Ranger output at all; raises
    :class:`InputError` when it half does (a matrix without positions, or several Visium HD bin sizes).
    """
    if path.is_file():  # the matrix .h5 itself
        if path.suffix == ".h5" and path.stem in _MATRIX_NAMES:
            positions = _find_positions(path.parent)
            if positions is not None:
                return SpaceRangerFiles(path.parent, path, positions)
        return None
    for folder in (path, path / "outs"):
        if not folder.is_dir():
            continue
        matrix, positions = _find_matrix(folder), _find_positions(folder)
        if matrix is not None and positions is not None:
            return SpaceRangerFiles(folder, matrix, positions)
        if matrix is not None:
            msg = (
                f"{folder} has a feature-barcode matrix but no spatial/tissue_positions.csv (or "
                "tissue_positions_list.csv): spotfill needs spot positions. Pass the Space Ranger folder with "
                "its spatial/ sub-folder, or a table with format='table' and coords= (--format table --coords FILE)."
            )
            raise InputError(msg)
        for binned in (folder / "binned_outputs", folder):
            if not binned.is_dir() or binned.name != "binned_outputs":
                continue
            bins = sorted(d.name for d in binned.iterdir() if d.is_dir() and _find_matrix(d) is not None)
            if bins:
                example = binned / ("square_008um" if "square_008um" in bins else bins[0])
                msg = f"{folder} is a Visium HD output with bins {', '.join(bins)}: pass one of them, e.g. {example}."
                raise InputError(msg)
    return None


def _read_positions(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        try:
            table = pd.read_parquet(path)
        except ImportError:
            msg = f"reading {path.name} needs a parquet engine: pip install pyarrow (or fastparquet)."
            raise InputError(msg) from None
        if "barcode" not in table.columns and table.index.name == "barcode":
            table = table.reset_index()
    else:
        has_header = first_line(path).split(",")[0].strip().strip('"') == "barcode"
        table = pd.read_csv(
            path,
            header=0 if has_header else None,
            names=None if has_header else POSITION_COLUMNS,
            dtype={0: str},
            encoding="utf-8-sig",
        )
    missing = [c for c in POSITION_COLUMNS if c not in table.columns]
    if missing:
        msg = f"{path} lacks the columns {missing}; expected {', '.join(POSITION_COLUMNS)}."
        raise InputError(msg)
    table["barcode"] = table["barcode"].astype(str)
    if not table["barcode"].is_unique:
        msg = f"{path} lists some barcodes twice: it is not a Space Ranger positions file."
        raise InputError(msg)
    return table.set_index("barcode")


_MATRIX_OPTIONS = {"h5": ("genome", "gex_only"), "mtx": ("gex_only", "prefix")}


def _read_matrix(path: Path, options: dict[str, object]) -> AnnData:
    import scanpy as sc

    kind = "h5" if path.suffix == ".h5" else "mtx"
    unknown = sorted(set(options) - set(_MATRIX_OPTIONS[kind]))
    if unknown:
        msg = (
            f"{path.name} is a {'10x .h5' if kind == 'h5' else 'Matrix Market'} matrix, which takes the options "
            f"{', '.join(_MATRIX_OPTIONS[kind])}, not {', '.join(unknown)}."
        )
        raise InputError(msg)

    with warnings.catch_warnings():
        # raw 10x symbols repeat (made unique below, as scanpy's mtx reader does)
        warnings.filterwarnings("ignore", message=".*names are not unique.*", category=UserWarning)
        try:
            if path.suffix == ".h5":
                adata = sc.read_10x_h5(path, **options)
            else:
                adata = sc.read_10x_mtx(path, var_names="gene_symbols", make_unique=True, **options)
        except BROKEN_FILE as err:  # a truncated matrix.mtx.gz (an interrupted download) among them
            raise InputError(broken_file_message(path, err)) from None
        except (OSError, KeyError, ValueError) as err:
            msg = f"cannot read the 10x matrix {path} ({err}): is it a complete Space Ranger output?"
            raise InputError(msg) from None
        adata.var_names_make_unique()
    # the mtx reader returns CSC (it transposes the genes x barcodes file); spots are rows everywhere
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    return adata


def read_visium(files: SpaceRangerFiles, **options: object) -> AnnData:
    """Read a Space Ranger output; see :func:`spotfill.io.read` for the layout written.

    ``options`` go to :func:`scanpy.read_10x_h5` (``genome``, ``gex_only``) or
    :func:`scanpy.read_10x_mtx` (``gex_only``, ``prefix``).
    """
    adata = _read_matrix(files.matrix, options)
    positions = _read_positions(files.positions)
    in_tissue = positions.index[positions["in_tissue"].to_numpy() == 1]
    keep = adata.obs_names.isin(in_tissue)
    if not keep.any():
        msg = (
            f"no barcode of {files.matrix} is an in-tissue spot of {files.positions}: are they from the same "
            "Space Ranger run?"
        )
        raise InputError(msg)
    unknown = int((~adata.obs_names.isin(positions.index)).sum())
    if unknown:  # out-of-tissue barcodes (a raw matrix) are expected; barcodes the positions lack are not
        warn(
            f"{unknown} of {adata.n_obs} barcodes of {files.matrix} are not in {files.positions} at all: are the "
            "two files from the same Space Ranger run?"
        )
    if not keep.all():
        logger.info("keeping the %d of %d barcodes that are in-tissue spots", keep.sum(), keep.size)
        adata = adata[keep].copy()
    rows = positions.loc[adata.obs_names]
    adata.obs["array_row"] = rows["array_row"].to_numpy(dtype=np.int64)
    adata.obs["array_col"] = rows["array_col"].to_numpy(dtype=np.int64)
    adata.obsm["spatial"] = rows[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)
    # the files read, which spotfill.io.write protects
    adata.uns["spotfill_io"] = {"matrix": str(files.matrix.resolve()), "positions": str(files.positions.resolve())}
    return adata
