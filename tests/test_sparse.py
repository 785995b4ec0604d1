from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from spotfill._sparse import drop_diagonal


def test_drop_diagonal_keeps_the_off_diagonal_entries_in_their_order_and_leaves_the_input():
    # row 0 stores (0, 2) before (0, 0): an unsorted row keeps its order; row 2 has no stored diagonal
    A = sp.csr_matrix((np.array([5.0, 1.0, 2.0, 3.0, 4.0]), np.array([2, 0, 1, 0, 1]), np.array([0, 2, 3, 5])))
    before = (A.data.copy(), A.indices.copy(), A.indptr.copy())
    D = drop_diagonal(A)
    np.testing.assert_array_equal(D.data, [5.0, 3.0, 4.0])
    np.testing.assert_array_equal(D.indices, [2, 0, 1])
    np.testing.assert_array_equal(D.indptr, [0, 1, 1, 3])
    for got, ref in zip((A.data, A.indices, A.indptr), before, strict=True):
        np.testing.assert_array_equal(got, ref)
    rng = np.random.default_rng(0)
    R = sp.random(30, 30, density=0.3, format="csr", random_state=rng) + sp.identity(30, format="csr") * 0.5
    ref = R.toarray()
    np.fill_diagonal(ref, 0)
    np.testing.assert_array_equal(drop_diagonal(R).toarray(), ref)
    assert drop_diagonal(sp.csr_matrix((3, 3))).nnz == 0
