"""Stereo-seq GEM files: one line per (gene, DNB) with its UMI count, binned into square spots.

A GEM file (STOmics' SAW pipeline; ``.gem`` or ``.gem.gz``, tab-separated) starts with ``#``
header lines (``#OffsetX=...``), then the columns ``geneID`` (and sometimes ``geneName``), ``x``,
``y`` (DNB coordinates on the chip, 500 nm apart) and the count, ``MIDCount``, ``MIDCounts`` or
``UMICount`` (older and newer versions; an ``ExonCount`` column is ignored). DNBs are far smaller
than a cell, so they are summed in square bins of ``bin_size`` x ``bin_size`` DNBs (Stereo-seq's
"bin50" is 25 um), read in chunks: memory grows with the binned matrix, not with the file.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._errors import InputError
from .._logging import logger
from .._validation import is_int
from ._table import make_anndata

__all__ = ["is_gem", "read_gem"]

_COUNT_COLUMNS = ("MIDCount", "MIDCounts", "UMICount")
_CHUNK_ROWS = 2_000_000  # about 200 MB of parsed rows at a time


def is_gem(path: Path) -> bool:
    """Whether ``path`` is named like a GEM file (``.gem``, optionally ``.gz``)."""
    name = path.name.lower()
    return name.endswith((".gem", ".gem.gz"))


def _header(path: Path) -> tuple[list[str], int]:
    """Return the column names and the number of ``#`` lines before them."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            n_comments = 0
            for line in fh:
                if line.startswith("#"):
                    n_comments += 1
                    continue
                return line.rstrip("\r\n").split("\t"), n_comments
    except (OSError, UnicodeDecodeError) as err:
        msg = f"cannot read {path} as a GEM file ({err}): pass a tab-separated .gem or .gem.gz file."
        raise InputError(msg) from None
    msg = f"{path} has no column header: a GEM file needs the columns geneID, x, y and MIDCount."
    raise InputError(msg)


def read_gem(path: Path, *, bin_size: int = 50) -> AnnData:
    """Read a Stereo-seq GEM file, summing the DNBs of each ``bin_size`` x ``bin_size`` square.

    See :func:`spotfill.io.read`. Spots are the non-empty bins, named ``"<bin x>_<bin y>"``;
    ``obs['array_col']``, ``obs['array_row']`` are the bin indices (a square grid of spacing 1),
    counted from the first occupied bin, ``obsm['spatial']`` the bin centres in the chip's DNB
    units, ``((x // bin_size + 0.5) * bin_size, (y // bin_size + 0.5) * bin_size)``. Genes are
    ``geneID`` (``var['gene_name']`` keeps ``geneName`` when present).
    """
    if not is_int(bin_size) or bin_size < 1:
        msg = (
            "bin_size must be a positive integer (DNBs per side of a spot, e.g. 50 for Stereo-seq's bin50), "
            f"got {bin_size!r}."
        )
        raise InputError(msg)
    columns, n_comments = _header(path)
    count_col = next((c for c in _COUNT_COLUMNS if c in columns), None)
    missing = [c for c in ("geneID", "x", "y") if c not in columns] + ([] if count_col else ["MIDCount"])
    if missing:
        msg = (
            f"{path} is not a GEM file: columns {missing} missing (found {columns[:6]}); a GEM file has geneID, x, y "
            f"and one of {', '.join(_COUNT_COLUMNS)}, tab-separated."
        )
        raise InputError(msg)
    use = ["geneID", "x", "y", count_col] + (["geneName"] if "geneName" in columns else [])
    genes: dict[str, int] = {}
    names: dict[str, str] = {}
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    reader = pd.read_csv(
        path,
        sep="\t",
        skiprows=n_comments,
        usecols=use,
        dtype={"geneID": str, "x": np.int64, "y": np.int64, count_col: np.float64, "geneName": str},
        chunksize=_CHUNK_ROWS,
    )
    try:
        for chunk in reader:
            if chunk[["geneID", "x", "y", count_col]].isna().to_numpy().any():
                msg = f"{path} has empty fields in its geneID, x, y or {count_col} columns."
                raise InputError(msg)
            codes, uniques = pd.factorize(chunk["geneID"], sort=False)
            local = np.array([genes.setdefault(g, len(genes)) for g in uniques], dtype=np.int64)
            if "geneName" in chunk:
                first = chunk.drop_duplicates("geneID")
                names.update(zip(first["geneID"], first["geneName"].fillna(""), strict=True))
            bx = chunk["x"].to_numpy() // bin_size
            by = chunk["y"].to_numpy() // bin_size
            # sum each (bin, gene) within the chunk: the chunk's rows shrink to its binned entries
            frame = pd.DataFrame({"bx": bx, "by": by, "g": local[codes], "n": chunk[count_col].to_numpy()})
            summed = frame.groupby(["bx", "by", "g"], sort=False)["n"].sum()
            index = summed.index
            parts.append(
                (
                    index.get_level_values(0).to_numpy(),
                    index.get_level_values(1).to_numpy(),
                    index.get_level_values(2).to_numpy(),
                    summed.to_numpy(),
                )
            )
    except (ValueError, pd.errors.ParserError) as err:
        if isinstance(err, InputError):
            raise
        msg = f"cannot read {path} as a GEM file: {err}. x and y must be integers and {count_col} a number."
        raise InputError(msg) from None
    if not parts:
        msg = f"{path} holds no counts (only a header)."
        raise InputError(msg)
    bx, by, g, n = (np.concatenate(p) for p in zip(*parts, strict=True))
    if n.size and n.min() < 0:
        msg = f"{path} holds negative counts in {count_col}: a GEM file holds UMI counts."
        raise InputError(msg)
    bins = pd.MultiIndex.from_arrays([bx, by])
    spot, spot_bins = pd.factorize(bins, sort=True)
    X = sp.coo_matrix((n, (spot, g)), shape=(len(spot_bins), len(genes))).tocsr()  # sums repeats across chunks
    X.sum_duplicates()
    X.sort_indices()
    col = spot_bins.get_level_values(0).to_numpy()
    row = spot_bins.get_level_values(1).to_numpy()
    gene_ids = pd.Index(list(genes), dtype=object)
    adata = make_anndata(X, pd.Index([f"{c}_{r}" for c, r in zip(col, row, strict=True)]), gene_ids)
    if names:
        adata.var["gene_name"] = [names.get(gid, "") for gid in gene_ids]
    x0, y0 = int(col.min()) if col.size else 0, int(row.min()) if row.size else 0
    adata.obs["array_col"] = (col - x0).astype(np.int64)
    adata.obs["array_row"] = (row - y0).astype(np.int64)
    adata.obsm["spatial"] = np.column_stack([(col + 0.5) * bin_size, (row + 0.5) * bin_size]).astype(np.float64)
    adata.uns["spotfill_io"] = {"bin_size": str(bin_size), "count_column": count_col}
    logger.info("GEM %s: %d bins of %d x %d DNBs, %d genes", path, adata.n_obs, bin_size, bin_size, adata.n_vars)
    return adata
