"""The demo needs the graph, io and baseline methods; it runs the fast ``spatial_knn`` baseline."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from spotfill.cli import main
from spotfill.datasets import mouse_olfactory_bulb, run_demo


def test_run_demo_writes_data_and_figure(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    h5ad_path, png_path = out / "mob_imputed.h5ad", out / "mob_markers.png"
    h5ad_path.write_text("stale output of an earlier run")  # replaced, not an error
    lines = run_demo(out=out, method="spatial_knn", seed=0)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = ad.read_h5ad(h5ad_path)
    raw = mouse_olfactory_bulb()
    assert back.shape == (262, 16218)
    assert (back.X != raw.X).nnz == 0  # X is never modified
    assert "imputed_spatial_knn" in back.layers
    assert back.uns["imputed_spatial_knn"]["method"] == "spatial_knn"
    imputed = back.layers["imputed_spatial_knn"]
    imputed = imputed.toarray() if hasattr(imputed, "toarray") else np.asarray(imputed)
    assert imputed.shape == raw.shape
    assert np.all(imputed >= 0)
    # exactly what the public API gives on the demo data with the same graph
    from spotfill import spatial_neighbors
    from spotfill.methods import impute

    ref = mouse_olfactory_bulb()
    spatial_neighbors(ref)
    impute(ref, "spatial_knn", seed=0)
    expected = ref.layers["imputed_spatial_knn"]
    expected = expected.toarray() if hasattr(expected, "toarray") else np.asarray(expected)
    np.testing.assert_array_equal(imputed, expected)
    # spatial smoothing fills zeros: fewer zeros than the 60 % of the raw counts
    zeros_imputed = np.mean(imputed == 0)
    assert zeros_imputed < 0.5
    assert lines[1] == "method: spatial_knn (layer 'imputed_spatial_knn', seed 0)"
    assert re.fullmatch(r"time: \d+\.\d s", lines[2])
    text = "\n".join(lines)
    assert "spatial_knn" in text
    assert str(h5ad_path) in text
    assert str(png_path) in text
    assert "60.0% raw" in text
    assert f"{zeros_imputed:.1%} imputed" in text


def test_cli_demo_creates_the_folder(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    assert main(["demo", "--out", str(out), "--method", "spatial_knn"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'mob_imputed.h5ad'}" in printed
    assert (out / "mob_markers.png").exists()


def test_demo_refuses_an_unknown_method_before_making_the_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--method", "bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert not out.exists()


def test_demo_refuses_a_bad_seed_before_making_the_folder(tmp_path):
    from spotfill import InputError

    out = tmp_path / "demo"
    with pytest.raises(InputError, match="seed must be an integer"):
        run_demo(out=out, method="spatial_knn", seed=-1)
    assert not out.exists()


def test_zero_fraction_of_sparse_and_dense_results():
    from spotfill.datasets._demo import _zero_fraction

    Y = sp.csr_matrix(np.array([[1.0, 0.0, 0.0], [2.0, 3.0, 0.0]], dtype=np.float32))
    Y.data[1] = 0.0  # a stored zero is a zero
    assert _zero_fraction(Y) == pytest.approx(4 / 6)
    assert _zero_fraction(Y.toarray()) == pytest.approx(4 / 6)


def test_marker_maps_show_log1p_counts_per_10k(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from spotfill.datasets._demo import _plot_markers

    X = np.array([[1.0, 3.0, 6.0], [4.0, 0.0, 4.0]], dtype=np.float32)  # genes Penk, other, Apod; totals 10 and 8
    adata = ad.AnnData(sp.csr_matrix(X))
    adata.var_names = ["Penk", "Other", "Apod"]
    adata.obs_names = ["a", "b"]
    adata.obsm["spatial"] = np.array([[0.0, 0.0], [1.0, 0.0]])
    adata.layers["imp"] = X * 2  # the same profile at twice the depth: the same maps
    adata.uns["imp"] = {"method": "mean"}
    shown = []
    scatter = Axes.scatter

    def spy(self, *args, **kwargs):
        shown.append(np.asarray(kwargs["c"]))
        return scatter(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "scatter", spy)
    _plot_markers(adata, "imp", tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    penk = np.log1p([1.0 / 10 * 1e4, 4.0 / 8 * 1e4])
    apod = np.log1p([6.0 / 10 * 1e4, 4.0 / 8 * 1e4])
    assert len(shown) == 4  # Penk and Apod (Doc2g and Cdhr1 are absent), raw and imputed
    for values, expected in zip(shown, (penk, penk, apod, apod), strict=True):
        np.testing.assert_allclose(values, expected, rtol=1e-6)
