"""Stereo-seq GEM files: one line per (gene, DNB) with its UMI count, binned into square spots.

A GEM file (STOmics' SAW pipeline; ``.gem`` or ``.gem.gz``, tab-separated) starts with ``#``
header lines (``#OffsetX=...``), then the columns ``geneID`` (and sometimes ``geneName``), ``x``,
``y`` (DNB coordinates on the chip, 500 nm apart) and the count, ``MIDCount``, ``MIDCounts`` or
``UMICount`` (older and newer versions; an ``ExonCount`` column is ignored). DNBs are far smaller
than a cell, so they are summed in square bins of ``bin_size`` x ``bin_size`` DNBs (Stereo-seq's
"bin50" is 25 um), read in chunks: memory grows with the binned matrix, not with the file.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._errors import InputError
from .._logging import logger
from .._validation import is_int
from ._table import BROKEN_FILE, broken_file_message, make_anndata

__all__ = ["is_gem", "read_gem"]

_COUNT_COLUMNS = ("MIDCount", "MIDCounts", "UMICount")
_CHUNK_ROWS = 2_000_000  # about 200 MB of parsed rows at a time


def is_gem(path: Path) -> bool:
    """Whether ``path`` is named like a GEM file (``.gem``, optionally ``.gz``)."""
    name = path.name.lower()
    return name.endswith((".gem", ".gem.gz"))


def _header(path: Path) -> tuple[list[str], int]:
    """Return the column names and the number of lines before them (``#`` lines and blank ones)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as fh:
            for n_before, line in enumerate(fh):
                text = line.lstrip("\ufeff").rstrip("\r\n")
                if text.startswith("#") or not text.strip():
                    continue
                return text.split("\t"), n_before
    except BROKEN_FILE as err:
        raise InputError(broken_file_message(path, err)) from None
    msg = f"{path} has no column header: a GEM file needs the columns geneID, x, y and MIDCount."
    raise InputError(msg)


def _merge(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Concatenate ``(bin x, bin y, gene, count)`` parts and sum the entries of each (bin, gene)."""
    bx, by, g, n = (np.concatenate(p) for p in zip(*parts, strict=True))
    if bx.size == 0:
        return bx, by, g, n
    order = np.lexsort((g, by, bx))
    bx, by, g, n = bx[order], by[order], g[order], n[order]
    first = np.empty(bx.size, dtype=bool)
    first[0] = True
    first[1:] = (bx[1:] != bx[:-1]) | (by[1:] != by[:-1]) | (g[1:] != g[:-1])
    starts = np.flatnonzero(first)
    return bx[starts], by[starts], g[starts], np.add.reduceat(n, starts)


def read_gem(path: Path, *, bin_size: int = 50) -> AnnData:
    """Read a Stereo-seq GEM file, summing the DNBs of each ``bin_size`` x ``bin_size`` square.

    See :func:`spotfill.io.read`. Spots are the non-empty bins, named ``"<bin x>_<bin y>"``;
    ``obs['array_col']``, ``obs['array_row']`` are the bin indices (a square grid of spacing 1),
    counted from the first occupied bin, ``obsm['spatial']`` the bin centres in the chip's DNB
    units, ``((x // bin_size + 0.5) * bin_size, (y // bin_size + 0.5) * bin_size)``. Genes are
    ``geneID`` (``var['gene_name']`` keeps ``geneName`` when present). The file is read in chunks
    whose (bin, gene) sums are merged as they accumulate, so memory follows the binned matrix.
    """
    if not is_int(bin_size) or bin_size < 1:
        msg = (
            "bin_size must be a positive integer (DNBs per side of a spot, e.g. 50 for Stereo-seq's bin50), "
            f"got {bin_size!r}."
        )
        raise InputError(msg)
    columns, n_before = _header(path)
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
    parts: list[tuple[np.ndarray, ...]] = []
    merged_size = 0
    n_rows = 0
    try:
        with pd.read_csv(
            path,
            sep="\t",
            skiprows=n_before,
            usecols=use,
            dtype={"geneID": str, "x": np.int64, "y": np.int64, count_col: np.float64, "geneName": str},
            keep_default_na=False,  # gene ids such as "NA" or "None" are names
            na_values={"x": [""], "y": [""], count_col: [""]},
            quoting=csv.QUOTE_NONE,
            encoding="utf-8-sig",
            chunksize=_CHUNK_ROWS,
        ) as reader:  # closed on errors too
            for chunk in reader:
                if chunk.empty:
                    continue
                n_rows += len(chunk)
                counts = chunk[count_col].to_numpy()
                if chunk[["x", "y", count_col]].isna().to_numpy().any() or (chunk["geneID"] == "").any():
                    msg = f"{path} has empty fields in its geneID, x, y or {count_col} columns."
                    raise InputError(msg)
                if not np.isfinite(counts).all() or counts.min() < 0:
                    msg = f"{path} holds negative or non-finite values in {count_col}: a GEM file holds UMI counts."
                    raise InputError(msg)
                codes, uniques = pd.factorize(chunk["geneID"], sort=False)
                local = np.array([genes.setdefault(g, len(genes)) for g in uniques], dtype=np.int64)
                if "geneName" in chunk:
                    first = chunk.drop_duplicates("geneID")
                    names.update(zip(first["geneID"], first["geneName"], strict=True))
                bx, by = chunk["x"].to_numpy() // bin_size, chunk["y"].to_numpy() // bin_size
                parts.append(_merge([(bx, by, local[codes], counts)]))
                held = sum(p[0].size for p in parts)
                if len(parts) > 1 and held > 2 * max(merged_size, _CHUNK_ROWS):
                    parts = [_merge(parts)]  # the same (bin, gene) in several chunks is stored once
                    merged_size = parts[0][0].size
    except InputError:
        raise
    except BROKEN_FILE as err:  # before ValueError: a UnicodeDecodeError is one
        raise InputError(broken_file_message(path, err)) from None
    except (ValueError, OverflowError, pd.errors.ParserError) as err:
        msg = f"cannot read {path} as a GEM file: {err}. x and y must be integers and {count_col} a number."
        raise InputError(msg) from None
    if not n_rows:
        msg = f"{path} holds no counts (only a header)."
        raise InputError(msg)
    bx, by, g, n = _merge(parts)
    # spots: the distinct bins, ordered by x then y
    new_bin = np.empty(bx.size, dtype=bool)
    new_bin[0] = True
    new_bin[1:] = (bx[1:] != bx[:-1]) | (by[1:] != by[:-1])
    spot = np.cumsum(new_bin) - 1
    col, row = bx[new_bin], by[new_bin]
    X = sp.csr_matrix((n, (spot, g)), shape=(col.size, len(genes)))
    X.sort_indices()
    gene_ids = pd.Index(list(genes), dtype=object)
    adata = make_anndata(X, pd.Index([f"{c}_{r}" for c, r in zip(col, row, strict=True)]), gene_ids)
    if names:
        adata.var["gene_name"] = [names.get(gid, "") for gid in gene_ids]
    adata.obs["array_col"] = (col - col.min()).astype(np.int64)
    adata.obs["array_row"] = (row - row.min()).astype(np.int64)
    adata.obsm["spatial"] = np.column_stack([(col + 0.5) * bin_size, (row + 0.5) * bin_size]).astype(np.float64)
    adata.uns["spotfill_io"] = {"bin_size": str(bin_size), "count_column": count_col}
    logger.info("GEM %s: %d bins of %d x %d DNBs, %d genes", path, adata.n_obs, bin_size, bin_size, adata.n_vars)
    return adata
