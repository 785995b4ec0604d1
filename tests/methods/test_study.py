from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spotfill import InputError, SpotfillError
from spotfill.methods import make_method, study
from spotfill.methods.study import GeneAutoencoder, NeuralMF, ring_weights
from spotfill.train import cpu_threads

N_ROWS, N_COLS, N_GENES = 6, 10, 30  # 60 spots on a square grid
FAST = {"progress": False, "max_epochs": 3, "patience": None}


def grid_graph(n_rows=N_ROWS, n_cols=N_COLS):
    idx = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
    a = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    b = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    G = sp.coo_matrix((np.ones(a.size), (a, b)), shape=(idx.size, idx.size))
    return (G + G.T).tocsr()


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # these models are tiny: with 2 torch threads on a busy 2-core machine they run ~20x slower
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def lowrank():
    """Poisson counts of a rank-3 mean (60 spots x 30 genes), 10 % of the non-zeros held out."""
    rng = np.random.default_rng(0)
    mu = rng.gamma(2.0, 1.0, (N_ROWS * N_COLS, 3)) @ rng.gamma(2.0, 0.5, (N_GENES, 3)).T
    X = rng.poisson(mu).astype(np.float32)
    nz = np.argwhere(X > 0)
    held = nz[rng.choice(len(nz), len(nz) // 10, replace=False)]
    mask = np.zeros(X.shape, dtype=bool)
    mask[held[:, 0], held[:, 1]] = True
    return X, mask


def pearson_on_held(X, mask, P):
    return np.corrcoef(np.log1p(X[mask]), np.log1p(P[mask]))[0, 1]


def test_ring_weights_on_a_path():
    path = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]], dtype=float))
    W = ring_weights(path, 0.1, 0.2).toarray()
    expected = np.array([[0, 0.1, 0.2, 0], [0.1, 0, 0.1, 0.2], [0.2, 0.1, 0, 0.1], [0, 0.2, 0.1, 0]])
    np.testing.assert_allclose(W, expected, rtol=1e-6)


def test_ring_weights_square_grid_second_ring():
    W = ring_weights(grid_graph(5, 5), 1.0, 0.5)
    centre = 12  # (2, 2): 4 first-order, 8 second-order (4 diagonal + 4 at distance 2)
    row = W[centre].toarray().ravel()
    assert (row == 1.0).sum() == 4
    assert (row == 0.5).sum() == 8
    assert row[centre] == 0


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (NeuralMF, {"max_epochs": 30}),
        (NeuralMF, {"max_epochs": 30, "loss": "rmse_all"}),
        (GeneAutoencoder, {"max_epochs": 30, "batch_size": 8}),
    ],
)
def test_recovers_held_out_entries_better_than_gene_mean(lowrank, cls, params):
    X, mask = lowrank
    Xm = np.where(mask, 0, X)
    # the gene-mean baseline: mean of each gene's observed non-zero values
    gene_mean = (Xm.sum(0) / np.maximum((Xm > 0).sum(0), 1))[None, :].repeat(X.shape[0], 0)
    base = pearson_on_held(X, mask, gene_mean)
    P = cls(progress=False, **params).fit_transform(sp.csr_matrix(X), mask=mask)
    assert P.shape == X.shape
    assert P.dtype == np.float32
    assert P.min() >= 0
    score = pearson_on_held(X, mask, P)
    assert base < 0.55
    assert score > base + 0.1, (score, base)


@pytest.mark.parametrize("cls", [NeuralMF, GeneAutoencoder])
@pytest.mark.parametrize("loss", ["rmse_all", "rmse_nonzero", "neighbour_errors", "laplacian"])
def test_masked_values_never_reach_the_model(lowrank, cls, loss):
    X, mask = lowrank
    X2 = X.copy()
    X2[mask] = X2[mask] * 7 + 3  # change every held-out value
    G = grid_graph()
    est = cls(loss=loss, **FAST)
    P1 = est.fit_transform(sp.csr_matrix(X), graph=G, mask=mask)
    P2 = cls(loss=loss, **FAST).fit_transform(sp.csr_matrix(X2), graph=G, mask=mask)
    np.testing.assert_array_equal(P1, P2)
    # transform on the other values (the fitted mask is applied again) changes nothing either
    np.testing.assert_array_equal(est.transform(X2), P1)


@pytest.mark.parametrize("cls", [NeuralMF, GeneAutoencoder])
def test_same_seed_same_output(lowrank, cls):
    X, mask = lowrank
    a = cls(seed=3, **FAST).fit_transform(X, mask=mask)
    b = cls(seed=3, **FAST).fit_transform(X, mask=mask)
    c = cls(seed=4, **FAST).fit_transform(X, mask=mask)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("cls", [NeuralMF, GeneAutoencoder])
def test_history_and_fitted_state(lowrank, cls):
    X, mask = lowrank
    est = cls(progress=False, max_epochs=4, patience=2).fit(X, mask=mask)
    h = est.history_
    assert len(h.train_loss) == len(h.val_loss) == h.n_epochs <= 4
    assert 0 <= h.best_epoch < h.n_epochs
    assert est.n_features_in_ == N_GENES
    assert len(h.components["mse"]) == h.n_epochs


@pytest.mark.parametrize("cls", [NeuralMF, GeneAutoencoder])
def test_save_load_roundtrip(lowrank, cls, tmp_path):
    X, mask = lowrank
    genes = [f"g{i}" for i in range(N_GENES)]
    est = cls(**FAST).fit(X, mask=mask)
    P = est.transform()
    est.save(tmp_path / "m", var_names=genes)
    loaded = cls.load(tmp_path / "m", var_names=genes)
    assert loaded.get_params() == est.get_params()
    Xm = np.where(mask, 0, X)
    np.testing.assert_array_equal(loaded.transform(Xm), P)
    # the mask is saved with the model: the held-out values stay hidden from a loaded model too
    assert (tmp_path / "m" / "mask.npz").is_file()
    np.testing.assert_array_equal(loaded.transform(X), P)
    np.testing.assert_array_equal(loaded.transform(X + 5 * mask), P)
    if cls is NeuralMF:
        np.testing.assert_array_equal(loaded.transform(), P)
        np.testing.assert_array_equal(loaded.transform(genes=[2, 0]), P[:, [2, 0]])
        for bad in ([-1], [0, N_GENES], [True, False]):  # checked as on a fitted model, not used as numpy indices
            with pytest.raises(InputError):
                loaded.transform(genes=bad)
    else:
        with pytest.raises(InputError, match="needs the data"):
            loaded.transform()
    with pytest.raises(InputError, match="genes differ"):
        cls.load(tmp_path / "m", var_names=genes[::-1])
    with pytest.raises(InputError, match="genes differ"):
        cls.load(tmp_path / "m", var_names=genes[:-1])
    other = GeneAutoencoder if cls is NeuralMF else NeuralMF
    with pytest.raises(InputError, match="not a"):
        other.load(tmp_path / "m")
    with pytest.raises(InputError, match="fitted on"):
        loaded.transform(X[:, :-1])


def test_saving_without_a_mask_drops_an_earlier_one(lowrank, tmp_path):
    X, mask = lowrank
    NeuralMF(**FAST).fit(X, mask=mask).save(tmp_path / "m")
    NeuralMF(**FAST).fit(X).save(tmp_path / "m")
    assert not (tmp_path / "m" / "mask.npz").exists()
    assert NeuralMF.load(tmp_path / "m").mask_ is None


@pytest.mark.parametrize("cls", [NeuralMF, GeneAutoencoder])
def test_a_diverged_fit_raises_instead_of_returning_nan(lowrank, cls):
    X, _ = lowrank
    with pytest.raises(SpotfillError, match="diverged|non-finite"):
        cls(**FAST, lr=1e5, batch_size=10_000).fit(X).transform()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_nmf_biases_train_with_either_optimizer(optimizer, tmp_path):
    # rank-1 log1p data plus a strong per-spot offset: the spot biases must learn the offset
    rng = np.random.default_rng(1)
    offset = np.repeat([0.0, 1.5], 30)
    X = rng.poisson(np.expm1(offset[:, None] + 0.5 * rng.random((1, N_GENES)))).astype(np.float32)
    opts = {**FAST, "max_epochs": 30, "lr": 0.1 if optimizer == "sgd" else 0.03}
    est = NeuralMF(bias=True, optimizer=optimizer, **opts).fit(X)
    bias = est.module_.spot_bias.detach().numpy().ravel()
    assert bias[30:].mean() - bias[:30].mean() > 0.1  # the deeper half's bias rose (from 0)
    m = est.module_
    expected = np.expm1((m.spot_emb @ m.gene_emb.T + m.spot_bias + m.gene_bias.T).detach().numpy()).clip(min=0)
    np.testing.assert_allclose(est.transform(), expected, rtol=1e-5, atol=1e-6)
    est.save(tmp_path / "m")
    np.testing.assert_array_equal(NeuralMF.load(tmp_path / "m").transform(), est.transform())


def test_nmf_loads_biases_saved_as_vectors():
    from spotfill.nn import MatrixFactorization

    m = MatrixFactorization(4, 3, 2, bias=True)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    state["spot_bias"] = torch.arange(4.0)  # the layout before the biases became one-column tables
    state["gene_bias"] = torch.arange(3.0)
    m.load_state_dict(state)
    np.testing.assert_array_equal(m.spot_bias.detach().numpy().ravel(), np.arange(4.0))
    np.testing.assert_array_equal(m.gene_bias.detach().numpy().ravel(), np.arange(3.0))


def test_sigmoid_output_caps_predictions(lowrank):
    X, mask = lowrank
    P = GeneAutoencoder(output="sigmoid", **FAST).fit_transform(X, mask=mask)
    assert P.max() <= np.expm1(1.0) + 1e-5


def test_uses_graph_only_for_spatial_losses(lowrank):
    assert not NeuralMF().uses_graph
    assert not GeneAutoencoder(loss="rmse_all").uses_graph
    assert NeuralMF(loss="laplacian").uses_graph
    assert GeneAutoencoder(loss="neighbour_errors").uses_graph
    X, _ = lowrank
    with pytest.raises(InputError, match="graph"):
        GeneAutoencoder(loss="neighbour_errors", **FAST).fit(X)


def test_invalid_options_raise(lowrank):
    X, _ = lowrank
    with pytest.raises(InputError, match="loss"):
        NeuralMF(loss="mae", **FAST).fit(X)
    with pytest.raises(InputError, match="data_transform"):
        GeneAutoencoder(data_transform="sqrt", **FAST).fit(X)
    with pytest.raises(InputError, match="output"):
        GeneAutoencoder(output="relu", **FAST).fit(X)
    with pytest.raises(InputError, match=r"patience must be an integer >= 1, or None"):
        NeuralMF(**{**FAST, "patience": 0}).fit(X)


def test_presets_reproduce_the_study_trials():
    expected = {
        "seed-nmf-baseline": (NeuralMF, "none", "rmse_all"),
        "seed-nmf-log": (NeuralMF, "log1p", "rmse_all"),
        "seed-nmf-log-nonzero": (NeuralMF, "log1p", "rmse_nonzero"),
        "seed-ae-log-nonzero": (GeneAutoencoder, "log1p", "rmse_nonzero"),
        "seed-ae-log-nonzero-spatial": (GeneAutoencoder, "log1p", "neighbour_errors"),
    }
    for name, (cls, transform, loss) in expected.items():
        est = make_method(name)
        assert type(est) is cls
        assert (est.data_transform, est.loss) == (transform, loss)
        assert (est.n_latent, est.optimizer, est.lr, est.batch_size, est.patience) == (40, "sgd", 0.1, 128, 10)
        assert est.uses_graph == (loss == "neighbour_errors")
    spatial = make_method("seed-ae-log-nonzero-spatial")
    assert (spatial.alpha, spatial.beta, spatial.graph_weights) == (0.1, 0.1, "rings")
    assert make_method("seed-nmf-log", n_latent=5).n_latent == 5


def test_spatial_preset_fits_with_a_graph(lowrank):
    X, mask = lowrank
    est = make_method("seed-ae-log-nonzero-spatial", **FAST)
    P = est.fit_transform(X, graph=grid_graph(), mask=mask)
    assert np.isfinite(P).all()
    assert est.history_.components["neighbour_errors"][0] > 0


def test_all_entries_loss_on_data_with_few_zeros_stays_small():
    # rejection sampling of the zeros asked for n_total / n_zeros candidates per draw (400 MB here)
    import tracemalloc

    X = np.full((100, 40), 5, np.float32)
    X[0, 0] = 0
    NeuralMF(**FAST).fit(X)  # one-off allocations (lazy imports) are not what is measured
    tracemalloc.start()
    try:
        P = NeuralMF(loss="rmse_all", data_transform="log1p", **FAST).fit_transform(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    assert np.isfinite(P).all()


def test_rings_refuse_a_stored_graph_of_two_rings():
    import anndata as ad

    import spotfill

    rng = np.random.default_rng(0)
    rows, cols = np.divmod(np.arange(60), 10)
    adata = ad.AnnData(rng.poisson(2.0, (60, 8)).astype(np.float32))
    adata.obs["array_row"], adata.obs["array_col"] = rows, cols
    adata.obsm["spatial"] = np.c_[cols, rows].astype(float)
    spotfill.spatial_neighbors(adata, n_rings=2)
    with pytest.raises(InputError, match="already has 2 rings"):
        spotfill.impute(adata, "seed-ae-log-nonzero-spatial", max_epochs=1, progress=False)
    # weighted as it is, or rebuilt with one ring, the same graph is accepted
    spotfill.impute(adata, "seed-ae-log-nonzero-spatial", graph_weights="as_is", max_epochs=1, progress=False)
    spotfill.spatial_neighbors(adata)
    spotfill.impute(adata, "seed-ae-log-nonzero-spatial", max_epochs=1, progress=False)
    assert adata.layers["imputed_seed-ae-log-nonzero-spatial"].shape == (60, 8)


def test_ring_weights_with_triangles_count_a_first_ring_neighbour_once():
    # a hexagonal (Visium) grid has triangles: a first-ring neighbour is also two hops away, and must
    # keep the first-ring weight alone. Triangle 0-1-2 plus spot 3 hanging on 2.
    A = np.zeros((4, 4))
    for i, j in [(0, 1), (1, 2), (0, 2), (2, 3)]:
        A[i, j] = A[j, i] = 1.0
    W = ring_weights(sp.csr_matrix(A), 0.1, 0.2).toarray()
    expected = np.array(
        [
            [0.0, 0.1, 0.1, 0.2],
            [0.1, 0.0, 0.1, 0.2],
            [0.1, 0.1, 0.0, 0.1],
            [0.2, 0.2, 0.1, 0.0],
        ]
    )
    np.testing.assert_allclose(W, expected, rtol=1e-6)


def test_validation_entries_are_hidden_from_the_training_entries():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.poisson(2.0, size=(8, 5)).astype(np.float32))
    train_m, val_m = NeuralMF(val_fraction=0.5, seed=0)._split(X)
    assert val_m.nnz == round(0.5 * X.nnz)
    assert train_m.nnz + val_m.nnz == X.nnz
    assert train_m.multiply(val_m).nnz == 0  # no entry on both sides
    np.testing.assert_array_equal((train_m + val_m).toarray(), X.toarray())


def test_laplacian_penalty_graph_is_symmetrised_by_the_larger_weight():
    directed = sp.csr_matrix(np.array([[0.0, 2.0, 0.0], [3.0, 0.0, 1.0], [0.0, 0.0, 5.0]]))
    G = NeuralMF(loss="laplacian")._penalty_graph(directed).toarray()
    np.testing.assert_array_equal(G, [[0, 3, 0], [3, 0, 1], [0, 1, 0]])  # max(W, W^T), no diagonal


def test_autoencoder_all_entries_loss_leaves_out_only_the_validation_entries(monkeypatch):
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.poisson(1.0, size=(12, 6)) * (rng.random((12, 6)) < 0.6)).astype(np.float32))
    seen = []

    def fake_train(module, *, train_batches, val_batches, config):  # noqa: ARG001
        seen.extend(train_batches(np.random.default_rng(0)))

    monkeypatch.setattr(study, "train", fake_train)
    est = GeneAutoencoder(loss="rmse_all", val_fraction=0.5, batch_size=4, seed=3, device="cpu", progress=False)
    est.fit(X)
    _, val_m = est._split(X)  # the split depends on the seed and the stored entries only
    weights = np.concatenate([b.weight.numpy().ravel() for b in seen])
    inputs = np.concatenate([b.x.numpy().ravel() for b in seen])
    assert weights.size == X.shape[0] * X.shape[1]
    assert int((weights == 0).sum()) == val_m.nnz  # every zero of X is in the loss, validation entries are not
    assert np.all(inputs[weights == 0] == 0)
