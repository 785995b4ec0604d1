"""Per-spot normalisation shared by the expression baseline, the report's gene choice and the maps."""

from __future__ import annotations

from typing import cast

import numpy as np
import scipy.sparse as sp

__all__ = ["per_10k", "spot_scale"]


def spot_scale(X: np.ndarray | sp.spmatrix, target_sum: float = 1e4) -> np.ndarray:
    """Return ``target_sum / total`` for each spot (row) of ``X``: 0 for a spot without counts."""
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    return np.divide(float(target_sum), lib, out=np.zeros_like(lib), where=lib > 0)


def per_10k(Y: np.ndarray | sp.spmatrix, cols: np.ndarray) -> np.ndarray:
    """Columns ``cols`` of ``Y`` (clipped at 0) per 10,000 of each spot's total, dense float64.

    What the spatial maps show, so that sequencing depth does not dominate them.
    """
    block = Y[:, cols]
    block = cast(sp.spmatrix, block).toarray() if sp.issparse(block) else np.asarray(block, dtype=np.float64)
    return np.clip(block, 0, None) * spot_scale(Y)[:, None]
