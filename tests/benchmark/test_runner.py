"""The runner: method resolution, failures, isolation, and proof that held-out values stay hidden."""

from __future__ import annotations

import os
import re
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from spotfill._errors import InputError
from spotfill.benchmark import COLUMNS, log_scores, p1_mask, p2_split, poisson_nll, run_benchmark

EXTERNAL = textwrap.dedent(
    '''
    import os
    import numpy as np

    SEEN = []

    def half(X, coords):
        """Every entry + 0.5."""
        return X.toarray() + 0.5

    def boom(X, coords):
        raise ValueError("nope")

    def spy(X, coords):
        SEEN.append(X.copy())
        if os.environ.get("SPY_FILE"):
            np.save(os.environ["SPY_FILE"], X.toarray())
        return X

    def wrong_shape(X, coords):
        return np.zeros((1, 1))

    def complex_values(X, coords):
        return X.toarray() + 0j

    def writes_a_temp_file_and_hangs(X, coords):
        import tempfile, time
        fd, path = tempfile.mkstemp(prefix="bench_leftover_")
        os.close(fd)
        with open(os.environ["TEMP_RECORD"], "w") as fh:
            fh.write(path)
        time.sleep(60)

    def allocates_200_mb(X, coords):
        block = np.ones(25_000_000)  # 200 MB, touched
        return X * float(block[::1000].sum() > 0)

    def allocates_100_mb_in_pieces(X, coords):
        pieces = [np.ones(8_000) for _ in range(1_600)]  # 64 kB each: the heap, not their own mappings
        return X * float(sum(p[0] for p in pieces) > 0)

    def exits(X, coords):
        raise SystemExit(3)

    def leaves_a_child(X, coords):
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open(os.environ["CHILD_PID_FILE"], "w") as fh:
            fh.write(str(child.pid))
        return X

    def hangs_with_a_child(X, coords):
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open(os.environ["CHILD_PID_FILE"], "w") as fh:
            fh.write(str(child.pid))
        time.sleep(60)
    '''
)


@pytest.fixture
def ext(importable_module):
    """An importable module ``bench_ext`` of external methods (on sys.path for this test)."""
    return importable_module("bench_ext", EXTERNAL)


def _adata(n_side: int = 6, n_genes: int = 8, seed: int = 0) -> AnnData:
    rng = np.random.default_rng(seed)
    n = n_side * n_side
    row, col = np.divmod(np.arange(n), n_side)
    X = rng.poisson(2.0, size=(n, n_genes)).astype(np.float32)
    ad = AnnData(sp.csr_matrix(X))
    ad.obs_names = [f"s{i}" for i in range(n)]
    ad.var_names = [f"g{j}" for j in range(n_genes)]
    ad.obs["array_row"] = row
    ad.obs["array_col"] = col
    ad.obsm["spatial"] = np.c_[col, row].astype(float)
    ad.obs["label"] = pd.Categorical(np.where(col < n_side // 2, "left", "right"))
    ad.uns["dataset"] = {"name": "toy"}
    return ad


def test_external_callable_scored_exactly(ext):
    ad = _adata()
    df = run_benchmark(
        [ad], protocols=["p1", "p2"], methods=[f"{ext}:half"], seeds=[0, 1], isolate=False, progress=False
    )
    assert list(df.columns) == COLUMNS
    assert (df["status"] == "ok").all()
    assert set(df["dataset"]) == {"toy"}
    for seed in (0, 1):
        m = p1_mask(ad.X, seed=seed)
        # held entries are zero in what the method sees, so it predicts exactly 0.5 there
        want = log_scores(m.values, np.full(m.values.size, 0.5))
        got = df[(df.seed == seed) & (df.protocol == "p1")].set_index("metric")["value"]
        for key in ("rmse", "mae"):
            assert got[key] == pytest.approx(want[key], rel=1e-12)
        assert got["zero_log1p"] == pytest.approx(np.log1p(0.5))
        assert got["rmse_counts"] == pytest.approx(np.sqrt(np.mean((m.values - 0.5) ** 2)), rel=1e-12)
        X_train, X_test = p2_split(ad.X, seed=seed)
        nll = df[(df.seed == seed) & (df.protocol == "p2") & (df.metric == "nll")]["value"].item()
        assert nll == pytest.approx(poisson_nll(X_test, X_train.toarray() + 0.5), rel=1e-12)
        assert {"seconds", "peak_mb"} <= set(got.index)


def test_controls_p2_and_p4():
    ad = _adata()
    df = run_benchmark([ad], protocols=["p2", "p4"], methods=["raw", "libsize_mean"], isolate=False, progress=False)
    X_train, X_test = p2_split(ad.X, seed=0)
    v = df.set_index(["protocol", "method", "metric"])["value"]
    assert v["p2", "raw", "nll"] == pytest.approx(poisson_nll(X_test, X_train))
    lib = np.asarray(X_train.sum(1)).ravel()
    gm = np.asarray(X_train.sum(0)).ravel() / X_train.sum()
    assert v["p2", "libsize_mean", "nll"] == pytest.approx(poisson_nll(X_test, np.outer(lib, gm)))
    assert v["p4", "raw", "ari"] == pytest.approx(v["p4", "raw", "ari_raw"])


def test_failing_method_is_a_result_and_run_goes_on(ext, tmp_path):
    out = tmp_path / "res.csv"
    df = run_benchmark(
        [_adata()],
        protocols=["p1"],
        methods=[f"{ext}:boom", f"{ext}:wrong_shape", "raw"],
        seeds=[0],
        isolate=False,
        progress=False,
        out=out,
    )
    boom = df[df.method == f"{ext}:boom"]
    assert (boom["status"] == "failed").all()
    assert boom["error"].str.contains("ValueError: nope").all()
    assert df[df.method == f"{ext}:wrong_shape"]["error"].str.contains("returned shape").all()
    raw = df[df.method == "raw"].set_index("metric")
    assert (raw["status"] == "ok").all()
    assert raw.loc["zero_log1p", "value"] == 0.0
    back = pd.read_csv(out)
    assert len(back) == len(df)
    assert set(back["status"]) == {"ok", "failed"}


def test_spy_never_sees_held_out_values(ext):
    import importlib

    ad = _adata()
    run_benchmark([ad], protocols=["p1", "p3"], methods=[f"{ext}:spy"], seeds=[0, 2], isolate=False, progress=False)
    seen = importlib.import_module(ext).SEEN
    assert len(seen) == 2 * (1 + 5)  # per seed: one P1 call, five P3 folds
    full = ad.X.toarray()
    for k, seed in enumerate((0, 2)):
        m = p1_mask(ad.X, seed=seed)
        got = seen[6 * k].toarray()
        assert np.all(got[m.rows, m.cols] == 0)
        expected = full.copy()
        expected[m.rows, m.cols] = 0
        np.testing.assert_array_equal(got, expected)  # everything else intact
        # P3: every call sees exactly one fold's spots emptied, all other spots intact
        emptied = [np.flatnonzero(seen[6 * k + f].getnnz(axis=1) == 0) for f in range(1, 6)]
        assert sorted(np.concatenate(emptied).tolist()) == list(range(ad.n_obs))


def test_isolated_call_and_spy_file(ext, tmp_path, monkeypatch):
    spy = tmp_path / "seen.npy"
    monkeypatch.setenv("SPY_FILE", str(spy))
    ad = _adata()
    ballast = np.ones(600 * 2**20 // 8)  # 600 MB held by this process must not count as the worker's
    df = run_benchmark(
        [ad], protocols=["p1"], methods=[f"{ext}:spy"], seeds=[0], isolate=True, progress=False, timeout=120
    )
    del ballast
    assert (df["status"] == "ok").all(), df["error"].tolist()
    v = df.set_index("metric")["value"]
    assert 10 < v["peak_mb"] < 500  # the worker's own resident set: an interpreter with numpy and anndata
    m = p1_mask(ad.X, seed=0)
    assert np.all(np.load(spy)[m.rows, m.cols] == 0)
    assert v["rmse"] == pytest.approx(log_scores(m.values, np.zeros(m.values.size))["rmse"])


def test_timeout_in_process(ext, tmp_path, monkeypatch):
    (tmp_path / "slow_ext.py").write_text("import time\ndef slow(X, coords):\n    time.sleep(0.3)\n    return X\n")
    df = run_benchmark(
        [_adata()], protocols=["p5"], methods=["slow_ext:slow"], isolate=False, timeout=0.05, progress=False
    )
    assert (df["status"] == "failed").all()
    assert df["error"].str.startswith("over time").all()


def test_bad_names_fail_early(ext):
    with pytest.raises(InputError, match="unknown method"):
        run_benchmark([_adata()], methods=["no_such_method"], progress=False)
    with pytest.raises(InputError, match="cannot import"):
        run_benchmark([_adata()], methods=["no_such_module_xyz:f"], progress=False)
    with pytest.raises(InputError, match="unknown protocol"):
        run_benchmark([_adata()], methods=["raw"], protocols=["p9"], progress=False)


def test_synthetic_name_and_p5(ext):
    df = run_benchmark(["synthetic:60x20"], protocols=["p5"], methods=["raw"], isolate=False, progress=False)
    assert set(df["dataset"]) == {"synthetic:60x20"}
    assert set(df["metric"]) == {"seconds", "peak_mb", "base_mb"}
    assert df["n_spots"].iloc[0] == 60


def test_p4_skipped_without_labels():
    ad = _adata()
    del ad.obs["label"]
    df = run_benchmark([ad], protocols=["p4"], methods=["raw"], isolate=False, progress=False)
    assert df["status"].tolist() == ["skipped"]
    assert df["error"].item() == "no obs['label']"


def test_method_with_parameters_in_brackets(ext):
    from spotfill.benchmark import p2_split
    from spotfill.methods import make_method

    ad = _adata()
    spec = "spatial_knn[n_neighs=3,include_self=False]"
    df = run_benchmark([ad], protocols=["p2"], methods=["spatial_knn", spec], isolate=False, progress=False)
    assert set(df["method"]) == {"spatial_knn", spec}  # the spec is the label
    X_train, X_test = p2_split(ad.X, seed=0)
    graph = _graph_of(ad)
    want = make_method("spatial_knn", n_neighs=3, include_self=False, seed=0).fit_transform(
        X_train, graph=graph, coords=ad.obsm["spatial"]
    )
    got = df[(df.method == spec) & (df.metric == "nll")]["value"].item()
    assert got == pytest.approx(poisson_nll(X_test, want), rel=1e-12)
    default = df[(df.method == "spatial_knn") & (df.metric == "nll")]["value"].item()
    assert default != pytest.approx(got)  # the parameters reached the method


def _graph_of(ad: AnnData) -> sp.csr_matrix:
    from spotfill.graph import spatial_neighbors

    shell = ad.copy()
    spatial_neighbors(shell)
    return sp.csr_matrix(shell.obsp["spatial_connectivities"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("spatial_knn[k=3]", "has no parameter 'k'"),
        ("spatial_knn[n_neighs]", "is not key=value"),
        ("spatial_knn[n_neighs=3", "unbalanced"),
        ("raw[x=1]", "parameters in brackets are for spotfill's registered methods"),
        ("spatial_knn[seed=3]", "the harness sets the method's seed"),
        ("mean,raw,mean", "method 'mean' is listed twice"),
    ],
)
def test_bad_method_parameters_fail_early(spec, message):
    from spotfill._params import split_top_level

    with pytest.raises(InputError, match=message):
        run_benchmark([_adata()], methods=split_top_level(spec), progress=False)


def test_split_top_level_and_spec_parsing():
    from spotfill._params import parse_method_spec, split_top_level

    assert split_top_level("mean, spotfill[gene_prior=5,smooth=0.5],raw") == [
        "mean",
        "spotfill[gene_prior=5,smooth=0.5]",
        "raw",
    ]
    assert parse_method_spec("spotfill[gene_prior=5, smooth=0.5, shrink='all', n-latent=10]") == (
        "spotfill",
        {"gene_prior": 5, "smooth": 0.5, "shrink": "all", "n_latent": 10},
    )
    assert parse_method_spec("mean") == ("mean", {})
    assert parse_method_spec("spotfill[]") == ("spotfill", {})
    # tuples, nested brackets and quoted commas stay inside their parameter
    spec = "ae[hidden=(64, 32), name='a,b']"
    assert split_top_level(f"mean, {spec}") == ["mean", spec]
    assert parse_method_spec(spec) == ("ae", {"hidden": (64, 32), "name": "a,b"})
    assert parse_method_spec("ae[hidden=[64, 32]]") == ("ae", {"hidden": [64, 32]})
    with pytest.raises(InputError, match=re.escape("unbalanced ']'")):
        split_top_level("x[a=(1,2]")
    with pytest.raises(InputError, match="unbalanced quote"):
        split_top_level("x[a='b]")
    with pytest.raises(InputError, match=re.escape("unbalanced ']'")):
        parse_method_spec("x[a=1][b=2]")


def test_spec_parsing_strips_spaces_and_refuses_stray_brackets_and_quotes():
    from spotfill._params import parse_method_spec, parse_params, split_top_level

    assert parse_method_spec("  mean ") == ("mean", {})
    assert parse_method_spec(" spotfill [ kernel= idw ] ") == ("spotfill", {"kernel": "idw"})
    assert parse_params(["kernel= idw "], usage="x") == {"kernel": "idw"}
    for spec in ("mean]", "a]b[c=1]"):
        with pytest.raises(InputError, match="cannot read the method"):
            parse_method_spec(spec)
    with pytest.raises(InputError, match="unbalanced quote '"):
        split_top_level("mean, raw[name='a]")
    with pytest.raises(InputError, match="unbalanced quote '"):
        split_top_level("name='a")
    assert split_top_level("a; b[c=1; d=2]", sep=";") == ["a", "b[c=1; d=2]"]


def test_p3_default_model_predicts_held_out_spots_from_their_neighbours():
    """P3 through the harness: the default model interpolates held-out spots instead of returning zeros."""
    from spotfill.datasets import synthetic

    adata = synthetic(400, 60, platform="st", depth=3000, seed=2)
    model = "spotfill[n_latent=3,smooth=0.5,progress=False]"
    df = run_benchmark([adata], protocols=["p3"], methods=[model, "libsize_mean", "spatial_knn"], isolate=False)
    score = df.set_index(["method", "metric"])["value"]
    # the library-size control is 0 at a spot without counts: the raw zeros' score, no correlation
    assert np.isnan(score["libsize_mean", "pearson"])
    assert score[model, "rmse"] < 0.4 * score["libsize_mean", "rmse"]  # measured: 0.82 against 2.69
    assert score[model, "pearson"] > 0.85  # measured: 0.888
    assert score[model, "rmse"] < 1.1 * score["spatial_knn", "rmse"]  # a plain spatial average: 0.80


def test_output_file_is_checked_before_running(tmp_path):
    data = tmp_path / "d.h5ad"
    _adata().write_h5ad(data)
    before = data.read_bytes()
    with pytest.raises(InputError, match=r"must end in \.csv"):
        run_benchmark([str(data)], methods=["raw"], out=data, progress=False)
    renamed = tmp_path / "d.csv"  # an input that happens to end in .csv
    data.rename(renamed)
    with pytest.raises(InputError, match="one of the input files"):
        run_benchmark([str(renamed)], methods=["raw"], out=renamed, progress=False)
    renamed.rename(data)
    with pytest.raises(InputError, match=r"must end in \.csv"):
        run_benchmark([str(data)], methods=["raw"], out=tmp_path / "r.h5ad", progress=False)
    with pytest.raises(InputError, match="seeds must be integers >= 0"):
        run_benchmark([str(data)], methods=["raw"], seeds=[-1], progress=False)
    with pytest.raises(InputError, match=r"seeds must be integers >= 0 and < 2\*\*32.*got 4294967296"):
        run_benchmark([str(data)], methods=["raw"], seeds=[0, 2**32], progress=False)
    assert data.read_bytes() == before
    # a missing folder is created, as before
    df = run_benchmark([str(data)], methods=["raw"], out=tmp_path / "new" / "r.csv", isolate=False, progress=False)
    assert (tmp_path / "new" / "r.csv").exists()
    assert set(df["method"]) == {"raw"}


def test_p1_that_holds_out_nothing_is_refused():
    """round(frac * nnz) == 0 would score nothing (NaN or a crash): a clear error instead."""
    ad = _adata()
    nnz = sp.csr_matrix(ad.X).nnz
    with pytest.raises(InputError, match=f"holds out 0 of the {nnz} non-zero"):
        run_benchmark([ad], protocols=["p1"], methods=["raw"], frac=0.4 / nnz, isolate=False, progress=False)
    # one held-out entry is enough, and the raw data's zero prediction is scored by hand
    df = run_benchmark(
        [ad], protocols=["p1"], methods=["raw"], frac=0.6 / nnz, seeds=[0], isolate=False, progress=False
    )
    m = p1_mask(ad.X, frac=0.6 / nnz, seed=0)
    assert m.values.size == 1
    rmse = df.set_index("metric")["value"]["rmse"]
    assert rmse == pytest.approx(np.log1p(m.values[0]), rel=1e-12)


def test_p3_and_p4_scores_by_hand(ext):
    """P3: the scores of all folds' held-out predictions put together; P4: domain_ari of the method's output."""
    from spotfill.benchmark import domain_ari, gene_pearson, libsize_mean_rates, load_dataset, log_scores, p3_folds
    from spotfill.benchmark._masks import zero_rows
    from spotfill.methods import make_method

    ad = _adata()
    X = sp.csr_matrix(ad.X).toarray().astype(np.float64)
    half = f"{ext}:half"
    methods = [half, "libsize_mean", "spatial_knn"]
    df = run_benchmark([ad], protocols=["p3", "p4"], methods=methods, isolate=False, progress=False)
    v = df.set_index(["protocol", "method", "metric"])["value"]
    # `half` sees the held-out rows as zeros, so it predicts 0.5 there, at every spot once
    assert v["p3", half, "rmse"] == pytest.approx(np.sqrt(np.mean((np.log1p(X) - np.log1p(0.5)) ** 2)), rel=1e-12)
    assert v["p3", half, "mae"] == pytest.approx(np.mean(np.abs(np.log1p(X) - np.log1p(0.5))), rel=1e-12)
    # spatial_knn, fold by fold, each fold's held-out rows into one matrix, scored once
    ds, P = load_dataset(ad), np.zeros_like(X)
    for fold in p3_folds(X.shape[0], seed=0):
        est = make_method("spatial_knn", seed=0).fit(zero_rows(ds.X, fold), graph=ds.graph, coords=ds.coords)
        P[fold] = sp.csr_matrix(est.transform())[fold].toarray()
    pooled = log_scores(X, P)
    for metric in ("rmse", "mae", "pearson", "spearman"):
        assert v["p3", "spatial_knn", metric] == pytest.approx(pooled[metric], rel=1e-9)
    assert v["p3", "spatial_knn", "gene_pearson"] == pytest.approx(np.nanmedian(gene_pearson(X, P)), rel=1e-9)
    labels = np.asarray(ad.obs["label"].astype(object))
    assert v["p4", "libsize_mean", "ari"] == pytest.approx(domain_ari(libsize_mean_rates(ad.X), labels, seed=0))
    assert v["p4", half, "ari"] == pytest.approx(domain_ari(X + 0.5, labels, seed=0))
    assert v["p4", half, "ari_raw"] == pytest.approx(domain_ari(ad.X, labels, seed=0))


def test_load_dataset_labels_and_grid_graph():
    from spotfill.benchmark import load_dataset
    from spotfill.graph import spatial_neighbors

    ad = _adata()
    ad.obs["label"] = pd.Categorical(["x", None] * (ad.n_obs // 2))
    ds = load_dataset(ad)
    assert ds.name == "toy"
    assert ds.labels.tolist() == ["x", None] * (ad.n_obs // 2)
    ref = ad.copy()
    spatial_neighbors(ref)
    assert (ds.graph != sp.csr_matrix(ref.obsp["spatial_connectivities"])).nnz == 0
    assert ds.graph.nnz > 0
    np.testing.assert_array_equal(ds.X.toarray(), sp.csr_matrix(ad.X).toarray())
    assert "spatial_connectivities" not in ad.obsp  # the user's AnnData is left alone


def test_stacked_sections_are_refused_with_what_to_do_instead():
    import anndata

    from spotfill.benchmark import load_dataset

    one = _adata()
    both = anndata.concat({"a": one, "b": one}, label="sample", index_unique="-")
    both.uns["dataset"] = "two"
    with pytest.raises(
        InputError, match=r"^two: 36 spot\(s\) share an array position .*library_key= \(--library-key\)"
    ):
        load_dataset(both)


def test_library_key_scores_each_section_as_a_dataset(tmp_path):
    import anndata

    from spotfill.benchmark._runner import split_sections

    a, b = _adata(seed=1), _adata(seed=2)
    both = anndata.concat({"a": a, "b": b}, label="sample", index_unique="-")
    both.uns["dataset"] = "two"
    path = tmp_path / "two.h5ad"
    both.write_h5ad(path)
    kw = {"protocols": ["p2", "p4"], "methods": ["raw", "mean"], "isolate": False, "progress": False}
    got = run_benchmark(path, library_key="sample", **kw)
    a.uns["dataset"], b.uns["dataset"] = "two:a", "two:b"
    ref = run_benchmark([a, b], **kw)
    keep = ~got["metric"].isin(["seconds", "peak_mb"])
    assert sorted(set(got["dataset"])) == ["two:a", "two:b"]
    assert got.loc[keep, "n_spots"].eq(36).all()
    pd.testing.assert_frame_equal(
        got[keep].reset_index(drop=True), ref[ref["metric"].isin(got[keep]["metric"])].reset_index(drop=True)
    )
    parts = split_sections([both], "sample")
    assert [p.uns["dataset"]["name"] for p in parts] == ["two:a", "two:b"]
    np.testing.assert_array_equal(parts[1].X.toarray(), b.X.toarray())
    with pytest.raises(InputError, match=r"two: library_key='lib' \(--library-key\) is not a column of obs"):
        split_sections([both], "lib")
    both.obs["sample"] = both.obs["sample"].cat.add_categories("c")
    both.obs.iloc[0, both.obs.columns.get_loc("sample")] = None
    with pytest.raises(InputError, match=r"two: 1 spots have no section in obs\['sample'\]"):
        split_sections([both], "sample")
    with pytest.raises(InputError, match="one synthetic section"):
        split_sections(["synthetic:20x5"], "sample")


def test_scale_series_rows(tmp_path):
    from spotfill.benchmark import scale_series

    out = tmp_path / "scale.csv"
    df = scale_series(["raw"], sizes=[40, 60], n_genes=10, timeout=300, out=out, progress=False)
    ok = df[df.status == "ok"]
    assert list(dict.fromkeys(ok.dataset)) == ["synthetic:40x10", "synthetic:60x10"]
    assert set(ok.metric) == {"seconds", "peak_mb", "base_mb"}
    assert sorted(set(ok.n_spots)) == [40, 60]
    assert (ok.value > 0).all()
    saved = pd.read_csv(out, keep_default_na=False, na_values=[""])
    np.testing.assert_allclose(saved["value"], df["value"])
    assert saved["dataset"].tolist() == df["dataset"].tolist()


def test_in_process_warm_up_runs_only_registered_methods_once(ext, monkeypatch):
    """One-off costs (numba compiling) are paid before the first measured in-process call."""
    import spotfill.benchmark._runner as runner

    monkeypatch.setattr(runner, "_warmed", set())
    monkeypatch.setattr(runner, "_WARM_UP_DATA", ("synthetic:40x10",))
    loaded = []
    real = runner.load_dataset  # the warm-up data, uncached here, so that every warm-up is seen
    monkeypatch.setattr(runner, "_warm_up_dataset", lambda d: loaded.append(d) or real(d))
    bench_ext = __import__(ext)
    bench_ext.SEEN.clear()
    methods = ["mean", f"{ext}:spy", "raw", "spotfill[n_latent=2,progress=False]"]
    run_benchmark([_adata()], protocols=["p2"], methods=methods, seeds=[0, 1], isolate=False, progress=False)
    # once for each of the two registered methods, never for the control or the external function
    assert [d for d in loaded if isinstance(d, str)] == ["synthetic:40x10"] * 2
    assert runner._warmed == set(methods)
    assert len(bench_ext.SEEN) == 2  # the spy saw only its two measured calls (seeds 0 and 1)
    assert all(X.shape == (36, 8) for X in bench_ext.SEEN)


def test_exits_and_complex_output_are_failures_in_process(ext):
    methods = [f"{ext}:exits", f"{ext}:complex_values", f"{ext}:half"]
    df = run_benchmark([_adata()], protocols=["p2"], methods=methods, isolate=False, progress=False)
    status = df[df.metric == "nll"].set_index("method")["status"] if "nll" in set(df.metric) else None
    failed = df[df.status == "failed"].set_index("method")["error"]
    assert "SystemExit" in failed[f"{ext}:exits"].iloc[0]
    assert "complex" in failed[f"{ext}:complex_values"].iloc[0]
    assert status is not None
    assert status[f"{ext}:half"] == "ok"  # the run went on after both


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (waiting up to 5 s for it to be reaped); kill it otherwise."""
    import os
    import time

    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.kill(pid, 9)
    return False


@pytest.mark.parametrize(("method", "timeout"), [("hangs_with_a_child", 8), ("leaves_a_child", 120)])
def test_a_workers_child_processes_end_with_the_call(ext, tmp_path, monkeypatch, method, timeout):
    pid_file = tmp_path / "child.pid"
    monkeypatch.setenv("CHILD_PID_FILE", str(pid_file))
    df = run_benchmark(
        [_adata()], protocols=["p5"], methods=[f"{ext}:{method}"], isolate=True, progress=False, timeout=timeout
    )
    if method == "hangs_with_a_child":
        assert df["error"].str.contains("over time").any()
    else:
        assert (df["status"] == "ok").all()
    if not pid_file.exists():
        pytest.skip("the worker did not start its child within the time limit on this (busy) machine")
    assert _gone(int(pid_file.read_text())), "the worker's child process outlived the call"


def test_a_stopped_benchmark_stops_its_worker(ext, tmp_path):
    """SIGTERM to the benchmark (timeout(1), a job scheduler) ends the worker, which has a session of its own."""
    import os
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "child.pid"
    script = tmp_path / "bench.py"
    script.write_text(
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from spotfill.benchmark import run_benchmark\n"
        f"run_benchmark(['synthetic:30x5'], protocols=['p5'], methods=['{ext}:hangs_with_a_child'], progress=False)\n"
    )
    env = {**os.environ, "CHILD_PID_FILE": str(pid_file)}
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env)
    for _ in range(300):  # the worker's child is up once its pid is written
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.1)
    else:
        parent.kill()
        pytest.skip("the worker did not start within 30 s on this (busy) machine")
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    assert _gone(int(pid_file.read_text())), "the worker's child outlived the stopped benchmark"


def test_isolated_failure_reports_the_methods_own_seconds(ext, tmp_path):
    """A worker whose method raises still records how long the method ran (not the interpreter start)."""
    import json

    from spotfill.benchmark import _runner

    X = sp.csr_matrix(np.ones((3, 2), dtype=np.float32))
    args = np.asarray(json.dumps({"name": f"{ext}:boom", "seed": 0}))
    _runner._save_csr(tmp_path / "input.npz", X, coords=np.zeros((3, 2)), args=args)
    _runner._child_main(str(tmp_path / "input.npz"), str(tmp_path))
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["error"] == "ValueError: nope"
    assert isinstance(meta["seconds"], float)  # before, only a successful call recorded it
    assert meta["seconds"] >= 0


def test_datasets_that_would_share_a_name_are_refused(tmp_path):
    from spotfill.benchmark._runner import dataset_name

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _adata().write_h5ad(tmp_path / folder / "section.h5ad")
    files = [str(tmp_path / "a" / "section.h5ad"), str(tmp_path / "b" / "section.h5ad")]
    with pytest.raises(InputError, match="would all be named 'section'"):
        run_benchmark(files, methods=["raw"], progress=False)
    with pytest.raises(InputError, match="would all be named 'toy'"):
        run_benchmark([_adata(), _adata(seed=1)], methods=["raw"], progress=False)
    # Space Ranger folders are all called outs: the run's folder names them
    assert dataset_name(tmp_path / "sample1" / "outs") == "sample1"
    assert dataset_name("synthetic:10x5") == "synthetic:10x5"
    assert dataset_name(tmp_path / "x.h5ad") == "x"
    assert dataset_name(tmp_path / "counts.csv") == "counts"  # as a table's name, like an .h5ad's
    assert dataset_name(tmp_path / "B1.tsv.gz") == "B1"
    assert dataset_name(tmp_path / "chip.gem.gz") == "chip"
    assert dataset_name(tmp_path / ".csv") == ".csv"


def test_in_process_warm_up_does_not_warn_about_its_own_data():
    import warnings

    from spotfill import SpotfillWarning
    from spotfill.benchmark import _runner

    _runner._warmed.discard("knn")  # warm up again in this process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_benchmark([_adata()], methods=["knn"], protocols=["p1"], isolate=False, progress=False)
    assert not [w for w in caught if issubclass(w.category, SpotfillWarning)]  # every spot of _adata has counts


def test_a_killed_calls_temporary_files_are_removed(ext, tmp_path, monkeypatch):
    """A peer's exchange files hold a copy of the counts: they go with the call, even one killed at the limit."""
    record = tmp_path / "temp_path.txt"
    monkeypatch.setenv("TEMP_RECORD", str(record))
    df = run_benchmark(
        [_adata()],
        protocols=["p5"],
        methods=[f"{ext}:writes_a_temp_file_and_hangs"],
        isolate=True,
        progress=False,
        timeout=5,
    )
    assert df["error"].str.contains("over time").all()
    if not record.exists():
        pytest.skip("the worker did not reach the method within the time limit on this (busy) machine")
    left = record.read_text()
    assert "spotfill_bench_" in left  # the method's temporary folder was the call's own
    assert not os.path.exists(left)


def test_a_peer_that_cannot_run_is_skipped_with_a_warning(monkeypatch):
    from spotfill import SpotfillWarning
    from spotfill.benchmark import peers

    monkeypatch.setattr(
        peers, "unavailable_reason", lambda name: peers.missing_message(name) if name == "magic" else None
    )
    with pytest.warns(SpotfillWarning, match=r"method 'magic\[knn=3\]' is skipped: MAGIC \(magic-impute\) is not"):
        df = run_benchmark(
            [_adata()],
            protocols=["p1", "p2"],
            methods=["raw", "magic[knn=3]"],
            seeds=[0, 1],
            progress=False,
            isolate=False,
        )
    skipped = df[df["method"] == "magic[knn=3]"]
    assert set(skipped["status"]) == {"skipped"}
    assert len(skipped) == 2 * 2 * 2  # seeds x protocols x (seconds, peak_mb)
    assert skipped["error"].str.contains("pip install").all()
    assert (df.loc[df["method"] == "raw", "status"] == "ok").all()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident high-water mark reset is Linux only")
def test_in_process_memory_is_the_resident_peak_of_the_call(ext):
    """In process, peak_mb - base_mb is what the call added to the resident set (it was tracemalloc's count)."""
    df = run_benchmark([_adata()], protocols=["p5"], methods=[f"{ext}:allocates_200_mb"], isolate=False, progress=False)
    v = df.set_index("metric")["value"]
    assert 180 < v["peak_mb"] - v["base_mb"] < 260
    assert v["base_mb"] > 20  # the process: interpreter, numpy, anndata, the data


def test_default_seeds_are_each_protocols_own():
    """BENCHMARK.md: P1 reports the mean and sd over seeds 0, 1, 2; P2 and P4 use seed 0."""
    from spotfill.benchmark import DEFAULT_SEEDS

    assert DEFAULT_SEEDS == {"p1": (0, 1, 2)}
    df = run_benchmark([_adata()], protocols=["p1", "p2", "p4"], methods=["raw"], isolate=False, progress=False)
    seeds = df.groupby("protocol")["seed"].unique().map(sorted).to_dict()
    assert seeds == {"p1": [0, 1, 2], "p2": [0], "p4": [0]}
    only = run_benchmark([_adata()], protocols=["p2"], methods=["raw"], isolate=False, progress=False)
    assert set(only["seed"]) == {0}
    given = run_benchmark([_adata()], protocols=["p1", "p2"], methods=["raw"], seeds=[3], isolate=False, progress=False)
    assert set(given["seed"]) == {3}


def test_p2_on_non_integer_counts_is_skipped_and_the_run_goes_on(tmp_path):
    from spotfill import SpotfillWarning

    ad = _adata()
    ad.X = ad.X * 0.5  # not molecules: binomial thinning is undefined
    out = tmp_path / "res.csv"
    with pytest.warns(SpotfillWarning, match="non-integer"):
        df = run_benchmark(
            [ad], protocols=["p1", "p2"], methods=["raw"], seeds=[0], isolate=False, progress=False, out=out
        )
    p2 = df[df["protocol"] == "p2"]
    assert list(p2["status"]) == ["skipped"]
    assert p2["error"].str.contains("integer").all()
    assert (df.loc[df["protocol"] == "p1", "status"] == "ok").all()
    assert len(pd.read_csv(out)) == len(df)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident high-water mark reset is Linux only")
def test_in_process_memory_counts_heap_an_earlier_call_freed(ext):
    """The second seed reuses the heap the first one freed: it must be measured as the same 100 MB."""
    df = run_benchmark(
        [_adata()],
        protocols=["p5"],
        methods=[f"{ext}:allocates_100_mb_in_pieces"],
        seeds=[0, 1, 2],
        isolate=False,
        progress=False,
    )
    v = df.pivot_table(index="seed", columns="metric", values="value")
    added = v["peak_mb"] - v["base_mb"]
    assert (added > 80).all(), added.tolist()
    assert (added < 160).all(), added.tolist()


def test_a_peer_interpreter_that_cannot_start_is_named_in_the_skip(monkeypatch, tmp_path):
    from spotfill import SpotfillWarning

    monkeypatch.delenv("SPOTFILL_PEER_PYTHON", raising=False)
    monkeypatch.setenv("SPOTFILL_PEER_PYTHON_HALRA", str(tmp_path / "typo" / "python"))
    with pytest.warns(SpotfillWarning, match=r"cannot start the HALRA interpreter .*fix SPOTFILL_PEER_PYTHON_HALRA"):
        df = run_benchmark([_adata()], protocols=["p2"], methods=["halra"], isolate=False, progress=False)
    assert set(df["status"]) == {"skipped"}
