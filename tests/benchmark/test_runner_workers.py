"""The runner around its workers: a dying worker, dataset names, results per dataset, protected inputs."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from spotfill import InputError
from spotfill.benchmark import run_benchmark

EXTERNAL = textwrap.dedent(
    """
    def sleeps(X, coords):
        import time

        time.sleep(0.25)
        return X

    def stops_on_the_second_dataset(X, coords):
        if X.shape[0] == 9:
            raise KeyboardInterrupt
        return X
    """
)


@pytest.fixture
def ext(importable_module):
    return importable_module("bench_ext_workers", EXTERNAL)


def _adata(n_side: int, name: str) -> AnnData:
    rng = np.random.default_rng(0)
    n = n_side * n_side
    row, col = np.divmod(np.arange(n), n_side)
    ad = AnnData(sp.csr_matrix(rng.poisson(2.0, size=(n, 5)).astype(np.float32)))
    ad.obs_names = [f"s{i}" for i in range(n)]
    ad.var_names = [f"g{j}" for j in range(5)]
    ad.obsm["spatial"] = np.c_[col, row].astype(float)
    ad.uns["dataset"] = {"name": name}
    return ad


def _run_with_worker(monkeypatch, fake) -> pd.DataFrame:
    """Run "raw" isolated (P5) with ``fake`` standing in for the worker process (no interpreter is started)."""
    from spotfill.benchmark import _runner

    monkeypatch.setattr(_runner, "_run_worker", fake)
    return run_benchmark([_adata(2, "toy")], protocols=["p5"], methods=["raw"], seeds=[0], progress=False)


@pytest.mark.parametrize(
    ("returncode", "stderr", "error"),
    [
        (-9, "", "out of memory (worker killed by SIGKILL)"),  # how the kernel's OOM killer ends a process
        (5, "Traceback ...\n  File x\nMemoryError: last line\n", "worker exited with code 5: MemoryError: last line"),
    ],
)
def test_a_worker_that_dies_is_a_failed_result_saying_why(monkeypatch, returncode, stderr, error):
    def fake(cmd, *, env, timeout, log_dir):
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    df = _run_with_worker(monkeypatch, fake)
    assert set(df["status"]) == {"failed"}
    assert set(df["error"]) == {error}


def test_a_method_that_raised_in_its_worker_reports_its_own_seconds(monkeypatch):
    def fake(cmd, *, env, timeout, log_dir):
        time.sleep(0.3)  # the interpreter's start-up and data loading, not the method's
        (log_dir / "meta.json").write_text(json.dumps({"error": "ValueError: nope", "seconds": 0.01, "base_mb": 5.0}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    df = _run_with_worker(monkeypatch, fake)
    assert set(df["error"]) == {"ValueError: nope"}
    assert df.loc[df["metric"] == "seconds", "value"].item() == 0.01


def test_the_workers_temporary_files_go_to_the_calls_folder_for_every_tool(monkeypatch):
    """TMPDIR (R, shell tools, ...) as well as Python's TEMP and TMP."""
    seen = {}

    def fake(cmd, *, env, timeout, log_dir):
        seen.update({var: env.get(var) for var in ("TMPDIR", "TEMP", "TMP")}, folder=str(log_dir / "tmp"))
        seen["exists"] = (log_dir / "tmp").is_dir()
        return subprocess.CompletedProcess(cmd, 1, "", "")

    _run_with_worker(monkeypatch, fake)
    assert seen["exists"]
    assert seen["TMPDIR"] == seen["TEMP"] == seen["TMP"] == seen["folder"]


def test_no_protocol_is_refused():
    with pytest.raises(InputError, match="unknown protocol"):
        run_benchmark([_adata(2, "toy")], protocols=[], methods=["raw"], progress=False)


def test_dataset_suffix_is_dropped_whatever_its_case(tmp_path):
    _adata(3, "ignored").write_h5ad(tmp_path / "Sample.H5AD")
    df = run_benchmark(
        [tmp_path / "Sample.H5AD"], protocols=["p5"], methods=["raw"], seeds=[0], isolate=False, progress=False
    )
    assert set(df["dataset"]) == {"Sample"}


def test_results_are_written_after_each_dataset(ext, tmp_path):
    """An interrupted run keeps the rows of the datasets it finished."""
    out = tmp_path / "res.csv"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(
            [_adata(2, "first"), _adata(3, "second")],
            protocols=["p5"],
            methods=[f"{ext}:stops_on_the_second_dataset"],
            seeds=[0],
            out=out,
            isolate=False,
            progress=False,
        )
    written = pd.read_csv(out)
    assert set(written["dataset"]) == {"first"}
    assert set(written["status"]) == {"ok"}


def test_out_may_not_replace_a_file_of_a_space_ranger_folder(tmp_path):
    outs = tmp_path / "sample" / "outs"
    (outs / "spatial").mkdir(parents=True)
    (outs / "filtered_feature_bc_matrix.h5").write_bytes(b"")
    positions = outs / "spatial" / "tissue_positions.csv"
    positions.write_text("barcode\n")
    with pytest.raises(InputError, match="one of the input files"):
        run_benchmark([tmp_path / "sample"], methods=["raw"], out=positions, progress=False)
    assert positions.read_text() == "barcode\n"


def test_in_process_a_call_over_the_time_limit_is_a_failure(ext):
    df = run_benchmark(
        [_adata(2, "toy")],
        protocols=["p5"],
        methods=[f"{ext}:sleeps"],
        seeds=[0],
        isolate=False,
        timeout=0.15,
        progress=False,
    )
    assert set(df["status"]) == {"failed"}
    assert set(df["error"]) == {"over time (> 0.15 s)"}


@pytest.mark.parametrize("option", ["coords", "selection"])
def test_a_coordinates_or_selection_file_serves_one_dataset_only(tmp_path, option):
    files = [tmp_path / "a.h5ad", tmp_path / "b.h5ad"]
    for path in files:
        _adata(2, path.stem).write_h5ad(path)
    with pytest.raises(InputError, match=f"{option}= .* 2 datasets were given"):
        run_benchmark(files, methods=["raw"], read_options={option: tmp_path / "file.csv"}, progress=False)
