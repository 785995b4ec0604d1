from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist

import spotfill
from spotfill import InputError
from spotfill.datasets import _synthetic, synthetic


@pytest.fixture(scope="module")
def visium() -> ad.AnnData:
    return synthetic(600, 120, seed=3)


@pytest.mark.parametrize("platform", ["visium", "st", "random"])
def test_shapes_types_and_keys(platform):
    adata = synthetic(300, 40, platform=platform, n_domains=4, rank=3, seed=1)
    assert adata.shape == (300, 40)
    assert sp.isspmatrix_csr(adata.X)
    assert adata.X.dtype == np.float32
    assert np.array_equal(adata.X.data, np.round(adata.X.data))
    assert adata.X.data.min() >= 1
    assert adata.layers["truth"].shape == (300, 40)
    assert adata.layers["truth"].dtype == np.float32
    assert adata.obsm["spatial"].shape == (300, 2)
    assert adata.obsm["truth_factors"].shape == (300, 3)
    assert adata.varm["truth_loadings"].shape == (40, 3)
    assert (adata.varm["truth_loadings"] >= 0).all()
    assert adata.obs["domain"].dtype == "category"
    assert list(adata.obs["domain"].cat.categories) == ["domain_0", "domain_1", "domain_2", "domain_3"]
    assert adata.obs["label"].equals(adata.obs["domain"])
    assert adata.obs["domain"].value_counts().min() >= 1
    assert adata.uns["synthetic"]["platform"] == platform
    assert adata.uns["synthetic"]["rank"] == 3
    assert ("array_row" in adata.obs) == (platform != "random")


def test_same_seed_same_data_whatever_the_chunk_size():
    a = synthetic(700, 60, seed=5, chunk_size=256)
    b = synthetic(700, 60, seed=5, chunk_size=10_000)
    c = synthetic(700, 60, seed=5, chunk_size=300)
    for other in (b, c):
        assert (a.X != other.X).nnz == 0
        np.testing.assert_array_equal(a.layers["truth"], other.layers["truth"])
        np.testing.assert_array_equal(a.obsm["spatial"], other.obsm["spatial"])
        assert a.obs.equals(other.obs)


def test_different_seed_differs():
    a = synthetic(300, 50, seed=0)
    b = synthetic(300, 50, seed=1)
    assert (a.X != b.X).nnz > 0.5 * a.X.nnz
    assert not np.allclose(a.layers["truth"], b.layers["truth"])


@pytest.mark.parametrize("seed", [0, 1])
def test_default_sparsity_is_visium_like(seed):
    adata = synthetic(seed=seed)
    assert adata.shape == (1000, 500)
    zeros = 1.0 - adata.X.nnz / (1000 * 500)
    assert 0.85 <= zeros <= 0.90
    # default depth: 0.25 UMIs per gene per spot
    assert adata.obs["library_size"].mean() == pytest.approx(125, rel=0.1)


def test_truth_is_the_rate_from_factors(visium):
    rate = visium.obs["library_size"].to_numpy()[:, None] * (
        visium.obsm["truth_factors"].astype(np.float64) @ visium.varm["truth_loadings"].T.astype(np.float64)
    )
    np.testing.assert_allclose(visium.layers["truth"], rate, rtol=1e-5)
    # a spot's expected total is its library size
    np.testing.assert_allclose(rate.sum(axis=1), visium.obs["library_size"], rtol=1e-5)


def test_truth_option():
    assert "truth" not in synthetic(50, 10, truth=False).layers
    assert "truth" in synthetic(50, 10).layers
    assert "truth_factors" in synthetic(50, 10, truth=False).obsm


def test_truth_default_threshold(monkeypatch):
    monkeypatch.setattr(_synthetic, "TRUTH_MAX_ENTRIES", 499)
    assert "truth" not in synthetic(50, 10).layers
    assert "truth" in synthetic(50, 10, truth=True).layers
    monkeypatch.setattr(_synthetic, "TRUTH_MAX_ENTRIES", 500)
    assert "truth" in synthetic(50, 10).layers


def test_counts_average_to_the_truth():
    adata = synthetic(3000, 60, depth=60.0, seed=2)
    X = adata.X.toarray().astype(np.float64)
    mu = adata.layers["truth"].astype(np.float64)
    col_x, col_mu = X.mean(axis=0), mu.mean(axis=0)
    expressed = col_mu > 0.2
    assert expressed.sum() > 20
    rel = np.abs(col_x - col_mu)[expressed] / col_mu[expressed]
    assert rel.max() < 0.1
    assert X.sum() == pytest.approx(mu.sum(), rel=0.01)
    # the variance follows the NB model: mu + dispersion * mu^2
    ratio = ((X - mu) ** 2).sum() / (mu + 0.2 * mu**2).sum()
    assert ratio == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("dispersion", [0.0, 0.2, 2.0])
@pytest.mark.parametrize("mean", [0.05, 1.0, 7.5, 9.0, 40.0])
def test_sampler_follows_the_negative_binomial(dispersion, mean):
    """Exact distribution of one entry, on both the inversion (mean <= 8) and the gamma-Poisson path."""
    n = 40_000
    mu = np.full((200, n // 200), mean, dtype=np.float32)
    data, rows, cols = _synthetic._sample_nb(mu, dispersion, np.random.default_rng(0))
    x = np.zeros(n)
    x[rows * mu.shape[1] + cols] = data
    dist = stats.poisson(mean) if dispersion == 0 else stats.nbinom(1 / dispersion, 1 / (1 + dispersion * mean))
    for k in range(4):
        p = dist.pmf(k)
        se = np.sqrt(p * (1 - p) / n)
        assert abs(np.mean(x == k) - p) < 5 * se + 1e-4, k
    assert x.mean() == pytest.approx(mean, rel=6 * np.sqrt(dist.var() / n) / mean)


def test_csr_rows_and_columns_are_canonical(visium):
    X = visium.X
    assert X.has_sorted_indices
    assert X.has_canonical_format
    assert X.indptr[-1] == X.nnz
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    dense = X.toarray()
    np.testing.assert_array_equal(dense[rows, X.indices], X.data)


def test_domains_are_contiguous(visium):
    xy = visium.obsm["spatial"]
    dom = visium.obs["domain"].cat.codes.to_numpy()
    _, nn = cKDTree(xy).query(xy, k=7)  # self + the 6 hexagonal neighbours
    same = (dom[nn[:, 1:]] == dom[:, None]).mean()
    assert same > 0.85
    # every domain is a sizeable region, not scattered spots
    assert visium.obs["domain"].value_counts().min() >= 20


def test_visium_hexagonal_convention(visium):
    row = visium.obs["array_row"].to_numpy()
    col = visium.obs["array_col"].to_numpy()
    assert np.all((row + col) % 2 == 0)
    for r in np.unique(row):
        assert np.all(np.diff(np.sort(col[row == r])) == 2)
    xy = visium.obsm["spatial"]
    dist, nn = cKDTree(xy).query(xy, k=7)
    np.testing.assert_allclose(dist[:, 1], 100.0)
    # an interior spot has its six neighbours at (0, +-2) and (+-1, +-1), all 100 apart
    interior = np.flatnonzero(np.isclose(dist[:, 6], 100.0))
    assert interior.size > 300
    i = interior[0]
    offsets = {(int(row[j] - row[i]), int(col[j] - col[i])) for j in nn[i, 1:]}
    assert offsets == {(0, 2), (0, -2), (1, 1), (1, -1), (-1, 1), (-1, -1)}
    # same-row neighbours: 2 columns apart, 100 apart in x
    same_row = (row[nn[i, 1:]] == row[i]).sum()
    assert same_row == 2


def test_st_square_grid():
    adata = synthetic(50, 10, platform="st")
    row, col = adata.obs["array_row"].to_numpy(), adata.obs["array_col"].to_numpy()
    np.testing.assert_array_equal(adata.obsm["spatial"], np.column_stack([col, row]).astype(float))
    assert col.max() == 7  # 8 spots per row: ceil(sqrt(50))
    for r in np.unique(row):
        assert np.all(np.diff(np.sort(col[row == r])) == 1)
    assert not adata.obs[["array_row", "array_col"]].duplicated().any()


def test_random_platform_has_no_grid():
    adata = synthetic(400, 10, platform="random", seed=4)
    assert "array_row" not in adata.obs
    assert "array_col" not in adata.obs
    xy = adata.obsm["spatial"]
    assert xy.min() >= 0
    assert xy.max() <= 20.0  # side sqrt(400)
    assert len(np.unique(xy, axis=0)) == 400


def test_poisson_and_small_sizes():
    adata = synthetic(1, 3, n_domains=1, dispersion=0.0)
    assert adata.shape == (1, 3)
    adata = synthetic(257, 5, n_domains=2, rank=1)  # one spot past a random-number block
    assert adata.X.shape == (257, 5)
    assert adata.obs["domain"].nunique() == 2


def test_h5ad_round_trip(tmp_path, visium):
    path = tmp_path / "syn.h5ad"
    visium.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert (back.X != visium.X).nnz == 0
    np.testing.assert_array_equal(back.layers["truth"], visium.layers["truth"])
    assert back.uns["synthetic"]["seed"] == 3
    assert back.obs["label"].equals(visium.obs["label"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"platform": "hex"}, "platform must be one of"),
        ({"n_domains": 11}, "n_domains must be"),
        ({"n_spots": 0}, "n_spots must be a positive integer"),
        ({"depth": -1.0}, "depth"),
        ({"dispersion": -0.1}, "dispersion must be a finite number >= 0"),
        ({"lengthscale": 0.0}, "lengthscale must be a positive finite number"),
        ({"n_spots": 10.0}, "n_spots must be a positive integer"),  # whole floats and bools are not sizes
        ({"rank": True}, "rank must be a positive integer"),
        ({"n_domains": 2.0}, "n_domains must be an integer"),
        ({"seed": None}, "seed must be an integer"),  # checked before any simulation
        ({"seed": -1}, "seed must be an integer"),
        ({"depth": float("inf")}, "depth"),
        ({"gene_sd": float("inf")}, "gene_sd must be a finite number"),
    ],
)
def test_bad_options_raise(kwargs, match):
    options = {"n_spots": 10, "n_genes": 5} | kwargs
    with pytest.raises(InputError, match=match):
        synthetic(**options)


def test_growing_csr_buffer_matches_scipy():
    """Blocks of non-zeros are written into buffers that grow when the first estimate is short."""
    dense = np.array([[0, 1, 0], [0, 0, 0], [2, 3, 4], [5, 0, 6], [7, 8, 9]], dtype=np.float32)
    out = _synthetic._GrowingCSR(5, 3)
    for first, n_block in ((0, 2), (2, 2), (4, 1)):  # the first block has 1 non-zero: buffers must grow
        block = dense[first : first + n_block]
        rows, cols = np.nonzero(block)
        out.append(first, n_block, block[rows, cols], rows, cols.astype(np.int32))
    X = out.to_csr()
    np.testing.assert_array_equal(X.toarray(), dense)
    np.testing.assert_array_equal(X.indptr, [0, 1, 1, 4, 6, 9])
    assert X.indices.dtype == np.int32
    assert X.data.dtype == np.float32


def test_domain_centres_are_well_separated():
    """The best separated of eight draws: no two of five centres closer than 0.2 of the tissue's side.

    (Five random centres have a closest pair under 0.2 apart about half the time.)
    """
    for seed in range(8):
        adata = spotfill.datasets.synthetic(400, 10, platform="st", seed=seed, truth=False)
        centres = np.asarray(adata.uns["synthetic"]["domain_centres"])
        assert pdist(centres).min() >= 0.2, seed


def test_no_progress_bar_unless_asked(capsys):
    spotfill.datasets.synthetic(300, 10, seed=0, progress=False)
    assert capsys.readouterr().err == ""


def test_default_depth_is_a_quarter_count_per_gene():
    adata = spotfill.datasets.synthetic(2000, 40, seed=0, truth=False)
    assert adata.uns["synthetic"]["depth"] == 10.0
    assert adata.obs["library_size"].mean() == pytest.approx(10.0, rel=0.05)  # log-normal of mean depth


@pytest.mark.parametrize("option", ["library_sd", "gene_sd", "domain_sd", "field_sd"])
def test_negative_spreads_are_refused(option):
    with pytest.raises(spotfill.InputError, match=f"{option} must be a finite number >= 0"):
        spotfill.datasets.synthetic(50, 10, **{option: -1.0})
