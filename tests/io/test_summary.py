"""spotfill.io.summarize: exact values on tiny grids."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import spotfill.graph
from spotfill.io import summarize

SQUARE = [(r, c) for r in range(3) for c in range(3) if (r, c) != (2, 2)]  # 3 x 3 grid, one corner missing
HEX = [(0, 0), (0, 2), (0, 4), (1, 1), (1, 3)]  # Visium layout: same-row neighbours 2 columns apart


def make(grid, *, dense: bool = False) -> ad.AnnData:
    n = len(grid)
    X = np.zeros((n, 4), dtype=np.float32)
    X[:, 0] = np.arange(1, n + 1)  # totals 1..n (+ 10 on spot 0)
    X[0, 3] = 10
    a = ad.AnnData(X if dense else sp.csr_matrix(X))
    a.obs_names = [f"s{i}" for i in range(n)]
    a.obs["array_row"] = np.array([r for r, _ in grid])
    a.obs["array_col"] = np.array([c for _, c in grid])
    a.obsm["spatial"] = np.array([[c * 1.5, r * 2.0] for r, c in grid])
    return a


@pytest.fixture
def no_graph(monkeypatch):
    """Pretend spotfill.graph has neither detect_lattice nor a working spatial_neighbors."""

    def unavailable(*args, **kwargs):
        raise NotImplementedError

    monkeypatch.delattr(spotfill.graph, "detect_lattice", raising=False)
    monkeypatch.setattr(spotfill.graph, "spatial_neighbors", unavailable)


@pytest.mark.parametrize("dense", [False, True], ids=["csr", "dense"])
def test_square_grid_summary(no_graph, dense):
    a = make(SQUARE, dense=dense)
    a.obs["label"] = pd.Categorical(["A", "A", "B", None, "A", "B", "A", None], categories=["A", "B", "C"])
    a.layers["imputed"] = a.X.copy()
    a.uns["spotfill_io"] = {"format": "st", "path": "/data/A1.tsv.gz"}
    out = summarize(a)
    assert out == {
        "format": "st",
        "path": "/data/A1.tsv.gz",
        "spots x genes": "8 x 4",
        "zeros": "71.9%",  # 9 non-zeros of 32
        "counts": "integers",
        "total counts per spot (median)": 5.5,  # totals 11, 2, 3, ..., 8
        "grid": "square (ST-like)",
        "x range": "0 to 3",
        "y range": "0 to 4",
        "neighbours per spot (order 1)": "min 2, median 2, max 4",  # degrees 2 3 2 3 4 2 2 2
        "labels": "2 categories: A (4), B (2), unlabelled (2)",
        "layers": "imputed",
    }
    assert summarize(a, path="given.tsv")["path"] == "given.tsv"


def test_hex_grid_summary(no_graph):
    out = summarize(make(HEX))
    assert out["grid"] == "hexagonal (Visium-like)"
    assert out["neighbours per spot (order 1)"] == "min 2, median 3, max 4"  # degrees 2 4 2 3 3
    assert out["format"] == "AnnData (in memory)"
    assert "path" not in out
    assert out["labels"] == "none"
    assert out["layers"] == "none"


def test_generic_coordinates_and_non_integer_values(no_graph):
    a = make(SQUARE)
    del a.obs["array_row"], a.obs["array_col"]
    a.X = a.X * 0.5
    out = summarize(a)
    assert out["grid"] == "none (generic coordinates)"
    assert out["counts"] == "non-integer values (raw counts expected)"
    assert out["neighbours per spot (order 1)"] == "not available (spotfill.graph could not build a graph)"


def test_no_coordinates(no_graph):
    a = make(SQUARE)
    del a.obsm["spatial"]
    out = summarize(a)
    assert out["x range"] == "no coordinates (obsm['spatial'] missing)"
    assert "neighbours per spot (order 1)" not in out


def test_uses_the_graph_module_when_present(monkeypatch):
    """Degrees come from obsp['spatial_connectivities'] (self-loops not counted); the lattice from detect_lattice."""
    seen = {}

    def fake_neighbors(adata, *, copy=False):
        seen["n_vars"] = adata.n_vars  # a light copy: the counts are not duplicated
        out = adata.copy()
        out.obsp["spatial_connectivities"] = sp.csr_matrix(
            np.array([[1, 1, 0, 0, 0], [1, 0, 1, 1, 0], [0, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], float)
        )
        return out

    monkeypatch.setattr(spotfill.graph, "spatial_neighbors", fake_neighbors)
    monkeypatch.setattr(spotfill.graph, "detect_lattice", lambda row, col: "square", raising=False)
    out = summarize(make(HEX))
    assert out["grid"] == "square (ST-like)"
    assert out["neighbours per spot (order 1)"] == "min 0, median 1, max 3"  # degrees 1 3 1 1 0
    assert seen["n_vars"] == 1


def test_a_counts_layer_is_described_instead_of_x(no_graph):
    a = make(SQUARE)
    a.layers["counts"] = a.X.copy()
    a.X = np.log1p(a.X)
    assert summarize(a)["counts"] == "non-integer values (raw counts expected)"
    out = summarize(a, layer="counts")
    assert out["matrix"] == "layers['counts']"
    assert out["counts"] == "integers"
    assert out["total counts per spot (median)"] == summarize(make(SQUARE))["total counts per spot (median)"]
    with pytest.raises(spotfill.InputError, match="layer 'raw' .*available layers: \\['counts'\\]"):
        summarize(a, layer="raw")


def test_non_integer_array_positions_are_no_grid():
    a = make(SQUARE)
    a.obs["array_row"] = a.obs["array_row"] + 0.5  # not array indices: spatial_neighbors refuses them as a grid
    out = summarize(a)
    assert out["grid"] == "none (generic coordinates)"
    assert out["neighbours per spot (order 1)"] == "not available (spotfill.graph could not build a graph)"
    # impute's default graph refuses these positions: info says so, with the reason and the fix
    assert out["spatial graph"].startswith("refused with the defaults: array_row / array_col must be whole numbers")
    spotfill.graph.spatial_neighbors(a, coord_type="generic")  # a stored graph is what impute uses: nothing to report
    assert "spatial graph" not in summarize(a)


def test_shared_array_positions_are_reported_as_impute_would_refuse_them():
    a = make(SQUARE + SQUARE[:1])  # the first position twice
    out = summarize(a)
    assert out["grid"] == "square (ST-like)"
    assert "share an array position" in out["spatial graph"]
    assert "spatial graph" not in summarize(make(SQUARE))


def test_a_grid_warning_is_given_once():
    from spotfill import SpotfillWarning

    rows, cols = np.meshgrid(np.arange(20), np.arange(20), indexing="ij")
    keep = (rows + cols) % 2 == 0
    grid = [(int(r), int(c)) for r, c in zip(rows[keep], cols[keep], strict=True)] + [(30, 31)]  # one off parity
    with pytest.warns(SpotfillWarning, match="1 spot\\(s\\) off the lattice parity") as record:
        out = summarize(make(grid))
    assert len(record) == 1
    assert out["grid"] == "hexagonal (Visium-like)"


def test_a_layer_with_nan_or_negative_values_is_described_not_crashed_on(no_graph):
    a = make(SQUARE)
    bad = a.X.toarray()
    bad[0, 0] = np.nan
    a.layers["bad"] = sp.csr_matrix(bad)
    out = summarize(a, layer="bad")
    assert out["counts"] == "1 NaN or infinite values (not counts: spotfill refuses them)"
    assert np.isnan(out["total counts per spot (median)"]) or out["total counts per spot (median)"] >= 0
    neg = a.X.toarray()
    neg[:, 1] = -5.0  # every spot: the median total goes down by 5
    a.layers["neg"] = sp.csr_matrix(neg)
    out = summarize(a, layer="neg")
    assert out["counts"] == f"{a.n_obs} negative values (not counts: spotfill refuses them)"
    assert out["total counts per spot (median)"] == summarize(a)["total counts per spot (median)"] - 5


def _labelled(n_labels: int) -> ad.AnnData:
    n = 2 * n_labels
    a = ad.AnnData(sp.csr_matrix(np.ones((n, 2), dtype=np.float32)))
    a.obs_names = [f"s{i}" for i in range(n)]
    a.obs["label"] = pd.Categorical([f"L{i // 2:02d}" for i in range(n)])
    return a


def test_exactly_twelve_labels_are_all_listed_without_a_more_entry():
    text = summarize(_labelled(12))["labels"]
    assert text.startswith("12 categories: L00 (2), ")
    assert text.endswith("L11 (2)")
    assert "more" not in text


def test_thirteen_labels_list_twelve_and_one_more():
    assert summarize(_labelled(13))["labels"].endswith("L11 (2), ... 1 more")


def test_no_spots_a_stored_zero_and_a_foreign_io_record(no_graph):
    empty = make(SQUARE)[:0].copy()
    out = summarize(empty)
    assert out["spots x genes"] == "0 x 4"
    assert "zeros" not in out
    assert out["x range"] == "no coordinates (obsm['spatial'] missing)"
    a = make(SQUARE)
    a.X.data[0] = 0.0  # spot 0's count of gene 0 stored as an explicit zero
    a.uns["spotfill_io"] = "not a record"
    out = summarize(a)
    assert out["format"] == "AnnData (in memory)"
    assert out["zeros"] == "75.0%"  # 8 non-zeros of 32


def test_values_are_rounded_to_two_decimals(no_graph):
    a = make(SQUARE)
    a.obsm["spatial"] = a.obsm["spatial"] + 0.123  # x from 0.123 to 3.123
    assert summarize(a)["x range"] == "0.12 to 3.12"


@pytest.mark.parametrize(
    ("column", "value"), [("array_col", 0.5), ("array_row", np.nan), ("array_col", np.inf)], ids=["half", "nan", "inf"]
)
def test_positions_that_are_not_array_indices_are_no_grid(column, value):
    a = make(SQUARE)
    pos = a.obs[column].to_numpy(dtype=float)
    pos[0] += value
    a.obs[column] = pos
    assert summarize(a)["grid"] == "none (generic coordinates)"


def test_one_spot_has_no_grid(no_graph):
    out = summarize(make(SQUARE[:1]))
    assert out["grid"] == "none (generic coordinates)"
    assert out["neighbours per spot (order 1)"] == "not available (spotfill.graph could not build a graph)"


def test_graph_degrees_skip_self_loops_and_stored_zeros(monkeypatch):
    def fake_neighbors(adata, *, copy=False):
        out = adata.copy()
        W = sp.csr_matrix(np.eye(5) + np.diag(np.ones(4), 1) + np.diag(np.ones(4), -1))  # a path, with self-loops
        W.data[W.indices == (np.repeat(np.arange(5), np.diff(W.indptr)) + 1)] = 0.0  # edge i -> i+1 stored as 0
        out.obsp["spatial_connectivities"] = W
        return out

    monkeypatch.setattr(spotfill.graph, "spatial_neighbors", fake_neighbors)
    # degrees: only the i -> i-1 edges count: 0 1 1 1 1
    assert summarize(make(HEX))["neighbours per spot (order 1)"] == "min 0, median 1, max 1"


def test_stacked_sections_are_named_with_the_column_to_pass():
    grid = [(r, c) for r in range(4) for c in range(4)]  # 16 positions, each taken by both sections
    both = ad.concat({"a": make(grid), "b": make(grid)}, label="sample", index_unique="-")
    out = summarize(both)
    assert out["sections"] == (
        "2 stacked in obs['sample'] (they share array positions): name it with library_key= (--library-key)"
    )
    assert "share an array position" in out["spatial graph"]  # what impute's default graph says without it
    assert "sections" not in summarize(make(grid))
