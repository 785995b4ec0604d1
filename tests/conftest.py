"""Shared fixtures: tiny synthetic data, and the real datasets when ../shared is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

SHARED_H5AD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "h5ad"


def shared_h5ad(name: str) -> Path:
    """Path of a shared dataset, skipping the test when ../shared is absent."""
    path = SHARED_H5AD / f"{name}.h5ad"
    if not path.exists():
        pytest.skip(f"shared dataset {name} not available ({path})")
    return path


@pytest.fixture
def tiny_counts() -> sp.csr_matrix:
    """A 6 x 4 count matrix with known values (row = spot, column = gene)."""
    rng = np.random.default_rng(0)
    return sp.csr_matrix(rng.poisson(2.0, size=(6, 4)).astype(np.float32))
