"""Count tables of the original Spatial Transcriptomics (ST) pipeline.

Rows are spots named ``XxY`` by their array position (``10x13``; the spot-detection step may write
adjusted decimal positions such as ``9.85x12.99``), columns are genes. A ``*_selection.tsv`` spot
file from the ST spot detector maps array positions to image pixels, with columns ``x``, ``y``
(array position, whole numbers), ``new_x``, ``new_y`` (adjusted array position), ``pixel_x``,
``pixel_y`` (spot centre in image pixels) and ``selected`` (1 for spots under the tissue).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._errors import InputError
from ._table import first_line, make_anndata, read_count_matrix, sniff_sep, table_stem

__all__ = ["find_selection", "looks_like_st", "parse_spot_names", "read_st"]

logger = logging.getLogger(__name__)

_SPOT_PATTERN = r"^\s*(-?\d+(?:\.\d+)?)x(-?\d+(?:\.\d+)?)\s*$"
_SELECTION_COLUMNS = ("x", "y", "pixel_x", "pixel_y")


def parse_spot_names(names: pd.Index | np.ndarray | list[str]) -> np.ndarray | None:
    """Parse ``XxY`` spot names into an ``(n, 2)`` float array of (x, y), or ``None`` if any name does not match."""
    parts = pd.Series(np.asarray(names, dtype=str)).str.extract(_SPOT_PATTERN)
    if len(parts) == 0 or parts.isna().to_numpy().any():
        return None
    return parts.to_numpy(dtype=np.float64)


def looks_like_st(path: Path, *, transpose: bool = False) -> bool:
    """Whether the first column of a table (its header with ``transpose``) holds ``XxY`` spot names.

    Checked on the first 50 rows (header fields).
    """
    sep = sniff_sep(path)
    if transpose:
        names = [f.strip() for f in next(csv.reader([first_line(path)], delimiter=sep))[1:51]]
        return bool(names) and parse_spot_names(np.asarray(names)) is not None
    try:
        first = pd.read_csv(path, sep=sep, header=None, skiprows=1, usecols=[0], nrows=50, dtype=str)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError):
        return False
    return parse_spot_names(first[0].to_numpy()) is not None


def find_selection(path: Path) -> Path | None:
    """Find the ``<sample>_selection.tsv`` spot file of a count table named ``<sample>.tsv[.gz]``.

    Looks in the table's folder, its parent, then the parent's sub-folders with ``spot`` in their
    name (the HER2ST layout ``ST-cnts/A1.tsv.gz`` + ``ST-spotfiles/A1_selection.tsv``; other folders
    are not searched, so a file of an unrelated sample is not picked). Returns the nearest match or ``None``.
    """
    stem = table_stem(path)
    names = [f"{stem}_selection.tsv", f"{stem}_selection.tsv.gz"]
    if stem.endswith("_stdata"):
        base = stem[: -len("_stdata")]
        names += [f"{base}_selection.tsv", f"{base}_selection.tsv.gz"]
    folder = path.resolve().parent
    search = [folder, folder.parent]
    search += sorted(d for d in folder.parent.iterdir() if d.is_dir() and d != folder and "spot" in d.name.lower())
    for d in search:
        for name in names:
            candidate = d / name
            if candidate.is_file():
                return candidate
    return None


def _read_selection(selection: Path) -> pd.DataFrame:
    if not selection.is_file():
        msg = (
            f"selection file {selection} is not a file: pass the ST spot file (*_selection.tsv) or "
            "selection=False (--selection none)."
        )
        raise InputError(msg)
    try:
        table = pd.read_csv(selection, sep=sniff_sep(selection))
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        msg = f"cannot read the ST selection file {selection} ({err})."
        raise InputError(msg) from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in _SELECTION_COLUMNS if c not in table.columns]
    if missing:
        msg = (
            f"{selection} is not an ST spot selection file: columns {missing} are missing "
            f"(found {list(table.columns)}; expected x, y, new_x, new_y, pixel_x, pixel_y, selected)."
        )
        raise InputError(msg)
    if "selected" in table.columns:
        table = table[table["selected"].astype(float) == 1]
    return table


def read_st(
    path: Path, *, selection: str | os.PathLike[str] | Literal[False] | None = None, transpose: bool = False
) -> AnnData:
    """Read an ST pipeline count table (genes x spots with ``transpose``); see :func:`spotfill.io.read`."""
    X, spots, genes = read_count_matrix(path, transpose=transpose)
    xy = parse_spot_names(spots)
    if xy is None:
        bad = [s for s in spots[:200] if parse_spot_names([s]) is None][:3]
        msg = (
            f"{path} is not an ST count table: spot names must look like 'XxY' (e.g. '10x13'), got {bad}. "
            "For other tables use format='table' with coords= (--format table --coords FILE)."
        )
        raise InputError(msg)
    adata = make_anndata(X, spots, genes)
    if selection is None:
        sel_path = find_selection(path)
        if sel_path is not None:
            logger.info("using the spot selection file %s", sel_path)
    elif selection is False:
        sel_path = None
    else:
        sel_path = Path(selection)
    if sel_path is None:
        adata.obsm["spatial"] = xy
        adata.obs["array_row"] = np.round(xy[:, 1]).astype(np.int64)
        adata.obs["array_col"] = np.round(xy[:, 0]).astype(np.int64)
        adata.uns["spotfill_io"] = {"selection": "None"}
        return adata

    table = _read_selection(sel_path)
    integer_names = bool(np.all(xy == np.round(xy)))
    if integer_names:
        grid = np.round(xy).astype(np.int64)
        key_spots = pd.MultiIndex.from_arrays([grid[:, 0], grid[:, 1]])
        key_sel = pd.MultiIndex.from_arrays([table["x"].astype(np.int64), table["y"].astype(np.int64)])
    else:  # names written from the adjusted positions
        if "new_x" not in table.columns or "new_y" not in table.columns:
            msg = f"{path} names spots by adjusted positions but {sel_path} has no new_x/new_y columns."
            raise InputError(msg)
        key_spots = pd.MultiIndex.from_arrays([np.round(xy[:, 0], 2), np.round(xy[:, 1], 2)])
        key_sel = pd.MultiIndex.from_arrays(
            [np.round(table["new_x"].to_numpy(np.float64), 2), np.round(table["new_y"].to_numpy(np.float64), 2)]
        )
    if not key_sel.is_unique:
        msg = f"{sel_path} lists some array positions twice: keep one row per spot."
        raise InputError(msg)
    pos = key_sel.get_indexer(key_spots)
    keep = pos >= 0
    if not keep.any():
        msg = (
            f"no spot of {path} is in the selection file {sel_path}: check that they belong to the same "
            "section, or pass selection=False (--selection none) to use the array positions from the spot names."
        )
        raise InputError(msg)
    if not keep.all():
        logger.info("%d of %d spots are not selected in %s and are dropped", (~keep).sum(), keep.size, sel_path)
        adata = adata[keep].copy()
    rows = table.iloc[pos[keep]]
    adata.obsm["spatial"] = rows[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)
    adata.obs["array_row"] = rows["y"].to_numpy(dtype=np.int64)
    adata.obs["array_col"] = rows["x"].to_numpy(dtype=np.int64)
    adata.uns["spotfill_io"] = {"selection": str(sel_path.resolve())}
    return adata
