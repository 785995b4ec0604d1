"""Writers: the whole AnnData as ``.h5ad``, or one matrix as a CSV/TSV table. Both are atomic."""

from __future__ import annotations

import errno
import gzip
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._errors import InputError
from .._files import atomic_path, check_file_target

__all__ = ["MAX_TABLE_ENTRIES", "check_free_space", "check_target", "write"]

logger = logging.getLogger(__name__)

#: largest spots x genes matrix exported as a text table (beyond it, write .h5ad)
MAX_TABLE_ENTRIES = 50_000_000
_CHUNK_CELLS = 1_000_000


def _kind(path: Path) -> Literal["h5ad", "csv", "tsv"]:
    name = path.name.lower()
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".tsv", ".tsv.gz")):
        return "tsv"
    msg = f"cannot write {path}: unknown extension; use .h5ad (the whole AnnData) or .csv/.tsv (one matrix)."
    raise InputError(msg)


def write(
    adata: AnnData,
    path: str | os.PathLike[str],
    *,
    overwrite: bool | Literal["input"] = False,
    layer: str | None = None,
) -> Path:
    """Write ``adata`` to ``.h5ad``, or export one of its matrices to ``.csv``/``.tsv`` (optionally ``.gz``).

    Files are written atomically: to a temporary file in the target folder, then renamed over the
    target, so an interrupted write never leaves a truncated file (nor a temporary one).

    Overwriting rule: an existing file is replaced only with ``overwrite=True``. The files the data
    were read from (``adata.uns['spotfill_io']``, set by :func:`spotfill.io.read`: the input, its
    coordinates or selection table, a Space Ranger output's matrix and positions files) are protected
    even then, so results never replace the raw input by accident; replacing one needs the explicit
    ``overwrite="input"``. A file that backs ``adata`` (``backed`` mode) is never replaced.

    Parameters
    ----------
    adata
        The data to write.
    path
        Target file; the extension picks the format (``.h5ad``, ``.csv``, ``.tsv``, ``.csv.gz``, ``.tsv.gz``).
        The folder must exist.
    overwrite
        ``False``: refuse an existing file. ``True``: replace an existing file other than the input.
        ``"input"``: also allow replacing the file the data were read from.
    layer
        Text tables only: the matrix to export (``None``: ``adata.X``). Tables hold spots in rows and
        genes in columns, with their names, and are refused above 50 million entries.

    Returns
    -------
    The path written.

    Raises
    ------
    InputError
        Unknown extension, missing folder, an existing file without the matching ``overwrite``, an
        unknown layer, or a table too large for text.
    """
    target = check_target(adata, path, overwrite=overwrite, layer=layer)
    kind = _kind(target)
    if kind == "h5ad":
        check_free_space(adata, target)
        with atomic_path(target, suffix=".h5ad") as tmp:
            adata.write_h5ad(tmp)
    else:
        _write_table(adata, target, sep="," if kind == "csv" else "\t", layer=layer)
    logger.info("wrote %s", target)
    return target


#: Bytes an .h5ad file spends per variable-length string beyond its characters (HDF5 heap entry and
#: reference; measured: 200,000 strings of 10 characters take 13 MiB).
_STRING_OVERHEAD = 64


def _nbytes(value: Any) -> int:
    """Bytes of ``value`` (array, sparse or backed matrix, DataFrame, list of strings or mapping) in ``.h5ad``."""
    if sp.issparse(value):
        return int(value.data.nbytes + value.indices.nbytes + value.indptr.nbytes)
    if getattr(value, "format", None) in ("csr", "csc") and hasattr(value, "group"):  # backed sparse X
        return sum(int(value.group[name].nbytes) for name in ("data", "indices", "indptr"))
    if isinstance(value, list | tuple) or (isinstance(value, np.ndarray) and value.dtype == object):
        items = value.ravel() if isinstance(value, np.ndarray) else value
        return sum(len(v) + _STRING_OVERHEAD if isinstance(v, str | bytes) else _nbytes(v) for v in items)
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(index=True, deep=True).sum())
    if isinstance(value, Mapping):
        return sum(_nbytes(v) for v in value.values())
    return int(getattr(value, "nbytes", 0))


def h5ad_size(adata: AnnData) -> int:
    """Estimate the size in bytes of ``adata`` written (uncompressed) as ``.h5ad``: its arrays and tables."""
    parts: list[Any] = [adata.X, adata.obs, adata.var, adata.uns]
    for mapping in (adata.layers, adata.obsm, adata.varm, adata.obsp, adata.varp):
        parts.extend(mapping.values())
    if adata.raw is not None:
        parts += [adata.raw.X, adata.raw.var, *adata.raw.varm.values()]
    return sum(_nbytes(p) for p in parts)


def check_free_space(adata: AnnData, target: Path, *, extra: int = 0) -> None:
    """Refuse to start an ``.h5ad`` write that cannot fit on the target's disk.

    ``extra``: bytes still to be added to ``adata`` before it is written (a result not computed yet),
    so a caller can refuse before a long computation.

    HDF5 does not fail cleanly on a full disk (h5py 3.x can crash the process), so the space is
    checked first: the estimated file size plus 1 MiB must be free (the temporary file is written
    beside ``target`` before it replaces it, so an existing file's space does not count).
    """
    need = h5ad_size(adata) + int(extra) + 2**20
    free = shutil.disk_usage(target.parent).free
    if free < need:
        msg = (
            f"not enough space (the data need about {need / 2**20:.3g} MiB and its folder has "
            f"{free / 2**20:.3g} MiB free; free some space or write to another disk)"
        )
        raise OSError(errno.ENOSPC, msg, str(target))


def check_target(
    adata: AnnData,
    path: str | os.PathLike[str],
    *,
    overwrite: bool | Literal["input"] = False,
    layer: str | None = None,
    n_columns: int | None = None,
) -> Path:
    """Raise the error :func:`write` would raise for ``path`` before writing anything; return the target path.

    Lets a caller (the CLI) refuse a bad output before a long computation. The existence of ``layer``
    is not checked (it may be the result still to be computed). ``n_columns``: the number of columns
    a text table will have, when it is not ``adata.n_vars`` (a table of a few imputed genes).
    """
    target = Path(path).expanduser()
    kind = _kind(target)
    if overwrite not in (False, True, "input"):
        msg = f"overwrite must be False, True or 'input', got {overwrite!r}."
        raise InputError(msg)
    check_file_target(target, endings=".h5ad, .csv or .tsv")
    if kind == "h5ad" and layer is not None:
        msg = (
            "layer= (--export-layer) selects the matrix of a .csv/.tsv export; an .h5ad keeps every layer "
            "(drop layer= / --export-layer)."
        )
        raise InputError(msg)
    if kind != "h5ad":
        _check_table_size(adata.n_obs, adata.n_vars if n_columns is None else int(n_columns))
    _check_existing(adata, target, overwrite)
    return target


def _check_table_size(n_obs: int, n_columns: int) -> None:
    n_entries = n_obs * n_columns
    if n_entries > MAX_TABLE_ENTRIES:
        msg = (
            f"{n_obs} spots x {n_columns} genes ({n_entries:.2g} entries) is too large for a text table "
            f"(limit {MAX_TABLE_ENTRIES:.0e}): write .h5ad instead, or subset the genes first."
        )
        raise InputError(msg)


def input_files(info: object) -> list[Path]:
    """Return the files (and Matrix Market folders) that :func:`spotfill.io.read` read, from ``uns['spotfill_io']``.

    A Space Ranger read names its matrix and positions; the output folder itself is not an input
    (results may be written, and rewritten, next to them).
    """
    if not isinstance(info, dict):
        return []
    keys = ("coords", "selection", "matrix", "positions") + (("path",) if info.get("format") != "visium" else ())
    values = [info.get(key) for key in keys]
    return [Path(str(v)).resolve() for v in values if v is not None and str(v) not in ("", "None")]


def _check_existing(adata: AnnData, target: Path, overwrite: bool | Literal["input"]) -> None:
    resolved = target.resolve()
    if adata.isbacked and adata.filename is not None and Path(adata.filename).resolve() == resolved:
        msg = f"cannot write {target}: it backs this AnnData (backed mode); write to another file."
        raise InputError(msg)
    if not target.exists():
        return
    # the input: every file read (counts, coordinates, ST selection, Space Ranger matrix and positions;
    # a Matrix Market matrix is a folder of files)
    inputs = input_files(adata.uns.get("spotfill_io"))
    if any(resolved == src or (src.is_dir() and resolved.is_relative_to(src)) for src in inputs):
        if overwrite != "input":
            msg = (
                f"refusing to overwrite {target}: it is one of the files the data were read from. Write to a new "
                "file, or pass overwrite='input' in Python to replace the input on purpose (the command line never "
                "replaces its input)."
            )
            raise InputError(msg)
    elif overwrite is False:
        msg = f"{target} already exists: pass overwrite=True (spotfill --overwrite) to replace it, or use another name."
        raise InputError(msg)


def _write_table(adata: AnnData, target: Path, *, sep: str, layer: str | None) -> None:
    if layer is None:
        M = adata.X
    elif layer in adata.layers:
        M = adata.layers[layer]
    else:
        msg = (
            f"layer {layer!r} (--export-layer) not found; available layers: {sorted(adata.layers)}. "
            "Use layer=None (no --export-layer) for adata.X."
        )
        raise InputError(msg)
    if M is None:
        msg = "adata.X is empty (None): pass layer= (--export-layer) to export a layer."
        raise InputError(msg)
    _check_table_size(adata.n_obs, adata.n_vars)
    values = M.data if sp.issparse(M) else np.asarray(M)
    as_int = values.dtype.kind in "iub" or (
        values.dtype.kind == "f" and bool(np.all(np.isfinite(values))) and np.array_equal(values, np.round(values))
    )
    step = max(1, _CHUNK_CELLS // max(adata.n_vars, 1))
    columns = adata.var_names.astype(str)
    with atomic_path(target, suffix=target.suffix) as tmp:
        fh: IO[str]
        opener = gzip.open(tmp, "wt", newline="") if target.name.lower().endswith(".gz") else open(tmp, "w", newline="")
        with opener as fh:
            if adata.n_obs == 0:
                pd.DataFrame(columns=columns).rename_axis("spot").to_csv(fh, sep=sep)
            for start in range(0, adata.n_obs, step):
                block = M[start : start + step]
                block = block.toarray() if sp.issparse(block) else np.asarray(block)
                if as_int:
                    block = block.astype(np.int64)
                frame = pd.DataFrame(block, index=adata.obs_names[start : start + step].astype(str), columns=columns)
                frame.to_csv(fh, sep=sep, header=start == 0, index_label="spot")
