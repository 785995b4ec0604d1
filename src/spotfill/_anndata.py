"""Writing results into AnnData the scverse way (``layers[key]`` + ``uns[key]``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ._version import __version__

__all__ = ["h5ad_safe", "latent_key", "result_slot", "store_result", "stored_latent"]


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


def latent_key(key_added: str) -> str:
    """Return the ``obsm`` / ``varm`` key of the latent representation stored with the result ``key_added``."""
    return f"{key_added}_latent"


def stored_latent(adata: AnnData, key: str) -> str | None:
    """Return the latent key recorded by the spotfill result ``uns[key]``, if any."""
    if result_slot(adata, key) is None:
        return None
    name = adata.uns[key].get("latent")
    return name if name == latent_key(key) else None  # never trust uns to name another entry to delete


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
    latent: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Write ``values`` to ``adata.layers[key_added]`` and describe it in ``adata.uns[key_added]``.

    With ``genes`` (the names of ``values``' columns, a subset of the genes), ``values`` goes to
    ``adata.obsm[key_added]`` as a DataFrame instead: a layer must hold every gene. ``latent``
    (spot and gene representations, ``(n_obs, k)`` and ``(n_vars, k)``) goes to
    ``adata.obsm[latent_key(key_added)]`` and ``adata.varm[latent_key(key_added)]``, named in
    ``uns[key_added]['latent']``.
    """
    expected = adata.shape if genes is None else (adata.n_obs, len(genes))
    if values.shape != expected:
        msg = f"result has shape {values.shape}, expected {expected}"
        raise ValueError(msg)
    if latent is not None and (
        (latent[0].shape[0], latent[1].shape[0]) != adata.shape or latent[0].shape[1:] != latent[1].shape[1:]
    ):
        msg = f"latent representation has shapes {latent[0].shape}, {latent[1].shape} for data of shape {adata.shape}"
        raise ValueError(msg)
    # an earlier result's latent representation goes with it
    if (old_latent := stored_latent(adata, key_added)) is not None:
        for where in (adata.obsm, adata.varm):
            if old_latent in where:
                del where[old_latent]
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
    if latent is not None:
        name = latent_key(key_added)
        adata.obsm[name], adata.varm[name] = latent
        info["latent"] = name
    if extra:
        info.update(h5ad_safe(dict(extra)))
    adata.uns[key_added] = info
