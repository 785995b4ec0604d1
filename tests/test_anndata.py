"""store_result and h5ad_safe: what results are stored as, and that they survive an .h5ad round trip."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from spotfill._anndata import h5ad_safe, store_result


def test_object_arrays_become_string_arrays_that_h5ad_can_store(tmp_path):
    mixed = np.array([1, "a", None], dtype=object)
    safe = h5ad_safe(mixed)
    assert safe.dtype.kind == "U"
    assert safe.tolist() == ["1", "a", "None"]
    numbers = np.array([1.5, 2.0])
    assert h5ad_safe(numbers) is numbers  # stored as is

    adata = ad.AnnData(sp.csr_matrix(np.ones((2, 2), dtype=np.float32)))
    store_result(adata, np.zeros((2, 2), dtype=np.float32), key_added="imp", method="m", params={"genes": mixed})
    adata.write_h5ad(tmp_path / "r.h5ad")
    back = ad.read_h5ad(tmp_path / "r.h5ad")
    assert list(back.uns["imp"]["params"]["genes"]) == ["1", "a", "None"]
