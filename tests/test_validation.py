"""Tests of the shared input checks (``spotfill._validation``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotfill._errors import InputError
from spotfill._validation import as_csr, check_counts


def _counts() -> sp.csr_matrix:
    X = sp.csr_matrix(np.array([[0, 2, 0, 1], [3, 0, 0, 0], [0, 0, 5, 4]], dtype=np.float32))
    X.sort_indices()
    return X


def test_canonical_csr_is_shared_read_only_not_copied():
    X = _counts()
    M = as_csr(X)
    for a in ("data", "indices", "indptr"):
        assert np.shares_memory(getattr(M, a), getattr(X, a))  # no copy of a large matrix
        assert not getattr(M, a).flags.writeable  # nothing downstream can write into the caller's matrix
        assert getattr(X, a).flags.writeable  # while the caller's own arrays stay writeable
    with pytest.raises(ValueError, match="read-only"):
        M.data[0] = 7.0
    np.testing.assert_array_equal(M.toarray(), X.toarray())
    assert M.has_canonical_format
    assert M.dtype == np.float32


@pytest.mark.parametrize(
    "make",
    [
        lambda X: sp.csr_matrix(X, dtype=np.float64),  # another dtype
        lambda X: X.tocsc(),  # another layout
        lambda X: sp.csr_matrix((X.data[[1, 0, 2, 4, 3]], X.indices[[1, 0, 2, 4, 3]], X.indptr), shape=X.shape),
        lambda X: sp.csr_matrix(
            (np.r_[X.data[:1], 0, X.data[1:]], np.r_[X.indices[:1], 0, X.indices[1:]], X.indptr + np.r_[0, 1, 1, 1]),
            shape=X.shape,
        ),  # a stored zero
    ],
    ids=["float64", "csc", "unsorted", "stored-zero"],
)
def test_other_sparse_input_is_copied_canonical_and_left_alone(make):
    X = _counts()
    Y = make(X)
    before = (Y.data.copy(), Y.indices.copy())
    M = as_csr(Y)
    assert M.has_canonical_format
    assert M.nnz == X.nnz
    assert M.dtype == np.float32
    np.testing.assert_array_equal(M.toarray(), X.toarray())
    assert not np.shares_memory(M.data, Y.data)
    np.testing.assert_array_equal(Y.data, before[0])  # the caller's matrix is unchanged
    np.testing.assert_array_equal(Y.indices, before[1])
    M.data[0] = 9.0  # a copy is the caller's to change
    assert Y.data.max() <= 5


def test_check_counts_names_the_problem():
    X = _counts()
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        check_counts(bad)
    bad.data[0] = -1
    with pytest.raises(InputError, match="negative"):
        check_counts(bad)
    bad.data[0] = 0.5
    with pytest.raises(InputError, match="non-integer"):
        check_counts(bad)
    assert check_counts(bad, require_integer=False).data[0] == 0.5
    with pytest.raises(InputError, match="empty"):
        check_counts(sp.csr_matrix((0, 3), dtype=np.float32))
