"""The one reader: detect the format, read, check once at the boundary."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

from anndata import AnnData

from .._errors import InputError
from .._validation import check_counts, check_unique_names, get_coords
from ._gem import is_gem, read_gem
from ._h5ad import read_h5ad
from ._st import looks_like_st, read_st
from ._table import attach_coords, is_table, read_table
from ._visium import find_spaceranger, read_visium

__all__ = ["Format", "detect_format", "read", "read_option_files"]

logger = logging.getLogger(__name__)

Format = Literal["auto", "h5ad", "visium", "st", "table", "gem"]

SUPPORTED = (
    ".h5ad files, 10x Space Ranger output folders (Visium / Visium HD bins), original ST count tables "
    "(.tsv[.gz] with 'XxY' spot names), Stereo-seq GEM files (.gem[.gz]) and CSV/TSV count tables with coords="
)

# reader options accepted through **options, per format
_OPTIONS: dict[str, tuple[str, ...]] = {
    "h5ad": (),
    "visium": ("genome", "gex_only", "prefix"),
    "st": (),
    "table": ("sep",),
    "gem": ("bin_size",),
}


def detect_format(
    path: Path, *, coords: object = None, transpose: bool = False
) -> Literal["h5ad", "visium", "st", "table", "gem"]:
    """Guess the format of ``path`` (which must exist) from its name and, for tables, its spot names.

    A table is an ST count table when its spot names (first column; header with ``transpose``) look
    like ``XxY`` and no ``coords=`` is given.
    """
    if path.is_dir() or path.suffix.lower() == ".h5":
        if find_spaceranger(path) is not None:
            return "visium"
    elif path.suffix.lower() == ".h5ad":
        return "h5ad"
    elif is_gem(path):
        return "gem"
    elif is_table(path):
        if coords is None and looks_like_st(path, transpose=transpose):
            return "st"
        return "table"
    msg = f"cannot detect the format of {path}; supported: {SUPPORTED}. Pass format= (--format) to choose one."
    raise InputError(msg)


def read(
    path: str | os.PathLike[str],
    *,
    format: Format = "auto",  # shadows the builtin on purpose: the natural name, as in scanpy.read
    transpose: bool = False,
    coords: str | os.PathLike[str] | None = None,
    selection: str | os.PathLike[str] | Literal[False] | None = None,
    validate: bool = True,
    **options: object,
) -> AnnData:
    """Read spatial transcriptomics counts and spot positions into an :class:`~anndata.AnnData`.

    Parameters
    ----------
    path
        One of

        - an ``.h5ad`` file, read as stored (names are never renamed);
        - a 10x Space Ranger output folder, or its parent holding ``outs/``, or the matrix ``.h5``
          inside it (Visium; a Visium HD ``binned_outputs/square_008um/`` folder has the same layout):
          ``filtered_feature_bc_matrix.h5`` or the ``filtered_feature_bc_matrix/`` folder, plus
          ``spatial/tissue_positions.csv``, ``tissue_positions_list.csv`` or ``tissue_positions.parquet``
          (the last needs pyarrow: ``pip install "spotfill[hd]"``). Only in-tissue spots are kept; gene
          symbols become the ``var_names``, made unique as scanpy does (``var['gene_ids']`` keeps the
          Ensembl ids);
        - an original ST pipeline count table (``.tsv[.gz]``, rows = spots named ``XxY``,
          columns = genes; the other way round with ``transpose=True``), with its ``*_selection.tsv``
          spot file when found;
        - a Stereo-seq GEM file (``.gem[.gz]``: ``geneID``, ``x``, ``y``, ``MIDCount``/``MIDCounts``/
          ``UMICount``, tab-separated, ``#`` header lines), its DNBs summed in square bins of
          ``bin_size`` x ``bin_size`` (option, default 50: Stereo-seq's bin50, 25 um);
        - a generic CSV/TSV count table (spots x genes, first column the spot names) plus ``coords=``.
    format
        The format of ``path``; ``"auto"`` detects it from the name and, for tables, from the spot names.
    transpose
        Count tables (generic or ST): the rows are genes and the columns spots.
    coords
        A CSV/TSV of spot positions: first column the spot name, columns ``x`` and ``y``, optionally
        ``array_row`` and ``array_col``. Required for generic tables; for ``.h5ad`` files it replaces
        ``obsm['spatial']``. Spots without a position are dropped with a warning.
    selection
        ST tables only: the spot selection file (columns ``x``, ``y``, ``new_x``, ``new_y``, ``pixel_x``,
        ``pixel_y``, ``selected``). ``None`` looks for ``<sample>_selection.tsv`` next to the table, in its
        parent folder and in the parent's sub-folders named ``*spot*`` (as ``ST-spotfiles/``);
        ``False`` ignores any.
    validate
        Check the result (raise :class:`~spotfill.InputError` for an empty matrix, NaN or negative
        counts, repeated spot or gene names, or missing coordinates). Non-integer values are not
        checked here: the counts a method uses may be a layer, and :func:`spotfill.impute` and the
        benchmark warn about the matrix they use.
    **options
        Format-specific options: ``genome``, ``gex_only``, ``prefix`` (Space Ranger, passed to scanpy's
        10x readers); ``sep`` (generic tables, guessed by default); ``bin_size`` (GEM).

    Returns
    -------
    The data, with raw counts in ``X`` (CSR float32 for every format but ``.h5ad``, read as stored) and

    - ``obsm['spatial']``: ``(n_spots, 2)`` positions as ``(x, y)``: full-resolution image pixels
      ``(pxl_col_in_fullres, pxl_row_in_fullres)`` for Space Ranger, ``(pixel_x, pixel_y)`` for ST with a
      selection file, the ``(x, y)`` of the spot names for ST without one, the bin centres in DNB units
      for GEM, the ``x, y`` of ``coords``;
    - ``obs['array_row']``, ``obs['array_col']`` (int): the grid position where the format has one
      (for ST: ``array_col = x``, ``array_row = y``);
    - ``uns['spotfill_io']``: ``{'format': ..., 'path': <absolute path>}`` (plus ``selection`` for ST,
      ``matrix`` and ``positions`` for Space Ranger, ``coords`` when given): the files
      :func:`spotfill.io.write` protects (a Space Ranger folder itself is not).

    Raises
    ------
    InputError
        The path does not exist, its format is not recognised, or (``validate=True``) the data are unusable.
    """
    src = Path(path).expanduser()
    if not src.exists():
        msg = f"{src} does not exist: check the path."
        raise InputError(msg)
    if format not in get_args(Format):
        msg = f"unknown format {format!r}; choose one of {', '.join(get_args(Format))}."
        raise InputError(msg)
    fmt = detect_format(src, coords=coords, transpose=transpose) if format == "auto" else format
    _check_options(fmt, transpose=transpose, coords=coords, selection=selection, options=options)

    if fmt == "h5ad":
        if not src.is_file():
            msg = f"{src} is not a file: format='h5ad' (--format h5ad) needs an .h5ad file."
            raise InputError(msg)
        adata = read_h5ad(src)
        if coords is not None:
            adata = attach_coords(adata, Path(coords))
    elif fmt == "visium":
        files = find_spaceranger(src)
        if files is None:
            msg = (
                f"{src} is not a Space Ranger output: expected filtered_feature_bc_matrix(.h5) and "
                "spatial/tissue_positions.csv in it or in its outs/ folder."
            )
            raise InputError(msg)
        adata = read_visium(files, **options)
    elif fmt == "st":
        adata = read_st(src, selection=selection, transpose=transpose)
    elif fmt == "gem":
        adata = read_gem(src, **options)  # type: ignore[arg-type]
    else:
        adata = read_table(src, transpose=transpose, coords=coords, sep=options.get("sep"))  # type: ignore[arg-type]

    info = {"format": fmt, "path": str(src.resolve())}
    previous = adata.uns.get("spotfill_io")
    if fmt != "h5ad" and isinstance(previous, dict):
        info.update({str(k): str(v) for k, v in previous.items()})  # extra details from the reader
    if coords is not None:
        info["coords"] = str(Path(coords).resolve())
    adata.uns["spotfill_io"] = info
    if validate:
        _validate(adata, src, fmt, transpose=transpose)
    logger.info("read %s (%s): %d spots x %d genes", src, fmt, adata.n_obs, adata.n_vars)
    return adata


def read_option_files(read_options: Mapping[str, object], n_datasets: int, *, datasets: str = "datasets") -> list:
    """Return the files named by read options (``coords``, ``selection``), refusing them for several datasets.

    A coordinates table or an ST spot file belongs to one dataset: given with several, the others would
    silently take its positions. Callers that read several datasets with the same options (the
    benchmark, the report) call this first, and protect the files it returns from their outputs.
    ``datasets`` is how the caller's message names them (``"--data"`` for the report).
    """
    files = {key: read_options[key] for key in ("coords", "selection") if read_options.get(key) not in (None, False)}
    if n_datasets != 1 and "coords" in files:
        msg = f"coords= (--coords) names the coordinates of one count table, but {n_datasets} {datasets} were given."
        raise InputError(msg)
    if n_datasets != 1 and "selection" in files:
        msg = (
            f"selection= (--selection) names the spot file of one ST section, but {n_datasets} {datasets} were "
            "given: use selection=False (--selection none), or one dataset."
        )
        raise InputError(msg)
    return list(files.values())


def _check_options(fmt: str, *, transpose: bool, coords: object, selection: object, options: dict[str, object]) -> None:
    if transpose and fmt not in ("table", "st"):
        msg = f"transpose=True (--transpose) applies to count tables (generic or ST) only, not to format {fmt!r}."
        raise InputError(msg)
    if coords is not None and fmt not in ("table", "h5ad"):
        msg = f"coords= (--coords) applies to generic tables and .h5ad files; format {fmt!r} brings its own positions."
        raise InputError(msg)
    if selection is not None and selection is not False and fmt != "st":  # False (no spot file) fits any format
        msg = f"selection= (--selection) applies to ST count tables only, not to format {fmt!r}."
        raise InputError(msg)
    unknown = sorted(set(options) - set(_OPTIONS[fmt]))
    if unknown:
        allowed = ", ".join(_OPTIONS[fmt]) or "none"
        msg = f"unknown option(s) {unknown} for format {fmt!r}; accepted: {allowed}."
        raise InputError(msg)


def _validate(adata: AnnData, src: Path, fmt: str, *, transpose: bool = False) -> None:
    try:
        check_counts(adata.X, require_integer=False, name="the count matrix")
        check_unique_names(adata)
    except InputError as err:
        msg = f"{src}: {err}"
        raise InputError(msg) from None
    # non-integer values are not refused here: the matrix a method uses may be a layer, chosen later;
    # impute and the benchmark warn about the one they use
    if "spatial" not in adata.obsm:
        others = [k for k in adata.obsm if "spatial" in k.lower() or k.lower() in ("coords", "coordinates", "xy")]
        hint = f" (adata.obsm has {others}: copy the right one to obsm['spatial'])" if others else ""
        fix = (
            "pass coords= a CSV/TSV with columns spot, x, y (on the command line: --coords)"
            if fmt in ("table", "h5ad")
            else "check that the positions file belongs to this data"
        )
        if fmt == "table" and src.is_file() and looks_like_st(src, transpose=not transpose):
            flag = "without transpose=True (--transpose)" if transpose else "with transpose=True (--transpose)"
            fix = f"its {'rows' if transpose else 'columns'} are ST spot positions ('XxY'): read it {flag}"
        msg = f"{src} has no spot coordinates (adata.obsm['spatial'] is missing){hint}: {fix}."
        raise InputError(msg)
    try:
        get_coords(adata)
    except InputError as err:
        msg = f"{src}: {err}"
        raise InputError(msg) from None
