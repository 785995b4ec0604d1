"""The README's Python examples run as written (on small synthetic data) and do what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import spotfill

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


@pytest.fixture
def sample():
    adata = spotfill.datasets.synthetic(150, 40, seed=3)
    names = list(adata.var_names)
    names[:3] = ["Pcp4", "Mbp", "Gfap"]  # the genes the README names
    adata.var_names = names
    return adata


def test_readme_python_examples(sample, tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(spotfill, "read", lambda path, **kw: sample)
    X0 = sample.X.copy()
    ns: dict = {}
    exec(blocks[0], ns)  # noqa: S102 - our own documentation
    adata = ns["adata"]
    assert {"imputed_spotfill", "imputed_spatial_knn"} <= set(adata.layers)
    assert adata.uns["imputed_spatial_knn"]["params"]["n_neighs"] == 6
    assert "spatial_connectivities" in adata.obsp
    totals = np.asarray(adata.layers["imputed_spotfill"].sum(axis=1)).ravel()
    np.testing.assert_allclose(totals, totals[0], rtol=1e-4)  # scanpy normalised the layer (to the median total)
    assert (adata.X != X0).nnz == 0  # X untouched
    assert (tmp_path / "imputed.h5ad").is_file()

    exec(blocks[1], ns)  # noqa: S102
    info = adata.uns["imputed_spotfill"]  # the last line's result replaced the earlier ones
    assert info["params"]["gene_prior"] == 5
    assert info["params"]["shrink"] == "all"
    assert "imputed_spotfill" not in adata.obsm  # the genes= table of the first line was replaced too
    assert adata.layers["imputed_spotfill"].shape == adata.shape

    exec(blocks[2], ns)  # noqa: S102 - fit once, predict named genes later
    np.testing.assert_array_equal(ns["pcp4_mbp"], ns["model"].transform()[:, :2])  # Pcp4, Mbp: the first two genes
    assert ns["pcp4_mbp"].shape == (adata.n_obs, 2)

    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(X0)
    held_out = sp.random(*counts.shape, density=0.05, random_state=rng, format="csr").astype(bool)
    ns.update(counts=counts, xy=np.asarray(sample.obsm["spatial"]), held_out=held_out)
    exec(blocks[3], ns)  # noqa: S102
    denoised = ns["denoised"]
    assert denoised.shape == counts.shape
    expected = spotfill.methods.make_method("spatial_knn", n_neighs=6).fit(counts, coords=ns["xy"], mask=held_out)
    dense = denoised.toarray() if sp.issparse(denoised) else denoised
    ref = expected.transform()
    np.testing.assert_array_equal(dense, ref.toarray() if sp.issparse(ref) else ref)
