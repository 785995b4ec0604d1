"""The method registry: listing, lookup, construction with presets, parameter handling."""

from __future__ import annotations

import warnings

import pytest
from sklearn.exceptions import NotFittedError

import spotfill
from spotfill._errors import InputError, SpotfillError, SpotfillWarning, UnknownMethodError
from spotfill.methods import get_method, list_methods, make_method, register
from spotfill.methods._registry import _REGISTRY
from spotfill.methods.baselines import ExpressionKNN, GeneMean, SpatialInterpolation, SpatialKNN

BASELINES = {
    "mean": "baseline",
    "median": "baseline",
    "mode": "baseline",
    "knn": "expression",
    "spatial_knn": "spatial",
    "interpolate": "spatial",
}


def test_list_methods_lists_the_baselines():
    table = list_methods()
    assert list(table.columns) == ["name", "family", "description", "key_params", "keeps_observed"]
    rows = table.set_index("name")
    for name, family in BASELINES.items():
        assert rows.loc[name, "family"] == family
        assert len(rows.loc[name, "description"]) > 20
    assert rows.loc["knn", "key_params"] == "n_neighs, n_comps, include_self, keep_observed"
    assert bool(rows.loc["mean", "keeps_observed"]) is True
    assert bool(rows.loc["spatial_knn", "keeps_observed"]) is False
    assert table.equals(spotfill.list_methods())


def test_get_method_unknown():
    with pytest.raises(UnknownMethodError) as info:
        get_method("kriging")
    err = info.value
    assert isinstance(err, KeyError)
    assert isinstance(err, SpotfillError)
    assert str(err).startswith("unknown method 'kriging'; available: ")  # not quoted like a KeyError
    assert "spatial_knn" in str(err)


def test_make_method_params_seed_and_device():
    with pytest.warns(SpotfillWarning, match=r"method 'knn' runs on the CPU only; device='cuda' is ignored\.$"):
        est = make_method("knn", n_neighs=4, seed=7, device="cuda")  # device: not a knn parameter, dropped
    assert isinstance(est, ExpressionKNN)
    assert est.get_params() == {
        "n_neighs": 4,
        "n_comps": 30,
        "include_self": True,
        "keep_observed": False,
        "target_sum": 1e4,
        "seed": 7,
    }
    assert isinstance(make_method("mean", seed=1), GeneMean)  # no seed parameter: dropped
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpotfillWarning)
        for device in ("auto", "cpu", "CPU:0", None):  # the CPU, or no choice: dropped without a word
            assert isinstance(make_method("mean", device=device), GeneMean)
    for device, message in [("mps", "is not supported"), ("", "is not a device name"), ("cpux", "is not a device")]:
        with pytest.raises(InputError, match=f"device={device!r} {message}"):
            make_method("mean", device=device)  # checked as for the methods that take a device
    with pytest.warns(SpotfillWarning, match="device='cuda:1' is ignored"):
        make_method("mean", device="cuda:1")
    with pytest.raises(InputError, match="SpatialKNN has no parameter 'radius'"):
        make_method("spatial_knn", radius=2.0)


def test_presets_and_duplicate_names():
    register("test_idw_preset", family="spatial", description="IDW preset", preset={"kernel": "idw"})(
        SpatialInterpolation
    )
    try:
        est = make_method("test_idw_preset")
        assert est.kernel == "idw"
        assert make_method("test_idw_preset", kernel="gaussian").kernel == "gaussian"  # params beat the preset
        assert get_method("test_idw_preset").preset == {"kernel": "idw"}
        with pytest.raises(ValueError, match="already registered"):
            register("test_idw_preset", family="spatial", description="x")(SpatialKNN)
        # the same class again under the same name is allowed (module re-import)
        register("test_idw_preset", family="spatial", description="IDW preset", preset={"kernel": "idw"})(
            SpatialInterpolation
        )
    finally:
        _REGISTRY.pop("test_idw_preset", None)


def test_params_api():
    est = SpatialKNN(n_neighs=3)
    assert repr(est) == "SpatialKNN(n_neighs=3, include_self=True, use_graph=False, keep_observed=False)"
    assert est.set_params(n_neighs=5) is est
    assert est.n_neighs == 5
    with pytest.raises(InputError, match="valid parameters"):
        est.set_params(k=5)
    assert GeneMean().get_params() == {}
    assert repr(GeneMean()) == "GeneMean()"
    with pytest.raises(NotFittedError, match="not fitted"):
        SpatialKNN().transform()


def test_none_from_the_command_line_is_the_option_none():
    """``--param shrink=none`` and ``spotfill[shrink=none]`` arrive as None: for these options it means 'none'."""
    from spotfill._params import parse_method_spec

    name, params = parse_method_spec("spotfill[shrink=none]")
    assert params == {"shrink": None}
    assert make_method(name, **params).shrink == "none"
    assert make_method("nmf", data_transform=None).data_transform == "none"
    assert make_method("ae", data_transform=None).data_transform == "none"
    assert make_method("interpolate", radius=None).radius is None  # a real None stays None


def test_progress_is_offered_to_every_method():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpotfillWarning)
        assert isinstance(make_method("mean", progress=False), GeneMean)  # no bars: dropped without a word
    assert make_method("spotfill", progress=False).progress is False  # a method with bars takes it
    with pytest.raises(InputError, match="GeneMean has no parameter 'progres'"):
        make_method("mean", progres=False)  # other names are still checked
