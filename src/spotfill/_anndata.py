"""Writing results into AnnData the scverse way (``layers[key]`` + ``uns[key]``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ._version import __version__

__all__ = ["h5ad_safe", "result_slot", "store_result"]


def h5ad_safe(value: Any) -> Any:
    """Convert ``value`` into something ``write_h5ad`` stores (str, numbers, bools, lists, arrays, dicts).

    ``None`` becomes the string ``"None"``; tuples become lists; unknown objects their ``repr``.
    """
    if value is None:
        return "None"
    if isinstance(value, bool | int | float | str | np.integer | np.floating | np.bool_):
        return value
    if isinstance(value, np.ndarray):
        return value if value.dtype.kind in "biufU" else value.astype(str)
    if isinstance(value, Mapping):
        return {str(k): h5ad_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [h5ad_safe(v) for v in value]
        if all(isinstance(v, bool | int | float | np.number) for v in items):
            return np.asarray(items)
        return [str(v) for v in items]
    return repr(value)


def result_slot(adata: AnnData, key: str) -> str | None:
    """Where the spotfill result described by ``adata.uns[key]`` lives (``"layers"`` or ``"obsm"``).

    ``None`` when ``uns[key]`` is not a spotfill result (one written by :func:`store_result` has
    ``method`` and ``version``).
    """
    info = adata.uns.get(key)
    if not (isinstance(info, Mapping) and "method" in info and "version" in info):
        return None
    return "obsm" if info.get("stored_in") == "obsm" else "layers"


def store_result(
    adata: AnnData,
    values: np.ndarray | sp.spmatrix,
    *,
    key_added: str,
    method: str,
    params: Mapping[str, Any],
    layer: str | None = None,
    connectivity_key: str | None = None,
    extra: Mapping[str, Any] | None = None,
    genes: Sequence[str] | None = None,
) -> None:
    """Write ``values`` to ``adata.layers[key_added]`` and describe it in ``adata.uns[key_added]``.

    With ``genes`` (the names of ``values``' columns, a subset of the genes), ``values`` goes to
    ``adata.obsm[key_added]`` as a DataFrame instead: a layer must hold every gene.
    """
    expected = adata.shape if genes is None else (adata.n_obs, len(genes))
    if values.shape != expected:
        msg = f"result has shape {values.shape}, expected {expected}"
        raise ValueError(msg)
    # an earlier spotfill result under this key is replaced whole: its entry in the other slot goes too
    old_slot, new_slot = result_slot(adata, key_added), ("layers" if genes is None else "obsm")
    if old_slot not in (None, new_slot) and key_added in getattr(adata, old_slot):
        del getattr(adata, old_slot)[key_added]
    if genes is None:
        adata.layers[key_added] = values
    else:
        dense = cast(sp.spmatrix, values).toarray() if sp.issparse(values) else np.asarray(values)
        adata.obsm[key_added] = pd.DataFrame(dense, index=adata.obs_names.copy(), columns=pd.Index(genes, dtype=str))
    info = {
        "method": method,
        "params": h5ad_safe(dict(params)),
        "layer": h5ad_safe(layer),
        "connectivity_key": h5ad_safe(connectivity_key),
        "version": __version__,
    }
    if genes is not None:
        info["stored_in"] = "obsm"
        info["genes"] = [str(g) for g in genes]
    if extra:
        info.update(h5ad_safe(dict(extra)))
    adata.uns[key_added] = info
