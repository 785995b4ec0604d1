"""Generic delimited count tables (CSV/TSV, optionally gzipped) plus a coordinates table.

The count table holds one spot per row (or one gene per row with ``transpose=True``), the first
column naming the rows and the header naming the columns. It is read in chunks and turned into
CSR as it goes, so the dense table never sits in memory at once.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._errors import InputError
from .._logging import warn

__all__ = ["attach_coords", "read_count_matrix", "read_table", "sniff_sep", "table_stem"]

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".txt")

#: target number of table cells per chunk when streaming a count table
_CHUNK_CELLS = 5_000_000


def table_stem(path: Path) -> str:
    """Return the file name without its table suffix and an optional ``.gz`` (``A1.tsv.gz`` -> ``A1``)."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for suffix in TABLE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_table(path: Path) -> bool:
    """Whether ``path`` has a table suffix (``.csv``, ``.tsv``, ``.txt``, each optionally ``.gz``)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(TABLE_SUFFIXES)


def _open_text(path: Path):
    # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first name
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - caller closes


def first_line(path: Path) -> str:
    """Return the first line of a (possibly gzipped) text file, without the line break."""
    try:
        with _open_text(path) as fh:
            return fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError, EOFError) as err:
        msg = f"cannot read {path} as a text table ({err}): pass a CSV/TSV file, optionally gzipped."
        raise InputError(msg) from None


def sniff_sep(path: Path) -> str:
    """Guess the delimiter of a table from its header line (tab, comma or semicolon)."""
    line = first_line(path)
    counts = {sep: line.count(sep) for sep in ("\t", ",", ";")}
    sep = max(counts, key=counts.__getitem__)
    if counts[sep] == 0:
        return "\t" if ".tsv" in path.name.lower() else ","
    return sep


# pandas' missing-value strings, for the values of a count table only
_NA_VALUES = ["", "NA", "N/A", "n/a", "#N/A", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "None", "<NA>"]
# what a truncated or corrupt (compressed) file raises while pandas reads it
BROKEN_FILE = (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError)


def broken_file_message(path: Path, err: BaseException) -> str:
    """Say that ``path`` could not be read to the end (``err`` one of :data:`BROKEN_FILE`), and what to do."""
    if isinstance(err, UnicodeDecodeError):
        return f"{path} is not UTF-8 text ({err}): save it again as UTF-8 (e.g. 'CSV UTF-8' in Excel)."
    return (
        f"cannot read {path} to the end ({type(err).__name__}: {err}): a truncated or corrupt file? copy or download "
        "it again."
    )


def _header(path: Path, sep: str) -> list[str]:
    line = first_line(path)
    if not line:
        msg = f"{path} is empty: a count table needs a header line and at least one row."
        raise InputError(msg)
    fields = next(csv.reader([line], delimiter=sep))  # quoted names may contain the delimiter
    return [f.strip().strip('"').strip("'") for f in fields]


def read_count_matrix(
    path: Path, *, sep: str | None = None, transpose: bool = False
) -> tuple[sp.csr_matrix, pd.Index, pd.Index]:
    """Read a delimited count table as ``(X, spot_names, gene_names)`` with ``X`` spots x genes CSR float32.

    Parameters
    ----------
    path
        The table. The first column names the rows; the header names the columns (its first field,
        the corner, may be empty or absent as in R's ``write.table``).
    sep
        Delimiter; guessed from the header line when ``None``.
    transpose
        The rows are genes and the columns spots.

    Notes
    -----
    Column names are taken verbatim from the header (pandas would rename duplicates to ``A.1``), so
    duplicate names survive and are reported by validation.
    """
    sep = sniff_sep(path) if sep is None else sep
    header = _header(path, sep)
    blocks: list[sp.csr_matrix] = []
    row_names: list[np.ndarray] = []
    n_fields = len(header)
    chunksize = max(1, _CHUNK_CELLS // max(n_fields, 1))
    try:
        reader = pd.read_csv(
            path,
            sep=sep,
            header=None,
            skiprows=1,
            index_col=0,
            dtype={0: str},
            # names are text ("NA", "None" are genes and spots too); only the values may be missing
            keep_default_na=False,
            na_values=dict.fromkeys(range(1, n_fields + 1), _NA_VALUES),
            chunksize=chunksize,
            low_memory=False,
        )
        with reader:
            for chunk in reader:
                try:
                    values = chunk.to_numpy(dtype=np.float32)
                except (ValueError, TypeError):
                    bad = chunk.select_dtypes(exclude="number").columns[:1].tolist()
                    msg = (
                        f"{path} holds non-numeric values (e.g. in column {bad}): a count table has names in its "
                        "first column and header, and numbers everywhere else."
                    )
                    raise InputError(msg) from None
                blocks.append(sp.csr_matrix(values))
                row_names.append(chunk.index.to_numpy(dtype=str))
    except pd.errors.EmptyDataError:
        blocks = []
    except pd.errors.ParserError as err:
        msg = f"cannot parse {path} as a delimited table ({err}): check the delimiter and the number of fields per row."
        raise InputError(msg) from None
    except BROKEN_FILE as err:
        raise InputError(broken_file_message(path, err)) from None
    n_cols = blocks[0].shape[1] if blocks else max(n_fields - 1, 0)
    if len(header) == n_cols + 1:
        col_names = header[1:]
    elif len(header) == n_cols:
        col_names = header
    else:
        msg = f"{path}: the header has {len(header)} fields but the rows have {n_cols + 1}; fix the table's header."
        raise InputError(msg)
    X = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_cols), dtype=np.float32)
    rows = pd.Index(np.concatenate(row_names) if row_names else np.array([], dtype=str), dtype=str)
    cols = pd.Index(col_names, dtype=str)
    if transpose:
        return X.T.tocsr(), cols, rows
    return X, rows, cols


def make_anndata(X: sp.csr_matrix, obs_names: pd.Index, var_names: pd.Index) -> AnnData:
    """Build an AnnData without anndata's warning for repeated names (validation reports them instead).

    An empty string index is no string index to anndata 0.10 with pandas 2.0 ("Transforming to str
    index"): that warning is silenced too (the empty matrix is an error).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*names are not unique.*", category=UserWarning)
        warnings.filterwarnings("ignore", message="Transforming to str index", category=UserWarning)
        adata = AnnData(
            X=X.astype(np.float32, copy=False),
            obs=pd.DataFrame(index=obs_names),
            var=pd.DataFrame(index=var_names),
        )
    return adata


def read_table(
    path: Path, *, transpose: bool = False, coords: str | os.PathLike[str] | None = None, sep: str | None = None
) -> AnnData:
    """Read a generic count table, and attach spot coordinates from ``coords`` when given."""
    X, spots, genes = read_count_matrix(path, sep=sep, transpose=transpose)
    adata = make_anndata(X, spots, genes)
    if coords is not None:
        adata = attach_coords(adata, Path(coords))
    return adata


def attach_coords(adata: AnnData, coords: Path) -> AnnData:
    """Add ``obsm['spatial']`` (and ``obs['array_row'/'array_col']`` when present) from a coordinates table.

    The table is indexed by spot name (first column) and has ``x`` and ``y`` columns (case-insensitive;
    ``xcoord``, ``ycoord`` as in Slide-seq's ``BeadLocationsForR.csv``), optionally ``array_row`` and
    ``array_col``. Spots without coordinates are dropped with a warning;
    no spot in common is an error.
    """
    if adata.n_obs == 0:  # nothing to place; validation reports the empty matrix
        return adata
    if not coords.exists():
        msg = f"coordinates file {coords} does not exist: pass coords= (--coords) a CSV/TSV with columns spot, x, y."
        raise InputError(msg)
    sep = sniff_sep(coords)
    try:
        # no missing-value strings: a spot may be named "NA"; missing x or y are then non-numeric
        table = pd.read_csv(coords, sep=sep, index_col=0, dtype={0: str}, encoding="utf-8-sig", keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        msg = f"cannot read coordinates from {coords} ({err}): expected a CSV/TSV with columns spot, x, y."
        raise InputError(msg) from None
    except BROKEN_FILE as err:
        raise InputError(broken_file_message(coords, err)) from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    if "x" not in table.columns and "y" not in table.columns and {"xcoord", "ycoord"} <= set(table.columns):
        table = table.rename(columns={"xcoord": "x", "ycoord": "y"})  # Slide-seq's BeadLocationsForR.csv
    table.index = table.index.astype(str)
    missing = [c for c in ("x", "y") if c not in table.columns]
    if missing:
        msg = (
            f"coordinates file {coords} has no column {missing[0]!r} (columns: {list(table.columns)}): it needs "
            "the spot name in the first column and columns named x and y."
        )
        raise InputError(msg)
    if not table.index.is_unique:
        dup = table.index[table.index.duplicated()].unique()[:3].tolist()
        msg = f"coordinates file {coords} lists some spots twice (e.g. {dup}): keep one row per spot."
        raise InputError(msg)
    common = adata.obs_names.isin(table.index)
    if not common.any():
        msg = (
            f"no spot of the count table is in {coords} (count table spots e.g. {adata.obs_names[:3].tolist()}, "
            f"coordinate spots e.g. {table.index[:3].tolist()}): both must use the same spot names "
            "(use transpose=True, --transpose, if the table has genes in rows)."
        )
        raise InputError(msg)
    if not common.all():
        warn(
            f"{(~common).sum()} of {common.size} spots have no coordinates in {coords} and are dropped "
            f"(e.g. {', '.join(map(str, adata.obs_names[~common][:3]))})"
        )
        adata = adata[common].copy()
    rows = table.loc[adata.obs_names]
    try:
        xy = rows[["x", "y"]].to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        msg = f"coordinates file {coords} has non-numeric x or y values: fix them or drop those spots."
        raise InputError(msg) from None
    adata.obsm["spatial"] = xy
    for col in ("array_row", "array_col"):
        if col in rows.columns:
            vals = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=np.float64)
            if not np.all(np.isfinite(vals)) or not np.all(vals == np.round(vals)):
                msg = f"coordinates file {coords}: column {col} must hold whole numbers (grid positions)."
                raise InputError(msg)
            adata.obs[col] = vals.astype(np.int64)
    return adata
