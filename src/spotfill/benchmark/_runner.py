"""The benchmark runner: datasets x methods x seeds x protocols -> a tidy results table.

Each method call runs either in its own process (``isolate=True``: a fresh ``python`` subprocess
that reads the matrix it may see from a temporary ``.npz``, so its wall time and peak resident
memory (``VmHWM``, see :func:`_peak_rss_mb`) are its own, a time limit can be enforced, and a crash
or an out-of-memory kill is recorded as a failed result) or in the calling process
(``isolate=False``: quicker, the data are loaded once; a time limit is only checked after the call
returns, and on Linux the peak resident memory of the calling process is measured the same way after
resetting its high-water mark, :func:`_reset_peak_rss`; elsewhere memory is not measured there, NaN).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._errors import InputError, SpotfillWarning, Stopped, UnknownMethodError
from .._files import check_output_file, write_csv
from .._logging import progress as _progress
from .._logging import warn
from .._params import parse_method_spec
from .._validation import check_counts, get_coords, get_matrix, is_seed, warn_non_integer
from ._external import check_prediction, resolve_method, unavailable_peers
from ._protocols import PROTOCOLS, CallResult, Dataset

if TYPE_CHECKING:
    from types import FrameType

    from anndata import AnnData

__all__ = ["COLUMNS", "load_dataset", "make_caller", "run_benchmark", "split_sections"]

logger = logging.getLogger(__name__)

Protocol = Literal["p1", "p2", "p3", "p4", "p5"]

#: Seeds each protocol runs when ``run_benchmark(seeds=None)`` (BENCHMARK.md: P1 reports the mean and
#: standard deviation over seeds 0, 1, 2; the issue's tables use seed 0 for the others).
DEFAULT_SEEDS: dict[str, tuple[int, ...]] = {"p1": (0, 1, 2)}

#: Columns of the results table, in order.
COLUMNS = ["dataset", "n_spots", "n_genes", "protocol", "method", "seed", "metric", "value", "status", "error"]

_SYNTHETIC = re.compile(r"^synthetic:(\d+)x(\d+)$")


# --- datasets ---------------------------------------------------------------------------------
_DATA_SUFFIXES = (".h5ad", ".h5", ".csv", ".tsv", ".txt", ".gem")


def dataset_name(data: object, index: int = 0) -> str:
    """Return the name of a benchmark dataset in the results.

    The file name without its data suffix (``.h5ad``, ``.h5``, ``.csv``, ``.tsv``, ``.txt``, ``.gem``,
    each also with ``.gz``), a Space Ranger ``outs`` folder's parent folder,
    ``synthetic:...`` as given, or an AnnData's ``uns['dataset']['name']`` (``data<index>`` without
    one).
    """
    from anndata import AnnData

    if isinstance(data, AnnData):
        info = data.uns.get("dataset")
        if isinstance(info, str) and info:
            return info
        if isinstance(info, dict) and info.get("name"):
            return str(info["name"])
        return f"data{index}"
    path = Path(str(data))
    if _SYNTHETIC.match(str(data)):
        return str(data)
    if path.name == "outs" and path.parent.name:  # every Space Ranger run writes an outs folder
        return path.parent.name
    name = path.name.removesuffix(".gz")
    for suffix in _DATA_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return path.name


def load_dataset(
    data: str | Path | AnnData,
    *,
    index: int = 0,
    read_options: Mapping[str, Any] | None = None,
    layer: str | None = None,
) -> Dataset:
    """Load one benchmark dataset.

    ``data`` is a file :func:`spotfill.read` understands (``read_options``, e.g.
    ``{"coords": "xy.csv"}``, are passed to it), an AnnData, or ``"synthetic:N_SPOTSxN_GENES"``
    (:func:`spotfill.datasets.synthetic` with seed 0). ``layer`` names the layer holding the raw
    counts (default ``X``).

    The spatial graph is built by :func:`spotfill.spatial_neighbors` (array grid when
    ``obs['array_row'/'array_col']`` exist, else 6 nearest neighbours) on a copy that holds only
    the coordinates, so the counts are never copied.
    """
    from anndata import AnnData

    from ..graph import spatial_neighbors

    name = dataset_name(data, index)
    if isinstance(data, AnnData):
        adata = data
    else:
        text = str(data)
        match = _SYNTHETIC.match(text)
        if match:
            from ..datasets import synthetic

            adata = synthetic(int(match.group(1)), int(match.group(2)), seed=0, truth=False)
        elif text.startswith("synthetic:"):
            msg = f"synthetic data are named 'synthetic:N_SPOTSxN_GENES' (e.g. synthetic:1000x500), got {text!r}."
            raise InputError(msg)
        else:
            from ..io import read

            adata = read(text, **(read_options or {}))
    try:
        counts, what = get_matrix(adata, layer)
    except InputError as err:
        msg = f"{name}: {err}"
        raise InputError(msg) from None
    X = check_counts(counts, require_integer=False, name=f"{what} of {name}")
    warn_non_integer(X.data, f"{what} of {name}")
    coords = get_coords(adata)
    shell = AnnData(obs=adata.obs[[c for c in ("array_row", "array_col") if c in adata.obs]].copy())
    shell.obsm["spatial"] = coords
    try:
        spatial_neighbors(shell)
    except InputError as err:  # named after the dataset, as the errors of its counts are
        msg = f"{name}: {err}"
        raise InputError(msg) from None
    graph = sp.csr_matrix(shell.obsp["spatial_connectivities"])
    labels = None
    if "label" in adata.obs:
        lab = adata.obs["label"]
        labels = np.asarray(lab.astype(object).where(lab.notna(), None))
    var_names = [str(v) for v in adata.var_names]
    return Dataset(name=name, X=X, coords=coords, graph=graph, labels=labels, var_names=var_names)


def split_sections(
    data: Sequence[str | Path | AnnData],
    library_key: str,
    *,
    read_options: Mapping[str, Any] | None = None,
) -> list[AnnData]:
    """Split each dataset into one AnnData per section of ``obs[library_key]`` (for several stacked sections).

    Files are read (with ``read_options``) and split at once; each section is a copy named
    ``"<dataset>:<section>"`` (``uns['dataset']``), in the order the sections first appear. The
    benchmark scores every section as a dataset of its own, as the protocols are defined per section.
    """
    from anndata import AnnData

    out: list[AnnData] = []
    for i, item in enumerate(data):
        name = dataset_name(item, i)
        if isinstance(item, AnnData):
            adata = item
        elif _SYNTHETIC.match(str(item)):
            msg = f"{name} is one synthetic section: it has no obs[{library_key!r}] to split; leave library_key out."
            raise InputError(msg)
        else:
            from ..io import read

            adata = read(str(item), **(read_options or {}))
        if library_key not in adata.obs:
            msg = (
                f"{name}: library_key={library_key!r} (--library-key) is not a column of obs "
                f"(columns: {', '.join(map(str, adata.obs.columns)) or 'none'})."
            )
            raise InputError(msg)
        sections = adata.obs[library_key]
        missing = int(sections.isna().sum())
        if missing:
            msg = f"{name}: {missing} spots have no section in obs[{library_key!r}]: fill it in or drop them first."
            raise InputError(msg)
        for section in pd.unique(sections.to_numpy()):
            part = adata[(sections == section).to_numpy()].copy()
            part.uns["dataset"] = {"name": f"{name}:{section}"}
            out.append(part)
    return out


# --- calling a method ---------------------------------------------------------------------------
def _describe(err: BaseException) -> str:
    if isinstance(err, MemoryError):
        return "out of memory (MemoryError)"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


# in process, each method is run once, unmeasured, on these synthetic datasets before its first
# measured call: one-off costs (numba compiling or loading its kernels, torch start-up) would otherwise
# be charged to whichever method happens to run first (about 4 s for the default model). Two sizes:
# the default model runs single-threaded kernels on small problems and multi-threaded ones from 2^21
# multiply-adds per update on.
_WARM_UP_DATA = ("synthetic:100x30", "synthetic:1500x300")
_warmed: set[str] = set()


@functools.cache
def _warm_up_dataset(data: str) -> Dataset:
    return load_dataset(data)  # built once per process, shared by every method's warm-up


def _warm_up(name: str, fn) -> None:
    """Run spotfill's registered method ``name`` once, unmeasured, on the warm-up data.

    Controls, peers and external functions are not run: their side effects and costs are not ours to add.
    """
    if name in _warmed:
        return
    _warmed.add(name)
    from ..methods import get_method

    try:
        get_method(parse_method_spec(name)[0])
    except UnknownMethodError:
        return
    for data in _WARM_UP_DATA:
        with warnings.catch_warnings():  # about spotfill's own warm-up data, not the user's
            warnings.simplefilter("ignore", SpotfillWarning)
            ds = _warm_up_dataset(data)
            try:
                fn(ds.X.copy(), coords=ds.coords, graph=ds.graph, seed=0)
            except Exception as err:  # noqa: BLE001 - the measured call reports any real failure
                logger.debug("warm-up of %s on %s failed: %s", name, data, _describe(err))


def _call_in_process(name: str, X: sp.csr_matrix, ds: Dataset, seed: int, timeout: float | None) -> CallResult:
    try:
        fn = resolve_method(name)  # imports happen here, outside the measured call
    except Exception as err:  # noqa: BLE001 - a failing method is a result, the run goes on
        return CallResult(None, 0.0, float("nan"), float("nan"), _describe(err))
    _warm_up(name, fn)
    measured = _reset_peak_rss()
    base_mb = _peak_rss_mb() if measured else float("nan")
    t0 = time.perf_counter()
    try:
        pred = check_prediction(fn(X.copy(), coords=ds.coords, graph=ds.graph, seed=seed), X.shape, name)
        error = None
    except (Exception, SystemExit) as err:  # noqa: BLE001 - a failing method is a result, the run goes on
        logger.warning("method %s failed on %s: %s", name, ds.name, _describe(err))
        pred, error = None, _describe(err)
    seconds = time.perf_counter() - t0
    peak_mb = _peak_rss_mb() if measured else float("nan")
    if error is None and timeout is not None and seconds > timeout:
        pred, error = None, f"over time (> {timeout:g} s)"
    return CallResult(pred, seconds, peak_mb, base_mb, error)


_CHILD = "import sys; from spotfill.benchmark._runner import _child_main; _child_main(sys.argv[1], sys.argv[2])"


def _save_csr(path: Path, M: sp.csr_matrix, **extra) -> None:
    np.savez(path, data=M.data, indices=M.indices, indptr=M.indptr, shape=np.asarray(M.shape), **extra)


def _load_csr(f, prefix: str = "") -> sp.csr_matrix:
    shape = tuple(int(v) for v in f[f"{prefix}shape"])
    return sp.csr_matrix((f[f"{prefix}data"], f[f"{prefix}indices"], f[f"{prefix}indptr"]), shape=shape)


def _peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: the high-water mark of this process's own
    memory map. ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not used there because Linux
    carries it over ``fork`` and ``exec``, so a worker would report at least its parent's resident
    size at the time it was started. Elsewhere ``ru_maxrss`` is the fallback.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    scale = 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, kilobytes elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _reset_peak_rss() -> bool:
    """Reset this process's resident high-water mark (``VmHWM``) to its current size; tell if it worked.

    Linux resets it when ``5`` is written to ``/proc/self/clear_refs``; there the next
    :func:`_peak_rss_mb` is the peak since this call. Elsewhere (or without the right to write
    there) nothing happens and ``False`` is returned.
    """
    if not sys.platform.startswith("linux"):
        return False
    # memory an earlier call freed stays resident in the allocator's heap, and the next call would
    # reuse it without raising the mark: hand it back to the system first
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)  # glibc
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _child_main(inp: str, out: str) -> None:
    """Entry point of an isolated method call (runs in a fresh interpreter)."""
    out_dir = Path(out)
    meta: dict[str, object] = {"error": None}
    t0: float | None = None
    try:
        with np.load(inp, allow_pickle=False) as f:
            X = _load_csr(f)
            coords = f["coords"]
            graph = _load_csr(f, "g_") if "g_shape" in f else None
            args = json.loads(str(f["args"]))
        fn = resolve_method(args["name"])
        meta["base_mb"] = _peak_rss_mb()
        t0 = time.perf_counter()
        pred = fn(X, coords=coords, graph=graph, seed=int(args["seed"]))
        meta["seconds"] = time.perf_counter() - t0
        meta["peak_mb"] = _peak_rss_mb()
        pred = check_prediction(pred, X.shape, args["name"])
        if sp.issparse(pred):
            _save_csr(out_dir / "pred.npz", pred)
        else:
            np.save(out_dir / "pred.npy", pred, allow_pickle=False)
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        meta["error"] = _describe(err)
        if t0 is not None and "seconds" not in meta:  # the method's own time, as in process
            meta["seconds"] = time.perf_counter() - t0
    (out_dir / "meta.json").write_text(json.dumps(meta))


def _stop(signum: int, frame: object) -> None:  # noqa: ARG001 - a signal handler's signature
    raise Stopped(128 + signum)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _run_worker(
    cmd: list[str], *, env: dict[str, str], timeout: float | None, log_dir: Path
) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a process group of its own, and kill the whole group when the call ends.

    A method may start processes of its own (a peer tool's interpreter, worker pools): killing only
    the direct child on a timeout would leave them running, and their load would be charged to later
    calls. The group is killed on a timeout, on an interrupt, when this process is told to stop
    (SIGTERM or SIGHUP, which no longer reach a worker in its own session: they are turned into an
    exit here while the worker runs), and after a normal end (anything the method left behind). The
    worker's output goes to ``log_dir``.
    """
    posix = os.name == "posix"
    # what signal.signal returned: the handler to put back
    handlers: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | signal.Handlers | None] = {}
    if posix and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # under nohup SIGHUP stays ignored
                handlers[sig] = signal.signal(sig, _stop)
    # output to files, not pipes: a process the method leaves behind would hold a pipe open, and
    # reading it to the end would wait for that process
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    try:
        with open(out_path, "wb") as out_fh, open(err_path, "wb") as err_fh:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                cmd, env=env, stdout=out_fh, stderr=err_fh, start_new_session=posix
            )
        try:
            proc.wait(timeout=timeout)
        except BaseException:
            if posix:
                _kill_group(proc.pid)
            else:  # pragma: no cover - no process groups
                proc.kill()
            proc.wait()
            raise
        if posix:  # the worker is gone; what it started and left running goes too
            _kill_group(proc.pid)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    stdout, stderr = (p.read_text(encoding="utf-8", errors="replace") for p in (out_path, err_path))
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _call_isolated(name: str, X: sp.csr_matrix, ds: Dataset, seed: int, timeout: float | None) -> CallResult:
    with tempfile.TemporaryDirectory(prefix="spotfill_bench_") as tmp:
        tmp_dir = Path(tmp)
        inp = tmp_dir / "input.npz"
        extra = {"coords": ds.coords, "args": np.asarray(json.dumps({"name": name, "seed": int(seed)}))}
        if ds.graph is not None:
            G = ds.graph
            extra |= {"g_data": G.data, "g_indices": G.indices, "g_indptr": G.indptr, "g_shape": np.asarray(G.shape)}
        _save_csr(inp, X, **extra)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        # the method's temporary files go inside this call's folder, removed with it even when the
        # worker is killed (a peer's exchange files hold a copy of the counts)
        (tmp_dir / "tmp").mkdir()
        env["TMPDIR"] = env["TMP"] = env["TEMP"] = str(tmp_dir / "tmp")
        t0 = time.perf_counter()
        try:
            proc = _run_worker(
                [sys.executable, "-c", _CHILD, str(inp), str(tmp_dir)], env=env, timeout=timeout, log_dir=tmp_dir
            )
        except subprocess.TimeoutExpired:
            return CallResult(None, float(timeout or 0.0), float("nan"), float("nan"), f"over time (> {timeout:g} s)")
        wall = time.perf_counter() - t0
        meta_path = tmp_dir / "meta.json"
        if proc.returncode != 0 or not meta_path.exists():
            if proc.returncode == -signal.SIGKILL:
                error = "out of memory (worker killed by SIGKILL)"
            else:
                tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
                error = f"worker exited with code {proc.returncode}: {tail[0]}"
            return CallResult(None, wall, float("nan"), float("nan"), error)
        meta = json.loads(meta_path.read_text())
        if meta.get("error"):
            return CallResult(
                None, meta.get("seconds", wall), meta.get("peak_mb", float("nan")), float("nan"), meta["error"]
            )
        if (tmp_dir / "pred.npy").exists():
            pred = np.load(tmp_dir / "pred.npy", allow_pickle=False)
        else:
            with np.load(tmp_dir / "pred.npz", allow_pickle=False) as f:
                pred = _load_csr(f)
        return CallResult(pred, float(meta["seconds"]), float(meta["peak_mb"]), float(meta["base_mb"]), None)


def make_caller(name: str, ds: Dataset, *, seed: int = 0, isolate: bool = True, timeout: float | None = None):
    """Return ``call(X_seen) -> CallResult`` running method ``name`` on ``X_seen``.

    The method also gets the coordinates and graph of ``ds``; it runs in a subprocess when ``isolate``.
    """
    impl = _call_isolated if isolate else _call_in_process

    def call(X_seen: sp.csr_matrix) -> CallResult:
        return impl(name, X_seen, ds, seed, timeout)

    return call


# --- the runner ---------------------------------------------------------------------------------
def run_benchmark(
    data: Sequence[str | Path | AnnData] | str | Path | AnnData,
    *,
    protocols: Sequence[Protocol] = ("p1",),
    methods: Sequence[str],
    seeds: Sequence[int] | None = None,
    out: str | Path | None = None,
    isolate: bool = True,
    frac: float = 0.1,
    timeout: float | None = None,
    progress: bool = True,
    overwrite: bool = True,
    read_options: Mapping[str, Any] | None = None,
    layer: str | None = None,
    library_key: str | None = None,
) -> pd.DataFrame:
    """Score methods on datasets with the protocols of ``BENCHMARK.md``.

    Parameters
    ----------
    data
        Datasets: ``.h5ad`` files (or anything :func:`spotfill.read` reads), AnnData objects, or
        ``"synthetic:N_SPOTSxN_GENES"`` (:func:`spotfill.datasets.synthetic`, seed 0). Each needs
        raw counts in ``X`` and ``obsm['spatial']``; P4 also ``obs['label']``.
    protocols
        Any of ``"p1"`` (masked non-zeros), ``"p2"`` (molecular cross-validation), ``"p3"``
        (held-out spots), ``"p4"`` (spatial domains), ``"p5"`` (cost of a full imputation).
    methods
        Method names: the controls ``"raw"`` and ``"libsize_mean"``, spotfill registry names
        (optionally with parameters, ``"spotfill[gene_prior=5,smooth=0.5]"``; the spec is the label in
        the results), peer tools of ``spotfill.benchmark.peers.PEERS``, or ``"package.module:function"``
        callables ``(counts_csr, coords) -> counts``.
    seeds
        Seeds of the splits (P1-P3) and of the methods, used for every protocol. ``None`` (default):
        each protocol's own, :data:`DEFAULT_SEEDS` (P1 over seeds 0, 1, 2 as BENCHMARK.md asks; the
        other protocols seed 0).
    out
        CSV file for the results (``.csv``; its folder is created), rewritten (atomically) after each
        dataset. It may not be one of the ``data`` files.
    isolate
        Run every method call in its own process (true wall time and peak memory, time limit), so
        each call pays its own start-up, as a user's first call does. In process, each of
        spotfill's registered methods is first run once, unmeasured, on small synthetic data, so
        one-off costs (numba compiling its kernels) are not charged to whichever runs first.
    frac
        P1: fraction of the non-zero entries held out.
    timeout
        Time limit of one method call in seconds; a call over it is recorded as failed
        ("over time"). With ``isolate`` the worker is killed at the limit, which then covers its
        whole life (interpreter start and data loading, a few seconds, included); in-process it is
        checked after the call returns.
    progress
        Show a progress bar over (dataset, method, seed).
    overwrite
        Replace an existing ``out`` (``False``: refuse it before any work; the command line's
        default, ``spotfill benchmark --overwrite`` to replace).
    read_options
        Options of :func:`spotfill.read` for the ``data`` files, e.g. ``{"coords": "xy.csv"}`` for a
        count table whose coordinates are in another file (``coords`` needs a single file). Its
        files count as inputs: ``out`` may not name them.
    layer
        The layer of every dataset that holds the raw counts (default ``X``; scanpy's usual layout
        keeps them in ``layers["counts"]``).
    library_key
        Column of ``obs`` naming each spot's section, for datasets holding several stacked sections:
        each section is scored as a dataset of its own, named ``"<dataset>:<section>"`` (the data are
        read and split first, see :func:`split_sections`).

    Returns
    -------
    The tidy results: one row per (dataset, protocol, method, seed, metric) with columns
    :data:`COLUMNS`. Every method call adds ``seconds`` and ``peak_mb`` rows (megabytes; with
    ``isolate``, the worker's peak resident set size, interpreter and data included). ``status`` is
    ``"ok"``, ``"failed"`` (``error`` gives the reason; the run goes on) or ``"skipped"``.
    """
    from anndata import AnnData

    if isinstance(data, str | Path | AnnData):
        data = [data]
    if isinstance(methods, str) or isinstance(protocols, str):
        msg = "methods= and protocols= take lists of names, e.g. methods=['raw', 'mean']."
        raise InputError(msg)
    names = [str(p).lower() for p in protocols]
    unknown = [p for p in names if p not in PROTOCOLS]
    if unknown or not names:
        msg = f"unknown protocol(s) {unknown}; choose from {', '.join(PROTOCOLS)}."
        raise InputError(msg)
    protocols = cast(list[Protocol], names)  # every name is checked above
    methods = list(methods)
    if not methods:
        msg = "no methods given: pass methods=['raw', 'mean', ...]."
        raise InputError(msg)
    twice = _repeated(methods)
    if twice is not None:
        msg = f"method {twice!r} is listed twice: its rows would mix; list it once."
        raise InputError(msg)
    for name in methods:
        resolve_method(name)  # unknown names fail now, not after hours
    skipped = unavailable_peers(methods)
    for name, why in skipped.items():
        warn(f"method {name!r} is skipped: {why}")
    names = [dataset_name(item, i) for i, item in enumerate(data)]
    same = _repeated(names)
    if same is not None:
        which = [
            "an AnnData" if hasattr(item, "uns") else str(item)
            for item, n in zip(data, names, strict=True)
            if n == same
        ]
        msg = (
            f"datasets {', '.join(which)} would all be named {same!r} in the results, and their rows would mix: "
            "list each dataset once, and rename files that share a name (for AnnData: uns['dataset'] = {'name': ...})."
        )
        raise InputError(msg)
    if seeds is None:  # each protocol's own seeds (BENCHMARK.md: P1 over seeds 0, 1, 2; the others seed 0)
        seeds_of = {p: DEFAULT_SEEDS.get(p, (0,)) for p in protocols}
        seeds = sorted({s for p in protocols for s in seeds_of[p]})
    else:
        seeds = list(seeds)
        bad = [s for s in seeds if not is_seed(s)]
        if bad or not seeds:
            msg = f"seeds must be integers >= 0 and < 2**32, e.g. seeds=[0, 1, 2]; got {bad[0] if bad else 'none'!r}."
            raise InputError(msg)
        seeds = [int(s) for s in seeds]
        seeds_of = {p: tuple(seeds) for p in protocols}
    read_options = dict(read_options or {})
    if read_options and all(isinstance(d, AnnData) or _SYNTHETIC.match(str(d)) for d in data):
        msg = (
            f"read options ({', '.join(sorted(read_options))}) apply to data read from files, but every dataset "
            "here is synthetic or an AnnData: leave them out."
        )
        raise InputError(msg)
    from ..io._read import read_option_files

    extra = read_option_files(read_options, len(data)) + _folder_inputs(data)
    out_path = (
        None
        if out is None
        else check_output_file(
            out,
            suffixes=(".csv",),
            inputs=[*data, *extra],
            what="benchmark results",
            make_folder=True,
            overwrite=overwrite,
        )
    )

    if library_key is not None:  # after the checks of the files named: a failure costs no reading
        data = split_sections(data, library_key, read_options=read_options)
        read_options = {}
    rows: list[dict] = []
    jobs = [(i, seed, name) for i in range(len(data)) for seed in seeds for name in methods]
    ds: Dataset | None = None
    for n_job, (i, seed, name) in enumerate(_progress(jobs, enabled=progress, desc="benchmark", unit="run")):
        if ds is None or ds.cache.get("index") != i:
            ds = load_dataset(data[i], index=i, read_options=read_options, layer=layer)
            ds.cache["index"] = i
            logger.info("dataset %s: %d spots x %d genes", ds.name, *ds.shape)
        call = make_caller(name, ds, seed=seed, isolate=isolate, timeout=timeout)
        for protocol in protocols:
            if seed not in seeds_of[protocol]:
                continue
            if name in skipped:
                nothing = {"value": float("nan"), "status": "skipped", "error": skipped[name]}
                protocol_rows = [{"metric": "seconds", **nothing}, {"metric": "peak_mb", **nothing}]
            else:
                protocol_rows = PROTOCOLS[protocol](ds, call, seed=seed, frac=frac)
            for row in protocol_rows:
                rows.append(
                    {
                        "dataset": ds.name,
                        "n_spots": ds.shape[0],
                        "n_genes": ds.shape[1],
                        "protocol": protocol,
                        "method": name,
                        "seed": seed,
                        **row,
                    }
                )
        last_of_dataset = n_job + 1 == len(jobs) or jobs[n_job + 1][0] != i
        if out_path is not None and last_of_dataset:
            write_csv(pd.DataFrame(rows, columns=COLUMNS), out_path)
    df = pd.DataFrame(rows, columns=COLUMNS)
    if out_path is not None:
        write_csv(df, out_path)
    return df


def _repeated(names: Sequence[str]) -> str | None:
    """Return the first name (in sorted order) that ``names`` holds more than once, else ``None``."""
    counts = Counter(names)
    twice = sorted(n for n, c in counts.items() if c > 1)
    return twice[0] if twice else None


def _folder_inputs(data: Sequence[object]) -> list[Path]:
    """Return the matrix and positions files of the Space Ranger folders in ``data`` (``out`` may not replace them)."""
    from ..io._visium import find_spaceranger

    files: list[Path] = []
    for item in data:
        if isinstance(item, str | os.PathLike) and Path(item).is_dir():
            found = find_spaceranger(Path(item))
            if found is not None:  # a Matrix Market matrix is a folder of files
                matrix = sorted(found.matrix.iterdir()) if found.matrix.is_dir() else [found.matrix]
                files += [*matrix, found.positions]
    return files


#: Spot counts of the P5 scale series (Visium HD 8 um holds about 600,000 bins).
SCALE_SPOTS = (1_000, 10_000, 100_000, 600_000)


def scale_series(
    methods: Sequence[str],
    *,
    sizes: Sequence[int] = SCALE_SPOTS,
    n_genes: int = 2_000,
    seeds: Sequence[int] = (0,),
    timeout: float | None = 3600.0,
    out: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """P5 scale series: cost of a full imputation on synthetic data of growing size.

    Runs :func:`run_benchmark` with protocol ``"p5"`` on ``"synthetic:{n}x{n_genes}"`` for each
    ``n`` in ``sizes``, each call in its own process. A call killed for memory or over ``timeout``
    is a result (``status="failed"``, ``error`` "out of memory ..." / "over time ..."), and the
    series goes on.

    Parameters
    ----------
    methods
        Method names (see :func:`run_benchmark`).
    sizes
        Numbers of spots.
    n_genes
        Number of genes of every synthetic dataset.
    seeds
        Method seeds.
    timeout
        Time limit of one call, in seconds.
    out
        CSV file for the results.
    progress
        Show a progress bar.

    Returns
    -------
    The results table (metrics ``seconds``, ``peak_mb``, ``base_mb``).
    """
    data = [f"synthetic:{int(n)}x{int(n_genes)}" for n in sizes]
    return run_benchmark(
        data, protocols=["p5"], methods=methods, seeds=seeds, out=out, isolate=True, timeout=timeout, progress=progress
    )
