"""Tests of spotfill's default model (``SpotfillModel``, registered as ``"spotfill"``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotfill._errors import InputError
from spotfill.methods import default
from spotfill.methods._registry import make_method
from spotfill.methods.default import SpotfillModel


def _grid_graph(side: int) -> sp.csr_matrix:
    idx = np.arange(side * side).reshape(side, side)
    a = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    b = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    W = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(side * side, side * side))
    return (W + W.T).tocsr()


@pytest.fixture(scope="module")
def synthetic():
    """Spatially smooth rank-3 Poisson data on a 14 x 14 grid: (counts, graph, true rates)."""
    rng = np.random.default_rng(1)
    side, n_genes, rank = 14, 80, 3
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1)
    centres = [(0.2, 0.2), (0.8, 0.3), (0.5, 0.85)]
    U = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.08).ravel() for cx, cy in centres], axis=1)
    U = U / U.sum(axis=1, keepdims=True)
    V = rng.gamma(0.6, 1.0, size=(n_genes, rank))
    V /= V.sum(axis=0, keepdims=True)
    lib = rng.uniform(300, 700, size=side * side)
    rate = lib[:, None] * (U @ V.T)
    X = sp.csr_matrix(rng.poisson(rate).astype(np.float32))
    return X, _grid_graph(side), rate


def _deviance(rate: np.ndarray, pred: np.ndarray) -> float:
    """Mean Poisson KL divergence of the prediction from the true rate."""
    p = np.maximum(pred, 1e-8)
    return float(np.mean(rate * np.log(rate / p) - rate + p))


def test_recovers_truth_better_than_controls(synthetic):
    X, G, rate = synthetic
    lib = np.asarray(X.sum(axis=1)).ravel()
    gene_mean = np.outer(lib, np.asarray(X.sum(axis=0)).ravel() / lib.sum())
    smooth = SpotfillModel(n_latent=3, smooth=0.5, shrink="none", progress=False).fit(X, graph=G).transform()
    flat = SpotfillModel(n_latent=3, smooth=0.0, shrink="none", progress=False).fit(X, graph=G).transform()
    d_smooth, d_flat, d_mean = _deviance(rate, smooth), _deviance(rate, flat), _deviance(rate, gene_mean)
    assert d_smooth < d_flat < d_mean
    assert d_smooth < 0.5 * d_mean
    # the default (auto-tuned, NB-shrunk) output is also far closer to the truth than the gene mean
    auto = SpotfillModel(progress=False).fit(X, graph=G).transform()
    assert _deviance(rate, auto) < 0.5 * d_mean


@pytest.mark.parametrize("smooth", [0.0, 0.5])
def test_spots_without_counts_are_predicted_from_their_neighbours(synthetic, smooth):
    """Held-out spots (rows emptied, as in P3) get their neighbours' profile and depth, not zeros."""
    X, G, rate = synthetic
    side = 14
    held = np.array([r * side + c for r in range(5, 8) for c in range(5, 8)])  # a 3 x 3 patch in the middle
    Xs = X.tolil()
    Xs[held] = 0
    Xs = Xs.tocsr()
    Xs.eliminate_zeros()
    model = SpotfillModel(n_latent=3, smooth=smooth, progress=False).fit(Xs, graph=G)
    np.testing.assert_array_equal(model.empty_spots_, held)
    Y = model.transform()
    lib = np.asarray(X.sum(axis=1)).ravel()
    # the library size of a held-out spot is the mean of its 4 lattice neighbours' (the patch centre: of
    # the border spots filled in the first round)
    border = 5 * side + 6  # top middle of the patch: neighbours (4, 6), (5, 5), (5, 7), (6, 6)
    measured = [4 * side + 6]  # only (4, 6) is measured in the first round
    np.testing.assert_allclose(model.library_size_[border], lib[measured].mean())
    centre = 6 * side + 6
    ring = [5 * side + 6, 7 * side + 6, 6 * side + 5, 6 * side + 7]
    np.testing.assert_allclose(model.library_size_[centre], model.library_size_[ring].mean())
    np.testing.assert_allclose(model.loadings_[centre], model.loadings_[ring].mean(axis=0))
    # predictions at the held-out spots: their expression profile is far closer to the truth than the
    # gene mean's at the same (interpolated) depth; the depth itself comes from the neighbours
    gene_mean = np.outer(model.library_size_[held], np.asarray(X.sum(axis=0)).ravel() / lib.sum())
    truth = rate[held] / rate[held].sum(axis=1, keepdims=True) * model.library_size_[held, None]
    assert _deviance(truth, Y[held]) < 0.5 * _deviance(truth, gene_mean)
    np.testing.assert_allclose(Y[held].sum(axis=1), model.library_size_[held], rtol=0.1)
    assert np.all(model.library_size_[held] > 300)  # within the synthetic depths (300-700)
    # measured spots keep their observed library sizes
    observed = np.setdiff1d(np.arange(X.shape[0]), held)
    np.testing.assert_array_equal(model.library_size_[observed], lib[observed])
    # no posterior update at a spot where nothing was observed, whatever ``shrink``
    np.testing.assert_array_equal(Y[held], model.rates()[held])
    model.set_params(shrink="all")
    Y_all = model.transform()
    np.testing.assert_array_equal(Y_all[held], model.rates()[held])
    assert np.mean(Y_all[observed] != model.rates()[observed]) > 0.9  # shrunk everywhere else


def test_fill_from_neighbours_by_hand():
    from spotfill.methods.default import _fill_from_neighbours

    # path 0 - 1 - 2 - 3 plus an isolated pair 4 - 5; spots 1, 2 and the whole pair are empty
    edges = [(0, 1), (1, 2), (2, 3), (4, 5)]
    a, b = np.array(edges).T
    G = sp.coo_matrix((np.r_[np.ones(3), 1.0], (a, b)), shape=(6, 6))
    G = (G + G.T).tocsr()
    G[2, 3] = G[3, 2] = 3.0  # spot 2 leans towards spot 3
    L = np.array([[1.0, 0.0], [9, 9], [9, 9], [0.0, 1.0], [9, 9], [9, 9]])
    lib = np.array([10.0, 0, 0, 30, 0, 0])
    L2, lib2, left = _fill_from_neighbours(G, L, lib, np.array([1, 2, 4, 5]))
    # round 1: spot 1 from spot 0 only (its other neighbour is empty), spot 2 from spot 3 only
    np.testing.assert_allclose(L2[1], [1.0, 0.0])
    np.testing.assert_allclose(L2[2], [0.0, 1.0])
    np.testing.assert_allclose(lib2[:4], [10, 10, 30, 30])
    assert left == 2
    np.testing.assert_array_equal(L2[4:], 0.0)  # no measured spot in their component
    np.testing.assert_array_equal(lib2[4:], 0.0)
    np.testing.assert_array_equal(L[1], [9, 9])  # inputs untouched
    # a directed graph (e.g. a kNN graph): a spot is filled along its own edges only; spot 1's one
    # edge leads to the empty spot 2, so it waits for spot 2, which is filled from spot 3
    D = sp.csr_matrix((np.ones(4), ([0, 1, 2, 3], [1, 2, 3, 2])), shape=(4, 4))
    L3, lib3, left = _fill_from_neighbours(D, L[:4], lib[:4], np.array([1, 2]))
    np.testing.assert_allclose(L3[1:3], [[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(lib3, [10, 30, 30, 30])
    assert left == 0


def test_auto_selection_picks_smallest_sufficient_rank(synthetic):
    X, G, _ = synthetic
    model = SpotfillModel(progress=False).fit(X, graph=G)
    assert model.n_latent_ == 5  # true rank 3; candidates 5, 10, 20
    assert model.smooth_ > 0  # the truth is spatially smooth
    sel = model.selection_
    assert len(sel) == 5
    assert sel["heldout_nll"].idxmin() == sel.index[(sel.n_latent == 5) & (sel.smooth == model.smooth_)][0]


def test_output_shape_scale_and_library_sizes(synthetic):
    X, G, _ = synthetic
    Y = SpotfillModel(n_latent=3, smooth=0.0, shrink="none", max_iter=400, tol=0, progress=False).fit_transform(
        X, graph=G
    )
    assert Y.shape == X.shape
    assert Y.dtype == np.float32
    assert (Y >= 0).all()
    lib = np.asarray(X.sum(axis=1)).ravel()
    np.testing.assert_allclose(Y.sum(axis=1), lib, rtol=1e-3)


def test_shrink_nonzero_moves_observed_counts_only(synthetic):
    X, G, _ = synthetic
    model = SpotfillModel(n_latent=3, smooth=0.5, progress=False).fit(X, graph=G)
    mu = model.rates()
    Y = model.transform()
    Xd = X.toarray()
    np.testing.assert_array_equal(Y[Xd == 0], mu[Xd == 0])
    nz = Xd > 0
    # posterior mean lies between the model rate and the observed count
    lo, hi = np.minimum(mu[nz], Xd[nz]), np.maximum(mu[nz], Xd[nz])
    assert (Y[nz] >= lo - 1e-4).all()
    assert (Y[nz] <= hi + 1e-4).all()
    theta = model.theta_[np.nonzero(nz)[1]]
    np.testing.assert_allclose(Y[nz], mu[nz] * (theta + Xd[nz]) / (theta + mu[nz]), rtol=1e-5)


def test_masked_entries_do_not_leak(synthetic):
    X, G, _ = synthetic
    mask = np.zeros(X.shape, dtype=bool)
    mask[[3, 50, 100], [2, 7, 11]] = True
    X2 = X.toarray()
    X2[mask] += 25
    a = SpotfillModel(progress=False).fit(X, graph=G, mask=mask).transform()
    b = SpotfillModel(progress=False).fit(sp.csr_matrix(X2), graph=G, mask=mask).transform()
    np.testing.assert_array_equal(a, b)


def test_same_seed_same_output(synthetic):
    X, G, _ = synthetic
    a = SpotfillModel(n_latent=3, seed=3, progress=False).fit_transform(X, graph=G)
    b = SpotfillModel(n_latent=3, seed=3, progress=False).fit_transform(X, graph=G)
    np.testing.assert_array_equal(a, b)
    # and the seed is used: another seed starts (and selects) from another draw
    c = SpotfillModel(n_latent=3, seed=4, progress=False).fit_transform(X, graph=G)
    assert np.max(np.abs(a - c)) > 1e-3


def test_registered_and_validates():
    model = make_method("spotfill", n_latent=4, seed=1)
    assert isinstance(model, SpotfillModel)
    assert model.n_latent == 4
    with pytest.raises(ValueError, match="smooth"):
        SpotfillModel(smooth=1.5).fit(sp.csr_matrix(np.ones((4, 3))), graph=_grid_graph(2))


def test_parallel_kernels_match_the_numpy_fallback(synthetic, monkeypatch):
    from spotfill.methods import default as mod

    X, _, _ = synthetic
    rng = np.random.default_rng(0)
    U = rng.uniform(0.1, 1.0, size=(X.shape[0], 4))
    V = rng.dirichlet(np.ones(X.shape[1]), size=4).T
    counts = mod._Counts(X)
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    fast = [mod._ratio_products(counts, U, V, side=s) for s in ("rows", "cols")]
    theta_fast = mod._fit_dispersion(counts.csr, lib, U, V, np.arange(X.shape[0]))
    nll_fast = mod._NumpyBackend().nll(counts, lib, U, V, 0.3)
    monkeypatch.setattr(mod, "numba", None)
    slow = [mod._ratio_products(counts, U, V, side=s) for s in ("rows", "cols")]
    theta_slow = mod._fit_dispersion(counts.csr, lib, U, V, np.arange(X.shape[0]))
    nll_slow = mod._NumpyBackend().nll(counts, lib, U, V, 0.3)
    # the objective by hand, densely: mean of mu - x log(max(mu, 1e-6)), mu = 0.3 l_i U_i . V_g
    mu = 0.3 * lib[:, None] * (U @ V.T)
    dense = (mu.sum() - (X.toarray() * np.log(np.maximum(mu, 1e-6))).sum()) / mu.size
    np.testing.assert_allclose([nll_fast, nll_slow], dense, rtol=1e-12)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    # hand check of one entry of the U-update numerator: sum_g x_ig / (U_i . V_g) * V_g
    Xd = X.toarray()
    np.testing.assert_allclose(fast[0][5], (Xd[5] / (V @ U[5])) @ V, rtol=1e-10)
    np.testing.assert_array_equal(theta_fast, theta_slow)


def test_serial_twins_equal_the_parallel_kernels(synthetic):
    """Small problems run single-threaded twins of the kernels: the same numbers up to rounding.

    Compiled outside a parallel loop, LLVM may vectorise a twin differently (fastmath reassociation),
    so the last bits may differ; on C-contiguous input, as the fit passes it, they did on this machine.
    """
    from spotfill.methods import default as mod

    if mod.numba is None:
        pytest.skip("numba not installed")
    X, _, _ = synthetic
    rng = np.random.default_rng(3)
    U = rng.uniform(0.1, 1.0, size=(X.shape[0], 7))  # k = 7: SIMD partial sums plus a remainder
    V = np.ascontiguousarray(rng.dirichlet(np.ones(X.shape[1]), size=7).T)  # C order, as in the fit
    C = mod._Counts(X)
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    for name, args, shape in (
        ("ratio", (C.csr.indptr, C.csr.indices, C.csr.data, U, V), (X.shape[0], 7)),
        ("ratio", (C.csc.indptr, C.csc.indices, C.csc.data, V, U), (X.shape[1], 7)),
        ("rowdot", (C.csr.indptr, C.csr.indices, U, V), (C.csr.nnz,)),
        ("xlogmu", (C.csr.indptr, C.csr.indices, C.csr.data, lib, U, V, 0.3), (X.shape[0],)),
    ):
        par, ser = np.empty(shape), np.empty(shape)
        mod._PARALLEL[name](*args, par)
        mod._SERIAL[name](*args, ser)
        np.testing.assert_allclose(par, ser, rtol=1e-13, atol=0)
        again = np.empty(shape)
        mod._PARALLEL[name](*args, again)
        np.testing.assert_array_equal(par, again)  # each is deterministic


def test_kernels_receive_c_contiguous_matrices(monkeypatch):
    """Another layout is copied to C order first: one compiled version per kernel, whatever the caller passes."""
    from spotfill.methods import default as mod

    if mod.numba is None:
        pytest.skip("numba not installed")
    seen = []
    monkeypatch.setitem(mod._SERIAL, "ratio", lambda *args: seen.append([a.flags.c_contiguous for a in args[3:]]))
    rng = np.random.default_rng(0)
    A, B = np.asfortranarray(rng.random((5, 3))), rng.random((4, 3)).T.copy().T  # Fortran order, both
    mod._kernel("ratio", 1)(
        np.zeros(6, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0), A, B, np.empty((5, 3))
    )
    assert seen == [[True, True, True]]


def test_refine_iter_warm_starts_from_the_selected_candidate(synthetic):
    X, G, rate = synthetic
    model = SpotfillModel(refine_iter=5, progress=False).fit(X, graph=G)
    assert model.history_["iteration"].max() == 5  # 5 updates after the warm start
    again = SpotfillModel(refine_iter=5, progress=False).fit(X, graph=G)
    np.testing.assert_array_equal(model.transform(), again.transform())
    lib = np.asarray(X.sum(axis=1)).ravel()
    gene_mean = np.outer(lib, np.asarray(X.sum(axis=0)).ravel() / lib.sum())
    assert _deviance(rate, model.rates()) < 0.5 * _deviance(rate, gene_mean)
    with pytest.raises(ValueError, match="refine_iter"):
        SpotfillModel(refine_iter=0).fit(X, graph=G)


def test_tuning_tile_is_contiguous_and_spans_components():
    from scipy.sparse import csgraph

    from spotfill.methods.default import _tuning_tile

    G = _grid_graph(10)  # one component of 100 spots
    tile = _tuning_tile(G, 37, np.random.default_rng(0), np.ones(100, bool))
    assert len(tile) == 37
    assert len(np.unique(tile)) == 37
    n_comp, _ = csgraph.connected_components(G[tile][:, tile], directed=False)
    assert n_comp == 1  # a breadth-first patch, not scattered spots
    # two disjoint 5 x 5 sections: 40 spots need both, and each part stays contiguous
    two = sp.block_diag([_grid_graph(5), _grid_graph(5)]).tocsr()
    tile = _tuning_tile(two, 40, np.random.default_rng(3), np.ones(50, bool))
    assert len(tile) == 40
    assert 15 <= (tile < 25).sum() <= 25
    n_comp, _ = csgraph.connected_components(two[tile][:, tile], directed=False)
    assert n_comp == 2


def test_tuning_on_a_tile_selects_like_full_tuning(synthetic):
    X, G, rate = synthetic
    full = SpotfillModel(progress=False).fit(X, graph=G)
    tiled = SpotfillModel(max_spots_tune=120, progress=False).fit(X, graph=G)
    assert full.n_spots_tuned_ == 196
    assert tiled.n_spots_tuned_ == 120
    assert tiled.n_latent_ in (5, 10)  # true rank 3; 120 noisy spots may not separate 5 from 10
    assert tiled.smooth_ > 0
    assert len(tiled.selection_) == len(full.selection_) == 5
    # the final fit uses every spot either way, so the output is as close to the truth
    assert _deviance(rate, tiled.transform()) < 1.1 * _deviance(rate, full.transform())
    with pytest.raises(Exception, match="max_spots_tune"):
        SpotfillModel(max_spots_tune=3, progress=False).fit(X, graph=G)
    # a 12-spot patch cannot support rank 20: the rank candidates stop at the patch size
    tiny = SpotfillModel(max_spots_tune=12, progress=False).fit(X, graph=G)
    assert sorted(set(tiny.selection_["n_latent"])) == [5, 10]


def test_non_integer_counts_outside_the_tuning_patch_are_refused_whatever_the_seed(synthetic):
    X, G, _ = synthetic
    X = X.copy()
    X.data[-1] += 0.5  # the last spot, one value: a 20-spot patch mostly misses it
    for seed in range(4):
        with pytest.raises(InputError, match="1 non-integer values"):
            SpotfillModel(max_spots_tune=20, seed=seed, progress=False).fit(X, graph=G)


def test_smoothing_operator_power_and_candidates():
    from spotfill.methods.default import _smoothing_candidates, _smoothing_operator

    # path graph 0 - 1 - 2: P rows (0, 1, 0), (1/2, 0, 1/2), (0, 1, 0)
    G = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=float))
    S1 = _smoothing_operator(G, 0.5, steps=1).toarray()
    np.testing.assert_allclose(S1, [[0.5, 0.5, 0], [0.25, 0.5, 0.25], [0, 0.5, 0.5]])
    np.testing.assert_allclose(_smoothing_operator(G, 0.5, steps=3).toarray(), S1 @ S1 @ S1)
    np.testing.assert_allclose(_smoothing_operator(G, 0.5).toarray(), S1 @ S1)  # default power 2
    np.testing.assert_allclose(_smoothing_operator(G, 0.0, steps=4).toarray(), np.eye(3))
    assert _smoothing_candidates("auto", 2) == [(0.0, 2), (0.5, 2), (0.9, 2)]
    assert _smoothing_candidates(0.3, "auto") == [(0.3, 2), (0.3, 4), (0.3, 8)]
    assert _smoothing_candidates(0.0, "auto") == [(0.0, 2)]
    assert _smoothing_candidates("auto", "auto") == [(0.0, 2), (0.5, 2), (0.7, 4), (0.7, 8)]
    assert _smoothing_candidates(0.5, 3) == [(0.5, 3)]


def test_smooth_steps_auto_selects_among_widths(synthetic):
    X, G, _ = synthetic
    model = SpotfillModel(n_latent=5, smooth=0.5, smooth_steps="auto", progress=False).fit(X, graph=G)
    sel = model.selection_
    assert sel["smooth_steps"].tolist() == [2, 4, 8]
    best = sel.loc[sel["heldout_nll"].idxmin()]
    assert (model.smooth_, model.smooth_steps_) == (0.5, best["smooth_steps"])
    assert model.n_latent_ == 5
    with pytest.raises(Exception, match="smooth_steps"):
        SpotfillModel(smooth_steps=0, progress=False).fit(X, graph=G)


def test_wide_operators_are_applied_step_by_step(synthetic, monkeypatch):
    """Beyond two steps the operator is the one-step matrix applied q times, equal to the explicit power."""
    import spotfill.methods.default as default

    X, G, _ = synthetic
    x = np.random.default_rng(0).uniform(size=(G.shape[0], 3))
    for q in (1, 2, 5):
        S, ST = default._operator_pair(G, 0.7, q, lambda B: B)
        explicit = default._smoothing_operator(G, 0.7, q)
        assert S.reps == (1 if q <= 2 else q)
        assert S.B.nnz <= explicit.nnz  # never more stored than the power itself
        np.testing.assert_allclose(S @ x, explicit @ x, rtol=1e-12)
        np.testing.assert_allclose(ST @ x, explicit.T @ x, rtol=1e-12)
    S, _ = default._operator_pair(G, 0.0, 8, lambda B: B)
    assert S.reps == 1
    assert np.array_equal(S @ x, x)
    # a whole fit with q = 4 agrees with the explicit fourth power up to rounding
    step = SpotfillModel(n_latent=3, smooth=0.7, smooth_steps=4, progress=False).fit(X, graph=G)
    monkeypatch.setattr(default, "_MAX_STORED_POWER", 32)
    power = SpotfillModel(n_latent=3, smooth=0.7, smooth_steps=4, progress=False).fit(X, graph=G)
    np.testing.assert_allclose(step.loadings_, power.loadings_, rtol=1e-9)
    np.testing.assert_allclose(step.transform(), power.transform(), rtol=1e-6)


def test_posterior_in_row_blocks_equals_one_block(synthetic, monkeypatch):
    import spotfill.methods.default as default

    X, G, _ = synthetic
    model = SpotfillModel(n_latent=3, smooth=0.5, progress=False).fit(X, graph=G)
    whole = model.transform()
    monkeypatch.setattr(default, "_BLOCK", 97)  # many blocks, boundaries inside rows' runs
    np.testing.assert_array_equal(model.transform(), whole)
    # the posterior moved every observed non-zero and left the zeros at the rate
    mu = model.rates()
    Xd = X.toarray().astype(np.float64)
    nz = Xd > 0
    assert np.all(whole[~nz] == mu[~nz])
    theta = np.broadcast_to(model.theta_, mu.shape)
    posterior = mu * (theta + Xd) / (theta + mu)  # Gamma-Poisson posterior mean, by hand
    np.testing.assert_allclose(whole[nz], posterior[nz], rtol=1e-5)
    # shrink="all": the same formula at every entry (the zeros shrink below the rate), in blocks too
    model.set_params(shrink="all")
    every = model.transform()
    np.testing.assert_allclose(every, posterior, rtol=1e-5)
    assert np.all(every[~nz] < mu[~nz])
    monkeypatch.setattr(default, "_BLOCK", 1 << 20)
    np.testing.assert_array_equal(model.transform(), every)


@pytest.mark.parametrize("gene_prior", [0.0, 5.0])
def test_torch_backend_matches_the_cpu_kernels(synthetic, monkeypatch, gene_prior):
    """The torch updates (the code path used on CUDA) give the CPU backend's fit up to rounding."""
    import spotfill.methods.default as default

    X, G, _ = synthetic
    cpu = SpotfillModel(n_latent=5, smooth="auto", gene_prior=gene_prior, progress=False).fit(X, graph=G)
    monkeypatch.setattr(default, "_TORCH_ON_CPU", True)
    assert isinstance(default._backend("cpu"), default._TorchBackend)
    tch = SpotfillModel(n_latent=5, smooth="auto", gene_prior=gene_prior, progress=False).fit(X, graph=G)
    np.testing.assert_allclose(tch.selection_["heldout_nll"], cpu.selection_["heldout_nll"], rtol=1e-10)
    assert tch.smooth_ == cpu.smooth_
    np.testing.assert_allclose(tch.loadings_, cpu.loadings_, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(tch.factors_, cpu.factors_, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(tch.transform(), cpu.transform(), rtol=1e-5)


def test_device_option():
    import torch

    import spotfill.methods.default as default

    assert isinstance(default._backend("cpu"), default._NumpyBackend)
    auto = default._backend("auto")
    assert isinstance(auto, default._TorchBackend if torch.cuda.is_available() else default._NumpyBackend)
    if not torch.cuda.is_available():
        X = sp.csr_matrix(np.ones((4, 3), dtype=np.float32))
        model = SpotfillModel(n_latent=1, smooth=0.0, device="cuda", progress=False)
        with pytest.raises(Exception, match="CUDA"):
            model.fit(X, coords=np.arange(8.0).reshape(4, 2))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_iter": 10.0}, "max_iter must be a positive integer"),
        ({"tune_iter": "10"}, "tune_iter must be a positive integer"),
        ({"max_spots_dispersion": 0}, "max_spots_dispersion must be a positive integer"),
        ({"tol": "x"}, "tol must be a number"),
        ({"eps": "0.1"}, "eps must be a number in"),
        ({"n_latent": True}, "n_latent must be a positive integer"),
        ({"smooth_steps": True}, "smooth_steps must be an integer"),
        ({"smooth": "0.5"}, "smooth must be a number"),
    ],
)
def test_bad_parameters_name_the_problem(synthetic, params, message):
    from spotfill._errors import InputError

    X, G, _ = synthetic
    with pytest.raises(InputError, match=message):
        SpotfillModel(progress=False, **params).fit(X, graph=G)


def test_selection_needs_integer_counts_and_max_iter_caps_it(synthetic):
    from spotfill._errors import InputError

    X, G, _ = synthetic
    with pytest.raises(InputError, match="non-integer values .*fix n_latent, smooth and smooth_steps"):
        SpotfillModel(progress=False).fit(X * 0.3, graph=G)
    fixed = SpotfillModel(n_latent=3, smooth=0.5, max_iter=20, progress=False).fit(X * 0.3, graph=G)
    assert fixed.history_["iteration"].max() == 20  # nothing to select: the scaled data fit as given
    capped = SpotfillModel(n_latent=3, max_iter=7, progress=False).fit(X, graph=G)
    assert capped.selection_["n_iter"].min() >= 10  # candidates were scored every 10 updates
    assert capped.history_["iteration"].max() == 7  # the final fit honours max_iter


def test_rank_is_selected_at_smooth_one_half_for_any_power(synthetic):
    X, G, _ = synthetic
    model = SpotfillModel(smooth_steps=4, progress=False).fit(X, graph=G)
    sel = model.selection_
    ranks = sel.iloc[:3]  # the rank trials come first
    assert ranks["n_latent"].tolist() == [5, 10, 20]
    assert set(ranks["smooth"]) == {0.5}
    assert set(sel["smooth_steps"]) == {4}


def test_tuning_tile_takes_small_components_whole():
    from spotfill.methods.default import _tuning_tile

    # 30 isolated spots and one 6 x 6 grid (spots 30..65): every component is either whole or cut once
    G = sp.block_diag([sp.csr_matrix((30, 30)), _grid_graph(6)]).tocsr()
    tile = _tuning_tile(G, 50, np.random.default_rng(0), np.ones(66, bool))
    assert len(tile) == len(np.unique(tile)) == 50
    grid_part = tile[tile >= 30]
    assert 20 <= len(grid_part) <= 36  # at most 30 isolated spots, so at least 20 grid spots
    again = _tuning_tile(G, 50, np.random.default_rng(0), np.ones(66, bool))
    np.testing.assert_array_equal(tile, again)


def test_bad_graph_weights_are_rejected(synthetic):
    from spotfill._errors import InputError

    X, G, _ = synthetic
    bad = G.copy()
    bad.data[0] = np.nan
    with pytest.raises(InputError, match="NaN, infinite or negative edge weights"):
        SpotfillModel(n_latent=3, smooth=0.5, progress=False).fit(X, graph=bad)
    neg = G.copy()
    neg.data[0] = -1.0
    with pytest.raises(InputError, match="negative edge weights"):
        SpotfillModel(n_latent=3, smooth=0.5, progress=False).fit(X, graph=neg)


def test_gene_selection_validation(synthetic):
    from spotfill._errors import InputError

    X, G, _ = synthetic
    model = SpotfillModel(n_latent=3, smooth=0.5, max_iter=10, progress=False).fit(X, graph=G)
    assert model.transform(genes=[]).shape == (X.shape[0], 0)
    np.testing.assert_array_equal(model.transform(genes=[4, 2]), model.transform()[:, [4, 2]])
    with pytest.raises(InputError, match="integer gene indices .* pass gene names to spotfill.impute"):
        model.transform(genes=["g1"])
    with pytest.raises(InputError, match=r"gene indices in \[0, 80\), got values from 2 to 80"):
        model.transform(genes=[2, 80])
    with pytest.raises(InputError, match="integer gene indices"):
        model.rates(["g1"])
    np.testing.assert_array_equal(model.rates(slice(0, 3)), model.rates()[:, :3])


def test_gene_prior_update_by_hand(synthetic):
    """One update with the programme prior equals the dense formula; a = 0 is the plain update."""
    import spotfill.methods.default as default

    X, _, _ = synthetic
    n, m = X.shape
    rng = np.random.default_rng(2)
    U0 = rng.uniform(0.1, 1.0, size=(n, 3))
    V0 = rng.dirichlet(np.ones(m), size=3).T
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    eye = sp.identity(n, format="csr")
    share = np.asarray(X.sum(axis=0), dtype=np.float64).ravel() + 1e-3
    share /= share.sum()
    Xd = X.toarray().astype(np.float64)

    def by_hand(a: float) -> tuple[np.ndarray, np.ndarray]:
        U, V = U0.copy(), V0.copy()
        U = U * ((Xd / (U @ V.T)) @ V) / (lib[:, None] * V.sum(0)[None, :])
        alloc = V * ((Xd / (U @ V.T)).T @ U)  # n_gk: counts of gene g allocated to programme k
        expo = lib @ U  # D_k
        V = share[:, None] * (alloc + a) / (share[:, None] * expo[None, :] + a) if a else alloc / expo[None, :]
        c = V.sum(axis=0)
        return U * c, V / c

    for a in (0.0, 5.0):
        fit = default._Fit(U0.copy(), V0.copy(), eye, eye)
        prior = (a, share[:, None]) if a else None
        default._factorise(default._Counts(X), lib, fit, max_iter=1, tol=0.0, show=False, desc="", prior=prior)
        U_ref, V_ref = by_hand(a)
        np.testing.assert_allclose(fit.U, U_ref, rtol=1e-10)
        np.testing.assert_allclose(fit.V, V_ref, rtol=1e-10)
        np.testing.assert_allclose(fit.V.sum(axis=0), 1.0)
    with pytest.raises(Exception, match="gene_prior"):
        SpotfillModel(gene_prior=-1.0, progress=False).fit(X, graph=_grid_graph(14))


def test_gene_prior_curbs_overfitting_of_shallow_genes():
    """Shallow data (100-160 counts per spot over 400 genes), rank 10 for a rank-3 truth, 150 updates
    without early stopping: the programme prior brings the rates much closer to the truth."""
    rng = np.random.default_rng(1)
    side, n_genes = 14, 400
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1)
    centres = [(0.2, 0.2), (0.8, 0.3), (0.5, 0.85)]
    U = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.08).ravel() for cx, cy in centres], axis=1)
    U = U / U.sum(axis=1, keepdims=True)
    V = rng.gamma(0.6, 1.0, size=(n_genes, 3))
    V /= V.sum(axis=0, keepdims=True)
    rate = rng.uniform(80, 160, size=side * side)[:, None] * (U @ V.T)
    X = sp.csr_matrix(rng.poisson(rate).astype(np.float32))
    opts = {"n_latent": 10, "smooth": 0.5, "shrink": "none", "max_iter": 150, "tol": 0.0, "progress": False}
    plain = _deviance(rate, SpotfillModel(**opts).fit_transform(X, graph=_grid_graph(side)))
    prior = _deviance(rate, SpotfillModel(gene_prior=2.0, **opts).fit_transform(X, graph=_grid_graph(side)))
    assert prior < 0.5 * plain  # measured: 0.011 vs 0.036


def test_numpy_numbers_are_accepted_and_refine_iter_honours_max_iter(synthetic):
    X, G, _ = synthetic
    a = SpotfillModel(n_latent=np.int64(3), smooth=np.float32(0.5), max_iter=20, progress=False).fit(X, graph=G)
    b = SpotfillModel(n_latent=3, smooth=0.5, max_iter=20, progress=False).fit(X, graph=G)
    np.testing.assert_array_equal(a.transform(), b.transform())
    capped = SpotfillModel(refine_iter=7, max_iter=5, progress=False).fit(X, graph=G)
    assert capped.history_["iteration"].max() == 5


def test_values_beyond_counts_are_refused_before_thinning(synthetic):
    from spotfill._errors import InputError

    X, G, _ = synthetic
    huge = X.copy()
    huge.data = huge.data.astype(np.float64)
    huge.data[0] = 1e19
    with pytest.raises(InputError, match="beyond what a count can be"):
        SpotfillModel(progress=False).fit(huge, graph=G)


def test_tuning_tile_grows_from_spots_with_counts():
    from spotfill.methods.default import _tuning_tile

    # 20 x 20 grid whose left half has no counts: patches start on the measured half only
    side = 20
    G = _grid_graph(side)
    has_counts = (np.arange(side * side) % side) >= side // 2
    for seed in range(10):
        tile = _tuning_tile(G, 30, np.random.default_rng(seed), has_counts)
        assert len(tile) == 30
        assert has_counts[tile].mean() > 0.5
    # nothing measured anywhere: a tile is still returned
    assert len(_tuning_tile(G, 30, np.random.default_rng(0), np.zeros(side * side, bool))) == 30


def test_tiled_selection_on_a_half_empty_section_tunes_on_counts(synthetic):
    X, G, rate = synthetic
    half = X.tolil()
    cols = np.arange(X.shape[0]) % 14
    half[np.flatnonzero(cols < 7)] = 0
    half = half.tocsr()
    half.eliminate_zeros()
    for seed in range(3):
        model = SpotfillModel(max_spots_tune=40, seed=seed, progress=False).fit(half, graph=G)
        assert (model.selection_["heldout_nll"] != 0).all()
        assert model.history_["iteration"].max() >= 20


def test_tol_stopping_point_does_not_depend_on_the_units(synthetic):
    # the tolerance is relative to the deviance, which scales with the data (the objective does not)
    X, G, _ = synthetic
    stops = []
    for s in (0.5, 1.0, 1000.0):
        model = SpotfillModel(n_latent=3, smooth=0.5, shrink="none", tol=1e-3, progress=False).fit(X * s, graph=G)
        stops.append(int(model.history_["iteration"].max()))
    assert stops[0] == stops[1] == stops[2] < 150


@pytest.mark.parametrize("weight", [1e-310, 1e308, 0.37])
def test_edge_weights_of_any_scale_smooth_like_the_binary_graph(synthetic, weight):
    """Rows are normalised, so a common scale of the weights changes nothing, even a subnormal one
    (whose 1 / row sum overflowed to inf and made the output NaN) or one near the float64 maximum."""
    X, G, _ = synthetic
    opts = {"n_latent": 3, "smooth": 0.5, "max_iter": 20, "progress": False}
    ref = SpotfillModel(**opts).fit(X, graph=G).transform()
    scaled = G.copy()
    scaled.data = np.full_like(scaled.data, weight, dtype=np.float64)
    np.testing.assert_array_equal(SpotfillModel(**opts).fit(X, graph=scaled).transform(), ref)


def test_changing_shrink_after_a_fit_without_dispersions_is_refused(synthetic):
    X, G, _ = synthetic
    model = SpotfillModel(n_latent=3, smooth=0.5, max_iter=10, shrink="none", progress=False).fit(X, graph=G)
    model.set_params(shrink="nonzero")
    with pytest.raises(InputError, match="shrink='nonzero' needs the gene dispersions"):
        model.transform()
    with pytest.raises(InputError, match="needs the gene dispersions"):
        model.transform(genes=[0, 1])


def test_registry_works_with_numba_jit_disabled():
    """NUMBA_DISABLE_JIT=1 (numba's debugging switch) leaves the kernels as plain functions."""
    import os
    import subprocess
    import sys

    code = "import spotfill; t = spotfill.list_methods(); print('spotfill' in set(t['name']))"
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def _path_graph(n: int) -> sp.csr_matrix:
    W = sp.diags([np.ones(n - 1), np.ones(n - 1)], [-1, 1], shape=(n, n))
    return sp.csr_matrix(W)


def test_smoothing_operator_keeps_an_isolated_spots_own_loadings():
    # spots 0-1 linked, spot 2 isolated: its row of ((1 - a) I + a P) is the identity row, not (1 - a)
    G = sp.csr_matrix(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    S = default._smoothing_operator(G, 0.5, steps=1).toarray()
    np.testing.assert_allclose(S, [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(default._smoothing_operator(G, 0.5, steps=3).toarray()[2], [0.0, 0.0, 1.0])


class _ScriptedHeldout(default._NumpyBackend):
    """The CPU backend with a scripted held-out score (the objective is computed as usual)."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = iter(scores)

    def nll(self, X, lib, Ue, V, scale):
        return super().nll(X, lib, Ue, V, scale) if scale == 1.0 else next(self.scores)


def test_selection_fit_stops_when_the_held_out_score_rose_twice_in_a_row(tiny_counts):
    X = sp.csr_matrix(tiny_counts)
    counts = default._Counts(X)
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    U, V = default._init_factors(X, 2, np.random.default_rng(0))
    eye = sp.identity(X.shape[0], format="csr")
    fit = default._Fit(U, V, eye, eye)
    # a single rise (20 -> 30) is noise; the second rise in a row (50 -> 60) stops the run
    scores = [5.0, 4.0, 4.5, 4.2, 4.6, 4.7, 1.0, 1.0, 1.0, 1.0]
    hist = default._factorise(
        counts,
        lib,
        fit,
        max_iter=100,
        tol=0.0,
        show=False,
        desc="",
        heldout=(counts, 0.5),
        backend=_ScriptedHeldout(scores),
    )
    assert [h[0] for h in hist] == [10, 20, 30, 40, 50, 60]
    assert [h[2] for h in hist] == scores[:6]
    assert fit.best is not None


def test_held_out_half_is_scored_at_the_rescaled_rates(tiny_counts, monkeypatch):
    # X_a ~ Binomial(X, 1 - eps) and X_b = X - X_a: the rates fitted to X_a predict X_b after scaling
    # by eps / (1 - eps)
    scales = []
    real = default._factorise

    def spy(*args, **kwargs):
        if kwargs.get("heldout") is not None:
            scales.append(kwargs["heldout"][1])
        return real(*args, **kwargs)

    monkeypatch.setattr(default, "_factorise", spy)
    X = sp.csr_matrix(np.random.default_rng(0).poisson(5.0, size=(9, 6)).astype(np.float32))
    est = SpotfillModel(n_latent=2, smooth="auto", eps=0.2, tune_iter=10, device="cpu", progress=False)
    est.fit(X, graph=_path_graph(9))
    assert len(scales) == 3  # one per smoothing candidate
    np.testing.assert_allclose(scales, 0.25)


def test_dispersion_subset_is_drawn_among_spots_with_counts():
    # 12 of 24 spots are empty; max_spots_dispersion = 12 must use exactly the 12 measured spots
    rng = np.random.default_rng(0)
    dense = rng.negative_binomial(2, 0.2, size=(24, 10)).astype(np.float32)
    dense[1::2] = 0
    X = sp.csr_matrix(dense)
    G = _path_graph(24)
    kwargs = {"n_latent": 2, "smooth": 0.5, "smooth_steps": 2, "max_iter": 20, "device": "cpu", "progress": False}
    all_measured = SpotfillModel(**kwargs).fit(X, graph=G).theta_
    capped = SpotfillModel(**kwargs, max_spots_dispersion=12).fit(X, graph=G).theta_
    np.testing.assert_array_equal(capped, all_measured)


def test_dispersion_of_poisson_like_and_over_dispersed_genes_hits_the_grid_ends():
    # gene 0 equals its rate 5 everywhere (no over-dispersion: the largest theta, 1000); gene 1 is
    # 0 or 50 around the same rate (far more spread than NB at the smallest theta allows: 0.05)
    n = 20
    X = sp.csr_matrix(np.column_stack([np.full(n, 5.0), np.where(np.arange(n) < 18, 0.0, 50.0)]))
    lib = np.ones(n)
    Ue = np.ones((n, 1))
    V = np.array([[5.0], [5.0]])
    theta = default._fit_dispersion(X, lib, Ue, V, np.arange(n))
    np.testing.assert_allclose(theta, [1000.0, 0.05], rtol=1e-9)


def test_smooth_steps_above_32_is_refused(tiny_counts):
    with pytest.raises(InputError, match=r"smooth_steps must be an integer in \[1, 32\]"):
        SpotfillModel(n_latent=2, smooth=0.5, smooth_steps=33, progress=False).fit(tiny_counts, graph=_path_graph(6))


def test_values_beyond_two_to_the_53_are_refused_before_thinning():
    X = sp.csr_matrix(np.array([[2.0**60, 1.0], [3.0, 0.0], [1.0, 2.0]], dtype=np.float32))
    with pytest.raises(InputError, match="beyond what a count can be"):
        SpotfillModel(n_latent=1, smooth="auto", device="cpu", progress=False).fit(X, graph=_path_graph(3))


def test_a_rank_equal_to_the_number_of_genes_is_a_candidate():
    # 12 spots x 10 genes: ranks 5 and 10 are tried (20 is above both sizes)
    X = sp.csr_matrix(np.random.default_rng(0).poisson(3.0, size=(12, 10)).astype(np.float32))
    est = SpotfillModel(smooth=0.5, smooth_steps=2, tune_iter=10, max_iter=10, device="cpu", progress=False)
    est.fit(X, graph=_path_graph(12))
    assert est.selection_["n_latent"].tolist() == [5, 10]


def test_saturated_objective_by_hand():
    # mean over all entries of x log x - x (0 at zeros), in blocks of any size
    X = sp.csr_matrix(np.array([[1.0, 2.0], [0.0, 4.0]], dtype=np.float32))
    expected = ((0.0 - 1.0) + (2 * np.log(2) - 2) + (4 * np.log(4) - 4)) / 4
    assert default._saturated(X) == pytest.approx(expected, rel=1e-12)
    assert default._saturated(X, block=1) == pytest.approx(expected, rel=1e-12)


def test_refine_iter_is_ignored_when_tuning_ran_on_a_tile():
    # the candidates' factors cover the tile's spots only: the final fit must start afresh
    X = sp.csr_matrix(np.random.default_rng(0).poisson(3.0, size=(30, 8)).astype(np.float32))
    G = _path_graph(30)
    kwargs = {
        "n_latent": 2,
        "smooth": "auto",
        "max_spots_tune": 10,
        "tune_iter": 10,
        "device": "cpu",
        "progress": False,
    }
    plain = SpotfillModel(**kwargs).fit(X, graph=G)
    refined = SpotfillModel(**kwargs, refine_iter=5).fit(X, graph=G)
    assert refined.n_spots_tuned_ == 10
    np.testing.assert_array_equal(refined.transform(), plain.transform())
