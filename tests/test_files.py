"""Shared helpers: atomic writes and output checks (_files), per-10k normalisation (_normalise)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData

import spotfill
from spotfill import InputError
from spotfill.benchmark import run_benchmark


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_replacing_a_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "out.h5ad"
    adata = AnnData(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    spotfill.write(adata, target)
    os.chmod(target, 0o600)  # e.g. data kept private on a shared machine
    spotfill.write(adata, target, overwrite=True)
    assert target.stat().st_mode & 0o777 == 0o600


def test_per_10k_clips_negative_values_and_scales_by_each_spots_total():
    from spotfill._normalise import per_10k, spot_scale

    Y = np.array([[-1.0, 3.0, 0.0], [2.0, 2.0, 4.0], [0.0, 0.0, 0.0]])
    # totals 2, 8 and 0: scales 5000, 1250 and 0 (a spot without counts maps to 0)
    np.testing.assert_array_equal(spot_scale(Y), [5_000.0, 1_250.0, 0.0])
    want = np.array([[0.0, 15_000.0], [2_500.0, 2_500.0], [0.0, 0.0]])
    np.testing.assert_allclose(per_10k(Y, np.array([0, 1])), want)
    np.testing.assert_allclose(per_10k(sp.csr_matrix(Y), np.array([0, 1])), want)


def test_an_input_named_another_way_is_still_protected(tmp_path, monkeypatch):
    data = tmp_path / "counts.csv"
    data.write_text("spot,x,y,g1\ns1,0,0,1\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    for out in (tmp_path / "sub" / ".." / "counts.csv", "counts.csv"):
        with pytest.raises(InputError, match="one of the input files"):
            run_benchmark([data], methods=["raw"], out=out, progress=False)
    assert data.read_text() == "spot,x,y,g1\ns1,0,0,1\n"


def test_output_suffixes_are_matched_whatever_their_case(tmp_path):
    import pandas as pd

    from spotfill.plotting import report

    cols = ["dataset", "n_spots", "n_genes", "protocol", "method", "seed", "metric", "value", "status", "error"]
    df = pd.DataFrame([("d", 10, 5, "p2", "m", 0, "nll", 1.0, "ok", "")], columns=cols)
    assert report(df, out=tmp_path / "REPORT.HTML").is_file()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="lists open file descriptors (Linux)")
def test_atomic_writes_leave_no_file_descriptor_open(tmp_path):
    adata = AnnData(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    spotfill.write(adata, tmp_path / "warm.h5ad")  # first-use imports may open files of their own
    before = len(os.listdir("/proc/self/fd"))
    for i in range(5):
        spotfill.write(adata, tmp_path / f"out{i}.h5ad")
    assert len(os.listdir("/proc/self/fd")) == before
