"""Shared fixtures: tiny synthetic data, and the real datasets when ../shared is present."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

SHARED_H5AD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "h5ad"
SHARED_DATA = SHARED_H5AD.parent


@pytest.fixture
def shared_h5ad() -> Callable[[str], Path]:
    """Return a function mapping a dataset name to its path, skipping the test when ../shared is absent."""

    def get(name: str) -> Path:
        path = SHARED_H5AD / f"{name}.h5ad"
        if not path.exists():
            pytest.skip(f"shared dataset {name} not available ({path})")
        return path

    return get


@pytest.fixture
def shared_data() -> Path:
    """The ../shared/data folder (raw sources), skipping the test when absent."""
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data not available")
    return SHARED_DATA


def _write_h5ad(path: Path, X, *, obs_names=None, var_names=None, spatial: bool = True) -> Path:
    import warnings

    import anndata as ad

    X = np.asarray(X, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about repeated names
        adata = ad.AnnData(sp.csr_matrix(X))
        if obs_names is not None:
            adata.obs_names = obs_names
        if var_names is not None:
            adata.var_names = var_names
        if spatial:
            adata.obsm["spatial"] = np.zeros((X.shape[0], 2))
        adata.write_h5ad(path)
    return path


@pytest.fixture
def write_h5ad() -> Callable[..., Path]:
    """Return a writer of small (possibly invalid) ``.h5ad`` files: ``write_h5ad(path, X, *, obs_names,
    var_names, spatial)``; anndata's warnings about repeated names are silenced."""
    return _write_h5ad


@pytest.fixture
def tiny_counts() -> sp.csr_matrix:
    """A 6 x 4 Poisson(2) count matrix (seed 0)."""
    rng = np.random.default_rng(0)
    return sp.csr_matrix(rng.poisson(2.0, size=(6, 4)).astype(np.float32))


@pytest.fixture
def importable_module(tmp_path, monkeypatch) -> Iterator[Callable[[str, str], str]]:
    """Write ``source`` as a module ``name`` importable for this test only; returns ``name``.

    For external methods (``module:function``) in the benchmark's tests.
    """
    import sys

    written: list[str] = []

    def make(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop(name, None)
        written.append(name)
        return name

    yield make
    for name in written:
        sys.modules.pop(name, None)
