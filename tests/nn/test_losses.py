from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spotfill.nn import EntryBatch, GeneAE, GeneBatch, MatrixFactorization
from spotfill.nn._losses import (
    GraphTensors,
    dense_laplacian_quadratic,
    dense_neighbour_errors,
    edge_smoothness,
    expand_neighbours,
    lookup_entries,
)

# three spots on a line: 0 - 1 - 2; first-order weight 0.1, second-order (0, 2) weight 0.2
W = sp.csr_matrix(np.array([[0, 0.1, 0.2], [0.1, 0, 0.1], [0.2, 0.1, 0]], dtype=np.float32))
Y = np.array([1.0, 2.0, 3.0], dtype=np.float32)
YHAT = np.array([1.5, 1.0, 3.5], dtype=np.float32)
# squared errors 0.25, 1, 0.25
# neighbour errors: spot 0: 0.1*1 + 0.2*0.25 = 0.15; spot 1: 0.1*0.25 + 0.1*0.25 = 0.05; spot 2: 0.15 -> 0.35
NEIGHBOUR_ERRORS = 0.35
# Laplacian: 0.1*(1.5-1)^2 + 0.1*(1-3.5)^2 + 0.2*(1.5-3.5)^2 = 0.025 + 0.625 + 0.8
LAPLACIAN = 1.45


def t(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def test_dense_neighbour_errors_hand_computed():
    err = t((Y - YHAT) ** 2)[None, :]
    g = GraphTensors(W)
    assert dense_neighbour_errors(err, torch.ones_like(err), g.sparse()).item() == pytest.approx(
        NEIGHBOUR_ERRORS, rel=1e-5
    )
    # spot 1 not in the loss: only 0 <-> 2 contribute, 0.2*0.25 twice
    mask = t([[1, 0, 1]])
    assert dense_neighbour_errors(err, mask, g.sparse()).item() == pytest.approx(0.1)
    # a dense W gives the same
    assert dense_neighbour_errors(err, mask, t(W.toarray())).item() == pytest.approx(0.1)


def test_laplacian_quadratic_hand_computed():
    g = GraphTensors(W)
    yhat = t(YHAT)[None, :]
    assert dense_laplacian_quadratic(yhat, g.sparse(), g.degree).item() == pytest.approx(LAPLACIAN, rel=1e-5)
    # two genes: the sum of both; a constant gene costs nothing
    two = torch.stack([t(YHAT), torch.full((3,), 7.0)])
    assert dense_laplacian_quadratic(two, g.sparse(), g.degree).item() == pytest.approx(LAPLACIAN, rel=1e-5)
    L = np.diag(W.toarray().sum(1)) - W.toarray()
    assert float(YHAT @ L @ YHAT) == pytest.approx(LAPLACIAN, rel=1e-6)


def test_expand_neighbours_and_edge_smoothness():
    g = GraphTensors(W)
    rows = torch.tensor([2, 0, 1])
    owner, nbr, w = expand_neighbours(g, rows)
    assert owner.tolist() == [0, 0, 1, 1, 2, 2]
    assert nbr.tolist() == [0, 1, 1, 2, 0, 2]
    np.testing.assert_allclose(w.numpy(), [0.2, 0.1, 0.1, 0.2, 0.1, 0.1], rtol=1e-6)
    yhat = t(YHAT)
    owner, nbr, w = expand_neighbours(g, torch.arange(3))
    assert edge_smoothness(yhat[owner], yhat[nbr], w).item() == pytest.approx(LAPLACIAN, rel=1e-5)


def test_lookup_entries():
    keys = torch.tensor([1, 4, 9])
    vals = t([10, 40, 90])
    value, found = lookup_entries(keys, vals, torch.tensor([4, 5, 9, 0, 100]))
    assert found.tolist() == [True, False, True, False, False]
    np.testing.assert_allclose(value.numpy(), [40, 0, 90, 0, 0])


def mf_with_predictions(penalty, observed=None):
    m = MatrixFactorization(3, 1, 1, penalty=penalty, smooth=2.0, graph=W, observed=observed)
    with torch.no_grad():
        m.spot_emb.copy_(t(YHAT)[:, None])
        m.gene_emb.fill_(1.0)
    return m


def entries(values, weights=None, **kw):
    return EntryBatch(torch.arange(3), torch.zeros(3, dtype=torch.long), t(values), weights, **kw)


def test_mf_rmse_nonzero_and_rmse_all():
    m = mf_with_predictions("none")
    assert m.loss(entries(Y)).loss.item() == pytest.approx(np.sqrt(1.5 / 3))
    # rmse_all batches carry a zero entry with weight 2 (an estimate for two zeros): (0.25 + 2*1 + 0.25) / 4
    out = m.loss(entries([1.0, 0.0, 3.0], weights=t([1, 2, 1])))
    assert out.loss.item() == pytest.approx(np.sqrt(2.5 / 4))
    assert out.components["mse"].item() == pytest.approx(2.5 / 4)
    assert out.n_obs == 3


def test_mf_neighbour_errors_hand_computed():
    obs = sp.csr_matrix(Y[:, None])
    m = mf_with_predictions("neighbour_errors", observed=obs)
    out = m.loss(entries(Y))
    assert out.loss.item() == pytest.approx(np.sqrt((1.5 + NEIGHBOUR_ERRORS) / 3))
    assert out.components["neighbour_errors"].item() == pytest.approx(NEIGHBOUR_ERRORS / 3)
    # spot 1 not observed: batch of spots 0 and 2; neighbour terms 0.2*0.25 each -> (0.5 + 0.1) / 2
    obs = sp.csr_matrix(np.array([[1.0], [0.0], [3.0]], dtype=np.float32))
    m = mf_with_predictions("neighbour_errors", observed=obs)
    batch = EntryBatch(torch.tensor([0, 2]), torch.zeros(2, dtype=torch.long), t([1.0, 3.0]))
    assert m.loss(batch).loss.item() == pytest.approx(np.sqrt(0.6 / 2))
    # validation batches skip the spatial term
    assert m.loss(entries(Y, spatial=False)).loss.item() == pytest.approx(np.sqrt(0.5))


def test_mf_laplacian_hand_computed():
    m = mf_with_predictions("laplacian")
    batch = entries(Y, lap_rows=torch.arange(3), lap_cols=torch.zeros(3, dtype=torch.long))
    out = m.loss(batch)
    assert out.components["laplacian"].item() == pytest.approx(LAPLACIAN / 3)
    assert out.loss.item() == pytest.approx(np.sqrt(0.5) + 2.0 * LAPLACIAN / 3)


@pytest.mark.parametrize("penalty", ["none", "neighbour_errors", "laplacian"])
def test_autoencoder_loss_matches_formula(penalty):
    torch.manual_seed(0)
    m = GeneAE(3, hidden=(4,), n_latent=2, output="linear", penalty=penalty, smooth=0.5, graph=W)
    x = t([[1.0, 0.0, 3.0], [0.5, 2.0, 0.0]])
    weight = (x != 0).float()
    out = m.loss(GeneBatch(x, x, weight))
    yhat = m(x).detach().numpy()
    E = (x.numpy() - yhat) ** 2
    M = weight.numpy()
    Wd = W.toarray()
    se = (M * E).sum()
    if penalty == "none":
        expected = np.sqrt(se / M.sum())
    elif penalty == "neighbour_errors":
        nb = sum(M[g, i] * Wd[i, j] * M[g, j] * E[g, j] for g in range(2) for i in range(3) for j in range(3))
        expected = np.sqrt((se + nb) / M.sum())
    else:
        L = np.diag(Wd.sum(1)) - Wd
        quad = sum(yhat[g] @ L @ yhat[g] for g in range(2))
        expected = np.sqrt(se / M.sum()) + 0.5 * quad / yhat.size
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.n_obs == 4


def test_autoencoder_output_layers():
    x = torch.linspace(-30, 30, 35).reshape(5, 7)
    for output, lo, hi in (("sigmoid", 0.0, 1.0), ("softplus", 0.0, np.inf)):
        torch.manual_seed(0)
        y = GeneAE(7, hidden=(6,), n_latent=2, output=output)(x).detach()
        assert float(y.min()) >= lo
        assert float(y.max()) <= hi


def test_graph_tensors_sum_duplicates_and_sort():
    # W again, stored with unsorted columns and the (0, 2) weight 0.2 split into two entries of 0.1
    raw = sp.csr_matrix(
        (
            np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2], dtype=np.float32),
            np.array([2, 1, 2, 2, 0, 1, 0]),
            np.array([0, 3, 5, 7]),
        ),
        shape=(3, 3),
    )
    g = GraphTensors(raw)
    assert g.indices.tolist() == [1, 2, 0, 2, 0, 1]
    np.testing.assert_allclose(g.data.numpy(), [0.1, 0.2, 0.1, 0.1, 0.2, 0.1], rtol=1e-6)
    np.testing.assert_allclose(g.degree.numpy(), [0.3, 0.2, 0.3], rtol=1e-6)
    yhat = t(YHAT)[None, :]
    assert dense_laplacian_quadratic(yhat, g.sparse(), g.degree).item() == pytest.approx(LAPLACIAN, rel=1e-5)


def test_lookup_entries_without_keys():
    value, found = lookup_entries(torch.zeros(0, dtype=torch.long), t([]), torch.tensor([0, 3]))
    assert value.tolist() == [0.0, 0.0]
    assert found.tolist() == [False, False]


def test_mf_initial_embeddings_are_uniform_below_init_scale():
    m = MatrixFactorization(200, 150, 8, init_scale=0.01, generator=torch.Generator().manual_seed(0))
    for emb in (m.spot_emb.detach(), m.gene_emb.detach()):
        assert float(emb.min()) >= 0.0
        assert 0.009 < float(emb.max()) < 0.01


def test_mf_neighbour_errors_with_weights_and_unsorted_observed_entries():
    m = mf_with_predictions("neighbour_errors", observed=sp.csr_matrix(Y[:, None]))
    # each entry's neighbour term is weighted like the entry: 0.15 * 1 + 0.05 * 2 + 0.15 * 1 = 0.4
    out = m.loss(entries(Y, weights=t([1, 2, 1])))
    assert out.loss.item() == pytest.approx(np.sqrt((2.5 + 0.4) / 4))
    # the same data as two genes with each row's columns stored in reverse order
    unsorted = sp.csr_matrix((np.repeat(Y, 2), np.tile([1, 0], 3), np.arange(0, 7, 2)), shape=(3, 2))
    m = MatrixFactorization(3, 2, 1, penalty="neighbour_errors", graph=W, observed=unsorted)
    with torch.no_grad():
        m.spot_emb.copy_(t(YHAT)[:, None])
        m.gene_emb.fill_(1.0)
    assert m.loss(entries(Y)).loss.item() == pytest.approx(np.sqrt((1.5 + NEIGHBOUR_ERRORS) / 3))


def test_mf_laplacian_is_averaged_over_its_own_positions():
    m = mf_with_predictions("laplacian")
    # penalty at spots 0 and 2 only: 0.5 * (0.825 + 1.425) / 2 positions, whatever the batch size (3)
    batch = entries(Y, lap_rows=torch.tensor([0, 2]), lap_cols=torch.zeros(2, dtype=torch.long))
    out = m.loss(batch)
    assert out.components["laplacian"].item() == pytest.approx(0.5625)
    assert out.loss.item() == pytest.approx(np.sqrt(0.5) + 2.0 * 0.5625)


def test_mf_batch_of_zero_weight_has_zero_error():
    out = mf_with_predictions("none").loss(entries(Y, weights=t([0, 0, 0])))
    assert out.components["mse"].item() == 0.0
    assert out.loss.item() == pytest.approx(1e-6)
