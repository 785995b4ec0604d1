"""Adapters that run published imputation and denoising tools ("peers") in the benchmark.

Every adapter has the shape the benchmark harness expects of a method,
``adapter(counts, coords, **options) -> expected counts``: it takes raw counts (spots x genes,
CSR, float32) and spot coordinates (spots x 2) and returns a dense ``float32`` array of expected
counts on the count scale of its input (same spots, same genes, same order), whatever scale the tool
works on inside. Each docstring says exactly how the tool's output is mapped back to counts.

The tools are optional (``pip install 'spotfill[peers]'``). A peer runs

- in this interpreter when its package is importable here, or
- in another interpreter when the environment variable ``SPOTFILL_PEER_PYTHON_<NAME>`` (for
  example ``SPOTFILL_PEER_PYTHON_SCVI``) or, for every peer at once, ``SPOTFILL_PEER_PYTHON`` names
  a Python executable. The adapter then calls ``python -m spotfill.benchmark._peer_worker`` in that
  interpreter and exchanges the matrices through temporary ``.npz`` files. The worker gets none of
  this interpreter's ``PYTHONPATH``, so it imports the tool and its dependencies from its own
  environment only; spotfill itself comes from this checkout's ``src/`` folder when spotfill runs
  from a source checkout, and must otherwise be installed there too (``pip install --no-deps spotfill``).

A peer that is in neither place raises :class:`~spotfill._errors.InputError` naming the package to
install; :func:`available_peers` tells which peers can run.

Settings are each tool's documented defaults, except for the training lengths, shortened so that a
benchmark run fits a CPU: scVI 200 epochs, STAGATE 500 epochs on the 3,000 most variable genes,
Smoother 200 epochs. They are keyword defaults of each adapter.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from .._errors import InputError, SpotfillError
from .._validation import check_counts

__all__ = [
    "PEERS",
    "PEER_PACKAGES",
    "PeerName",
    "available_peers",
    "missing_message",
    "peer_python",
    "run_halra",
    "run_magic",
    "run_scvi",
    "run_smoother",
    "run_stagate",
    "unavailable_reason",
]

logger = logging.getLogger(__name__)

PeerName = Literal["magic", "scvi", "stagate", "smoother", "halra"]

#: peer name -> (display name, PyPI distribution, import name)
PEER_PACKAGES: dict[str, tuple[str, str, str]] = {
    "magic": ("MAGIC", "magic-impute", "magic"),
    "scvi": ("scVI", "scvi-tools", "scvi"),
    "stagate": ("STAGATE", "stagate-modern", "STAGATE_pyG"),
    "smoother": ("Smoother", "smoother-omics", "smoother"),
    "halra": ("HALRA", "halra", "halra"),
}

_ENV_PREFIX = "SPOTFILL_PEER_PYTHON"
_EXIT_MISSING, _EXIT_INPUT = 3, 4  # a worker's exit codes: the tool is not installed / refused the input
_NORM_TARGET = 1e4  # normalize_total target of the log-normalised tools (scanpy / Seurat convention)


# ----------------------------------------------------------------------------------------------
# Environment resolution
# ----------------------------------------------------------------------------------------------


def peer_python(name: PeerName) -> str | None:
    """Return the interpreter named for peer ``name`` by the environment, or ``None``.

    ``SPOTFILL_PEER_PYTHON_<NAME>`` (upper case, e.g. ``SPOTFILL_PEER_PYTHON_STAGATE``) wins over
    ``SPOTFILL_PEER_PYTHON``; an empty value counts as unset.
    """
    _check_name(name)
    for var in (f"{_ENV_PREFIX}_{name.upper()}", _ENV_PREFIX):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def available_peers() -> dict[str, bool]:
    """Tell, for each peer, whether its tool can run (here or in its configured interpreter).

    The check looks the module up (``importlib.util.find_spec``) without importing it, so it is
    cheap; a tool whose import then fails still raises when run.

    Returns
    -------
    ``{name: available}`` for the five peers, in the order of :data:`PEERS`.
    """
    return {name: unavailable_reason(name) is None for name in PEER_PACKAGES}  # type: ignore[arg-type]


def unavailable_reason(name: PeerName) -> str | None:
    """Say why peer ``name`` cannot run, or return ``None`` when it can (see :func:`available_peers`).

    The reason names the fix: the package to install, or the environment variable whose interpreter
    cannot be started or lacks the tool.
    """
    _check_name(name)
    display, _, module = PEER_PACKAGES[name]
    python = peer_python(name)
    if python is None:
        return None if importlib.util.find_spec(module) is not None else missing_message(name)
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    try:
        res = subprocess.run([python, "-c", code], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"cannot start the {display} interpreter {python!r} ({err}): fix {_python_variable(name)}."
    if res.returncode != 0:
        return f"{missing_message(name)} (checked in {python})"
    return None


def _python_variable(name: str) -> str:
    """Return the environment variable naming peer ``name``'s interpreter (its own wins over the shared one)."""
    own = f"{_ENV_PREFIX}_{name.upper()}"
    return own if os.environ.get(own, "").strip() else _ENV_PREFIX


def _check_name(name: str) -> None:
    if name not in PEER_PACKAGES:
        msg = f"unknown peer {name!r}: choose one of {sorted(PEER_PACKAGES)}."
        raise InputError(msg)


def missing_message(name: str) -> str:
    """Say that peer ``name``'s package is missing, and how to install it or where to point spotfill."""
    display, dist, module = PEER_PACKAGES[name]
    return (
        f"{display} ({dist}) is not installed: pip install 'spotfill[peers]' or pip install {dist} "
        f"(module {module!r} not importable), or point {_ENV_PREFIX}_{name.upper()} at the Python of an "
        "environment that has it (benchmarks/peers/setup_envs.sh builds one)."
    )


class _ToolMissing(InputError):
    """The peer's package cannot be imported (a worker reports it with its own exit code)."""


def _import_tool(name: str, module: str | None = None) -> Any:
    """Import the tool's module, turning an import failure into the clear InputError."""
    mod = module or PEER_PACKAGES[name][2]
    try:
        with _quiet_tool(PEER_PACKAGES[name][0]):  # some tools warn or print on import
            return importlib.import_module(mod)
    except ImportError as err:
        msg = missing_message(name)
        raise _ToolMissing(msg) from err


@contextlib.contextmanager
def _quiet_tool(name: str) -> Iterator[None]:
    """Run a tool with its prints and warnings sent to the spotfill log instead of the console."""
    buf = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(buf),
        contextlib.redirect_stderr(buf),
    ):
        warnings.simplefilter("always")
        yield
    for w in caught:
        logger.debug("%s warning: %s: %s", name, w.category.__name__, w.message)
    text = buf.getvalue().strip()
    if text:
        logger.debug("%s output:\n%s", name, text)


# ----------------------------------------------------------------------------------------------
# Shared preparation
# ----------------------------------------------------------------------------------------------


def _prepare(X: sp.spmatrix | np.ndarray, coords: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    M = check_counts(X, require_integer=False, name="the counts")  # NaN, inf or negative: refused
    C = np.asarray(coords, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != M.shape[0] or C.shape[1] < 2:
        msg = (
            f"coords has shape {C.shape} but the counts have {M.shape[0]} spots: pass one row of "
            "(x, y) per spot, in the order of the counts."
        )
        raise InputError(msg)
    return M, C[:, :2]


def _nonempty(M: sp.csr_matrix) -> np.ndarray:
    """Return the spots with at least one count (the tools fail or return NaN on empty spots)."""
    return np.flatnonzero(np.diff(M.indptr) > 0)


def _expand_rows(Y: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Put the rows of ``Y`` back at ``rows`` of an ``n``-row zero matrix (empty spots predict 0)."""
    if rows.size == n:
        return Y
    out = np.zeros((n, Y.shape[1]), dtype=np.float32)
    out[rows] = Y
    return out


def _finish(Y: np.ndarray) -> np.ndarray:
    """Return the tool's output as float32 expected counts, clipped at 0; NaN or inf means the tool failed."""
    Y = np.asarray(Y, dtype=np.float32)
    bad = int(Y.size - np.count_nonzero(np.isfinite(Y)))
    if bad:
        msg = f"the tool returned {bad} NaN or infinite values (of {Y.size}): it diverged or failed on these data."
        raise InputError(msg)
    np.maximum(Y, 0.0, out=Y)
    return Y


def _library(M: sp.csr_matrix) -> np.ndarray:
    return np.asarray(M.sum(axis=1), dtype=np.float64).ravel()


def _log_normalise(M: sp.csr_matrix, lib: np.ndarray) -> sp.csr_matrix:
    """``log1p(x / lib * 1e4)`` per spot (scanpy ``normalize_total(target_sum=1e4)`` + ``log1p``)."""
    L = sp.diags(_NORM_TARGET / np.maximum(lib, 1e-12)) @ M
    L = sp.csr_matrix(L, dtype=np.float32)
    np.log1p(L.data, out=L.data)
    return L


def _median_nn_distance(coords: np.ndarray) -> float:
    from sklearn.neighbors import NearestNeighbors

    if coords.shape[0] < 2:
        return 1.0
    dist, _ = NearestNeighbors(n_neighbors=2).fit(coords).kneighbors(coords)
    d = float(np.median(dist[:, 1]))
    return d if d > 0 else 1.0


def _gene_mean_by_library(M: sp.csr_matrix, lib: np.ndarray) -> np.ndarray:
    """``lib_i * sum_i X_ig / sum_i lib_i``: the gene's share of all counts times the spot's library."""
    share = np.asarray(M.sum(axis=0), dtype=np.float64).ravel() / max(float(lib.sum()), 1e-12)
    return np.outer(lib, share)


# ----------------------------------------------------------------------------------------------
# The tools, run in this interpreter
# ----------------------------------------------------------------------------------------------


def _local_magic(M: sp.csr_matrix, coords: np.ndarray, *, knn: int, t: int | str, n_pca: int, seed: int) -> np.ndarray:
    magic = _import_tool("magic")
    rows = _nonempty(M)
    S = M[rows]
    lib = _library(S)
    target = float(np.median(lib))
    # documented preprocessing: library-size normalisation (to the median library) and sqrt
    N = sp.csr_matrix(sp.diags(target / lib) @ S, dtype=np.float64)
    np.sqrt(N.data, out=N.data)
    n_pca_eff = None if n_pca is None or n_pca >= min(N.shape) else n_pca
    with _quiet_tool("MAGIC"):
        op = magic.MAGIC(knn=min(knn, S.shape[0] - 1), t=t, n_pca=n_pca_eff, random_state=seed, verbose=0)
        Z = op.fit_transform(N, genes="all_genes")
    Z = np.maximum(np.asarray(Z, dtype=np.float64), 0.0)
    Y = (Z**2) * (lib / target)[:, None]
    return _expand_rows(_finish(Y), rows, M.shape[0])


def _local_halra(M: sp.csr_matrix, coords: np.ndarray, *, n_iter: int, quantile_prob: float, seed: int) -> np.ndarray:
    halra = _import_tool("halra")
    n, g = M.shape
    cells = np.arange(n).astype(str)
    genes = np.arange(g).astype(str)
    rank = None
    # halra drops the genes and spots without counts before its search: their number is what counts
    n_genes = int(np.count_nonzero(np.bincount(M.indices, minlength=g)))  # an int already (numpy's stub: intp)
    if min(_nonempty(M).size, n_genes) <= _HALRA_N_COMPS:
        rank = _small_halra_rank(halra, M, n_iter=n_iter, seed=seed)
    with _quiet_tool("HALRA"):
        Z, kept_cells, kept_genes = halra.halra(
            M.astype(np.float64),
            cells,
            genes,
            normalize=True,
            n_iter=n_iter,
            quantile_prob=quantile_prob,
            matrix_rank=rank,
            seed=seed,
            verbose=False,
        )
    r = np.asarray(kept_cells).astype(int)
    c = np.asarray(kept_genes).astype(int)
    Z = Z.toarray() if sp.issparse(Z) else np.asarray(Z)
    lib = _library(M)[r]
    Y = np.zeros((n, g), dtype=np.float32)
    Y[np.ix_(r, c)] = np.expm1(np.maximum(Z, 0.0)) * (lib / _NORM_TARGET)[:, None]
    return _finish(Y)


_HALRA_N_COMPS = 100  # halra's rank search uses 100 singular values and needs a larger matrix


def _small_halra_rank(halra: Any, M: sp.csr_matrix, *, n_iter: int, seed: int) -> int:
    """Choose ALRA's rank on a matrix too small for halra's 100-component search.

    The same rule with the search scaled down: singular values up to ``min(shape) - 1`` and the
    noise gaps from the last fifth of them (halra uses 100 and 80). Falls back to rank 1 when no
    gap stands out.
    """
    with _quiet_tool("HALRA"):
        F, _, _ = halra.filter_matrix(M.astype(np.float64), np.arange(M.shape[0]), np.arange(M.shape[1]), verbose=False)
        L = halra.log_normalize(F)
        n_comps = min(L.shape) - 1
        noise_start = min(int(0.8 * n_comps), n_comps - 5)
        if noise_start < 1:
            return 1
        try:
            rank = halra.choose_matrix_rank(L, n_iter, seed, n_comps=n_comps, noise_start=noise_start, verbose=False)
        except ValueError:
            return 1
    return max(int(rank), 1)


def _local_scvi(
    M: sp.csr_matrix, coords: np.ndarray, *, max_epochs: int, n_latent: int, batch_size: int, seed: int
) -> np.ndarray:
    scvi = _import_tool("scvi")
    import anndata as ad

    rows = _nonempty(M)
    S = M[rows]
    lib = _library(S)
    adata = ad.AnnData(S.copy())
    with _quiet_tool("scVI"):
        scvi.settings.seed = seed
        scvi.settings.dl_num_workers = 0
        scvi.model.SCVI.setup_anndata(adata)
        model = scvi.model.SCVI(adata, n_latent=n_latent)
        model.train(
            max_epochs=max_epochs,
            accelerator="cpu",
            batch_size=batch_size,
            enable_progress_bar=False,
            logger=False,
            enable_checkpointing=False,
        )
        freq = model.get_normalized_expression(adata, library_size=1, return_numpy=True)
    Y = np.asarray(freq, dtype=np.float64) * lib[:, None]
    return _expand_rows(_finish(Y), rows, M.shape[0])


def _local_stagate(
    M: sp.csr_matrix,
    coords: np.ndarray,
    *,
    n_top_genes: int,
    n_epochs: int,
    rad_cutoff: float | None,
    seed: int,
) -> np.ndarray:
    stagate = _import_tool("stagate")
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    rows = _nonempty(M)
    S = M[rows]
    C = coords[rows]
    lib = _library(S)
    Y = _gene_mean_by_library(S, lib)
    expressed = np.flatnonzero(np.diff(S.tocsc().indptr) > 0)
    if n_top_genes >= expressed.size:
        hvg = expressed
    else:
        tmp = ad.AnnData(S[:, expressed].copy())
        try:
            with _quiet_tool("STAGATE"):
                sc.pp.highly_variable_genes(tmp, flavor="seurat_v3", n_top_genes=n_top_genes)
        except ImportError as err:  # seurat_v3 needs scikit-misc, which stagate-modern does not pull in
            msg = (
                f"STAGATE's {n_top_genes} variable genes are chosen with scanpy's seurat_v3 flavour, which needs "
                f"scikit-misc: pip install scikit-misc ({err})."
            )
            raise InputError(msg) from err
        hvg = expressed[np.flatnonzero(tmp.var["highly_variable"].to_numpy())]
    hvg = np.sort(hvg)
    names = pd.Index([f"s{i}" for i in range(S.shape[0])])
    adata = ad.AnnData(_log_normalise(S[:, hvg], lib), obs=pd.DataFrame(index=names))
    adata.obsm["spatial"] = C
    radius = 1.5 * _median_nn_distance(C) if rad_cutoff is None else float(rad_cutoff)
    with _quiet_tool("STAGATE"):
        stagate.Cal_Spatial_Net(adata, rad_cutoff=radius, verbose=False)
        stagate.train_STAGATE(
            adata, n_epochs=n_epochs, random_seed=seed, save_reconstrction=True, device="cpu", verbose=False
        )
    rex = np.asarray(adata.layers["STAGATE_ReX"], dtype=np.float64)
    Y[:, hvg] = np.expm1(np.maximum(rex, 0.0)) * (lib / _NORM_TARGET)[:, None]
    return _expand_rows(_finish(Y), rows, M.shape[0])


def _local_smoother(
    M: sp.csr_matrix,
    coords: np.ndarray,
    *,
    k: int,
    rho: float,
    lambda_spatial_loss: float,
    lr: float,
    max_epochs: int,
    gene_block: int,
    scale: str = "counts",
    nonneg: bool = False,
    seed: int,
) -> np.ndarray:
    smoother = _import_tool("smoother")
    impute = _import_tool("smoother", "smoother.models.impute")
    import torch

    torch.manual_seed(seed)
    n, g = M.shape
    Y = np.empty((n, g), dtype=np.float32)
    step = g if gene_block is None or gene_block <= 0 else int(gene_block)
    # spots without counts (held out, P3) are the tool's "missing" spots: it imputes them from the
    # spatial prior, and expects them after the observed spots in the coordinates it is given
    lib = _library(M)
    seen = np.flatnonzero(lib > 0)
    order = np.r_[seen, np.flatnonzero(lib == 0)]
    with _quiet_tool("Smoother"):
        weights = smoother.SpatialWeightMatrix()
        weights.calc_weights_knn(coords[order], k=min(k, n - 1), verbose=False)
        loss = smoother.SpatialLoss("icar", weights, rho=rho, standardize_cov=True)
        # log1p of counts per 10,000 for scale="log1p", as the tool's tutorials smooth log expression
        C = (_log_normalise(M[seen], lib[seen]) if scale == "log1p" else M[seen]).tocsc()
        for start in range(0, g, step):
            stop = min(start + step, g)
            y_obs = torch.as_tensor(C[:, start:stop].toarray(), dtype=torch.float32)
            model = impute.ImputeTorch(
                y_obs,
                loss,
                fixed_obs=False,
                nonneg=nonneg,
                lambda_spatial_loss=lambda_spatial_loss,
                lr=lr,
                max_epochs=max_epochs,
                verbose=False,
                quiet=True,
            )
            Y[order, start:stop] = model.get_results().cpu().numpy()
    if scale == "log1p":
        # a spot without counts gets the mean library size of its k nearest observed spots
        depth = lib.copy()
        if seen.size < n and seen.size:
            from sklearn.neighbors import NearestNeighbors

            missing = np.flatnonzero(lib == 0)
            nn = NearestNeighbors(n_neighbors=min(k, seen.size)).fit(coords[seen])
            depth[missing] = lib[seen][nn.kneighbors(coords[missing], return_distance=False)].mean(axis=1)
        Y = (np.expm1(Y) * (depth / _NORM_TARGET)[:, None]).astype(np.float32)
    return _finish(Y)


_LOCAL: dict[str, Callable[..., np.ndarray]] = {
    "magic": _local_magic,
    "scvi": _local_scvi,
    "stagate": _local_stagate,
    "smoother": _local_smoother,
    "halra": _local_halra,
}


# ----------------------------------------------------------------------------------------------
# Dispatch: this interpreter or a worker in another one
# ----------------------------------------------------------------------------------------------


def _run(name: str, X: sp.spmatrix | np.ndarray, coords: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    M, C = _prepare(X, coords)
    python = peer_python(name)  # type: ignore[arg-type]
    if python is None:
        Y = _LOCAL[name](M, C, **options)
    else:
        Y = _run_in_worker(python, name, M, C, options)
    if Y.shape != M.shape:
        msg = f"{PEER_PACKAGES[name][0]} returned shape {Y.shape} for input {M.shape}; this is a bug in the adapter."
        raise SpotfillError(msg)
    return Y


def _run_in_worker(python: str, name: str, M: sp.csr_matrix, C: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    display = PEER_PACKAGES[name][0]
    with tempfile.TemporaryDirectory(prefix="spotfill-peer-") as tmp:
        src, dst = Path(tmp) / "input.npz", Path(tmp) / "output.npz"
        np.savez(src, data=M.data, indices=M.indices, indptr=M.indptr, shape=np.asarray(M.shape), coords=C)
        cmd = [python, "-m", "spotfill.benchmark._peer_worker", name, str(src), str(dst), json.dumps(options)]
        env = dict(os.environ)
        # the worker must run the tool itself, not call another worker
        for var in [v for v in env if v.startswith(_ENV_PREFIX)]:
            del env[var]
        # the worker imports everything from its own environment: none of this interpreter's paths
        # (they would shadow the tool's numpy, torch, ...), only a source checkout's src/ folder
        env.pop("PYTHONPATH", None)
        src_root = Path(__file__).resolve().parents[2]
        if src_root.name not in ("site-packages", "dist-packages"):
            env["PYTHONPATH"] = str(src_root)
        err_path = Path(tmp) / "error.txt"
        logger.info("running %s in %s", display, python)
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        except OSError as err:
            msg = f"cannot start the {display} interpreter {python!r} ({err}): fix {_python_variable(name)}."
            raise InputError(msg) from err
        if res.stderr.strip():
            logger.debug("%s worker stderr:\n%s", display, res.stderr.strip())
        if res.returncode == _EXIT_MISSING:
            msg = f"{missing_message(name)} (checked in {python})"
            raise InputError(msg)
        if res.returncode == _EXIT_INPUT and err_path.exists():  # the tool ran and refused the input
            msg = f"{err_path.read_text(encoding='utf-8').strip()} ({display} in {python})"
            raise InputError(msg)
        if res.returncode != 0 and "No module named 'spotfill'" in res.stderr:
            msg = (
                f"spotfill is not installed in {python}, the interpreter named for {display}: "
                "pip install --no-deps spotfill there (the same version as here)."
            )
            raise InputError(msg)
        if res.returncode != 0:
            tail = "\n".join(res.stderr.strip().splitlines()[-15:])
            msg = f"{display} failed in {python} (exit code {res.returncode}):\n{tail}"
            raise SpotfillError(msg)
        with np.load(dst) as f:
            return np.asarray(f["Y"], dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Public adapters
# ----------------------------------------------------------------------------------------------


def run_magic(
    X: sp.spmatrix | np.ndarray,
    coords: np.ndarray,
    *,
    knn: int = 5,
    t: int | Literal["auto"] = 3,
    n_pca: int = 100,
    seed: int = 0,
) -> np.ndarray:
    """Run MAGIC (``magic-impute``): diffusion over a kNN graph of spots in expression space.

    Preprocessing is MAGIC's documented one: each spot is scaled to the median library size, then
    square-rooted; ``magic.MAGIC(knn=5, t=3, n_pca=100, decay=1)`` is fitted and transforms all genes.
    Coordinates are not used (MAGIC is not spatial).

    Mapping back to counts: the output ``z`` (square-root scale) is clipped at 0 and squared, then
    multiplied by ``lib_i / median(lib)``, back on the scale of the spot's observed library ``lib_i``
    (squaring a smoothed square root under-estimates the mean, so rows sum below ``lib_i``). Spots
    without counts predict 0.

    Parameters
    ----------
    X
        Raw counts, spots x genes.
    coords
        Spot coordinates, spots x 2 (unused; kept for the common adapter shape).
    knn, t, n_pca
        MAGIC's parameters (its defaults).
    seed
        ``random_state`` of MAGIC (randomised PCA).

    Returns
    -------
    Expected counts, spots x genes, float32.
    """
    return _run("magic", X, coords, {"knn": knn, "t": t, "n_pca": n_pca, "seed": seed})


def run_halra(
    X: sp.spmatrix | np.ndarray,
    coords: np.ndarray,
    *,
    n_iter: int = 12,
    quantile_prob: float = 0.001,
    seed: int = 0,
) -> np.ndarray:
    """Run HALRA (``halra``): ALRA's adaptively thresholded low-rank approximation.

    Runs ``halra.halra(X, normalize=True)``: the tool log-normalises (``log1p(x / lib * 1e4)``),
    chooses the rank from the singular value gaps, thresholds each gene at its 0.001 quantile, rescales
    and restores the observed values. ALRA keeps most zeros as exact zeros (it is "zero-preserving").
    Coordinates are not used. On a matrix with at most 100 spots or genes (too small for halra's
    100-component rank search) the rank is chosen by the same rule on ``min(shape) - 1`` components.

    Mapping back to counts: ``expm1(z) * lib_i / 1e4`` with ``lib_i`` the spot's observed library.
    Genes and spots the tool drops for having no counts predict 0.

    Parameters
    ----------
    X
        Raw counts, spots x genes.
    coords
        Spot coordinates (unused; kept for the common adapter shape).
    n_iter, quantile_prob
        HALRA's power iterations and thresholding quantile (its defaults).
    seed
        Seed of the randomised SVD.

    Returns
    -------
    Expected counts, spots x genes, float32.
    """
    return _run("halra", X, coords, {"n_iter": n_iter, "quantile_prob": quantile_prob, "seed": seed})


def run_scvi(
    X: sp.spmatrix | np.ndarray,
    coords: np.ndarray,
    *,
    max_epochs: int = 200,
    n_latent: int = 10,
    batch_size: int = 128,
    seed: int = 0,
) -> np.ndarray:
    """Run scVI (``scvi-tools``), a variational autoencoder with a zero-inflated negative binomial likelihood.

    ``SCVI.setup_anndata`` on the raw counts, ``SCVI(adata)`` with its defaults (10 latent dimensions,
    ZINB, gene dispersion), trained on the CPU for ``max_epochs=200`` (the default would be
    ``min(round(20000 / n_spots * 400), 400)`` epochs) with its default 90/10 train/validation split.
    Coordinates are not used (scVI is not spatial).

    Mapping back to counts: ``get_normalized_expression(library_size=1)`` gives each spot's expected
    gene frequencies (rows sum to 1); they are multiplied by the spot's observed library ``lib_i``.
    Spots without counts predict 0.

    Parameters
    ----------
    X
        Raw counts, spots x genes.
    coords
        Spot coordinates (unused; kept for the common adapter shape).
    max_epochs
        Training epochs.
    n_latent, batch_size
        scVI's defaults.
    seed
        ``scvi.settings.seed`` (torch, numpy and the data split).

    Returns
    -------
    Expected counts, spots x genes, float32.
    """
    options = {"max_epochs": max_epochs, "n_latent": n_latent, "batch_size": batch_size, "seed": seed}
    return _run("scvi", X, coords, options)


def run_stagate(
    X: sp.spmatrix | np.ndarray,
    coords: np.ndarray,
    *,
    n_top_genes: int = 3000,
    n_epochs: int = 500,
    rad_cutoff: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Run STAGATE (``stagate-modern``, module ``STAGATE_pyG``), a graph-attention autoencoder on the spatial graph.

    The documented pipeline: the 3,000 most variable genes (``scanpy`` ``seurat_v3`` on raw counts),
    ``normalize_total(1e4)`` + ``log1p``, ``Cal_Spatial_Net`` (radius graph), ``train_STAGATE`` with
    hidden dims ``[512, 30]``, lr 1e-3, trained for ``n_epochs=500`` (default 1,000) and
    ``save_reconstrction=True``. The radius is ``1.5 x`` the median nearest-neighbour distance, which
    reproduces the tutorial's choice on Visium (``rad_cutoff=150`` pixels: the 6 hexagonal neighbours)
    whatever the unit of the coordinates; on a square ST grid it takes the 8 neighbours.

    Mapping back to counts: the reconstruction ``STAGATE_ReX`` (log-normalised, clipped at 0 by the
    tool) becomes ``expm1(r) * lib_i / 1e4``. STAGATE models only the variable genes; every other
    gene gets the library-scaled gene mean ``lib_i * sum_i X_ig / sum_i lib_i`` (the gene's share of
    all counts times the spot's observed library ``lib_i``). Spots without counts predict 0.

    Parameters
    ----------
    X
        Raw counts, spots x genes.
    coords
        Spot coordinates, spots x 2.
    n_top_genes
        Number of variable genes STAGATE models (all expressed genes when there are fewer).
    n_epochs
        Training epochs.
    rad_cutoff
        Radius of the spatial graph in coordinate units; ``None`` for 1.5 x the median
        nearest-neighbour distance.
    seed
        ``random_seed`` of ``train_STAGATE``.

    Returns
    -------
    Expected counts, spots x genes, float32.
    """
    options = {"n_top_genes": n_top_genes, "n_epochs": n_epochs, "rad_cutoff": rad_cutoff, "seed": seed}
    return _run("stagate", X, coords, options)


def run_smoother(
    X: sp.spmatrix | np.ndarray,
    coords: np.ndarray,
    *,
    k: int = 6,
    rho: float = 0.99,
    lambda_spatial_loss: float = 1.0,
    lr: float = 1e-3,
    max_epochs: int = 200,
    gene_block: int = 256,
    scale: Literal["counts", "log1p"] = "counts",
    nonneg: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Run Smoother (``smoother-omics``): denoising under a spatial (ICAR) prior.

    Documented usage: ``SpatialWeightMatrix().calc_weights_knn(coords, k=6)``, ``SpatialLoss('icar',
    weights, rho=0.99, standardize_cov=True)``, then ``ImputeTorch(y, loss, fixed_obs=False,
    nonneg=False, lambda_spatial_loss=1, lr=1e-3)`` on the counts of the observed spots, with
    ``max_epochs=200`` (default 1,000). Spots without any count (P3's held-out spots) are passed as the
    tool's missing spots (their coordinates after the observed ones'), which it imputes from the
    spatial prior; before session 4 they were passed as observed all-zero spots. Adam starts from the
    observed counts and takes 200 steps of size about ``lr``, so each value moves by at most about 0.2
    counts: on raw counts Smoother is a light smoothing, and the tool warns that it has not converged
    (logged, not raised).

    Genes are fitted in blocks of ``gene_block`` (256). The objective is a sum of independent
    per-gene terms, but the tool evaluates its spatial loss as the diagonal of a dense genes x genes
    product, which costs ``O(genes^2 x spots)`` per step (hours for 16,000 genes on a CPU). Both
    loss terms are averaged over the entries they see, so a block has the same per-gene objective up
    to one constant factor, to which Adam is insensitive (apart from its ``eps=1e-8``); the
    convergence test (``tol=1e-5`` on the loss) is then applied per block. ``gene_block=0`` runs all
    genes at once, as the tool does.

    Mapping back to counts: with ``scale="counts"`` (default) the tool works on the counts and its
    output is returned as it is (negative values set to 0). With
    ``scale="log1p"`` it smooths ``log1p`` of counts per 10,000 (the scale of the tool's tutorials),
    and the output is mapped back as ``expm1(y) * lib_i / 1e4``; the same 200 steps then move each
    value by up to ~0.2 in log units, a much stronger smoothing. A missing spot's ``lib_i`` is the mean
    library size of its ``k`` nearest observed spots.

    Parameters
    ----------
    X
        Raw counts, spots x genes.
    coords
        Spot coordinates, spots x 2.
    k, rho, lambda_spatial_loss, lr
        Smoother's graph, prior and optimiser settings (its documented defaults).
    max_epochs
        Optimiser steps.
    gene_block
        Genes per Smoother call (``0``: all at once).
    scale
        ``"counts"`` (raw counts in and out) or ``"log1p"`` (log1p of counts per 10,000 in, mapped back).
    nonneg
        The tool's ``nonneg`` (``False``, its default). With ``True`` the tool optimises a parameter
        whose absolute value is the output, so an entry that starts at exactly 0 gets no gradient and
        stays 0: observed zeros are never imputed (measured on mob_st_rep11: P1 and P2 equal to the
        raw data's). Negative outputs of ``False`` are set to 0 on return.
    seed
        ``torch.manual_seed`` (the solver itself is deterministic).

    Returns
    -------
    Expected counts, spots x genes, float32.
    """
    if scale not in ("counts", "log1p"):
        msg = f"scale must be 'counts' or 'log1p', got {scale!r}."
        raise InputError(msg)
    options = {
        "k": k,
        "rho": rho,
        "lambda_spatial_loss": lambda_spatial_loss,
        "lr": lr,
        "max_epochs": max_epochs,
        "gene_block": gene_block,
        "scale": scale,
        "nonneg": bool(nonneg),
        "seed": seed,
    }
    return _run("smoother", X, coords, options)


#: Peer name -> adapter ``(counts_csr, coords, **options) -> expected counts``.
PEERS: dict[str, Callable[..., np.ndarray]] = {
    "magic": run_magic,
    "scvi": run_scvi,
    "stagate": run_stagate,
    "smoother": run_smoother,
    "halra": run_halra,
}


def _main_worker(argv: list[str]) -> int:
    """Entry point of :mod:`spotfill.benchmark._peer_worker` (runs one peer in this interpreter)."""
    name, src, dst, options_json = argv
    options = json.loads(options_json)
    with np.load(src) as f:
        shape = tuple(int(s) for s in f["shape"])
        M = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=shape)
        C = np.asarray(f["coords"])
    try:
        Y = _LOCAL[name](M, C, **options)
    except _ToolMissing as err:
        sys.stderr.write(f"{err}\n")
        return _EXIT_MISSING
    except InputError as err:
        Path(dst).with_name("error.txt").write_text(str(err), encoding="utf-8")
        return _EXIT_INPUT
    np.savez(dst, Y=Y)
    return 0
