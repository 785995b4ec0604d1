"""Splits and scores of the protocols, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotfill import InputError
from spotfill.benchmark import (
    domain_ari,
    gene_pearson,
    libsize_mean_rates,
    log_scores,
    p1_mask,
    p2_split,
    p3_folds,
    poisson_nll,
    sample_zero_entries,
)
from spotfill.benchmark._masks import assert_hidden, zero_rows

# 3 x 3 example; CSR order of the non-zeros: (0,0)=1 (0,2)=2 (1,1)=3 (2,0)=4 (2,1)=5
X33 = np.array([[1, 0, 2], [0, 3, 0], [4, 5, 0]], dtype=np.float32)


def test_p1_hand_checked_3x3():
    # np.random.default_rng(3).choice(5, size=round(0.4 * 5) = 2, replace=False) == [0, 3]
    # -> CSR entries 0 and 3 = positions (0, 0) (value 1) and (2, 0) (value 4)
    m = p1_mask(X33, frac=0.4, seed=3, n_zero_check=0)
    np.testing.assert_array_equal(m.held, [0, 3])
    np.testing.assert_array_equal(m.rows, [0, 2])
    np.testing.assert_array_equal(m.cols, [0, 0])
    np.testing.assert_array_equal(m.values, [1.0, 4.0])
    expected = np.array([[0, 0, 2], [0, 3, 0], [0, 5, 0]], dtype=np.float32)
    np.testing.assert_array_equal(m.X_masked.toarray(), expected)
    assert m.X_masked.nnz == 3  # held entries eliminated, not stored zeros


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_p1_size_nonzero_only_deterministic(seed):
    rng = np.random.default_rng(42)
    X = sp.random(60, 40, density=0.3, random_state=rng, data_rvs=lambda n: rng.integers(1, 9, n)).tocsr()
    X.data[0] = 0  # an explicit stored zero must not be a candidate
    m = p1_mask(X, seed=seed, n_zero_check=100)
    nnz = sp.csr_matrix(X).count_nonzero()
    assert m.rows.size == round(0.1 * nnz)
    dense = X.toarray()
    assert np.all(dense[m.rows, m.cols] > 0)
    np.testing.assert_array_equal(dense[m.rows, m.cols], m.values)
    assert len(set(zip(m.rows, m.cols, strict=True))) == m.rows.size
    assert np.all(m.X_masked.toarray()[m.rows, m.cols] == 0)
    assert m.X_masked.nnz == nnz - m.rows.size
    # over-imputation entries: zeros of the original data, distinct
    assert m.zero_rows.size == 100
    assert np.all(dense[m.zero_rows, m.zero_cols] == 0)
    assert len(set(zip(m.zero_rows, m.zero_cols, strict=True))) == 100
    again = p1_mask(X, seed=seed, n_zero_check=100)
    np.testing.assert_array_equal(m.held, again.held)
    np.testing.assert_array_equal(m.zero_rows * 40 + m.zero_cols, again.zero_rows * 40 + again.zero_cols)
    other = p1_mask(X, seed=seed + 10, n_zero_check=100)
    assert not np.array_equal(np.sort(m.held), np.sort(other.held))


def test_sample_zero_entries_all_when_few():
    X = sp.csr_matrix(X33)
    rows, cols = sample_zero_entries(X, 10, np.random.default_rng(0))
    # the 4 zeros in row-major order
    np.testing.assert_array_equal(rows, [0, 1, 1, 2])
    np.testing.assert_array_equal(cols, [1, 0, 2, 2])


def test_p2_split_sums_back():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.poisson(3.0, size=(30, 20)).astype(np.float32))
    X_train, X_test = p2_split(X, seed=1)
    np.testing.assert_array_equal((X_train + X_test).toarray(), X.toarray())
    assert X_train.min() >= 0
    assert X_test.min() >= 0
    assert 0.85 < X_train.sum() / X.sum() < 0.95
    a, _ = p2_split(X, seed=1)
    np.testing.assert_array_equal(a.toarray(), X_train.toarray())


def test_p2_split_is_the_protocols_literal_dense_draw():
    """BENCHMARK.md: ``X_train = default_rng(seed).binomial(X, 0.9)`` on the whole matrix (no draws at zeros)."""
    X = np.random.default_rng(0).poisson(1.0, size=(40, 25)).astype(np.int64)
    X_train, X_test = p2_split(sp.csr_matrix(X), seed=3)
    literal = np.random.default_rng(3).binomial(X, 0.9)
    np.testing.assert_array_equal(X_train.toarray(), literal)
    np.testing.assert_array_equal(X_test.toarray(), X - literal)


def test_poisson_nll_hand_computed_2x2():
    X_test = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]]))
    p = np.array([[0.9, 0.0], [1.8, 9.0]])  # mu = p / 9 = [[0.1, floor], [0.2, 1.0]]
    expected = ((0.1 - np.log(0.1)) + 1e-6 + 0.2 + (1.0 - 2 * np.log(1.0))) / 4
    assert poisson_nll(X_test, p) == pytest.approx(expected, rel=1e-12)
    assert poisson_nll(X_test, sp.csr_matrix(p)) == pytest.approx(expected, rel=1e-12)


def test_poisson_nll_chunked_equals_direct(monkeypatch):
    import spotfill.benchmark._metrics as metrics

    rng = np.random.default_rng(0)
    X_test = sp.csr_matrix(rng.poisson(0.5, size=(37, 11)).astype(np.float64))
    p = rng.gamma(1.0, 2.0, size=(37, 11))
    mu = np.maximum(p * 0.1 / 0.9, 1e-6)
    direct = np.mean(mu - X_test.toarray() * np.log(mu))
    monkeypatch.setattr(metrics, "CHUNK_ENTRIES", 30)  # blocks of 2 spots
    assert poisson_nll(X_test, p) == pytest.approx(direct, rel=1e-12)


def test_log_scores_hand_computed():
    e = np.e
    y = np.array([e - 1, 0.0, e**2 - 1])  # log1p: 1, 0, 2
    p = np.array([-5.0, e - 1, e**2 - 1])  # clipped, log1p: 0, 1, 2
    s = log_scores(y, p)
    assert s["rmse"] == pytest.approx(np.sqrt(2 / 3))
    assert s["mae"] == pytest.approx(2 / 3)
    assert s["pearson"] == pytest.approx(0.5)  # centred (0,-1,1).(-1,0,1) / 2
    assert s["spearman"] == pytest.approx(0.5)
    assert np.isnan(log_scores(y, np.zeros(3))["pearson"])


def test_gene_pearson_and_libsize_mean():
    Y = np.array([[0.0, 1.0], [1.0, 1.0], [3.0, 1.0]])
    P = np.array([[0.0, 2.0], [1.0, 0.0], [3.0, 5.0]])
    g = gene_pearson(Y, P)
    assert g[0] == pytest.approx(1.0)
    assert np.isnan(g[1])  # constant truth
    # a constant prediction whose centred values keep rounding noise is constant too (nan, not ~1e-17)
    Yc = np.array([[0.0], [1.0], [3.0], [2.0], [5.0], [1.0], [0.0]])
    Pc = np.full((7, 1), 1.3)
    assert np.log1p(Pc).mean() != np.log1p(Pc[0, 0])  # the mean really is off by rounding here
    assert np.isnan(gene_pearson(Yc, Pc)[0])
    X = sp.csr_matrix(np.array([[1.0, 3.0], [2.0, 2.0]]))
    # lib = (4, 4), gene sums = (3, 5), total 8 -> p = lib * (3/8, 5/8)
    np.testing.assert_allclose(libsize_mean_rates(X), [[1.5, 2.5], [1.5, 2.5]])


def test_p3_folds_partition():
    folds = p3_folds(23, seed=0)
    assert len(folds) == 5
    assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
    np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(23))
    perm = np.random.default_rng(0).permutation(23)
    np.testing.assert_array_equal(folds[0], np.sort(perm[:5]))
    X = sp.csr_matrix(X33)
    Z = zero_rows(X, np.array([2]))
    np.testing.assert_array_equal(Z.toarray(), [[1, 0, 2], [0, 3, 0], [0, 0, 0]])


def test_domain_ari_perfect_toy():
    rng = np.random.default_rng(0)
    a = rng.poisson([20, 1, 20, 1, 5], size=(15, 5))
    b = rng.poisson([1, 20, 1, 20, 5], size=(12, 5))
    X = sp.csr_matrix(np.vstack([a, b]).astype(np.float32))
    labels = np.array(["A"] * 15 + ["B"] * 12, dtype=object)
    labels[3] = None  # unlabelled spots are ignored
    assert domain_ari(X, labels) == pytest.approx(1.0)
    swapped = labels.copy()
    swapped[:6] = "B"
    assert domain_ari(X, swapped) < 0.9


def test_assert_hidden_catches_leak():
    X = sp.csr_matrix(X33)
    with pytest.raises(RuntimeError, match="held-out entries are visible"):
        assert_hidden(X, np.array([0]), np.array([0]))
    assert_hidden(X, np.array([0]), np.array([1]))


def test_p1_leaves_input_untouched():
    # float64 CSR with an explicit zero: canonicalisation must work on a copy
    X = sp.csr_matrix(np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 4.0]]))
    X.data[0] = 0.0
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    p1_mask(X, frac=0.5, seed=0)
    for got, want in zip((X.data, X.indices, X.indptr), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_matrix_log_scores_equal_the_dense_scores_block_by_block():
    from spotfill.benchmark._metrics import gene_pearson, log_scores, matrix_log_scores

    rng = np.random.default_rng(0)
    Y = rng.poisson(rng.gamma(0.5, 2.0, (50, 12))).astype(np.float64)
    Y[:, 3] = 0  # a gene constant in the truth: no gene correlation
    Y[7, 5] = 250_000  # a large count (float32 keeps its log1p exact enough for the ranks)
    P = np.abs(Y + rng.normal(0, 1.0, Y.shape))
    P[:, 8] = 2.5  # constant prediction
    expected = log_scores(Y, P)
    expected["gene_pearson"] = float(np.nanmedian(gene_pearson(Y, P)))
    for block in (7, 60, 10**6):  # rows split across blocks, or one block
        got = matrix_log_scores(sp.csr_matrix(Y), P.copy(), block=block)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-10), key
    Q = P.copy()
    assert matrix_log_scores(sp.csr_matrix(Y), Q, overwrite_p=True)["rmse"] == pytest.approx(expected["rmse"])
    np.testing.assert_allclose(Q, np.log1p(P))  # the predictions' buffer now holds their log1p


def test_exactly_n_zeros_are_all_returned_in_row_major_order_without_the_rng():
    X = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0], [4, 5, 0]], dtype=np.float32))
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    rows, cols = sample_zero_entries(X, 4, rng)
    np.testing.assert_array_equal(rows, [0, 1, 1, 2])
    np.testing.assert_array_equal(cols, [1, 0, 2, 2])
    assert rng.bit_generator.state == state


def test_zero_draws_are_distinct_across_rounds():
    rng = np.random.default_rng(0)
    dense = np.ones((100, 100), dtype=np.float32)
    dense[rng.random((100, 100)) < 0.1] = 0
    n_zero = int((dense == 0).sum())
    rows, cols = sample_zero_entries(sp.csr_matrix(dense), n_zero - 10, np.random.default_rng(1))  # many rounds
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == n_zero - 10
    assert np.all(dense[rows, cols] == 0)


def test_an_explicit_zero_in_canonical_float32_csr_is_no_candidate():
    X = sp.csr_matrix(
        (np.array([1, 0, 2, 3], dtype=np.float32), np.array([0, 1, 2, 0]), np.array([0, 3, 4])), shape=(2, 3)
    )
    assert X.has_canonical_format  # read without a copy: the stored zero must still be dropped
    m = p1_mask(X, frac=0.99, seed=0, n_zero_check=0)
    assert m.values.size == 3
    assert np.all(m.values > 0)


def test_domain_embedding_is_the_pca_of_log1p_counts_per_10k():
    from sklearn.decomposition import PCA

    from spotfill.benchmark._metrics import domain_embedding

    X = np.random.default_rng(0).poisson(3.0, size=(40, 15)).astype(np.float64)
    ref = PCA(n_components=5, svd_solver="randomized", random_state=0).fit_transform(
        np.log1p(X / X.sum(1, keepdims=True) * 1e4)
    )
    np.testing.assert_allclose(domain_embedding(X, n_comps=5), ref, rtol=1e-8, atol=1e-8)


def test_p1_refuses_a_bad_frac_and_an_empty_holdout():
    for frac in (0.0, 1.0):
        with pytest.raises(InputError, match=r"frac must be in \(0, 1\)"):
            p1_mask(X33, frac=frac)
    with pytest.raises(InputError, match="holds out 0 of the 5 non-zero entries"):
        p1_mask(X33, frac=0.05)  # round(0.25) = 0


def test_p1_is_the_protocols_literal_draw():
    """BENCHMARK.md: ``held = rng.choice(nnz, round(frac * nnz))``, then zeros drawn from the same rng."""
    X = np.random.default_rng(0).poisson(1.5, size=(30, 20)).astype(np.float32)  # about 22 % zeros
    m = p1_mask(sp.csr_matrix(X), frac=0.2, seed=7, n_zero_check=50)
    rows, cols = np.nonzero(X)  # row-major: the CSR order
    rng = np.random.default_rng(7)
    held = rng.choice(rows.size, size=round(0.2 * rows.size), replace=False)
    np.testing.assert_array_equal(m.held, held)  # in draw order, not sorted
    np.testing.assert_array_equal(m.rows, rows[held])
    np.testing.assert_array_equal(m.cols, cols[held])
    assert m.X_masked.dtype == np.float32
    # first round of the zero draws: 1024 flat indices, non-zeros and repeats dropped, draw order kept
    draw = rng.integers(0, X.size, size=1024, dtype=np.int64)
    draw = draw[X.ravel()[draw] == 0]
    _, first = np.unique(draw, return_index=True)
    expected = draw[np.sort(first)][:50]
    np.testing.assert_array_equal(m.zero_rows * 20 + m.zero_cols, expected)


def test_p2_split_with_another_p_train_is_canonical():
    X = np.random.default_rng(0).poisson(1.0, size=(40, 25)).astype(np.int64)
    X_train, X_test = p2_split(sp.csr_matrix(X), seed=3, p_train=0.5)
    literal = np.random.default_rng(3).binomial(X, 0.5)
    np.testing.assert_array_equal(X_train.toarray(), literal)
    np.testing.assert_array_equal(X_test.toarray(), X - literal)
    # no stored zeros: a value that went wholly to one side is absent from the other
    assert X_train.nnz == np.count_nonzero(literal)
    assert X_test.nnz == np.count_nonzero(X - literal)


def test_p3_folds_of_one_spot_and_too_few_spots():
    folds = p3_folds(5, seed=0)
    assert sorted(int(f[0]) for f in folds) == [0, 1, 2, 3, 4]
    assert all(f.size == 1 for f in folds)
    with pytest.raises(InputError, match="at least 5 spots"):
        p3_folds(4, seed=0)


def test_zero_rows_stores_no_zeros():
    Z = zero_rows(sp.csr_matrix(X33), np.array([0, 2]))
    np.testing.assert_array_equal(Z.toarray(), [[0, 0, 0], [0, 3, 0], [0, 0, 0]])
    assert Z.nnz == 1


def test_assert_hidden_counts_every_leak_and_accepts_nothing_held():
    X = sp.csr_matrix(X33)
    with pytest.raises(RuntimeError, match="1 held-out entries are visible"):
        assert_hidden(X, np.array([0, 0]), np.array([0, 1]))  # (0, 0) = 1 leaks, (0, 1) = 0 is hidden
    assert_hidden(X, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def test_log_scores_of_nothing_and_of_mismatched_lengths():
    s = log_scores(np.zeros(0), np.zeros(0))
    assert s.keys() == {"rmse", "mae", "pearson", "spearman"}
    assert all(np.isnan(v) for v in s.values())
    with pytest.raises(InputError, match="differ in length"):
        log_scores(np.array([1.0, 2.0, 3.0]), np.array([1.0]))  # would broadcast


def test_matrix_log_scores_edge_cases():
    from spotfill.benchmark._metrics import matrix_log_scores

    Y = sp.csr_matrix(np.arange(6.0).reshape(3, 2))
    with pytest.raises(InputError, match="differ in shape"):
        matrix_log_scores(Y, np.ones((4, 2)))  # an extra row would be ignored silently
    empty = matrix_log_scores(sp.csr_matrix((0, 2)), np.zeros((0, 2)))
    assert all(np.isnan(v) for v in empty.values())
    # negative predictions are clipped at 0, as in log_scores
    P = np.array([[-4.0, 1.0], [2.0, -0.5], [4.0, 5.0]])
    got = matrix_log_scores(Y, P.copy())
    for key, value in log_scores(Y.toarray(), P).items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    # a constant gene is no correlation, even where its sums leave rounding noise of either sign:
    # log1p(0.7) predicted for 7 spots (variance sum +4e-16) or 10 (-4e-16), a true count of 4 in 5 spots (-2e-15)
    for n, truth, pred in ((7, None, 0.7), (10, None, 0.7), (5, 4.0, None)):
        ramp = np.arange(n, dtype=float)
        Yn = np.column_stack([ramp if truth is None else np.full(n, truth), ramp])
        Pn = np.column_stack([ramp if pred is None else np.full(n, pred), ramp])
        assert matrix_log_scores(sp.csr_matrix(Yn), Pn)["gene_pearson"] == 1.0


def test_take_entries_of_no_positions():
    from spotfill.benchmark._metrics import take_entries

    none = np.zeros(0, dtype=np.int64)
    for P in (X33, sp.csr_matrix(X33)):
        got = take_entries(P, none, none)
        assert got.dtype == np.float64
        assert got.shape == (0,)
    np.testing.assert_array_equal(take_entries(sp.csr_matrix(X33), np.array([2, 0]), np.array([1, 2])), [5.0, 2.0])


def test_libsize_mean_rates_of_no_counts():
    R = libsize_mean_rates(sp.csr_matrix((3, 2), dtype=np.float32))
    assert R.dtype == np.float32
    np.testing.assert_array_equal(R, np.zeros((3, 2)))


def test_domain_embedding_caps_comps_clips_and_keeps_empty_spots_at_zero_counts():
    from sklearn.decomposition import PCA

    from spotfill.benchmark._metrics import domain_embedding

    X = np.random.default_rng(0).poisson(3.0, size=(12, 6)).astype(np.float64)
    X[4] = 0.0  # a spot with no counts
    assert domain_embedding(X, n_comps=30).shape == (12, 5)  # min(12, 6) - 1
    A = np.log1p(np.divide(X * 1e4, X.sum(1, keepdims=True), out=np.zeros_like(X), where=X.sum(1, keepdims=True) > 0))
    ref = PCA(n_components=3, svd_solver="randomized", random_state=0).fit_transform(A)
    np.testing.assert_allclose(domain_embedding(X, n_comps=3), ref, rtol=1e-8, atol=1e-8)
    negative = X.copy()
    negative[negative == 0] = -2.0  # imputed values below 0 count as 0
    np.testing.assert_allclose(domain_embedding(negative, n_comps=3), ref, rtol=1e-8, atol=1e-8)


def test_domain_ari_needs_two_labels_and_returns_the_clusters():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.poisson([20, 1, 20, 1], size=(10, 4)), rng.poisson([1, 20, 1, 20], size=(8, 4))])
    labels = np.array(["A"] * 10 + ["B"] * 8, dtype=object)
    with pytest.raises(InputError, match="at least two label categories"):
        domain_ari(X, np.array(["A"] * 17 + [None], dtype=object))
    ari, clusters = domain_ari(X, labels, return_clusters=True)
    assert ari == pytest.approx(1.0)
    assert clusters.shape == (18,)
    assert len(set(clusters[:10])) == 1
    assert len(set(clusters[10:])) == 1
    assert clusters[0] != clusters[10]
