"""Shared fixtures: tiny synthetic data, and the real datasets when ../shared is present."""

from __future__ import annotations

from collections.abc import Callable
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


@pytest.fixture
def tiny_counts() -> sp.csr_matrix:
    """A 6 x 4 Poisson(2) count matrix (seed 0)."""
    rng = np.random.default_rng(0)
    return sp.csr_matrix(rng.poisson(2.0, size=(6, 4)).astype(np.float32))
