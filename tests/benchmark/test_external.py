"""External methods in the benchmark: module:function callables, their output checks, and which peers are skipped."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData

from spotfill import InputError
from spotfill.benchmark import resolve_method, run_benchmark

EXTERNAL = textwrap.dedent(
    """
    import numpy as np

    def one_inf(X, coords):
        P = X.toarray()
        P[0, 0] = np.inf
        return P

    def seeded(X, coords, seed):
        return np.full(X.shape, float(seed))

    def scribbles(X, coords):
        X.data[:] = -1.0
        coords[:] = -1.0
        return np.ones(X.shape)

    def one_nan_sparse(X, coords):
        P = X.copy()
        P.data[0] = np.nan
        return P
    """
)


@pytest.fixture
def ext(importable_module):
    return importable_module("bench_ext_checks", EXTERNAL)


def test_a_single_non_finite_value_fails_the_call(ext):
    ad = AnnData(sp.csr_matrix(np.arange(1, 13, dtype=np.float32).reshape(4, 3)))
    ad.obsm["spatial"] = np.c_[np.arange(4.0), np.zeros(4)]
    ad.uns["dataset"] = {"name": "toy"}
    df = run_benchmark(
        [ad],
        protocols=["p5"],
        methods=[f"{ext}:one_inf", f"{ext}:one_nan_sparse"],
        seeds=[0],
        isolate=False,
        progress=False,
    )
    assert set(df["status"]) == {"failed"}
    assert df["error"].str.contains("returned NaN or infinite values").all()


def test_parameters_in_brackets_are_refused_for_external_functions():
    with pytest.raises(InputError, match="parameters in brackets"):
        resolve_method("json:dumps[indent=2]")


def test_external_functions_get_the_seed_and_cannot_change_the_callers_data(ext):
    X = sp.csr_matrix(np.array([[1.0, 0.0], [2.0, 3.0]], dtype=np.float32))
    coords = np.array([[0.0, 0.0], [1.0, 0.0]])
    got = resolve_method(f"{ext}:seeded")(X, coords=coords, graph=None, seed=7)
    np.testing.assert_array_equal(got, np.full((2, 2), 7.0))
    resolve_method(f"{ext}:scribbles")(X, coords=coords, graph=None, seed=0)
    np.testing.assert_array_equal(X.toarray(), [[1.0, 0.0], [2.0, 3.0]])  # shared by the methods of a run
    np.testing.assert_array_equal(coords, [[0.0, 0.0], [1.0, 0.0]])


def test_only_peers_that_cannot_run_are_reported(monkeypatch):
    from spotfill.benchmark import peers
    from spotfill.benchmark._external import unavailable_peers

    monkeypatch.setattr(peers, "unavailable_reason", lambda name: None if name == "magic" else f"{name} is missing")
    got = unavailable_peers(["magic", "scvi[max_epochs=5]", "raw", "json:dumps", "mean"])
    assert got == {"scvi[max_epochs=5]": "scvi is missing"}
