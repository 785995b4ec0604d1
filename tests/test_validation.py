"""Tests of the shared input checks (``spotfill._validation``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotfill._errors import InputError
from spotfill._validation import as_csr, check_coords, check_counts, check_seed, get_counts, non_integer


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


def test_duplicate_entries_are_summed_and_the_caller_left_alone():
    # unsorted float64 CSR storing (0, 1) twice: a copy is summed and sorted, the caller's arrays are not
    X = sp.csr_matrix((np.array([1.0, 2.0, 3.0, 4.0]), np.array([3, 1, 1, 0]), np.array([0, 3, 4])), shape=(2, 4))
    before = (X.data.copy(), X.indices.copy())
    M = as_csr(X)
    assert M.has_canonical_format
    assert M.nnz == 3
    np.testing.assert_array_equal(M.toarray(), [[0, 5, 0, 1], [4, 0, 0, 0]])
    np.testing.assert_array_equal(X.data, before[0])
    np.testing.assert_array_equal(X.indices, before[1])
    with pytest.raises(InputError, match="expected a 2-D spots x genes matrix"):
        as_csr(np.ones(3))


def test_check_counts_input_forms():
    np.testing.assert_array_equal(check_counts([[0, 2], [3, 0]]).toarray(), [[0, 2], [3, 0]])  # nested lists
    with pytest.raises(InputError, match="layers\\['c'\\] must be a numeric spots x genes matrix"):
        check_counts([["a", "b"]], name="layers['c']")
    with pytest.raises(InputError, match="layers\\['c'\\] is missing"):
        check_counts(None, name="layers['c']")
    with pytest.raises(InputError, match="layers\\['c'\\] must be a 2-D spots x genes matrix, got shape \\(3,\\)"):
        check_counts(np.ones(3), name="layers['c']")
    zero = check_counts(np.zeros((2, 3)))  # no counts at all is valid input
    assert zero.shape == (2, 3)
    assert zero.nnz == 0


def test_non_integer_counts_every_block_and_reports_the_first(monkeypatch):
    import spotfill._validation as validation

    monkeypatch.setattr(validation, "_BLOCK", 3)
    values = np.array([1.0, 2.5, 3.0, 4.0, 5.25, 6.75, 7.0], dtype=np.float32)
    assert non_integer(values) == (3, 2.5)
    count, first = non_integer(np.arange(5, dtype=np.float32))
    assert count == 0
    assert np.isnan(first)


def test_seeds():
    for seed in (0, np.int64(7), 2**32 - 1):
        check_seed(seed)
    for seed in (-1, 2**32, True, 1.0, "1"):
        with pytest.raises(InputError, match="seed must be an integer >= 0 and < 2\\*\\*32"):
            check_seed(seed)


def test_get_counts_refuses_repeated_names():
    import warnings

    import anndata as ad
    import pandas as pd

    obs = pd.DataFrame(index=["a", "b", "a", "c", "b", "d", "c", "e", "e"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about repeated names
        adata = ad.AnnData(np.ones((9, 2), dtype=np.float32), obs=obs)
    with pytest.raises(InputError, match=r"duplicate spot names \(e.g. \['a', 'b', 'c'\]\)"):
        get_counts(adata)
    adata.obs_names_make_unique()
    assert get_counts(adata).shape == (9, 2)


def test_check_coords():
    xyz = check_coords([[0, 1, 2], [3, 4, 5]], 2)  # 3-D positions are accepted
    assert xyz.dtype == np.float64
    np.testing.assert_array_equal(xyz, [[0, 1, 2], [3, 4, 5]])
    with pytest.raises(InputError, match="shape \\(n_spots, 2\\) or \\(n_spots, 3\\)"):
        check_coords(np.zeros((2, 4)))
    with pytest.raises(InputError, match="has 2 rows but the data have 3 spots"):
        check_coords(np.zeros((2, 2)), 3)
    with pytest.raises(InputError, match="NaN or infinite"):
        check_coords([[0.0, np.inf], [1.0, 1.0]], 2)
