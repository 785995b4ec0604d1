"""The ``spotfill`` command line: ``methods``, ``impute`` end to end, ``python -m spotfill``."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import spotfill
from spotfill.cli import _parse_params, main
from spotfill.methods.baselines import ExpressionKNN, SpatialKNN


@pytest.fixture
def h5ad(tmp_path) -> Path:
    """A 30-spot x 6-gene count matrix with coordinates, written to ``in.h5ad``."""
    rng = np.random.default_rng(0)
    adata = ad.AnnData(
        sp.csr_matrix(rng.poisson(2.0, (30, 6)).astype(np.float32)),
        obs=pd.DataFrame(index=[f"s{i}" for i in range(30)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(6)]),
    )
    adata.obsm["spatial"] = rng.random((30, 2)) * 100
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("spotfill: error: ")
    return lines[0]


def test_methods_lists_every_registered_method(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out.splitlines()
    table = spotfill.list_methods()
    rows = {line.split()[0]: line for line in out if not line.startswith(" ")}
    assert list(rows) == list(table["name"])
    for row in table.itertuples():
        assert row.family in rows[row.name]
        assert rows[row.name].rstrip().endswith(row.description)
    assert sum(line.strip().startswith("params: ") for line in out) == int((table["key_params"] != "").sum())
    assert "params: n_neighs, n_comps, include_self, keep_observed" in "\n".join(out)


def test_parse_params():
    assert _parse_params(None) == {}
    parsed = _parse_params(["n_neighs=3", "include-self=False", "bandwidth = 1.5", "kernel=idw", "radius=None"])
    assert parsed == {"n_neighs": 3, "include_self": False, "bandwidth": 1.5, "kernel": "idw", "radius": None}
    assert type(parsed["n_neighs"]) is int
    assert _parse_params(["hidden=(64, 32)", "name='a=b'", "text=a=b"]) == {
        "hidden": (64, 32),
        "name": "a=b",
        "text": "a=b",
    }
    for bad in ("k", "=3"):
        with pytest.raises(spotfill.SpotfillError, match="--param expects KEY=VALUE"):
            _parse_params([bad])
    with pytest.raises(spotfill.SpotfillError, match="parameter 'n_latent' is given twice"):
        _parse_params(["n_latent=5", "n-latent=6"])
    # shell/YAML spellings: the string "false" would read as true
    assert _parse_params(["a=false", "b=TRUE", "c=none", "d=Null", "e='false'"]) == {
        "a": False,
        "b": True,
        "c": None,
        "d": None,
        "e": "false",
    }


def test_flags_take_booleans_only_and_bad_values_stop_a_benchmark_before_it_starts(h5ad, tmp_path, capsys):
    out = tmp_path / "o.h5ad"
    assert main(["impute", str(h5ad), str(out), "--method", "spatial_knn", "--param", "keep_observed=false"]) == 0
    assert not ad.read_h5ad(out).uns["imputed_spatial_knn"]["params"]["keep_observed"]  # False, not "false"
    for spec, message in (
        ("knn[include_self=no]", "include_self must be True or False, got 'no'"),
        ("spotfill[gene_prior=-1]", "gene_prior must be a number >= 0"),
        ("nmf[loss=mae]", "loss must be one of"),
    ):
        assert main(["benchmark", str(h5ad), "--methods", spec, "--out", str(tmp_path / "r.csv")]) == 2
        assert message in one_line_error(capsys, 2)
        assert not (tmp_path / "r.csv").exists()


def test_impute_end_to_end(h5ad, capsys):
    out = h5ad.parent / "out.h5ad"
    before = digest(h5ad)
    argv = ["impute", str(h5ad), str(out), "--method", "spatial_knn"]
    argv += ["--param", "n_neighs=3", "--param", "include-self=False", "--key-added", "smooth"]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert digest(h5ad) == before  # the input is never touched
    assert sorted(p.name for p in h5ad.parent.iterdir()) == ["in.h5ad", "out.h5ad"]  # no temporary file left
    src, res = ad.read_h5ad(h5ad), ad.read_h5ad(out)
    expected = SpatialKNN(n_neighs=3, include_self=False).fit_transform(src.X, coords=src.obsm["spatial"])
    np.testing.assert_array_equal(res.layers["smooth"].toarray(), expected.toarray())
    np.testing.assert_array_equal(res.X.toarray(), src.X.toarray())
    info = res.uns["smooth"]
    assert info["method"] == "spatial_knn"
    assert info["params"]["n_neighs"] == 3
    assert bool(info["params"]["include_self"]) is False
    assert info["version"] == spotfill.__version__


def test_impute_seed_device_and_default_key(h5ad):
    out = h5ad.parent / "out.h5ad"
    # --param seed= is the same option as --seed (no clash with impute's own seed=)
    assert main(["impute", str(h5ad), str(out), "--method", "knn", "--param", "seed=4", "--param", "n_neighs=2"]) == 0
    res = ad.read_h5ad(out)
    assert res.uns["imputed_knn"]["params"]["seed"] == 4
    expected = ExpressionKNN(n_neighs=2, seed=4).fit_transform(res.X)
    np.testing.assert_array_equal(res.layers["imputed_knn"].toarray(), expected.toarray())


def test_impute_to_csv_exports_the_result(h5ad):
    out = h5ad.parent / "out.csv"
    assert main(["impute", str(h5ad), str(out), "--method", "mean", "--key-added", "filled"]) == 0
    table = pd.read_csv(out, index_col=0)
    src = ad.read_h5ad(h5ad)
    X = src.X.toarray()
    fill = X.sum(0) / (X > 0).sum(0)
    np.testing.assert_allclose(table.to_numpy(), np.where(X > 0, X, fill[None, :]), rtol=1e-6)
    assert list(table.index) == list(src.obs_names)
    assert list(table.columns) == list(src.var_names)
    # --export-layer picks another matrix (here the counts, written as integers)
    raw = h5ad.parent / "raw.csv"
    src.layers["counts"] = src.X.copy()
    src.write_h5ad(h5ad.parent / "with_layer.h5ad")
    assert (
        main(["impute", str(h5ad.parent / "with_layer.h5ad"), str(raw), "--method", "mean", "--export-layer", "counts"])
        == 0
    )
    np.testing.assert_array_equal(pd.read_csv(raw, index_col=0).to_numpy(), X.astype(np.int64))
    assert main(["impute", str(h5ad), str(raw), "--method", "mean", "--export-layer", "nope", "--overwrite"]) == 2


def test_unknown_export_layer_is_refused_before_imputing(h5ad, capsys, monkeypatch):
    import spotfill.methods

    def never(*args, **kwargs):
        raise AssertionError("imputed before checking --export-layer")

    monkeypatch.setattr(spotfill.methods, "impute", never)
    code = main(["impute", str(h5ad), str(h5ad.parent / "o.csv"), "--method", "mean", "--export-layer", "nope"])
    message = one_line_error(capsys, code)
    assert "--export-layer 'nope' is neither a layer of" in message
    assert "nor the result's key ('imputed_mean')" in message


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "nope"], "unknown method 'nope'; available: "),
        (["--method", "mean", "--param", "k=3"], "GeneMean has no parameter 'k'"),
        (["--method", "mean", "--param", "k"], "--param expects KEY=VALUE, got 'k'"),
        (["--method", "nmf", "--param", "n_latent=x"], "n_latent must be an integer >= 1"),
        (["--method", "mean", "--param", "key-added=x"], "--param key_added=... is an option of the command"),
        (["--method", "mean", "--param", "copy=True"], "--param copy=... is an option of the command"),
        (["--method", "mean", "--param", "genes=g1"], "not a method parameter: use --genes"),
        (["--method", "mean", "--param", "mask=x"], "--param mask=... is an option of the command"),
    ],
)
def test_impute_option_errors(h5ad, capsys, extra, message):
    out = h5ad.parent / "out.h5ad"
    code = main(["impute", str(h5ad), str(out), *extra])
    assert message in one_line_error(capsys, code)
    assert not out.exists()


@pytest.mark.filterwarnings("default::spotfill.SpotfillWarning")  # shown as a user sees it
def test_impute_gpu_device_for_cpu_method(h5ad, capsys):
    # mean takes no device: --device cuda is ignored with a one-line warning, the result is the plain one
    out, plain = h5ad.parent / "out.h5ad", h5ad.parent / "plain.h5ad"
    assert main(["impute", str(h5ad), str(out), "--method", "mean", "--device", "cuda"]) == 0
    err = capsys.readouterr().err
    assert "spotfill: warning: method 'mean' runs on the CPU only; device='cuda' is ignored.\n" in err
    assert main(["impute", str(h5ad), str(plain), "--method", "mean", "--device", "cpu"]) == 0
    assert "warning" not in capsys.readouterr().err
    got, ref = ad.read_h5ad(out), ad.read_h5ad(plain)
    np.testing.assert_array_equal(np.asarray(got.layers["imputed_mean"]), np.asarray(ref.layers["imputed_mean"]))


def test_impute_refuses_to_overwrite(h5ad, capsys, monkeypatch):
    out = h5ad.parent / "out.h5ad"
    out.write_text("precious")
    before = digest(h5ad)
    calls = []
    monkeypatch.setattr(spotfill.methods, "impute", lambda *a, **k: calls.append(1))
    # an existing output, and the input itself (even with --overwrite): refused before any computation
    assert "already exists" in one_line_error(capsys, main(["impute", str(h5ad), str(out), "--method", "mean"]))
    argv = ["impute", str(h5ad), str(h5ad), "--method", "mean", "--overwrite"]
    assert "refusing to overwrite" in one_line_error(capsys, main(argv))
    assert calls == []
    assert out.read_text() == "precious"
    assert digest(h5ad) == before
    monkeypatch.undo()
    assert main(["impute", str(h5ad), str(out), "--method", "mean", "--overwrite"]) == 0
    assert "imputed_mean" in ad.read_h5ad(out).layers
    assert sorted(p.name for p in h5ad.parent.iterdir()) == ["in.h5ad", "out.h5ad"]


def test_impute_bad_inputs(tmp_path, capsys):
    missing = one_line_error(capsys, main(["impute", str(tmp_path / "none.h5ad"), str(tmp_path / "o.h5ad")]))
    assert "none.h5ad does not exist" in missing
    adata = ad.AnnData(np.array([[1.0, np.nan], [2.0, 3.0]], dtype=np.float32))
    adata.obsm["spatial"] = np.array([[0.0, 0.0], [1.0, 0.0]])
    adata.write_h5ad(tmp_path / "nan.h5ad")
    err = one_line_error(capsys, main(["impute", str(tmp_path / "nan.h5ad"), str(tmp_path / "o.h5ad")]))
    assert "NaN" in err
    assert not (tmp_path / "o.h5ad").exists()


def test_python_m_spotfill_version():
    result = subprocess.run(
        [sys.executable, "-m", "spotfill", "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"spotfill {spotfill.__version__}"


def test_impute_genes_subset_to_h5ad_and_csv(h5ad, capsys):
    src = ad.read_h5ad(h5ad)
    X = src.X.toarray()
    fill = X.sum(0) / (X > 0).sum(0)
    expected = np.where(X > 0, X, fill[None, :])[:, [4, 0]]
    out = h5ad.parent / "sub.h5ad"
    assert main(["impute", str(h5ad), str(out), "--method", "mean", "--genes", "g4, g0"]) == 0
    res = ad.read_h5ad(out)
    assert "imputed_mean" not in res.layers
    np.testing.assert_allclose(res.obsm["imputed_mean"][["g4", "g0"]].to_numpy(), expected, rtol=1e-6)
    table_path = h5ad.parent / "sub.csv"
    assert main(["impute", str(h5ad), str(table_path), "--method", "mean", "--genes", "g4,g0"]) == 0
    table = pd.read_csv(table_path, index_col=0)
    assert list(table.columns) == ["g4", "g0"]
    np.testing.assert_allclose(table.to_numpy(), expected, rtol=1e-6)
    capsys.readouterr()
    code = main(["impute", str(h5ad), str(h5ad.parent / "x.csv"), "--method", "mean", "--genes", "g9"])
    assert "not in adata.var_names" in one_line_error(capsys, code)
    code = main(["impute", str(h5ad), str(h5ad.parent / "y.csv"), "--genes", "g1", "--export-layer", "counts"])
    assert "exclude each other" in one_line_error(capsys, code)


def test_benchmark_reads_a_count_table_with_coords(h5ad, tmp_path, capsys):
    adata = ad.read_h5ad(h5ad)
    table, coords = tmp_path / "counts.csv", tmp_path / "xy.csv"
    pd.DataFrame(adata.X.toarray(), index=adata.obs_names, columns=adata.var_names).to_csv(table)
    pd.DataFrame(adata.obsm["spatial"], index=adata.obs_names, columns=["x", "y"]).to_csv(coords)
    args = ["--protocol", "p2", "--methods", "raw,spatial_knn", "--in-process"]
    assert main(["benchmark", str(table), "--coords", str(coords), *args, "--out", str(tmp_path / "t.csv")]) == 0
    assert main(["benchmark", str(h5ad), *args, "--out", str(tmp_path / "h.csv")]) == 0
    from_table, from_h5ad = pd.read_csv(tmp_path / "t.csv"), pd.read_csv(tmp_path / "h.csv")
    nll = from_table[from_table.metric == "nll"]
    assert list(nll.method) == ["raw", "spatial_knn"]
    assert (nll.status == "ok").all()
    np.testing.assert_allclose(nll.value, from_h5ad[from_h5ad.metric == "nll"].value, rtol=1e-12)
    assert set(from_table.dataset) == {"counts"}
    capsys.readouterr()
    # the coordinates belong to one table, and they are an input the results may not replace
    two = [str(table), str(h5ad), "--coords", str(coords)]
    assert main(["benchmark", *two, *args, "--out", str(tmp_path / "x.csv")]) == 2
    assert "one count table" in capsys.readouterr().err
    assert main(["benchmark", str(table), "--coords", str(coords), *args, "--out", str(coords)]) == 2
    capsys.readouterr()


def test_impute_refuses_to_replace_any_input_file(h5ad, tmp_path, capsys):
    adata = ad.read_h5ad(h5ad)
    table, coords = tmp_path / "counts.csv", tmp_path / "xy.csv"
    pd.DataFrame(adata.X.toarray(), index=adata.obs_names, columns=adata.var_names).to_csv(table)
    pd.DataFrame(adata.obsm["spatial"], index=adata.obs_names, columns=["x", "y"]).to_csv(coords)
    before = digest(coords)
    code = main(["impute", str(table), str(coords), "--coords", str(coords), "--method", "mean", "--overwrite"])
    assert code == 2
    assert "one of the files the data were read from" in one_line_error(capsys, 2)
    assert digest(coords) == before


def test_impute_refuses_an_unwritable_folder_or_an_oversized_table_before_imputing(h5ad, capsys, monkeypatch):
    import os

    import spotfill.io._write as write_module
    import spotfill.methods

    def no_imputation(*args, **kwargs):
        raise AssertionError("imputed before the output was checked")

    monkeypatch.setattr(spotfill.methods, "impute", no_imputation)
    monkeypatch.setattr(write_module, "MAX_TABLE_ENTRIES", 30 * 6 - 1)  # the input has 30 x 6 entries
    assert main(["impute", str(h5ad), str(h5ad.with_name("o.csv"))]) == 2
    assert "too large for a text table" in one_line_error(capsys, 2)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != h5ad.parent and real_access(path, mode))
    assert main(["impute", str(h5ad), str(h5ad.with_name("o.h5ad"))]) == 2
    assert "no permission to create files in" in one_line_error(capsys, 2)


def test_benchmark_and_report_take_a_counts_layer_and_a_table_with_coords(h5ad, tmp_path, capsys):
    adata = ad.read_h5ad(h5ad)
    layered = ad.AnnData(np.log1p(adata.X.toarray()), obs=adata.obs, var=adata.var, obsm=adata.obsm)
    layered.layers["counts"] = adata.X.copy()
    layered.write_h5ad(tmp_path / "layered.h5ad")
    args = ["--protocol", "p2", "--methods", "raw,spatial_knn", "--in-process"]
    assert (
        main(
            ["benchmark", str(tmp_path / "layered.h5ad"), "--layer", "counts", *args, "--out", str(tmp_path / "l.csv")]
        )
        == 0
    )
    assert main(["benchmark", str(h5ad), *args, "--out", str(tmp_path / "h.csv")]) == 0
    nll = [pd.read_csv(tmp_path / f).query("metric == 'nll'")["value"].to_numpy() for f in ("l.csv", "h.csv")]
    np.testing.assert_allclose(nll[0], nll[1], rtol=1e-12)  # the counts layer, not the log values in X
    table, coords = tmp_path / "counts.csv", tmp_path / "xy.csv"
    pd.DataFrame(adata.X.toarray(), index=adata.obs_names, columns=adata.var_names).to_csv(table)
    pd.DataFrame(adata.obsm["spatial"], index=adata.obs_names, columns=["x", "y"]).to_csv(coords)
    report_args = ["--data", str(table), "--coords", str(coords), "--out", str(tmp_path / "r.html")]
    assert main(["report", str(tmp_path / "h.csv"), *report_args]) == 0
    text = (tmp_path / "r.html").read_text()
    assert "Data: counts (30 spots x 6 genes)" in text
    assert "counts is not a dataset of the results table above" in text  # the results are of in.h5ad
    capsys.readouterr()


def test_impute_library_key_keeps_sections_apart(h5ad, tmp_path):
    one = ad.read_h5ad(h5ad)
    both = ad.concat({"a": one, "b": one}, label="lib", index_unique="-")  # same coordinates twice
    path = tmp_path / "both.h5ad"
    both.write_h5ad(path)
    out = tmp_path / "out.h5ad"
    knn = ["--method", "spatial_knn", "--param", "n_neighs=3"]
    assert main(["impute", str(path), str(out), *knn, "--library-key", "lib"]) == 0
    res = ad.read_h5ad(out)
    assert res.uns["imputed_spatial_knn"]["library_key"] == "lib"
    layer = res.layers["imputed_spatial_knn"]
    layer = layer.toarray() if sp.issparse(layer) else np.asarray(layer)
    ref = SpatialKNN(n_neighs=3).fit_transform(one.X, coords=one.obsm["spatial"])
    ref = ref.toarray() if sp.issparse(ref) else np.asarray(ref)
    np.testing.assert_allclose(layer[:30], ref, rtol=1e-6)  # as if each section were alone
    np.testing.assert_allclose(layer[30:], ref, rtol=1e-6)


def test_impute_coord_type_builds_the_graph_asked_for(h5ad, tmp_path, capsys):
    adata = ad.read_h5ad(h5ad)
    adata.obs["array_row"] = np.arange(30) / 2  # not whole numbers: no grid
    adata.obs["array_col"] = np.zeros(30)
    adata.write_h5ad(tmp_path / "half.h5ad")
    out = tmp_path / "o.h5ad"
    assert (
        main(["impute", str(tmp_path / "half.h5ad"), str(out), "--method", "spatial_knn", "--param", "use_graph=true"])
        == 2
    )
    assert "whole numbers" in one_line_error(capsys, 2)
    args = ["--method", "spatial_knn", "--param", "use_graph=true", "--coord-type", "generic"]
    assert main(["impute", str(tmp_path / "half.h5ad"), str(out), *args]) == 0
    assert ad.read_h5ad(out).uns["spatial_neighbors"]["params"]["coord_type"] == "generic"


def test_impute_refuses_all_zero_counts_and_names_the_output_it_cannot_write(h5ad, tmp_path, capsys):
    zero = ad.read_h5ad(h5ad)
    zero.X = sp.csr_matrix(zero.shape, dtype=np.float32)
    zero.write_h5ad(tmp_path / "zero.h5ad")
    assert "holds no non-zero count" in one_line_error(
        capsys, main(["impute", str(tmp_path / "zero.h5ad"), str(tmp_path / "o.h5ad")])
    )
    from spotfill._files import atomic_path

    target = tmp_path / "gone" / "x.h5ad"  # the folder vanished after the checks
    with pytest.raises(OSError, match="cannot write here") as err, atomic_path(target):
        pass
    assert err.value.filename == str(target)


def test_a_closed_pipe_is_not_an_error():
    with subprocess.Popen(
        [sys.executable, "-m", "spotfill", "methods"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        proc.stdout.close()  # the reader is gone before anything is written (as `| head -0`)
        assert proc.wait(timeout=60) == 0
        assert proc.stderr.read() == b""


def test_impute_coord_type_keeps_the_stored_graph_sections(h5ad, tmp_path):
    one = ad.read_h5ad(h5ad)
    both = ad.concat({"a": one, "b": one}, label="lib", index_unique="-")
    spotfill.spatial_neighbors(both, library_key="lib")
    both.write_h5ad(tmp_path / "both.h5ad")
    out = tmp_path / "out.h5ad"
    args = ["--method", "spatial_knn", "--param", "n_neighs=3", "--coord-type", "generic"]
    assert main(["impute", str(tmp_path / "both.h5ad"), str(out), *args]) == 0
    res = ad.read_h5ad(out)
    assert res.uns["spatial_neighbors"]["params"]["library_key"] == "lib"  # rebuilt per section, as stored
    assert res.uns["imputed_spatial_knn"]["library_key"] == "lib"
    with warnings.catch_warnings():
        warnings.simplefilter("error", spotfill.SpotfillWarning)  # the stored key is not forced on a pooling method
        assert (
            main(
                [
                    "impute",
                    str(tmp_path / "both.h5ad"),
                    str(tmp_path / "m.h5ad"),
                    "--coord-type",
                    "generic",
                    "--method",
                    "mean",
                ]
            )
            == 0
        )
    assert "library_key" not in ad.read_h5ad(tmp_path / "m.h5ad").uns["imputed_mean"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    """A scheduler's time limit (SIGTERM) mid-write: exit 143, one line, and no hidden temporary file."""
    import os
    import signal
    import time

    from spotfill import cli
    from spotfill._files import atomic_path

    def writes_then_is_terminated(args):
        with atomic_path(tmp_path / "out.csv") as tmp:
            tmp.write_text("partial")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # interrupted by the handler
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli, "_cmd_methods", writes_then_is_terminated)
    assert main(["methods"]) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err == "spotfill: terminated\n"
    assert signal.getsignal(signal.SIGTERM) is before  # restored for the caller

    def benchmark_worker_stopped(args):  # the benchmark's handler, which replaces ours while a worker runs
        from spotfill._errors import Stopped

        raise Stopped(128 + signal.SIGHUP)

    monkeypatch.setattr(cli, "_cmd_methods", benchmark_worker_stopped)
    assert main(["methods"]) == 128 + signal.SIGHUP
    assert capsys.readouterr().err == "spotfill: terminated\n"

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_methods", interrupted)
    assert main(["methods"]) == 130
    assert capsys.readouterr().err == "spotfill: interrupted\n"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_ignored_sighup_stays_ignored(monkeypatch):
    """Under nohup SIGHUP is ignored: the command must not start ending on it."""
    import signal

    from spotfill import cli

    seen = {}

    def records(args):
        seen["hup"] = signal.getsignal(signal.SIGHUP)
        seen["term"] = signal.getsignal(signal.SIGTERM)
        return 0

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        monkeypatch.setattr(cli, "_cmd_methods", records)
        assert main(["methods"]) == 0
        assert seen["hup"] is signal.SIG_IGN
        assert seen["term"] is cli._terminate
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_format_and_selection_options_read_what_detection_cannot(tmp_path, capsys):
    # an ST table whose selection file (found beside it) belongs to another section, and a copy with an
    # unknown suffix: --selection none and --format st read them with the array positions of the spot names
    run = tmp_path / "run"
    run.mkdir()
    table = "\tGeneA\tGeneB\n10x13\t0\t6\n11x13\t2\t0\n12x15\t5\t1\n"
    (run / "S1.tsv").write_text(table)
    (run / "S1.dat").write_text(table)
    (run / "S1_selection.tsv").write_text("x\ty\tnew_x\tnew_y\tpixel_x\tpixel_y\tselected\n1\t1\t1\t1\t5\t5\t1\n")
    message = one_line_error(capsys, main(["info", str(run / "S1.tsv")]))
    assert "is in the selection file" in message
    assert message.endswith(
        "or pass selection=False (--selection none) to use the array positions from the spot names."
    )
    assert main(["info", str(run / "S1.tsv"), "--selection", "none"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "format: st" in lines
    assert "spots x genes: 3 x 2" in lines
    assert "x range: 10 to 12" in lines
    message = one_line_error(capsys, main(["info", str(run / "S1.dat")]))
    assert message.startswith(f"spotfill: error: cannot detect the format of {run / 'S1.dat'}")
    assert message.endswith("Pass format= (--format) to choose one.")
    assert main(["info", str(run / "S1.dat"), "--format", "st"]) == 0
    assert "spots x genes: 3 x 2" in capsys.readouterr().out.splitlines()
    selection = str(run / "S1_selection.tsv")
    message = one_line_error(capsys, main(["info", str(run / "S1.dat"), "--format", "table", "--selection", selection]))
    assert (
        message == "spotfill: error: selection= (--selection) applies to ST count tables only, not to format 'table'."
    )
    # --selection none fits any format (the datasets of one benchmark may mix formats): here the generic
    # table fails only for want of its coordinates
    message = one_line_error(capsys, main(["info", str(run / "S1.dat"), "--format", "table", "--selection", "none"]))
    assert "coords" in message
    assert "has no spot coordinates" in message


def test_benchmark_takes_a_selection_file_for_one_dataset_only_and_protects_it(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    table = "\tGeneA\tGeneB\n10x13\t0\t6\n11x13\t2\t0\n12x15\t5\t1\n"
    for name in ("S1.tsv", "S2.tsv"):
        (run / name).write_text(table)
    selection = tmp_path / "sel.csv"  # an explicit spot file: one section's
    selection.write_text("x,y,new_x,new_y,pixel_x,pixel_y,selected\n10,13,10,13,5,5,1\n11,13,11,13,6,5,1\n")
    before = selection.read_text()
    args = ["--methods", "mean", "--protocol", "p2", "--in-process", "--selection", str(selection)]
    message = one_line_error(capsys, main(["benchmark", str(run / "S1.tsv"), str(run / "S2.tsv"), *args]))
    assert "selection= (--selection) names the spot file of one ST section, but 2 datasets were given" in message
    message = one_line_error(capsys, main(["benchmark", str(run / "S1.tsv"), *args, "--out", str(selection)]))
    assert str(selection) in message
    assert selection.read_text() == before  # refused, even with --overwrite below
    code = main(["benchmark", str(run / "S1.tsv"), *args, "--out", str(selection), "--overwrite"])
    assert code == 2
    capsys.readouterr()
    assert selection.read_text() == before
    folder = tmp_path / "folder"
    folder.mkdir()
    message = one_line_error(capsys, main(["info", str(run / "S1.tsv"), "--selection", str(folder)]))
    assert f"selection file {folder} is not a file" in message


def test_benchmark_refuses_read_options_when_no_dataset_is_read_from_a_file(tmp_path, capsys):
    args = ["--methods", "mean", "--protocol", "p2", "--in-process", "--out", str(tmp_path / "r.csv")]
    code = main(["benchmark", "synthetic:60x10", "--format", "gem", "--selection", "none", *args])
    assert one_line_error(capsys, code) == (
        "spotfill: error: read options (format, selection) apply to data read from files, but every dataset here "
        "is synthetic or an AnnData: leave them out."
    )
    assert not (tmp_path / "r.csv").exists()


def test_verbose_is_taken_before_or_after_the_command():
    from spotfill.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["impute", "a.h5ad", "b.h5ad", "-v"]).verbose is True
    assert parser.parse_args(["-v", "impute", "a.h5ad", "b.h5ad"]).verbose is True
    assert parser.parse_args(["impute", "a.h5ad", "b.h5ad"]).verbose is False
    assert parser.parse_args(["methods", "--verbose"]).verbose is True


def test_benchmark_and_report_score_stacked_sections_one_by_one(h5ad, tmp_path, capsys):
    one = ad.read_h5ad(h5ad)
    both = ad.concat({"a": one, "b": one}, label="lib", index_unique="-")  # same coordinates twice
    path = tmp_path / "two.h5ad"
    both.write_h5ad(path)
    csv, page = tmp_path / "r.csv", tmp_path / "r.html"
    args = ["--methods", "raw,mean", "--protocol", "p2", "--in-process", "--library-key", "lib", "--out", str(csv)]
    assert main(["benchmark", str(path), *args]) == 0
    res = pd.read_csv(csv)
    assert sorted(set(res["dataset"])) == ["two:a", "two:b"]
    nll = res[res["metric"] == "nll"].set_index(["dataset", "method"])["value"]
    assert nll["two:a", "mean"] == nll["two:b", "mean"]  # the same section twice, scored alone each time
    assert main(["report", str(csv), "--data", str(path), "--library-key", "lib", "--out", str(page)]) == 0
    text = page.read_text()
    assert "Data: two:a (30 spots x 6 genes)" in text
    assert "Data: two:b (30 spots x 6 genes)" in text
    assert "is not a dataset of the results table" not in text
    capsys.readouterr()


def test_impute_refuses_a_disk_too_small_for_the_result_before_fitting(h5ad, tmp_path, capsys, monkeypatch):
    import shutil

    import spotfill.io._write as write_module
    import spotfill.methods

    adata = ad.read_h5ad(h5ad)
    room = write_module.h5ad_size(adata) + 2**20 + 100  # room for the input as it is, not for 30 x 6 float32 more

    def usage(path):
        return shutil._ntuple_diskusage(10 * room, 9 * room, room)

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit ran before the disk was checked")

    monkeypatch.setattr(write_module.shutil, "disk_usage", usage)
    monkeypatch.setattr(spotfill.methods, "impute", no_fit)
    out = tmp_path / "out.h5ad"
    assert "not enough space" in one_line_error(capsys, main(["impute", str(h5ad), str(out), "--method", "mean"]))
    assert not out.exists()
