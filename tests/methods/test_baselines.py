"""Baseline imputers: hand-computed tiny cases, recovery of a known truth, no leak, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotfill import SpotfillWarning
from spotfill._errors import InputError
from spotfill.methods import make_method
from spotfill.methods.baselines import (
    ExpressionKNN,
    GeneMean,
    GeneMedian,
    GeneMode,
    SpatialInterpolation,
    SpatialKNN,
)

ALL = ["mean", "median", "mode", "knn", "spatial_knn", "interpolate"]
SMOOTHERS = ["knn", "spatial_knn", "interpolate"]


def _dense(Y) -> np.ndarray:
    return Y.toarray() if sp.issparse(Y) else np.asarray(Y)


# ------------------------------------------------------------------------------------------------
# per-gene fills, by hand
# ------------------------------------------------------------------------------------------------
# gene 0 non-zeros {1, 3, 1, 2}: mean 7/4, median (1+2)/2, mode 1
# gene 1 non-zeros {2, 2, 4, 4}: mean 3, median 3, mode tie 2/4 -> 2
# gene 2 non-zeros {5, 7}:       mean 6, median 6, mode tie 5/7 -> 5
# gene 3 never expressed:        stays 0
X_FILL = np.array(
    [
        [0, 2, 0, 0],
        [1, 0, 5, 0],
        [3, 2, 0, 0],
        [1, 4, 7, 0],
        [2, 4, 0, 0],
    ],
    dtype=np.float32,
)
FILL = {"mean": [1.75, 3.0, 6.0, 0.0], "median": [1.5, 3.0, 6.0, 0.0], "mode": [1.0, 2.0, 5.0, 0.0]}


@pytest.mark.parametrize("name", ["mean", "median", "mode"])
@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gene_fills_by_hand(name, fmt, dtype):
    X = X_FILL.astype(dtype)
    X = {"dense": X, "csr": sp.csr_matrix(X), "csc": sp.csc_matrix(X)}[fmt]
    est = make_method(name)
    Y = est.fit_transform(X)
    expected = np.where(X_FILL > 0, X_FILL, np.asarray(FILL[name])[None, :])
    assert isinstance(Y, np.ndarray)
    assert Y.dtype == np.float32
    np.testing.assert_allclose(Y, expected, rtol=1e-6)
    np.testing.assert_allclose(est.statistic_, FILL[name], rtol=1e-12)
    np.testing.assert_array_equal(est.n_observed_, [4, 4, 2, 0])


def test_gene_fills_odd_counts_and_masks():
    # one column, values {4, 1, 9, 1, 4, 4} with the 9 masked: seen {4, 1, 1, 4, 4}
    X = np.array([[4], [1], [9], [1], [4], [4], [0]], dtype=np.float32)
    mask = np.zeros(X.shape, dtype=bool)
    mask[2, 0] = True
    assert GeneMean().fit(X, mask=mask).statistic_[0] == pytest.approx(14 / 5)
    assert GeneMedian().fit(X, mask=mask).statistic_[0] == 4.0
    assert GeneMode().fit(X, mask=mask).statistic_[0] == 4.0
    # the masked entry is an unobserved zero: filled, not kept
    np.testing.assert_allclose(GeneMedian().fit_transform(X, mask=mask)[:, 0], [4, 1, 4, 1, 4, 4, 4])


def test_gene_fills_empty_matrix_of_zeros_stays_zero():
    X = sp.csr_matrix((3, 2), dtype=np.float32)
    with pytest.raises(InputError):  # an all-zero matrix still has a shape; empty shape is refused
        GeneMean().fit(np.zeros((0, 2)))
    for cls in (GeneMean, GeneMedian, GeneMode):
        np.testing.assert_array_equal(cls().fit_transform(X), np.zeros((3, 2)))


def test_expression_knn_on_all_zero_counts_predicts_zeros():
    # nothing to project: the PCA is skipped (ARPACK would fail on a zero matrix)
    X = sp.csr_matrix((12, 5), dtype=np.float32)
    est = ExpressionKNN(n_neighs=3)
    with pytest.warns(SpotfillWarning) as record:
        np.testing.assert_array_equal(est.fit_transform(X).toarray(), np.zeros((12, 5)))
    assert [str(w.message) for w in record] == [
        "only 0 spots have counts: each gets at most 0 neighbours",
        "12 spots have no neighbour with counts: their predictions are 0",
    ]
    assert est.n_comps_ == 0


# ------------------------------------------------------------------------------------------------
# neighbour smoothers, by hand
# ------------------------------------------------------------------------------------------------
LINE = np.c_[np.arange(5.0), np.zeros(5)]  # 5 spots on a line, spacing 1
LINE_X = np.array([[1], [2], [4], [8], [16]], dtype=np.float32)


def test_spatial_knn_line_with_self():
    # k=2: spot 0 -> {1, 2}, 1 -> {0, 2}, 2 -> {1, 3}, 3 -> {2, 4}, 4 -> {3, 2}
    Y = SpatialKNN(n_neighs=2).fit_transform(LINE_X, coords=LINE)
    assert sp.issparse(Y)
    assert Y.dtype == np.float32
    np.testing.assert_allclose(_dense(Y)[:, 0], [7 / 3, 7 / 3, 14 / 3, 28 / 3, 28 / 3], rtol=1e-6)


def test_spatial_knn_line_without_self_and_keep_observed():
    Y = SpatialKNN(n_neighs=2, include_self=False).fit_transform(LINE_X, coords=LINE)
    np.testing.assert_allclose(_dense(Y)[:, 0], [3, 2.5, 5, 10, 6], rtol=1e-6)
    X = LINE_X.copy()
    X[2, 0] = 0  # an unobserved spot: only it is filled when keep_observed=True
    Y = SpatialKNN(n_neighs=2, include_self=False, keep_observed=True).fit_transform(X, coords=LINE)
    np.testing.assert_allclose(_dense(Y)[:, 0], [1, 2, 5, 8, 16], rtol=1e-6)


def test_spatial_knn_from_graph():
    # path graph 0-1-2-3-4 with weights and a self loop that must be ignored
    G = sp.diags([np.full(4, 0.5), np.full(4, 0.5)], [-1, 1], shape=(5, 5)).tocsr() + sp.identity(5) * 3
    est = SpatialKNN(use_graph=True)
    assert est.uses_graph is True
    assert est.uses_coords is False
    Y = est.fit_transform(LINE_X, graph=G)
    np.testing.assert_allclose(_dense(Y)[:, 0], [3 / 2, 7 / 3, 14 / 3, 28 / 3, 24 / 2], rtol=1e-6)
    with pytest.raises(InputError, match="graph"):
        SpatialKNN(use_graph=True).fit(LINE_X)


def test_interpolate_weights_by_hand():
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])  # nearest distances 1, 1, 2 -> spacing 1
    X = np.array([[1, 0], [10, 2], [100, 4]], dtype=np.float32)
    est = SpatialInterpolation().fit(X, coords=coords)  # Gaussian, bandwidth 1, radius 3.25 spacings
    assert est.spacing_ == 1.0
    assert est.radius_ == 3.25
    w01, w02, w12 = np.exp(-0.5), np.exp(-4.5), np.exp(-2.0)
    W = np.array([[0, w01, w02], [w01, 0, w12], [w02, w12, 0]])
    W /= W.sum(1, keepdims=True)
    np.testing.assert_allclose(est.weights_.toarray(), W, rtol=1e-6)
    np.testing.assert_allclose(_dense(est.transform()), W @ X, rtol=1e-6)

    # IDW, power 2, radius 2.5: 0 <- {1: 1}; 1 <- {0: 1, 2: 1/4}; 2 <- {1: 1/4}; coords x10, spacing re-estimated
    est = SpatialInterpolation(kernel="idw").fit(X, coords=coords * 10)
    assert est.spacing_ == 10.0
    np.testing.assert_allclose(est.weights_.toarray(), [[0, 1, 0], [0.8, 0, 0.2], [0, 1, 0]], rtol=1e-6)
    # with the spot itself, weight max(0, 0.5) ** -2 = 4
    est = SpatialInterpolation(kernel="idw", include_self=True).fit(X, coords=coords)
    np.testing.assert_allclose(est.weights_.toarray()[1], np.array([1, 4, 0.25]) / 5.25, rtol=1e-6)
    # explicit spacing and radius: 2 -> within 2 spacings of 1 only with spacing 1.0
    with pytest.warns(SpotfillWarning, match="1 spots have no neighbour with counts"):
        est = SpatialInterpolation(kernel="idw", radius=1.5, spacing=1.0).fit(X, coords=coords)
    np.testing.assert_allclose(est.weights_.toarray(), [[0, 1, 0], [1, 0, 0], [0, 0, 0]], rtol=1e-6)
    np.testing.assert_allclose(_dense(est.transform())[2], [0, 0])  # isolated spot -> 0


def test_expression_knn_two_groups_by_hand():
    # rows 0-2 are one expression profile, rows 3-5 another; k=2 -> each spot's own group
    X = np.array([[10, 0, 1], [20, 0, 2], [30, 0, 0], [0, 5, 5], [0, 1, 1], [0, 2, 2]], dtype=np.float32)
    group_a, group_b = [20, 0, 1], [0, 8 / 3, 8 / 3]
    for n_comps in (None, 2):
        est = ExpressionKNN(n_neighs=2, n_comps=n_comps)
        Y = _dense(est.fit_transform(X))
        np.testing.assert_allclose(Y, [group_a] * 3 + [group_b] * 3, rtol=1e-5)
        np.testing.assert_array_equal(np.sort(est.neighbors_, axis=1)[:3], [[1, 2], [0, 2], [0, 1]])
    assert est.n_comps_ == 2
    Y = _dense(ExpressionKNN(n_neighs=2, n_comps=None, include_self=False).fit_transform(X))
    np.testing.assert_allclose(Y[0], [25, 0, 1], rtol=1e-6)
    Y = _dense(ExpressionKNN(n_neighs=2, n_comps=None, keep_observed=True).fit_transform(X))
    np.testing.assert_allclose(Y[2], [30, 0, 1], rtol=1e-6)


def test_spots_without_counts_are_nobodys_neighbour():
    # LINE_X with spot 2 empty (its only gene is 0): it is not averaged in as a measured zero
    X = LINE_X.copy()
    X[2, 0] = 0
    # k=2 with self: 0 <- {0, 1, (2)}, 1 <- {1, 0, (2)}, 2 <- {(2), 1, 3}, 3 <- {3, (2), 4}, 4 <- {4, 3, (2)}
    Y = SpatialKNN(n_neighs=2).fit_transform(X, coords=LINE)
    np.testing.assert_allclose(_dense(Y)[:, 0], [1.5, 1.5, 5, 12, 12], rtol=1e-6)
    # Gaussian interpolation: the empty spot gets its measured surroundings, the others skip it
    est = SpatialInterpolation().fit(X, coords=LINE)
    assert est.weights_[:, 2].nnz == 0
    u = np.abs(np.arange(5)[:, None] - np.arange(5)[None, :]).astype(float)
    W = np.exp(-0.5 * u**2) * (u > 0) * (u <= 3.25)
    W[:, 2] = 0
    W /= W.sum(1, keepdims=True)
    np.testing.assert_allclose(_dense(est.transform())[:, 0], W @ X[:, 0], rtol=1e-5)
    # expression kNN: the empty spot has no profile, so no neighbours (prediction 0) and is nobody's
    Xe = np.array([[10, 0, 1], [20, 0, 2], [30, 0, 0], [0, 0, 0], [0, 5, 5], [0, 1, 1], [0, 2, 2]], dtype=np.float32)
    est = ExpressionKNN(n_neighs=2, n_comps=None)
    with pytest.warns(SpotfillWarning, match="1 spots have no neighbour with counts"):
        Y = _dense(est.fit_transform(Xe))
    np.testing.assert_allclose(Y, [[20, 0, 1]] * 3 + [[0, 0, 0]] + [[0, 8 / 3, 8 / 3]] * 3, rtol=1e-5)
    np.testing.assert_array_equal(est.neighbors_[3], [-1, -1])
    assert 3 not in est.neighbors_


def test_flags_follow_parameters():
    assert SpatialKNN.keeps_observed is False
    assert SpatialKNN(keep_observed=True).keeps_observed is True
    assert GeneMean.keeps_observed is True
    assert SpatialKNN.uses_coords is True
    assert SpatialKNN.uses_graph is False
    assert SpatialInterpolation.uses_coords is True


@pytest.mark.parametrize(
    ("est", "fit_kwargs", "match"),
    [
        (SpatialKNN(n_neighs=5), {"coords": LINE}, "n_neighs"),
        (ExpressionKNN(n_neighs=0), {}, "n_neighs"),
        (SpatialKNN(n_neighs=True), {"coords": LINE}, "n_neighs"),  # --param n_neighs=true reads as True
        (ExpressionKNN(n_neighs=2, n_comps=-1), {}, "n_comps"),
        (SpatialKNN(), {}, "coordinates"),
        (SpatialInterpolation(), {}, "coordinates"),
        (SpatialInterpolation(kernel="cubic"), {"coords": LINE}, "kernel"),
        (SpatialInterpolation(bandwidth=0), {"coords": LINE}, "bandwidth"),
        (SpatialInterpolation(spacing=-1.0), {"coords": LINE}, "spacing"),
        (SpatialInterpolation(), {"coords": np.zeros((5, 2))}, "same coordinates"),
        (SpatialInterpolation(), {"coords": np.repeat(LINE[:1], 5, axis=0)}, "same coordinates.*pass spacing="),
    ],
)
def test_bad_options_raise_input_error(est, fit_kwargs, match):
    with pytest.raises(InputError, match=match):
        est.fit(LINE_X, **fit_kwargs)


# ------------------------------------------------------------------------------------------------
# synthetic data with a known truth
# ------------------------------------------------------------------------------------------------
def _synthetic(seed: int = 0, side: int = 24, n_genes: int = 60):
    """Poisson counts on a square grid; log-rates are smooth: gene loadings on 4 broad spatial bumps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    coords = np.c_[xx.ravel(), yy.ravel()].astype(np.float64)
    centres = rng.uniform(0, side, size=(4, 2))
    bumps = np.exp(-((coords[:, None, :] - centres[None]) ** 2).sum(-1) / (2 * (side / 4) ** 2))
    load = rng.gamma(1.0, 1.0, size=(4, n_genes))
    rate = np.exp(rng.uniform(-1.5, 0.5, size=n_genes) + 3.0 * bumps @ (load / load.sum(0)))
    X = sp.csr_matrix(rng.poisson(rate).astype(np.float32))
    # P1 mask: 10 % of the stored entries
    held = rng.choice(X.nnz, size=round(0.1 * X.nnz), replace=False)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[held]
    cols = X.indices[held]
    mask = sp.csr_matrix((np.ones(held.size, dtype=bool), (rows, cols)), shape=X.shape)
    return X, coords, rate, mask, rows, cols


@pytest.fixture(scope="module")
def synthetic():
    X, coords, rate, mask, rows, cols = _synthetic(seed=0, n_genes=200)
    preds = {}
    for name in ALL:
        preds[name] = _dense(make_method(name).fit_transform(X, coords=coords, mask=mask))[rows, cols]
    truth = np.log1p(rate[rows, cols])
    observed = np.log1p(np.asarray(X[rows, cols]).ravel())
    return preds, truth, observed


@pytest.mark.parametrize("name", SMOOTHERS)
def test_smoothers_recover_held_out_truth_better_than_mean(synthetic, name):
    """Held-out (P1-masked) entries, scored against the true Poisson rate, on log1p.

    The comparison is chosen honestly, not to flatter the smoothers: the gene mean of non-zeros wins
    P1 RMSE against the *observed* held-out counts by design (P1 only scores entries that were
    non-zero, so filling every zero with a typical non-zero value is rewarded; BENCHMARK.md,
    "Reading the numbers"), and it does here too (0.41 vs 0.43-0.49), so that is not asserted. The
    question asked is whether a method estimates the rate behind a held-out entry. There every
    smoother beats the mean: Pearson with the true log rate 0.84-0.94 vs 0.66, RMSE 0.17-0.26 vs
    0.38, and Pearson with the observed counts 0.53-0.60 vs 0.39 (seed 0; seeds 1-3 keep margins of
    at least +0.12, -0.09 and +0.07; the thresholds below are smaller).
    """
    preds, truth, observed = synthetic
    p, m = np.log1p(preds[name]), np.log1p(preds["mean"])
    assert np.corrcoef(p, truth)[0, 1] > np.corrcoef(m, truth)[0, 1] + 0.08
    assert np.sqrt(np.mean((p - truth) ** 2)) < np.sqrt(np.mean((m - truth) ** 2)) - 0.05
    assert np.corrcoef(p, observed)[0, 1] > np.corrcoef(m, observed)[0, 1] + 0.05
    # and the mean really is the P1-RMSE winner on observed counts, as the protocol notes warn
    assert np.sqrt(np.mean((m - observed) ** 2)) < np.sqrt(np.mean((p - observed) ** 2))


def test_gene_fills_on_held_out_entries(synthetic):
    """The per-gene fills are not spatial: they only need to beat the raw data (zeros) on P1 RMSE,
    and the mean, being the P1-RMSE reference, has the lowest P1 RMSE of the three."""
    preds, _, observed = synthetic
    rmse = {k: np.sqrt(np.mean((np.log1p(preds[k]) - observed) ** 2)) for k in ("mean", "median", "mode")}
    zeros = np.sqrt(np.mean(observed**2))
    assert max(rmse.values()) < 0.5 * zeros
    assert rmse["mean"] == min(rmse.values())


# ------------------------------------------------------------------------------------------------
# no leak, determinism
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_masked_values_never_leak(name):
    X, coords, _, mask, rows, cols = _synthetic(seed=1, side=12, n_genes=20)
    Y1 = _dense(make_method(name).fit_transform(X, coords=coords, mask=mask))
    X2 = X.tolil()
    X2[rows, cols] = np.asarray(X[rows, cols]).ravel() * 7 + 3  # change every masked value
    X2 = X2.tocsr()
    est = make_method(name).fit(X2, coords=coords, mask=mask)
    np.testing.assert_array_equal(_dense(est.transform()), Y1)
    np.testing.assert_array_equal(_dense(est.transform(X2)), Y1)
    # and the mask matters: without it the prediction changes
    assert not np.array_equal(_dense(make_method(name).fit_transform(X2, coords=coords)), Y1)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_output(name):
    X, coords, *_ = _synthetic(seed=2, side=10, n_genes=15)
    Y1 = _dense(make_method(name, seed=3).fit_transform(X, coords=coords))
    est = make_method(name, seed=3)
    Y2 = _dense(est.fit_transform(X, coords=coords))
    Y3 = _dense(est.fit_transform(X, coords=coords))  # refitting the same estimator
    np.testing.assert_array_equal(Y1, Y2)
    np.testing.assert_array_equal(Y1, Y3)


@pytest.mark.parametrize("name", ALL)
def test_count_scale_and_types(name):
    """Counts in, expected counts out: non-negative, same shape, mean count level preserved roughly."""
    X, coords, *_ = _synthetic(seed=3, side=10, n_genes=15)
    Y = make_method(name).fit_transform(X, coords=coords)
    if name in SMOOTHERS:
        assert sp.issparse(Y)
    else:
        assert isinstance(Y, np.ndarray)
    assert Y.dtype == np.float32
    Yd = _dense(Y)
    assert Yd.shape == X.shape
    assert Yd.min() >= 0
    if name in ("spatial_knn", "interpolate"):  # spatial averages keep each gene's total (edge effects aside)
        np.testing.assert_allclose(Yd.sum(0), np.asarray(X.sum(0)).ravel(), rtol=0.15)


def test_interpolation_on_duplicated_positions_names_the_cause():
    """Two copies of the same positions (stacked sections without offsets): the message says so."""
    coords = np.r_[LINE[:3], LINE[:3]].astype(float)
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    with pytest.raises(InputError, match=r"every spot has an exact duplicate position \(3 distinct positions for 6"):
        SpatialInterpolation().fit(X, coords=coords)
    # with the spacing given, the same data interpolate (each spot averages its duplicate and the line)
    Y = SpatialInterpolation(spacing=1.0).fit_transform(sp.csr_matrix(X), coords=coords)
    assert np.all(np.isfinite(_dense(Y)))


def test_expression_knn_same_seed_same_result_despite_ties():
    """Spots with identical profiles tie exactly; ARPACK's last-bit noise must not pick among them."""
    from spotfill.datasets import synthetic

    X = synthetic(120, 30, seed=0).X  # 32 spots have a tie at their 10th neighbour
    with pytest.warns(SpotfillWarning, match="3 spots have no neighbour"):  # 3 spots without counts
        first = ExpressionKNN().fit_transform(X)
    for _ in range(4):
        with pytest.warns(SpotfillWarning):
            again = ExpressionKNN().fit_transform(X)
        assert (again != first).nnz == 0
    with pytest.warns(SpotfillWarning):
        np.testing.assert_array_equal(ExpressionKNN().fit_transform(X.toarray()).toarray(), first.toarray())


@pytest.mark.parametrize("include_self", [False, True])
def test_interpolate_weights_do_not_depend_on_the_build_blocks(monkeypatch, include_self):
    import spotfill.methods.baselines as baselines

    rng = np.random.default_rng(3)
    row, col = np.divmod(np.arange(60), 10)
    coords = np.c_[col, row] + rng.uniform(-0.2, 0.2, (60, 2))  # a jittered grid: distinct distances
    X = sp.csr_matrix(rng.poisson(2.0, (60, 4)).astype(np.float32))
    whole = SpatialInterpolation(include_self=include_self).fit(X, coords=coords).weights_
    monkeypatch.setattr(baselines, "_INTERPOLATE_BLOCK", 7)  # 9 blocks, the last one short
    blocked = SpatialInterpolation(include_self=include_self).fit(X, coords=coords).weights_
    assert (whole != blocked).nnz == 0
    assert whole.nnz > 60


def test_expression_knn_searches_log1p_of_the_normalised_counts():
    # each spot scaled to 4 counts, then log1p: [1, 3] -> log1p([1, 3]); [2, 0] -> log1p([4, 0])
    X = sp.csr_matrix(np.array([[1.0, 3.0], [2.0, 0.0]], dtype=np.float32))
    L = ExpressionKNN(n_comps=None, target_sum=4.0)._embedding(X)
    np.testing.assert_allclose(L.toarray(), np.log1p([[1.0, 3.0], [4.0, 0.0]]))


def test_expression_knn_with_fewer_measured_spots_than_neighbours():
    # 3 measured spots and n_neighs=3: each measured spot gets the other two, the empty spot none
    X = np.array([[1, 0], [0, 2], [0, 0], [3, 3]], dtype=np.float32)
    est = ExpressionKNN(n_neighs=3, n_comps=None)
    with pytest.warns(SpotfillWarning) as record:
        Y = est.fit_transform(X).toarray()
    messages = [str(w.message) for w in record]
    assert "only 3 spots have counts: each gets at most 2 neighbours" in messages
    assert sorted(est.neighbors_[0, :2].tolist()) == [1, 3]
    assert sorted(est.neighbors_[1, :2].tolist()) == [0, 3]
    assert sorted(est.neighbors_[3, :2].tolist()) == [0, 1]
    np.testing.assert_array_equal(est.neighbors_[:, 2], [-1, -1, -1, -1])
    np.testing.assert_array_equal(est.neighbors_[2], [-1, -1, -1])
    # with the spot itself: every measured spot is the mean of the three measured spots
    np.testing.assert_allclose(Y[[0, 1, 3]], np.tile([4 / 3, 5 / 3], (3, 1)), rtol=1e-6)
    np.testing.assert_array_equal(Y[2], [0, 0])
