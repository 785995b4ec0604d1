"""Contracts every registered method keeps, checked for each name in ``spotfill.list_methods()``.

New methods and presets are picked up automatically: no leak of masked entries, same seed -> same
output, scikit-learn estimator conventions, and a result that survives ``write_h5ad``.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone

import spotfill
from spotfill.methods import get_method, make_method
from spotfill.train import cpu_threads

NAMES = list(spotfill.list_methods()["name"])
SIDE, N_GENES = 8, 12
# options that keep the torch models tiny; given only to estimators that take them
FAST = {"max_epochs": 2, "patience": None, "progress": False, "batch_size": 32, "n_latent": 4, "hidden": (16, 8)}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # tiny torch models run ~20x slower with 2 threads on a busy 2-core machine
    with cpu_threads(1):
        yield


def fast(name: str) -> dict:
    valid = set(get_method(name).cls._param_names())
    return {k: v for k, v in FAST.items() if k in valid}


def dense(Y) -> np.ndarray:
    return Y.toarray() if sp.issparse(Y) else np.asarray(Y)


@pytest.fixture(scope="module")
def data() -> tuple[ad.AnnData, sp.csr_matrix, np.ndarray]:
    """Poisson counts on an 8 x 8 square grid with a spatial trend, and a mask of 15 % of the non-zeros."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    rate = np.exp(rng.normal(0.5, 0.7, N_GENES))[None, :] * (1 + xx.ravel()[:, None] / SIDE)
    X = sp.csr_matrix(rng.poisson(rate).astype(np.float32))
    adata = ad.AnnData(
        X=X,
        obs=pd.DataFrame({"array_row": yy.ravel(), "array_col": xx.ravel()}, index=[f"s{i}" for i in range(SIDE**2)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(N_GENES)]),
    )
    adata.obsm["spatial"] = np.c_[xx.ravel(), yy.ravel()].astype(np.float64) * 100.0
    spotfill.spatial_neighbors(adata)
    held = rng.choice(X.nnz, size=round(0.15 * X.nnz), replace=False)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[held]
    mask = sp.csr_matrix((np.ones(held.size, dtype=bool), (rows, X.indices[held])), shape=X.shape)
    return adata, mask, np.c_[rows, X.indices[held]]


def test_every_registered_method_is_covered():
    assert {"mean", "median", "mode", "knn", "spatial_knn", "interpolate", "nmf", "ae"} <= set(NAMES)
    assert {n for n in NAMES if n.startswith("seed-")} == {
        "seed-nmf-baseline",
        "seed-nmf-log",
        "seed-nmf-log-nonzero",
        "seed-ae-log-nonzero",
        "seed-ae-log-nonzero-spatial",
    }


@pytest.mark.parametrize("name", NAMES)
def test_masked_values_never_leak(data, name):
    adata, mask, held = data
    a, b = adata.copy(), adata.copy()
    Xb = b.X.tolil()
    Xb[held[:, 0], held[:, 1]] = np.asarray(adata.X[held[:, 0], held[:, 1]]).ravel() * 7 + 3
    b.X = Xb.tocsr()
    spotfill.impute(a, name, mask=mask, key_added="y", **fast(name))
    spotfill.impute(b, name, mask=mask, key_added="y", **fast(name))
    np.testing.assert_array_equal(dense(a.layers["y"]), dense(b.layers["y"]))
    # the check has teeth: without the mask the changed values do change the prediction
    spotfill.impute(b, name, key_added="unmasked", **fast(name))
    assert not np.array_equal(dense(b.layers["unmasked"]), dense(a.layers["y"]))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_and_h5ad_round_trip(data, name, tmp_path):
    adata = data[0].copy()
    spotfill.impute(adata, name, seed=5, key_added="a", **fast(name))
    spotfill.impute(adata, name, seed=5, key_added="b", **fast(name))
    Y = dense(adata.layers["a"])
    np.testing.assert_array_equal(Y, dense(adata.layers["b"]))
    assert Y.shape == adata.shape
    assert Y.dtype == np.float32
    assert np.isfinite(Y).all()
    assert Y.min() >= 0
    params = adata.uns["a"]["params"]
    if "seed" in get_method(name).cls._param_names():
        assert params["seed"] == 5
    adata.write_h5ad(tmp_path / "x.h5ad")
    back = ad.read_h5ad(tmp_path / "x.h5ad")
    np.testing.assert_array_equal(dense(back.layers["a"]), Y)
    assert back.uns["a"]["method"] == name
    assert back.uns["a"]["version"] == spotfill.__version__
    assert set(back.uns["a"]["params"]) == set(params)


@pytest.mark.parametrize("name", NAMES)
def test_scikit_learn_conventions(data, name):
    adata, mask, _ = data
    est = make_method(name, **fast(name))
    params = est.get_params()
    assert vars(est) == params  # __init__ stores its arguments and nothing else
    twin = clone(est)  # sklearn's clone rebuilds it from get_params and checks that nothing was altered
    assert type(twin) is type(est)
    assert twin.get_params() == params
    G = adata.obsp["spatial_connectivities"]
    assert est.fit(adata.X, graph=G, coords=adata.obsm["spatial"], mask=mask) is est
    assert est.get_params() == params  # fit does not touch the parameters
    learned = set(vars(est)) - set(params)
    assert {"n_obs_", "n_vars_", "n_features_in_", "mask_"} <= learned
    assert all(a.endswith("_") or a.startswith("_") for a in learned), sorted(learned)
    assert est.n_features_in_ == N_GENES
    np.testing.assert_array_equal(dense(est.transform()), dense(est.transform(adata.X)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mask": np.zeros((3, 3), dtype=bool)}, r"mask has shape \(3, 3\)"),
        ({"graph": sp.identity(5, format="csr")}, r"graph has shape \(5, 5\), expected \(64, 64\)"),
        ({"coords": np.zeros((5, 2))}, "has 5 rows but the data have 64 spots"),
    ],
)
def test_wrong_shapes_are_input_errors(data, kwargs, match):
    adata = data[0]
    est = make_method("spatial_knn", use_graph="graph" in kwargs)
    with pytest.raises(spotfill.InputError, match=match):
        est.fit(adata.X, **{"coords": adata.obsm["spatial"], **kwargs})


def test_mask_as_nested_list_is_accepted(data):
    adata, mask, _ = data
    a = make_method("mean").fit_transform(adata.X, mask=mask)
    b = make_method("mean").fit_transform(adata.X, mask=mask.toarray().tolist())
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("nmf", {"n_latent": "x"}, "n_latent must be an integer >= 1 .got 'x'"),
        ("ae", {"hidden": 5}, "hidden must be a sequence"),
        ("ae", {"val_fraction": "a"}, "val_fraction must be a number in"),
        ("nmf", {"loss": "rmse_all", "zero_ratio": 0}, "zero_ratio must be"),
        ("knn", {"seed": "a"}, "seed must be an integer >= 0"),
        ("knn", {"seed": 2**40}, "seed must be an integer >= 0 and < 2..32"),
        ("spotfill", {"seed": 2**32}, "seed must be an integer >= 0 and < 2..32"),
        ("knn", {"target_sum": 0}, "target_sum must be a finite number > 0"),
        ("knn", {"target_sum": float("nan")}, "target_sum must be a finite number > 0"),
        ("knn", {"target_sum": -1.0}, "target_sum must be a finite number > 0"),
        ("nmf", {"bias": "x"}, "bias must be True or False"),
        ("nmf", {"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0"),
        ("nmf", {"n_latent": 2.5}, "n_latent must be an integer >= 1 .got 2.5"),
        ("nmf", {"max_epochs": 2.5}, "max_epochs must be an integer >= 1"),
        ("nmf", {"zero_ratio": float("nan")}, "zero_ratio must be a finite number > 0"),
        ("nmf", {"zero_ratio": -1}, "zero_ratio must be a finite number > 0"),
        ("ae", {"hidden": (2.5,)}, "hidden must be a sequence of layer sizes"),
        ("ae", {"lr": float("inf")}, "lr must be a finite number > 0"),
    ],
)
def test_bad_parameter_values_are_input_errors(data, name, params, match):
    with pytest.raises(spotfill.InputError, match=match):
        spotfill.impute(data[0].copy(), name, **{**fast(name), **params})


def test_nan_counts_and_bad_key_added(data):
    adata = data[0].copy()
    adata.X = adata.X.copy()
    adata.X.data[0] = np.nan
    with pytest.raises(spotfill.InputError, match="adata.X contains 1 NaN or infinite values"):
        spotfill.impute(adata, "mean")
    with pytest.raises(spotfill.InputError, match="key_added must be a non-empty string"):
        spotfill.impute(data[0].copy(), "mean", key_added=3)
    with pytest.raises(spotfill.InputError, match="contains '/'.*e.g. 'imputed_mean'"):
        spotfill.impute(data[0].copy(), "mean", key_added="imputed/mean")  # an .h5ad group path


def test_counts_that_are_not_a_matrix_are_refused():
    with pytest.raises(spotfill.InputError, match=r"must be a 2-D spots x genes matrix, got shape \(2, 2, 2\)"):
        make_method("mean").fit(np.zeros((2, 2, 2)))


def test_nested_lists_and_bad_masks(data):
    adata, mask, _ = data
    X = adata.X.toarray()
    a = make_method("mean").fit_transform(X)
    np.testing.assert_array_equal(make_method("mean").fit_transform(X.tolist()), a)
    with pytest.raises(spotfill.InputError, match="must be a numeric spots x genes matrix"):
        make_method("mean").fit(["a", "b"])
    # 0/1 masks are booleans; anything else is refused instead of counting as "masked"
    m01 = mask.toarray().astype(np.int8)
    np.testing.assert_array_equal(
        make_method("mean").fit_transform(X, mask=m01), make_method("mean").fit_transform(X, mask=m01 > 0)
    )
    for bad in (np.full(X.shape, np.nan), np.full(X.shape, "no"), np.full(X.shape, 0.3)):
        with pytest.raises(spotfill.InputError, match="mask must hold booleans"):
            spotfill.impute(adata.copy(), "spotfill", mask=bad)
    with pytest.raises(spotfill.InputError, match="mask must hold booleans"):
        make_method("mean").fit(X, mask=sp.csr_matrix(np.full(X.shape, 2.0)))


@pytest.mark.parametrize("name", NAMES)
def test_pipelines_fitted_state_and_refit(data, name):
    """Pipelines (fit(X, y)), check_is_fitted / NotFittedError, and a refit replacing all fitted state."""
    from sklearn.exceptions import NotFittedError
    from sklearn.pipeline import make_pipeline
    from sklearn.utils.validation import check_is_fitted

    adata = data[0]
    kw = {"coords": adata.obsm["spatial"]}
    est = make_method(name, **fast(name))
    with pytest.raises(NotFittedError, match="not fitted yet"):
        est.transform()
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    direct = dense(make_method(name, **fast(name)).fit_transform(adata.X, **kw))
    assert est.fit(adata.X, None, **kw) is est
    check_is_fitted(est)
    np.testing.assert_array_equal(dense(est.transform()), direct)
    if not (get_method(name).cls.uses_coords or get_method(name).cls.uses_graph):
        piped = make_pipeline(make_method(name, **fast(name))).fit_transform(adata.X)
        np.testing.assert_array_equal(dense(piped), direct)
    # a refit on other data keeps no attribute of the first fit that a fresh fit would not have
    est.stale_ = "from an earlier fit"
    small = adata[:40, :7]
    est.fit(small.X, coords=small.obsm["spatial"])
    fresh = make_method(name, **fast(name)).fit(small.X, coords=small.obsm["spatial"])
    fitted = {k for k in vars(est) if k.endswith("_")}
    assert fitted == {k for k in vars(fresh) if k.endswith("_")}
    assert dense(est.transform()).shape == (40, 7)


def test_graph_as_nested_lists_and_a_graph_of_the_wrong_kind():
    X = np.random.default_rng(0).poisson(2.0, (3, 4))
    G = [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    from_lists = make_method("spatial_knn", use_graph=True).fit(X, graph=G).transform().toarray()
    from_csr = make_method("spatial_knn", use_graph=True).fit(X, graph=sp.csr_matrix(G)).transform().toarray()
    np.testing.assert_array_equal(from_lists, from_csr)
    with pytest.raises(spotfill.InputError, match="graph must be a spots x spots matrix of edge weights, got str"):
        make_method("spatial_knn", use_graph=True).fit(X, graph="neighbours")


def test_a_negative_graph_weight_is_refused_by_the_graph_methods():
    X = np.random.default_rng(0).poisson(2.0, size=(9, 4)).astype(np.float32)
    G = sp.csr_matrix(np.eye(9, k=1) + np.eye(9, k=-1))
    G.data[0] = -1.0
    with pytest.raises(spotfill.InputError, match="negative edge weights"):
        make_method("spatial_knn", use_graph=True, n_neighs=2).fit(X, graph=G)
