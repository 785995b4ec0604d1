from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from spotfill._errors import InputError
from spotfill.benchmark import peers

NAMES = ["magic", "scvi", "stagate", "smoother", "halra"]
# short training for the tool runs of the tests
FAST = {"scvi": {"max_epochs": 5}, "stagate": {"n_epochs": 10}, "smoother": {"max_epochs": 20}}


@pytest.fixture(autouse=True)
def _no_peer_python(monkeypatch):
    for var in ["SPOTFILL_PEER_PYTHON", *(f"SPOTFILL_PEER_PYTHON_{n.upper()}" for n in NAMES)]:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def grid_counts() -> tuple[sp.csr_matrix, np.ndarray]:
    """60 spots on a 10 x 6 grid x 40 genes, Poisson counts with a left-right gradient (seed 0)."""
    rng = np.random.default_rng(0)
    xy = np.stack(np.meshgrid(np.arange(10.0), np.arange(6.0)), -1).reshape(-1, 2)
    rate = np.exp(rng.normal(0.0, 1.0, 40))[None, :] * (1.0 + xy[:, :1] / 10.0)
    return sp.csr_matrix(rng.poisson(rate).astype(np.float32)), xy


def test_peers_table_has_the_five_adapters():
    assert list(peers.PEERS) == NAMES
    assert set(peers.PEER_PACKAGES) == set(NAMES)
    for fn in peers.PEERS.values():
        params = inspect.signature(fn).parameters
        assert list(params)[:2] == ["X", "coords"]
        assert params["seed"].default == 0
        assert params["seed"].kind is inspect.Parameter.KEYWORD_ONLY


def test_benchmark_defaults():
    sig = {name: inspect.signature(fn).parameters for name, fn in peers.PEERS.items()}
    assert sig["scvi"]["max_epochs"].default == 200
    assert sig["stagate"]["n_epochs"].default == 500
    assert sig["stagate"]["n_top_genes"].default == 3000
    assert sig["smoother"]["max_epochs"].default == 200


@pytest.mark.parametrize("name", NAMES)
def test_missing_tool_raises_clear_input_error(name, monkeypatch, grid_counts):
    real = importlib.import_module

    def fail(mod, *args, **kwargs):
        if mod.split(".")[0] == peers.PEER_PACKAGES[name][2]:
            raise ModuleNotFoundError(f"No module named {mod!r}")
        return real(mod, *args, **kwargs)

    monkeypatch.setattr(peers.importlib, "import_module", fail)
    X, xy = grid_counts
    display, dist, _ = peers.PEER_PACKAGES[name]
    with pytest.raises(InputError, match="is not installed") as info:
        peers.PEERS[name](X, xy)
    msg = str(info.value)
    assert msg.startswith(f"{display} ({dist}) is not installed")
    assert "pip install 'spotfill[peers]'" in msg
    assert f"SPOTFILL_PEER_PYTHON_{name.upper()}" in msg


def test_available_peers_uses_find_spec(monkeypatch):
    present = {"magic", "halra"}
    monkeypatch.setattr(
        peers.importlib.util, "find_spec", lambda mod: object() if mod in present else None, raising=True
    )
    assert peers.available_peers() == {
        "magic": True,
        "scvi": False,
        "stagate": False,
        "smoother": False,
        "halra": True,
    }


def test_peer_python_precedence(monkeypatch):
    assert peers.peer_python("scvi") is None
    monkeypatch.setenv("SPOTFILL_PEER_PYTHON", "/envs/all/bin/python")
    assert peers.peer_python("scvi") == "/envs/all/bin/python"
    monkeypatch.setenv("SPOTFILL_PEER_PYTHON_SCVI", "/envs/scvi/bin/python")
    assert peers.peer_python("scvi") == "/envs/scvi/bin/python"
    assert peers.peer_python("magic") == "/envs/all/bin/python"
    with pytest.raises(InputError, match="unknown peer"):
        peers.peer_python("saver")  # type: ignore[arg-type]


def test_bad_coords_raise(grid_counts):
    X, xy = grid_counts
    with pytest.raises(InputError, match="coords has shape"):
        peers.run_halra(X, xy[:10])


def test_gene_mean_by_library_hand_computed():
    M = sp.csr_matrix(np.array([[1.0, 3.0], [0.0, 4.0]], dtype=np.float32))
    lib = np.array([4.0, 4.0])
    # gene shares: 1/8 and 7/8 of all counts; each spot has 4 counts
    np.testing.assert_allclose(peers._gene_mean_by_library(M, lib), [[0.5, 3.5], [0.5, 3.5]])


def test_log_normalise_hand_computed():
    M = sp.csr_matrix(np.array([[1.0, 3.0], [0.0, 2.0]], dtype=np.float32))
    L = peers._log_normalise(M, np.array([4.0, 2.0])).toarray()
    np.testing.assert_allclose(L, np.log1p([[2500.0, 7500.0], [0.0, 10000.0]]), rtol=1e-6)


def test_worker_protocol_round_trip(monkeypatch, tmp_path):
    """The worker reads the npz, runs the local implementation with the options and writes Y."""
    seen = {}

    def fake(M, C, *, seed):
        seen.update(shape=M.shape, nnz=M.nnz, coords=C.copy(), seed=seed)
        return np.asarray(M.toarray() * 2.0, dtype=np.float32)

    monkeypatch.setitem(peers._LOCAL, "halra", fake)
    M = sp.csr_matrix(np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0]], dtype=np.float32))
    C = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    src, dst = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(src, data=M.data, indices=M.indices, indptr=M.indptr, shape=np.asarray(M.shape), coords=C)
    assert peers._main_worker(["halra", str(src), str(dst), json.dumps({"seed": 7})]) == 0
    with np.load(dst) as f:
        np.testing.assert_array_equal(f["Y"], [[0.0, 2.0], [4.0, 0.0], [0.0, 6.0]])
    assert seen["shape"] == (3, 2)
    assert seen["nnz"] == 3
    assert seen["seed"] == 7
    np.testing.assert_array_equal(seen["coords"], C)


def test_worker_reports_missing_tool(monkeypatch, tmp_path):
    real = importlib.import_module

    def fail(mod, *args, **kwargs):
        if mod == "halra":
            raise ModuleNotFoundError("No module named 'halra'")
        return real(mod, *args, **kwargs)

    monkeypatch.setattr(peers.importlib, "import_module", fail)
    M = sp.csr_matrix(np.eye(3, dtype=np.float32))
    src = tmp_path / "in.npz"
    np.savez(src, data=M.data, indices=M.indices, indptr=M.indptr, shape=np.asarray(M.shape), coords=np.zeros((3, 2)))
    options = json.dumps({"n_iter": 2, "quantile_prob": 0.001, "seed": 0})
    assert peers._main_worker(["halra", str(src), str(tmp_path / "out.npz"), options]) == 3
    assert not (tmp_path / "out.npz").exists()


def test_bad_peer_python_is_an_input_error(monkeypatch, grid_counts, tmp_path):
    monkeypatch.setenv("SPOTFILL_PEER_PYTHON_HALRA", str(tmp_path / "no-such-python"))
    X, xy = grid_counts
    with pytest.raises(InputError, match="cannot start the HALRA interpreter"):
        peers.run_halra(X, xy)


@pytest.mark.parametrize("name", NAMES)
def test_installed_peer_runs_on_tiny_data(name, grid_counts):
    module = peers.PEER_PACKAGES[name][2]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed")
    X, xy = grid_counts
    lib = np.asarray(X.sum(axis=1)).ravel()
    Y = peers.PEERS[name](X, xy, **FAST.get(name, {}))
    assert Y.shape == X.shape
    assert Y.dtype == np.float32
    assert np.all(np.isfinite(Y))
    assert Y.min() >= 0.0
    # on the count scale of each spot: row sums within a factor 4 of the observed library sizes
    ratio = Y.sum(axis=1) / lib
    assert ratio.min() > 0.25
    assert ratio.max() < 4.0
    # the same seed gives the same result
    if name in ("magic", "halra", "smoother"):
        np.testing.assert_allclose(peers.PEERS[name](X, xy, **FAST.get(name, {})), Y, rtol=1e-5, atol=1e-6)


def test_smoother_log1p_scale_round_trip_with_a_stand_in_tool(monkeypatch):
    """scale="log1p": the tool sees log1p(counts per 10,000) and its output is mapped back to counts.

    A stand-in for the tool adds 0.1 to every value it is given, so the expected output is
    ``expm1(log1p(x * 1e4 / lib) + 0.1) * lib / 1e4``, computed by hand here.
    """
    import types

    class Weights:
        def calc_weights_knn(self, coords, k, verbose):
            self.k, self.coords = k, np.asarray(coords)

    class Impute:
        """Adds 0.1 to the observed spots; a missing spot (after them) gets the observed mean + 0.1."""

        def __init__(self, y_obs, loss, **kwargs):
            n_missing = len(loss.coords) - y_obs.shape[0]
            self.y = torch.cat([y_obs, y_obs.mean(dim=0, keepdim=True).repeat(n_missing, 1)])

        def get_results(self):
            return self.y + 0.1

    import torch

    tool = types.ModuleType("smoother")
    tool.SpatialWeightMatrix = Weights
    tool.SpatialLoss = lambda kind, weights, **kwargs: weights
    models = types.ModuleType("smoother.models")
    impute = types.ModuleType("smoother.models.impute")
    impute.ImputeTorch = Impute
    monkeypatch.setitem(sys.modules, "smoother", tool)
    monkeypatch.setitem(sys.modules, "smoother.models", models)
    monkeypatch.setitem(sys.modules, "smoother.models.impute", impute)
    X = np.array([[0, 2, 3], [5, 0, 0], [1, 1, 8]], dtype=np.float32)
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    opts = {"k": 6, "rho": 0.99, "lambda_spatial_loss": 1.0, "lr": 1e-3, "max_epochs": 1, "gene_block": 2, "seed": 0}
    lib = X.sum(axis=1, keepdims=True)
    got = peers._local_smoother(sp.csr_matrix(X), coords, scale="log1p", **opts)
    want = np.expm1(np.log1p(X * 1e4 / lib) + 0.1) * lib / 1e4
    np.testing.assert_allclose(got, want, rtol=1e-5)
    counts = peers._local_smoother(sp.csr_matrix(X), coords, scale="counts", **opts)
    np.testing.assert_allclose(counts, X + 0.1, rtol=1e-6)
    # a spot without counts is the tool's missing spot: passed after the observed ones, mapped back in place
    X0 = X.copy()
    X0[1] = 0
    coords4 = np.r_[coords, [[5.0, 5.0]]]
    X4 = np.r_[X0, [[2, 2, 2]]].astype(np.float32)
    got = peers._local_smoother(sp.csr_matrix(X4), coords4, scale="counts", **opts)
    seen = X4[[0, 2, 3]]
    np.testing.assert_allclose(got[[0, 2, 3]], seen + 0.1, rtol=1e-6)
    np.testing.assert_allclose(got[1], seen.mean(axis=0) + 0.1, rtol=1e-6)
    # log1p: the missing spot's depth is the mean library of its k (here all 3) nearest observed spots
    got = peers._local_smoother(sp.csr_matrix(X4), coords4, scale="log1p", **opts)
    lib4 = X4.sum(axis=1)
    log_seen = np.log1p(seen * 1e4 / lib4[[0, 2, 3], None])
    np.testing.assert_allclose(got[1], np.expm1(log_seen.mean(axis=0) + 0.1) * lib4[[0, 2, 3]].mean() / 1e4, rtol=1e-5)
    with pytest.raises(InputError, match="scale must be 'counts' or 'log1p'"):
        peers.run_smoother(X, coords, scale="log")


def test_peer_options_in_brackets():
    from spotfill.benchmark._external import resolve_method

    with pytest.raises(InputError, match="peer 'smoother' has no option 'bogus' here .*scale"):
        resolve_method("smoother[bogus=1]")
    with pytest.raises(InputError, match="has no option 'seed'"):
        resolve_method("smoother[seed=2]")
    assert callable(resolve_method("smoother[scale='log1p',max_epochs=20]"))


def test_finish_refuses_non_finite_output_and_clips_negatives():
    from spotfill.benchmark.peers import _finish

    np.testing.assert_array_equal(_finish(np.array([[-1.0, 2.5]])), np.array([[0.0, 2.5]], dtype=np.float32))
    with pytest.raises(InputError, match="1 NaN or infinite"):
        _finish(np.array([[1.0, np.nan]]))


def test_nan_counts_are_refused_before_any_tool_runs(grid_counts):
    X, xy = grid_counts
    X = X.copy()
    X.data[3] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        peers.run_smoother(X, xy)


def _fake_python(tmp_path, body: str):
    """An executable standing in for a peer environment's interpreter (a shell script)."""
    exe = tmp_path / "fake python"  # a space in the path, as in many user folders
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return exe


@pytest.mark.skipif(sys.platform == "win32", reason="shell script stands in for an interpreter")
def test_worker_gets_only_the_checkout_on_its_path(monkeypatch, tmp_path, grid_counts):
    """The caller's PYTHONPATH (its site-packages) must not shadow the peer environment's packages."""
    record = tmp_path / "pythonpath.txt"
    exe = _fake_python(tmp_path, f'printf "%s" "$PYTHONPATH" > "{record}"\nexit 3\n')
    monkeypatch.setenv("PYTHONPATH", "/callers/site-packages")
    monkeypatch.setenv("SPOTFILL_PEER_PYTHON_HALRA", str(exe))
    X, xy = grid_counts
    with pytest.raises(InputError, match=r"HALRA \(halra\) is not installed"):
        peers.run_halra(X, xy)
    # the folder holding spotfill (this checkout's src/), and nothing of the caller's
    assert record.read_text() == str(Path(peers.__file__).resolve().parents[2])


@pytest.mark.skipif(sys.platform == "win32", reason="shell script stands in for an interpreter")
def test_a_tool_refusing_the_data_is_not_reported_as_missing(monkeypatch, tmp_path, grid_counts):
    # the worker's arguments: -m spotfill.benchmark._peer_worker NAME IN OUT OPTIONS
    exe = _fake_python(tmp_path, 'printf "the tool returned 5 NaN values" > "$(dirname "$5")/error.txt"\nexit 4\n')
    monkeypatch.setenv("SPOTFILL_PEER_PYTHON_SMOOTHER", str(exe))
    X, xy = grid_counts
    with pytest.raises(InputError, match=r"^the tool returned 5 NaN values \(Smoother in .*fake python\)$"):
        peers.run_smoother(X, xy)


@pytest.mark.skipif(sys.platform == "win32", reason="shell script stands in for an interpreter")
def test_a_peer_environment_without_spotfill_says_so(monkeypatch, tmp_path, grid_counts):
    exe = _fake_python(tmp_path, "echo \"ModuleNotFoundError: No module named 'spotfill'\" >&2\nexit 1\n")
    monkeypatch.setenv("SPOTFILL_PEER_PYTHON", str(exe))
    X, xy = grid_counts
    with pytest.raises(InputError, match="spotfill is not installed in .*pip install --no-deps spotfill"):
        peers.run_magic(X, xy)


def test_worker_exit_codes_separate_a_missing_tool_from_refused_data(monkeypatch, tmp_path):
    M = sp.csr_matrix(np.eye(3, dtype=np.float32))
    src, dst = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(src, data=M.data, indices=M.indices, indptr=M.indptr, shape=np.asarray(M.shape), coords=np.zeros((3, 2)))

    def refuses(M, C, *, seed):
        raise InputError("too few spots for this tool")

    monkeypatch.setitem(peers._LOCAL, "halra", refuses)
    assert peers._main_worker(["halra", str(src), str(dst), json.dumps({"seed": 0})]) == 4
    assert (tmp_path / "error.txt").read_text() == "too few spots for this tool"
    assert not dst.exists()


def test_halra_small_search_counts_the_spots_and_genes_it_keeps(monkeypatch):
    """halra drops empty spots and genes first: 150 x 150 with 60 empty genes has a 90-gene search."""
    calls = {}

    class Stub:
        @staticmethod
        def halra(M, cells, genes, *, matrix_rank, **kwargs):
            calls["rank"] = matrix_rank
            return np.zeros((M.shape[0], M.shape[1])), cells, genes

    monkeypatch.setattr(peers, "_import_tool", lambda name, module=None: Stub)
    monkeypatch.setattr(peers, "_small_halra_rank", lambda halra, M, **kw: calls.setdefault("small", 7))
    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, size=(150, 150)).astype(np.float32)
    X[:, 90:] = 0
    peers._local_halra(sp.csr_matrix(X), np.zeros((150, 2)), n_iter=2, quantile_prob=0.001, seed=0)
    assert calls == {"small": 7, "rank": 7}
    calls.clear()
    X[:, 90:] = 1  # every gene expressed: halra's own 100-component search
    peers._local_halra(sp.csr_matrix(X), np.zeros((150, 2)), n_iter=2, quantile_prob=0.001, seed=0)
    assert calls == {"rank": None}


def test_magic_with_an_identity_tool_gives_the_counts_back_with_empty_spots_in_place(monkeypatch):
    """sqrt of counts scaled to the median library, squared and scaled back: the identity on counts."""

    class MAGIC:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def fit_transform(self, N, genes):
            assert genes == "all_genes"
            return N.toarray()

    monkeypatch.setitem(sys.modules, "magic", types.SimpleNamespace(MAGIC=MAGIC))
    X = np.array([[0, 0, 0], [1, 3, 0], [0, 0, 0], [4, 0, 4], [2, 2, 2]], dtype=np.float32)
    got = peers.run_magic(sp.csr_matrix(X), np.zeros((5, 2)), n_pca=2)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, X, rtol=1e-6)  # spots 0 and 2 (no counts) predict 0, in place


@pytest.mark.skipif(sys.platform == "win32", reason="shell script stands in for an interpreter")
def test_the_worker_does_not_inherit_the_peer_interpreter_variables(monkeypatch, tmp_path):
    """A worker that saw SPOTFILL_PEER_PYTHON* would start yet another worker instead of the tool."""
    record = tmp_path / "env.txt"
    exe = tmp_path / "fake-python"
    exe.write_text(
        f'#!/bin/sh\nprintf "[%s|%s]" "$SPOTFILL_PEER_PYTHON" "$SPOTFILL_PEER_PYTHON_HALRA" > "{record}"\nexit 3\n'
    )
    exe.chmod(0o755)
    monkeypatch.setenv("SPOTFILL_PEER_PYTHON", str(exe))
    monkeypatch.setenv("SPOTFILL_PEER_PYTHON_HALRA", str(exe))
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(InputError, match="not installed"):
        peers.run_halra(X, np.zeros((3, 2)))
    assert record.read_text() == "[|]"


@pytest.mark.skipif(importlib.util.find_spec("halra") is not None, reason="halra is installed here")
def test_unavailable_reason_asks_the_named_interpreter_for_the_module(monkeypatch):
    monkeypatch.setenv("SPOTFILL_PEER_PYTHON_HALRA", sys.executable)  # this interpreter: it lacks halra
    reason = peers.unavailable_reason("halra")
    assert reason is not None
    assert "HALRA (halra) is not installed" in reason
    assert f"(checked in {sys.executable})" in reason
    # a module that interpreter has: available
    monkeypatch.setitem(peers.PEER_PACKAGES, "halra", ("HALRA", "halra", "json"))
    assert peers.unavailable_reason("halra") is None


def test_median_nearest_neighbour_distance_by_hand():
    xy = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [0.0, 3.0]])  # nearest: 2, 2, 2, 3
    assert peers._median_nn_distance(xy) == pytest.approx(2.0)
    assert peers._median_nn_distance(np.zeros((3, 2))) == 1.0  # all at one place: no unit
