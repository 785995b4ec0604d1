from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from spotfill.datasets import mouse_olfactory_bulb


@pytest.fixture(scope="module")
def mob() -> ad.AnnData:
    return mouse_olfactory_bulb()


def test_shape_counts_and_layout(mob):
    assert mob.shape == (262, 16218)
    assert sp.issparse(mob.X)
    assert mob.X.format == "csr"
    assert mob.X.dtype == np.float32
    assert np.array_equal(mob.X.data, np.round(mob.X.data))
    assert mob.X.data.min() > 0
    assert mob.obs_names.is_unique
    assert mob.var_names.is_unique
    assert {"Penk", "Doc2g", "Cdhr1", "Apod"} <= set(mob.var_names)
    assert mob.uns["dataset"]["name"] == "mob_st_rep11"


def test_labels(mob):
    counts = mob.obs["label"].value_counts()
    assert len(counts) == 5
    assert counts.sum() == 260  # two spots are unlabelled
    assert counts["1: Granular Cell Layer"] == 66
    assert counts["2: Mitral Cell Layer"] == 38


def test_coordinates_are_the_square_array(mob):
    xy = mob.obsm["spatial"]
    assert xy.shape == (262, 2)
    # array units: the spot centre lies within half a spot of its (col, row) grid position
    grid = mob.obs[["array_col", "array_row"]].to_numpy()
    assert np.abs(xy - grid).max() < 0.5
    assert not mob.obs[["array_row", "array_col"]].duplicated().any()


def test_each_call_returns_an_independent_copy():
    a = mouse_olfactory_bulb()
    b = mouse_olfactory_bulb()
    assert a is not b
    a.X.data[:] = 0
    a.obsm["spatial"][:] = -1
    a.obs["label"] = "x"
    assert b.X.data.min() > 0
    assert b.obsm["spatial"].min() >= 0
    assert mouse_olfactory_bulb().X.sum() == b.X.sum()


def test_bundled_copy_matches_the_shared_file(mob, shared_h5ad):
    ref = ad.read_h5ad(shared_h5ad("mob_st_rep11"))
    assert (mob.X != ref.X).nnz == 0
    assert mob.obs.equals(ref.obs)
    assert list(mob.var_names) == list(ref.var_names)
    np.testing.assert_array_equal(mob.obsm["spatial"], ref.obsm["spatial"])
    assert dict(mob.uns["dataset"]) == dict(ref.uns["dataset"])


def test_bundled_file_uses_only_encodings_the_oldest_supported_anndata_reads():
    # anndata < 0.12 has no reader for "null" elements (what write_elem stores for raw=None)
    from importlib import resources

    import h5py

    encodings = set()
    path = resources.files("spotfill.datasets").joinpath("data", "mob_st_rep11.h5ad")
    with resources.as_file(path) as p, h5py.File(p, "r") as f:
        f.visititems(lambda _, obj: encodings.add(obj.attrs.get("encoding-type")))
    assert "null" not in encodings
