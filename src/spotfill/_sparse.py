"""Sparse-matrix helpers shared by the graph, the methods and the plots."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["drop_diagonal"]


def drop_diagonal(A: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Return a new CSR matrix holding ``A``'s entries off the diagonal (the input is untouched).

    Used instead of ``A.setdiag(0)``, which on older scipy (1.11) stores explicit zeros and warns
    (``SparseEfficiencyWarning``) when a diagonal entry is not stored. Order within rows is kept.
    """
    A = sp.csr_matrix(A)
    rows = np.repeat(np.arange(A.shape[0], dtype=A.indptr.dtype), np.diff(A.indptr))
    keep = A.indices != rows
    indptr = np.zeros(A.shape[0] + 1, dtype=A.indptr.dtype)
    np.cumsum(np.bincount(rows[keep], minlength=A.shape[0]), out=indptr[1:])
    return sp.csr_matrix((A.data[keep], A.indices[keep], indptr), shape=A.shape)
