"""The AnnData front end ``spotfill.impute``: keys written, copy semantics, graph handling, round trip."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import spotfill
from spotfill import SpotfillWarning
from spotfill._errors import InputError, UnknownMethodError
from spotfill.methods import impute, make_method
from spotfill.methods.baselines import GeneMedian, SpatialKNN


def _adata(seed: int = 0, side: int = 8, n_genes: int = 12) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    rate = np.exp(rng.normal(0, 1, n_genes))[None, :] * (1 + xx.ravel()[:, None] / side)
    X = sp.csr_matrix(rng.poisson(rate).astype(np.float32))
    adata = ad.AnnData(
        X=X,
        obs=pd.DataFrame(
            {"array_row": yy.ravel(), "array_col": xx.ravel()}, index=[f"s{i}" for i in range(side * side)]
        ),
        var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]),
    )
    adata.obsm["spatial"] = np.c_[xx.ravel(), yy.ravel()].astype(np.float64) * 100.0
    return adata


@pytest.fixture
def adata() -> ad.AnnData:
    return _adata()


def test_writes_layer_and_uns_and_keeps_x(adata):
    X_before = adata.X.copy()
    assert impute(adata, "spatial_knn", n_neighs=4) is None
    expected = SpatialKNN(n_neighs=4).fit_transform(X_before, coords=adata.obsm["spatial"])
    Y = adata.layers["imputed_spatial_knn"]
    np.testing.assert_array_equal(Y.toarray(), expected.toarray())
    info = adata.uns["imputed_spatial_knn"]
    assert info["method"] == "spatial_knn"
    assert info["params"]["n_neighs"] == 4
    assert info["params"]["include_self"] is True
    assert info["layer"] == "None"
    assert info["connectivity_key"] == "None"  # a kNN on coordinates, no stored graph used
    assert info["version"] == spotfill.__version__
    assert info["seconds"] >= 0
    assert (adata.X != X_before).nnz == 0
    assert "spatial_connectivities" not in adata.obsp  # the coordinate kNN builds no stored graph


@pytest.mark.parametrize(
    ("method", "params"),
    [("mean", {}), ("spatial_knn", {"n_neighs": 4}), ("knn", {}), ("spotfill", {"n_latent": 2, "smooth": 0.5})],
)
def test_canonical_counts_are_read_without_a_copy_and_left_writeable(adata, method, params):
    """Canonical float32 CSR counts are read without a copy; the caller's X and the result stay writeable."""
    X = adata.X
    assert X.has_canonical_format
    assert X.dtype == np.float32
    data_before = X.data.copy()
    impute(adata, method, **params)
    assert adata.X is X
    assert X.data.flags.writeable
    assert X.indices.flags.writeable
    np.testing.assert_array_equal(X.data, data_before)
    Y = adata.layers[f"imputed_{method}"]
    assert (Y.data if sp.issparse(Y) else Y).flags.writeable
    assert not np.shares_memory(Y.data if sp.issparse(Y) else Y, X.data)


def test_estimator_notices_counts_changed_in_place_after_fit(adata):
    X = adata.X
    model = make_method("mean").fit(X)
    before = model.transform()
    X.data *= 100  # e.g. an in-place normalisation of the matrix the model shares
    with pytest.raises(InputError, match="changed in place"):
        model.transform()
    X.data /= 100
    np.testing.assert_array_equal(model.transform(), before)  # restored: the fingerprint matches again
    # a copied input (here: float64) is the model's own, so later edits of the caller's matrix are harmless
    X64 = sp.csr_matrix(X, dtype=np.float64)
    own = make_method("mean").fit(X64)
    X64.data *= 100
    np.testing.assert_array_equal(own.transform(), before)


def test_copy_returns_new_object(adata):
    out = impute(adata, "mean", copy=True)
    assert out is not adata
    assert "imputed_mean" in out.layers
    assert "imputed_mean" not in adata.layers
    assert "imputed_mean" not in adata.uns
    # the gene mean of non-zeros, by hand for gene 0
    col = adata.X[:, 0].toarray().ravel()
    fill = col[col > 0].mean()
    np.testing.assert_allclose(out.layers["imputed_mean"][:, 0], np.where(col > 0, col, fill), rtol=1e-6)


def test_layer_key_added_and_mask(adata):
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(adata.shape, dtype=np.float32)  # X holds something else
    mask = np.zeros(adata.shape, dtype=bool)
    mask[:, 0] = True  # hide gene 0 completely
    impute(adata, "median", layer="counts", key_added="med", mask=mask)
    Y = adata.layers["med"]
    assert adata.uns["med"]["layer"] == "counts"
    np.testing.assert_array_equal(Y[:, 0], 0)  # no visible value -> stays 0
    expected = GeneMedian().fit_transform(adata.layers["counts"], mask=mask)
    np.testing.assert_array_equal(Y, expected)
    assert adata.X.nnz == 0


def test_estimator_instance_and_params(adata):
    est = SpatialKNN(n_neighs=3)
    impute(adata, est, include_self=False)
    assert est.include_self is False  # params are set on the instance
    info = adata.uns["imputed_spatial_knn"]  # the registered name, not the class name
    assert info["method"] == "spatial_knn"
    assert info["params"]["n_neighs"] == 3
    assert info["params"]["include_self"] is False


def test_graph_from_obsp_is_used(adata):
    # a graph linking each spot only to its right-hand neighbour in the row (last column: no neighbour)
    n = adata.n_obs
    side = 8
    i = np.flatnonzero(adata.obs["array_col"].to_numpy() < side - 1)
    adata.obsp["right"] = sp.csr_matrix((np.ones(i.size), (i, i + 1)), shape=(n, n))
    with pytest.warns(SpotfillWarning, match="8 spots have no neighbour with counts"):  # the last column
        impute(adata, "spatial_knn", use_graph=True, include_self=False, connectivity_key="right")
    assert adata.uns["imputed_spatial_knn"]["connectivity_key"] == "right"
    Y = adata.layers["imputed_spatial_knn"].toarray()
    X = adata.X.toarray()
    np.testing.assert_array_equal(Y[i], X[i + 1])
    last = np.flatnonzero(adata.obs["array_col"].to_numpy() == side - 1)
    np.testing.assert_array_equal(Y[last], 0)


def test_graph_built_when_missing(adata):
    assert "spatial_connectivities" not in adata.obsp
    try:
        impute(adata, "spatial_knn", use_graph=True, include_self=False)
    except NotImplementedError:  # pragma: no cover - graph module not there yet
        pytest.skip("spotfill.graph.spatial_neighbors is not implemented yet")
    G = adata.obsp["spatial_connectivities"]
    assert adata.uns["imputed_spatial_knn"]["connectivity_key"] == "spatial_connectivities"
    # a square grid: interior spots have 4 neighbours, the prediction is their mean
    expected = SpatialKNN(use_graph=True, include_self=False).fit_transform(adata.X, graph=G)
    np.testing.assert_allclose(adata.layers["imputed_spatial_knn"].toarray(), expected.toarray())
    assert G[9].nnz == 4  # spot (1, 1)


def test_round_trip_h5ad(adata, tmp_path):
    impute(adata, "interpolate", kernel="idw")
    impute(adata, "mode")
    path = tmp_path / "imputed.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    for key in ("imputed_interpolate", "imputed_mode"):
        Y0, Y1 = adata.layers[key], back.layers[key]
        np.testing.assert_array_equal(Y0.toarray() if sp.issparse(Y0) else Y0, Y1.toarray() if sp.issparse(Y1) else Y1)
        assert back.uns[key]["method"] == adata.uns[key]["method"]
    params = back.uns["imputed_interpolate"]["params"]
    assert params["kernel"] == "idw"
    assert params["radius"] == "None"
    assert params["power"] == 2.0


def test_seed_reproducible(adata):
    a = impute(adata, "knn", n_neighs=5, seed=4, copy=True)
    b = impute(adata, "knn", n_neighs=5, seed=4, copy=True)
    np.testing.assert_array_equal(a.layers["imputed_knn"].toarray(), b.layers["imputed_knn"].toarray())
    assert a.uns["imputed_knn"]["params"]["seed"] == 4


def test_unknown_method_lists_names(adata):
    with pytest.raises(UnknownMethodError, match="unknown method 'nope'") as info:
        impute(adata, "nope")
    for name in ("mean", "median", "mode", "knn", "spatial_knn", "interpolate"):
        assert name in str(info.value)
    assert isinstance(info.value, KeyError)
    assert not adata.layers


def test_bad_inputs(adata):
    with pytest.raises(InputError, match="registered name or an estimator"):
        impute(adata, 3)
    with pytest.raises(InputError, match="no parameter 'k'"):
        impute(adata, "knn", k=3)
    with pytest.raises(InputError, match=r"layer 'raw' \(--layer\) not found"):
        impute(adata, "mean", layer="raw")
    del adata.obsm["spatial"]
    with pytest.raises(InputError, match="no spot coordinates"):
        impute(adata, "interpolate")


def test_default_method_is_registered():
    # not run here: the default may be a trained model; only its resolution is checked
    from spotfill.methods._impute import DEFAULT_METHOD, _resolve_default

    names = set(spotfill.list_methods()["name"])
    default = _resolve_default()
    assert default in names
    assert default == (DEFAULT_METHOD if DEFAULT_METHOD in names else "spatial_knn")


def test_make_method_matches_impute(adata):
    est = make_method("interpolate", bandwidth=1.5)
    expected = est.fit_transform(adata.X, coords=adata.obsm["spatial"])
    impute(adata, "interpolate", bandwidth=1.5)
    np.testing.assert_array_equal(adata.layers["imputed_interpolate"].toarray(), expected.toarray())


def test_missing_custom_connectivity_key_is_an_error():
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.poisson(1.0, size=(10, 3)).astype(np.float32))
    adata.obsm["spatial"] = rng.random((10, 2))
    with pytest.raises(spotfill.InputError, match="my_graph"):
        spotfill.impute(adata, "spatial_knn", use_graph=True, connectivity_key="my_graph")
    assert "imputed_spatial_knn" not in adata.layers


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("spotfill", {"n_latent": 3, "smooth": 0.5}),
        ("spatial_knn", {}),
        ("spatial_knn", {"keep_observed": True}),
        ("interpolate", {}),
        ("knn", {"n_comps": 3}),
        ("mean", {}),
        ("median", {}),
        ("mode", {}),
    ],
)
def test_genes_subset_goes_to_obsm_and_matches_the_full_result(adata, method, params):
    full = impute(adata, method, copy=True, **params)
    sub = impute(adata, method, genes=["g5", "g1", "g5"], key_added="some", copy=True, **params)
    assert "some" not in sub.layers
    df = sub.obsm["some"]
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["g5", "g1"]  # order kept, duplicate dropped
    assert list(df.index) == list(adata.obs_names)
    expected = full.layers[f"imputed_{method}"][:, [5, 1]]
    expected = expected.toarray() if sp.issparse(expected) else expected
    np.testing.assert_allclose(df.to_numpy(), expected, rtol=1e-6)
    assert sub.uns["some"]["stored_in"] == "obsm"
    assert list(sub.uns["some"]["genes"]) == ["g5", "g1"]


def test_genes_subset_round_trips_and_rejects_unknown_names(adata, tmp_path):
    impute(adata, "spotfill", genes="g2", n_latent=2, smooth=0.0)
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_allclose(back.obsm["imputed_spotfill"]["g2"], adata.obsm["imputed_spotfill"]["g2"])
    with pytest.raises(InputError, match=r"not in adata.var_names.*GAPDH"):
        impute(adata, "spotfill", genes=["g1", "GAPDH"])
    with pytest.raises(InputError, match="genes is empty"):
        impute(adata, "spotfill", genes=[])
    with pytest.raises(InputError, match="genes must be gene names .*got int 3"):
        impute(adata, "spotfill", genes=[3, 1])  # positions are not names, even where names are "0", "1", ...


@pytest.mark.parametrize("method", ["mean", "spatial_knn", "knn", "interpolate"])
def test_baselines_predict_only_the_named_genes(adata, method, monkeypatch):
    """genes= never forms the spots x genes prediction (43 GB on Visium HD): only the named columns."""
    est = make_method(method).fit(adata.X, coords=adata.obsm["spatial"])
    widths = []
    fill = spotfill.methods.baselines._fill_zeros
    smooth = type(est)._predict

    def fill_spy(X, values):
        widths.append(X.shape[1])
        return fill(X, values)

    def predict_spy(self, X):
        widths.append(X.shape[1])
        return smooth(self, X)

    monkeypatch.setattr(spotfill.methods.baselines, "_fill_zeros", fill_spy)
    monkeypatch.setattr(type(est), "_predict", predict_spy)
    est.transform(genes=np.array([3, 1]))
    assert widths == [2]


def test_transform_genes_validates_indices(adata):
    est = make_method("spatial_knn").fit(adata.X, coords=adata.obsm["spatial"])
    np.testing.assert_allclose(est.transform(genes=np.array([3])).toarray(), est.transform()[:, [3]].toarray())
    with pytest.raises(InputError, match="gene indices"):
        est.transform(genes=np.array([99]))


def test_key_added_never_overwrites_the_input_or_foreign_entries(adata):
    adata.layers["counts"] = adata.X.copy()
    counts = adata.layers["counts"].copy()
    with pytest.raises(InputError, match="is the input layer"):
        impute(adata, "mean", layer="counts", key_added="counts")
    coords = adata.obsm["spatial"].copy()
    for genes in (None, ["g0"]):  # obsm['spatial'] / uns['spatial'] belong to scanpy and squidpy
        with pytest.raises(InputError, match="key_added='spatial' is reserved"):
            impute(adata, "mean", genes=genes, key_added="spatial")
    for key in ("spatial_neighbors", "expr_connectivities", "my_distances"):  # a graph's names, even before one exists
        with pytest.raises(InputError, match="ends like the names of neighbour graphs"):
            impute(adata, "mean", key_added=key)
    adata.obsm["mine"] = np.zeros((adata.n_obs, 2))
    with pytest.raises(InputError, match=r"overwrite adata\.obsm\['mine'\]"):
        impute(adata, "mean", key_added="mine")  # a layer named like someone's obsm entry: refused too
    with pytest.raises(InputError, match=r"overwrite adata\.layers\['counts'\]"):
        impute(adata, "mean", key_added="counts")
    # the graph impute builds writes uns['spatial_neighbors']: that key is refused too
    with pytest.raises(InputError, match=r"ends like the names of neighbour graphs"):
        impute(adata, "spatial_knn", use_graph=True, key_added="spatial_neighbors")
    with pytest.raises(InputError, match="non-empty string"):
        impute(adata, "mean", key_added="")
    assert (adata.layers["counts"] != counts).nnz == 0
    np.testing.assert_array_equal(adata.obsm["spatial"], coords)
    assert not {"counts", "spatial"} & set(adata.uns)
    # an earlier spotfill result under the same key is replaced, as scanpy does
    impute(adata, "mean", key_added="res")
    impute(adata, "median", key_added="res")
    assert adata.uns["res"]["method"] == "median"
    # replaced whole: a genes= result drops the earlier layer, a full result the earlier obsm table
    impute(adata, "mean", key_added="res", genes=["g1"])
    assert "res" not in adata.layers
    assert list(adata.obsm["res"].columns) == ["g1"]
    assert adata.uns["res"]["genes"] == ["g1"]
    impute(adata, "median", key_added="res")
    assert "res" not in adata.obsm
    assert adata.layers["res"].shape == adata.shape
    assert "genes" not in adata.uns["res"]
    # an earlier result's key does not license overwriting a foreign entry in the other slot
    adata.obsm["res"] = np.ones((adata.n_obs, 1))
    with pytest.raises(InputError, match=r"overwrite adata\.obsm\['res'\]"):
        impute(adata, "mean", key_added="res", genes=["g1"])
    np.testing.assert_array_equal(adata.obsm["res"], 1.0)


def test_seed_is_validated_for_every_method(adata):
    for method in ("spotfill", "knn", "mean"):
        with pytest.raises(InputError, match="seed must be an integer >= 0"):
            impute(adata, method, seed=-1)
    with pytest.raises(InputError, match="seed must be an integer >= 0"):
        impute(adata, "spotfill", seed=1.5)


def test_selected_values_of_auto_parameters_are_recorded(adata):
    impute(adata, "spotfill", n_latent=2, smooth=0.5, max_iter=30)
    info = adata.uns["imputed_spotfill"]
    assert dict(info["selected"]) == {"n_latent": 2, "smooth": 0.5, "smooth_steps": 2, "n_iter": 30}
    impute(adata, "mean")
    assert "selected" not in adata.uns["imputed_mean"]


def test_backed_anndata_gets_a_clear_error(adata, tmp_path):
    path = tmp_path / "d.h5ad"
    adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with pytest.raises(InputError, match=r"backed mode.*to_memory"):
        impute(backed, "mean")
    backed.file.close()


def test_apply_mask_by_hand():
    from spotfill.methods import apply_mask

    X = sp.csr_matrix(np.array([[1.0, 0.0, 3.0], [0.0, 5.0, 6.0]], dtype=np.float32))
    before = X.toarray().copy()
    dense = apply_mask(X, np.array([[True, True, False], [False, False, True]]))
    np.testing.assert_array_equal(dense.toarray(), [[0, 0, 3], [0, 5, 0]])
    assert dense.nnz == 2  # masked entries are eliminated, not stored zeros
    # a sparse mask: only its stored True entries count (a stored False masks nothing)
    M = sp.csr_matrix((np.array([True, False]), (np.array([1, 1]), np.array([1, 2]))), shape=(2, 3))
    np.testing.assert_array_equal(apply_mask(X, M).toarray(), [[1, 0, 3], [0, 0, 6]])
    np.testing.assert_array_equal(X.toarray(), before)  # never in place
    # a boolean CSR built from raw arrays that names a position twice masks it once (it gave -x)
    twice = sp.csr_matrix((np.array([True, True, True]), np.array([0, 0, 2]), np.array([0, 2, 3])), shape=(2, 3))
    assert not twice.has_canonical_format
    np.testing.assert_array_equal(apply_mask(X, twice).toarray(), [[0, 0, 3], [0, 5, 0]])
    # nothing to mask: X itself (documented), no copy
    assert apply_mask(X, None) is X
    assert apply_mask(X, np.array([[False, True, False], [True, False, False]])) is X
    with pytest.raises(InputError, match="mask has shape"):
        apply_mask(X, np.ones((3, 2), dtype=bool))


def test_a_non_integer_layer_is_warned_about(adata):
    adata.layers["lognorm"] = np.log1p(sp.csr_matrix(adata.X, dtype=np.float32))
    with pytest.warns(SpotfillWarning, match="layer 'lognorm' holds .* non-integer values"):
        impute(adata, "mean", layer="lognorm")


def _dense(M) -> np.ndarray:
    return M.toarray() if sp.issparse(M) else np.asarray(M)


def _stacked() -> ad.AnnData:
    """Two 8 x 8 sections with the same coordinates, concatenated the squidpy way."""
    return ad.concat({"s1": _adata(0), "s2": _adata(1)}, label="lib", index_unique="-", merge="same")


@pytest.mark.parametrize(("method", "params"), [("spatial_knn", {"n_neighs": 4}), ("interpolate", {})])
def test_library_key_keeps_coordinate_methods_within_sections(method, params):
    both = _stacked()
    impute(both, method, library_key="lib", **params)
    inner = ((both.obs["array_row"] % 7 != 0) & (both.obs["array_col"] % 7 != 0)).to_numpy()
    for name, seed in (("s1", 0), ("s2", 1)):
        one = _adata(seed)
        impute(one, method, **params)
        # interior spots: their 4 nearest neighbours are not tied with others
        got = _dense(both.layers[f"imputed_{method}"])[(both.obs["lib"] == name).to_numpy() & inner]
        np.testing.assert_allclose(got, _dense(one.layers[f"imputed_{method}"])[inner[:64]], rtol=1e-6)
    assert both.uns[f"imputed_{method}"]["library_key"] == "lib"
    mixed = _stacked()
    stacked = pytest.warns(SpotfillWarning, match=r"obs\['lib'\] share array positions")
    if method == "interpolate":  # without sections every position is taken twice
        with pytest.raises(InputError, match="duplicate position"), stacked:
            impute(mixed, method, **params)
    else:  # the other section's copy of each spot is its nearest neighbour
        with stacked:
            impute(mixed, method, **params)
        assert not np.allclose(_dense(mixed.layers[f"imputed_{method}"]), _dense(both.layers[f"imputed_{method}"]))


def test_library_key_of_a_stored_graph_is_used_and_a_crossing_graph_refused():
    both = _stacked()
    spotfill.spatial_neighbors(both, library_key="lib")
    impute(both, "spatial_knn", n_neighs=4)  # takes library_key from uns['spatial_neighbors']
    ref = _stacked()
    impute(ref, "spatial_knn", n_neighs=4, library_key="lib")
    np.testing.assert_array_equal(_dense(both.layers["imputed_spatial_knn"]), _dense(ref.layers["imputed_spatial_knn"]))
    crossing = _stacked()
    spotfill.spatial_neighbors(crossing, coord_type="generic", n_neighs=4)  # ignores the sections
    with pytest.raises(InputError, match="edges between spots of different sections"):
        impute(crossing, "spatial_knn", use_graph=True, library_key="lib")
    # built here: the graph is built per section
    fresh = _stacked()
    impute(fresh, "spatial_knn", use_graph=True, library_key="lib")
    assert fresh.uns["spatial_neighbors"]["params"]["library_key"] == "lib"
    with pytest.raises(InputError, match="not more than n_neighs=6"):
        impute(_stacked()[:70].copy(), "spatial_knn", library_key="lib")  # section s2 keeps 6 spots


def test_a_distance_matrix_is_refused_as_the_graph(adata):
    spotfill.spatial_neighbors(adata)
    with pytest.raises(InputError, match="holds distances"):
        impute(adata, "spatial_knn", use_graph=True, connectivity_key="spatial_distances")


def test_sections_a_stored_graph_names_but_obs_lost_are_ignored_with_a_warning():
    both = _stacked()
    spotfill.spatial_neighbors(both, library_key="lib")
    one = both[both.obs["lib"] == "s1"].copy()
    del one.obs["lib"]
    impute(one, "mean")  # uses no graph: no warning, no error
    with pytest.warns(SpotfillWarning, match="obs\\['lib'\\], which adata.obs no longer has"):
        impute(one, "spatial_knn", n_neighs=4)


def test_a_graph_without_cross_section_edges_but_no_recorded_key_warns():
    both = _stacked()
    both.obs["lib"] = both.obs["lib"].astype("category")
    spotfill.spatial_neighbors(both, library_key="lib")
    both.uns["spatial_neighbors"]["params"] = {"n_neighbors": 6, "coord_type": "grid", "radius": None}  # squidpy's
    with pytest.warns(SpotfillWarning, match="no edge between the groups of obs\\['lib'\\].*library_key='lib'") as rec:
        impute(both, "spatial_knn", n_neighs=4)
    assert rec[0].filename == __file__  # the caller's line
    impute(both, "spatial_knn", n_neighs=4, library_key="lib", key_added="per_section")  # named: no warning


def test_interpolate_with_a_wide_radius_stays_within_sections():
    both = _stacked()
    params = {"kernel": "idw", "radius": 40.0}  # 40 spacings: wider than the 8 x 8 sections and their gap
    impute(both, "interpolate", library_key="lib", **params)
    one = _adata(0)
    impute(one, "interpolate", **params)
    got = _dense(both.layers["imputed_interpolate"])[:64]
    np.testing.assert_allclose(got, _dense(one.layers["imputed_interpolate"]), rtol=1e-5)


def test_interpolate_measures_each_section_in_its_own_spacing():
    """Slides imaged at different scales: each section's kernel spans the same number of its spots."""
    both = _stacked()
    s2 = (both.obs["lib"] == "s2").to_numpy()
    both.obsm["spatial"] = both.obsm["spatial"].astype(float)
    both.obsm["spatial"][s2] *= 2.7  # section s2 at 2.7 times the pixels per spot
    impute(both, "interpolate", library_key="lib")
    for name, seed in (("s1", 0), ("s2", 1)):
        one = _adata(seed)
        impute(one, "interpolate")
        got = _dense(both.layers["imputed_interpolate"])[(both.obs["lib"] == name).to_numpy()]
        np.testing.assert_allclose(got, _dense(one.layers["imputed_interpolate"]), rtol=1e-5)
    # a spacing given in coordinate units is the user's: it applies to both sections as it is
    fixed = _stacked()
    fixed.obsm["spatial"] = both.obsm["spatial"]
    impute(fixed, "interpolate", library_key="lib", spacing=100.0)  # section s1's spacing
    assert not np.allclose(
        _dense(fixed.layers["imputed_interpolate"])[s2], _dense(both.layers["imputed_interpolate"])[s2]
    )


@pytest.mark.parametrize("bad", [{"bandwidth": "wide"}, {"bandwidth": None}, {"spacing": -1.0}])
def test_interpolate_options_are_checked_before_sections_are_placed(bad):
    with pytest.raises(InputError, match="must be a positive number"):
        impute(_stacked(), "interpolate", library_key="lib", **bad)


def test_a_foreign_uns_entry_is_refused_as_key_added():
    a = _adata()
    a.uns["mine"] = {"note": "user data"}
    with pytest.raises(InputError, match=r"overwrite adata\.uns\['mine'\]"):
        impute(a, "mean", key_added="mine")
    assert a.uns["mine"] == {"note": "user data"}
    assert "mine" not in a.layers


def test_no_section_warning_for_a_column_with_missing_values():
    """A categorical column with an unlabelled spot is not a section column: no 'pass library_key' warning."""
    import warnings

    a = _adata()
    lab = np.where(np.arange(a.n_obs) % 8 < 4, "A", "B").astype(object)
    lab[0] = None
    a.obs["half"] = pd.Categorical(lab)
    spotfill.spatial_neighbors(a)
    W = a.obsp["spatial_connectivities"].tocoo()
    codes = a.obs["half"].cat.codes.to_numpy()
    keep = (codes[W.row] == codes[W.col]) & (codes[W.row] >= 0)  # no edge between the halves
    a.obsp["spatial_connectivities"] = sp.csr_matrix((W.data[keep], (W.row[keep], W.col[keep])), shape=W.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpotfillWarning)
        impute(a, "spatial_knn", n_neighs=4)


def test_a_gpu_device_for_a_cpu_method_warns_at_the_callers_line(adata):
    import warnings
    from pathlib import Path

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        impute(adata, "mean", device="cuda")
    assert [(Path(w.filename).name, str(w.message)) for w in caught] == [
        ("test_impute.py", "method 'mean' runs on the CPU only; device='cuda' is ignored.")
    ]


def test_the_default_model_stores_its_latent_representation(adata, tmp_path):
    impute(adata, "spotfill", n_latent=3, smooth=0.5, max_iter=30)
    model = make_method("spotfill", n_latent=3, smooth=0.5, max_iter=30, seed=0).fit(
        adata.X, graph=adata.obsp["spatial_connectivities"]
    )
    name = "imputed_spotfill_latent"
    assert adata.uns["imputed_spotfill"]["latent"] == name
    assert adata.obsm[name].dtype == adata.varm[name].dtype == np.float32
    np.testing.assert_allclose(adata.obsm[name], model.loadings_, rtol=1e-6)
    np.testing.assert_allclose(adata.varm[name], model.factors_, rtol=1e-6)
    np.testing.assert_allclose(adata.varm[name].sum(0), 1, rtol=1e-5)  # programmes: shares of the genes
    # the layer is the library size times loadings @ programmes.T (then the posterior at non-zeros)
    zeros = adata.X.toarray() == 0
    lib = np.asarray(adata.X.sum(1))
    np.testing.assert_allclose(
        adata.layers["imputed_spotfill"][zeros], (lib * (adata.obsm[name] @ adata.varm[name].T))[zeros], rtol=1e-4
    )
    spotfill.write(adata, tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_array_equal(back.obsm[name], adata.obsm[name])
    np.testing.assert_array_equal(back.varm[name], adata.varm[name])
    # also with genes=; a method without one removes the earlier result's representation
    impute(adata, "spotfill", n_latent=2, smooth=0, max_iter=20, genes=["g1"])
    assert adata.obsm[name].shape == (adata.n_obs, 2)
    assert adata.varm[name].shape == (adata.n_vars, 2)
    impute(adata, "mean", key_added="imputed_spotfill")
    assert name not in adata.obsm
    assert name not in adata.varm
    assert "latent" not in adata.uns["imputed_spotfill"]
    impute(adata, "mean")
    assert "imputed_mean_latent" not in adata.obsm
    assert "latent" not in adata.uns["imputed_mean"]


def test_a_foreign_entry_under_the_latent_key_is_refused(adata):
    for where in ("obsm", "varm"):
        data = adata.copy()
        n = data.n_obs if where == "obsm" else data.n_vars
        getattr(data, where)["res_latent"] = np.ones((n, 1))
        with pytest.raises(InputError, match=rf"overwrite adata\.{where}\['res_latent'\]"):
            impute(data, "spotfill", key_added="res", n_latent=2, smooth=0, max_iter=10)
        np.testing.assert_array_equal(getattr(data, where)["res_latent"], 1.0)
        assert "res" not in data.layers
        impute(data, "mean", key_added="res")  # a method without a representation does not touch it
        np.testing.assert_array_equal(getattr(data, where)["res_latent"], 1.0)


def test_library_key_for_a_method_that_pools_all_spots_warns_and_is_not_recorded():
    data = ad.concat({"a": _adata(0), "b": _adata(1)}, label="sample", index_unique="-")
    pooled = make_method("mean").fit(data.X).transform()
    with pytest.warns(SpotfillWarning, match="'mean' uses neither the spatial graph nor the coordinates") as rec:
        impute(data, "mean", library_key="sample")
    assert rec[0].filename == __file__  # the caller's line
    assert "library_key" not in data.uns["imputed_mean"]
    np.testing.assert_array_equal(np.asarray(data.layers["imputed_mean"]), np.asarray(pooled))
    impute(data, "spatial_knn", library_key="sample")  # a spatial method records it
    assert data.uns["imputed_spatial_knn"]["library_key"] == "sample"


def test_stacked_sections_without_a_graph_warn_for_coordinate_methods():
    one = _adata(0)
    both = ad.concat({"a": one, "b": _adata(1)}, label="sample", index_unique="-")  # same positions twice
    with pytest.warns(
        SpotfillWarning, match=r"groups of obs\['sample'\] share array positions.*library_key='sample'"
    ) as rec:
        impute(both, "spatial_knn", n_neighs=4)
    assert rec[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpotfillWarning)
        impute(both, "spatial_knn", n_neighs=4, library_key="sample", key_added="apart")
        impute(one, "spatial_knn", n_neighs=4)  # one section: no repeated position
        doubled = ad.concat([_adata(0), _adata(0)], index_unique="-")  # repeated positions, but no column of sections
        impute(doubled, "spatial_knn", n_neighs=4)


def test_a_few_repeated_positions_in_one_section_are_not_stacked_sections():
    one = _adata(0)
    one.obs["domain"] = pd.Categorical(["a"] * 32 + ["b"] * 32)  # tissue domains, not sections
    one.obs.iloc[63, :2] = one.obs.iloc[0, :2].to_numpy()  # one repeated position, across the two domains
    impute(one, "spatial_knn", n_neighs=4)  # filterwarnings=error: advised library_key='domain' before
    assert one.layers["imputed_spatial_knn"].shape == (64, 12)


def test_all_zero_counts_and_a_slash_in_key_added_are_refused(adata):
    with pytest.raises(InputError, match="key_added='a/b' contains '/'"):
        impute(adata, "mean", key_added="a/b")
    adata.X = sp.csr_matrix(adata.shape, dtype=np.float32)
    with pytest.raises(InputError, match=r"adata.X holds no non-zero count \(64 x 12, all zero\)"):
        impute(adata, "mean")


def test_explicit_zero_weights_between_sections_are_no_edges():
    both = _stacked()
    spotfill.spatial_neighbors(both, library_key="lib")
    G = both.obsp["spatial_connectivities"].tocoo()
    # stored zeros linking spot 0 of s1 and spot 0 of s2 (a graph edited by zeroing weights)
    row, col = np.r_[G.row, 0, 64], np.r_[G.col, 64, 0]
    both.obsp["spatial_connectivities"] = sp.csr_matrix((np.r_[G.data, 0.0, 0.0], (row, col)), shape=G.shape)
    assert both.obsp["spatial_connectivities"].nnz == G.nnz + 2
    impute(both, "spatial_knn", use_graph=True)
    assert both.uns["imputed_spatial_knn"]["library_key"] == "lib"


def test_a_single_category_column_raises_no_section_warning(adata):
    spotfill.spatial_neighbors(adata)
    adata.obs["tissue"] = pd.Categorical(["cortex"] * adata.n_obs)  # one group: nothing to separate
    impute(adata, "spatial_knn")  # filterwarnings=error: any warning fails
    assert "imputed_spatial_knn" in adata.layers


def test_line_shaped_sections_stay_apart():
    # two sections, each 11 spots on a line (diameter ~10): a 6-nearest-neighbour search from a section's
    # end reaches 6 spacings, so the sections must be placed more than that apart
    rng = np.random.default_rng(0)
    parts = {}
    for name, seed in (("a", 1), ("b", 2)):
        X = sp.csr_matrix(np.random.default_rng(seed).poisson(3.0, (11, 5)).astype(np.float32))
        part = ad.AnnData(X, obs=pd.DataFrame(index=[f"{name}{i}" for i in range(11)]))
        part.obsm["spatial"] = np.c_[np.arange(11) + rng.uniform(-0.1, 0.1, 11), np.zeros(11)]
        parts[name] = part
    both = ad.concat(parts, label="lib", merge="same")
    impute(both, "spatial_knn", n_neighs=6, library_key="lib")
    for name, part in parts.items():
        impute(part, "spatial_knn", n_neighs=6)
        np.testing.assert_allclose(
            _dense(both.layers["imputed_spatial_knn"])[(both.obs["lib"] == name).to_numpy()],
            _dense(part.layers["imputed_spatial_knn"]),
            rtol=1e-6,
        )


# --- the estimator contract (spotfill.methods._base) ----------------------------------------------


def test_fit_checks_the_graph_and_builds_one_from_coordinates():
    from spotfill.graph import knn_graph

    rng = np.random.default_rng(0)
    X = rng.poisson(2.0, (30, 5)).astype(np.float32)
    xy = rng.random((30, 2)) * 10
    for bad in (np.nan, np.inf):
        G = knn_graph(xy, n_neighs=4)
        G.data[0] = bad
        with pytest.raises(InputError, match="NaN, infinite or negative edge weights"):
            make_method("spatial_knn", use_graph=True).fit(X, graph=G)
    with pytest.raises(InputError, match="SpatialKNN needs a spatial neighbour graph: pass graph="):
        make_method("spatial_knn", use_graph=True).fit(X)
    # coordinates alone give a graph method the 6-nearest-neighbour graph
    from_coords = make_method("spatial_knn", use_graph=True).fit(X, coords=xy).transform()
    from_graph = make_method("spatial_knn", use_graph=True).fit(X, graph=knn_graph(xy, n_neighs=6)).transform()
    np.testing.assert_array_equal(_dense(from_coords), _dense(from_graph))
    est = make_method("spatial_knn", keep_observed=np.True_).fit(X, coords=xy)  # a numpy bool is a bool
    with pytest.raises(InputError, match="transform got shape \\(29, 5\\).*transductive"):
        est.transform(X[:29])


def test_gene_indices_are_checked():
    from spotfill.methods._base import gene_indices

    np.testing.assert_array_equal(gene_indices([4, 0], 5), [4, 0])
    empty = gene_indices([], 5)
    assert empty.dtype == np.int64
    assert empty.shape == (0,)
    for genes, match in (
        ([[0, 1]], "1-d list"),
        ([-1, 2], r"got values from -1 to 2"),
        ([5], r"got values from 5 to 5"),
        ([True, False], "got bool values"),
        (["g1"], "pass gene names to spotfill.impute"),
    ):
        with pytest.raises(InputError, match=match):
            gene_indices(genes, 5)


def test_a_0_1_mask_is_stored_as_booleans():
    from spotfill.methods._base import as_mask

    M = as_mask(np.array([[0, 1, 0], [1, 0, 0]], dtype=np.int8), (2, 3))
    assert M.dtype == bool
    np.testing.assert_array_equal(M.toarray(), [[False, True, False], [True, False, False]])


def test_a_latent_name_recorded_in_uns_never_deletes_another_entry(adata):
    impute(adata, "spotfill", key_added="res", n_latent=2, smooth=0, max_iter=10)
    adata.uns["res"]["latent"] = "spatial"  # edited by hand, or written by something else
    impute(adata, "mean", key_added="res")
    assert "spatial" in adata.obsm  # the coordinates stay
    assert "res_latent" in adata.obsm  # not named by uns any more: left alone, as anything foreign


def test_every_foreign_entry_a_key_would_overwrite_is_named_at_once(adata):
    adata.layers["res"] = adata.X.copy()
    adata.varm["res_latent"] = np.ones((adata.n_vars, 2))
    with pytest.raises(
        InputError,
        match=r"would overwrite entries that are not a spotfill result: adata\.layers\['res'\], "
        r"adata\.varm\['res_latent'\]; choose another key_added \(or delete those entries first\)\.$",
    ):
        impute(adata, "spotfill", key_added="res", n_latent=2, smooth=0, max_iter=10)
