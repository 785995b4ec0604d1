"""Turn a method name into something the harness can call.

A method, for the benchmark, is a function ``(X, *, coords, graph, seed) -> counts``: ``X`` the
canonical CSR counts the method may see, ``counts`` a dense or sparse matrix of the same shape on
the count scale of ``X``. Names resolve in this order:

1. the controls ``"raw"`` (returns its input: the "zeros" reference of P1, ``p = X_train`` of P2)
   and ``"libsize_mean"`` (gene mean x library size, the P2 control);
2. ``"package.module:function"``: an external callable ``function(counts_csr, coords) -> counts``
   (called with ``seed=`` too when it has a ``seed`` parameter);
3. a name of spotfill's registry (:func:`spotfill.methods.list_methods`):
   ``make_method(name, seed=seed).fit_transform(X, graph=graph, coords=coords)``; written
   ``name[key=value,...]`` (e.g. ``"spotfill[gene_prior=5]"``) the parameters go to ``make_method``
   too, and the spec is the method's label in the results;
4. a name in ``spotfill.benchmark.peers.PEERS`` (adapters of other tools, same signature as 2.),
   when that module is importable; ``name[key=value,...]`` passes keyword options to the adapter.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from .._errors import InputError, UnknownMethodError
from .._params import parse_method_spec
from ._metrics import libsize_mean_rates

__all__ = ["CONTROLS", "BenchMethod", "check_prediction", "resolve_method", "unavailable_peers"]

#: Built-in control "methods" of the harness.
CONTROLS = ("raw", "libsize_mean")


class BenchMethod(Protocol):
    """What the harness calls: counts in, counts (same shape, count scale) out."""

    def __call__(
        self, X: sp.csr_matrix, *, coords: np.ndarray, graph: sp.csr_matrix | None, seed: int
    ) -> np.ndarray | sp.spmatrix: ...


def _raw(X: sp.csr_matrix, *, coords: np.ndarray, graph: sp.csr_matrix | None, seed: int) -> sp.csr_matrix:  # noqa: ARG001
    return X.copy()


def _libsize_mean(X: sp.csr_matrix, *, coords: np.ndarray, graph: sp.csr_matrix | None, seed: int) -> np.ndarray:  # noqa: ARG001
    return libsize_mean_rates(X)


def _takes_seed(fn: Callable) -> bool:
    try:
        return "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _wrap_callable(fn: Callable[..., object]) -> BenchMethod:
    """Adapt ``fn(counts_csr, coords[, seed=])``; the harness seed is passed when ``fn`` takes ``seed``."""
    takes_seed = _takes_seed(fn)

    def call(X: sp.csr_matrix, *, coords: np.ndarray, graph: sp.csr_matrix | None, seed: int):  # noqa: ARG001
        extra = {"seed": int(seed)} if takes_seed else {}
        return fn(X.copy(), np.array(coords, copy=True), **extra)

    return call


def _import_callable(spec: str) -> Callable:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        msg = f"external method {spec!r} must read 'package.module:function'."
        raise InputError(msg)
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        msg = f"cannot import module {module!r} of method {spec!r}: {err}. Check the name and that it is on sys.path."
        raise InputError(msg) from err
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            msg = f"module {module!r} has no attribute {attr!r} (method {spec!r})."
            raise InputError(msg)
        obj = getattr(obj, part)
    if not callable(obj):
        msg = f"{spec!r} is not callable: it must be a function (counts_csr, coords) -> counts."
        raise InputError(msg)
    return obj


def _peers() -> dict[str, Callable] | None:
    try:
        mod = importlib.import_module("spotfill.benchmark.peers")
    except ModuleNotFoundError as err:
        if err.name in ("spotfill.benchmark.peers",):
            return None
        raise
    return dict(getattr(mod, "PEERS", {}))


def resolve_method(name: str) -> BenchMethod:
    """Return the harness function of method ``name`` (see the module docstring for the order).

    Raises
    ------
    InputError
        Unknown name, or an external ``module:function`` that cannot be imported.
    """
    name, params = parse_method_spec(name)
    if params and (name in CONTROLS or ":" in name):
        msg = f"parameters in brackets are for spotfill's registered methods, not {name!r}."
        raise InputError(msg)
    if "seed" in params:
        msg = f"{name} has no option 'seed' here: the harness sets the method's seed from the run's seeds (--seeds)."
        raise InputError(msg)
    if name == "raw":
        return _raw
    if name == "libsize_mean":
        return _libsize_mean
    if ":" in name:
        return _wrap_callable(_import_callable(name))

    from ..methods import get_method, make_method

    try:
        get_method(name)
    except UnknownMethodError as err:
        peers = _peers()
        if peers is not None and name in peers:
            fn = peers[name]
            if params:
                accepted = inspect.signature(fn).parameters
                unknown = sorted(set(params) - set(accepted))
                if unknown:
                    options = ", ".join(p for p in accepted if p not in ("X", "coords", "seed"))
                    msg = f"peer {name!r} has no option {unknown[0]!r} here (its options: {options})."
                    raise InputError(msg) from None
                fn = functools.partial(fn, **params)
            return _wrap_callable(fn)
        known = sorted(peers) if peers else []
        msg = (
            f"{err} Not a peer tool either (known peers: {', '.join(known) or 'none'}); the controls are "
            f"{', '.join(CONTROLS)}, and an external function is named 'package.module:function'."
        )
        raise InputError(msg) from None

    if params:  # unknown parameters and invalid values fail now, with the estimator's message
        make_method(name, **params)._check_values()

    def call(X: sp.csr_matrix, *, coords: np.ndarray, graph: sp.csr_matrix | None, seed: int):
        return make_method(name, seed=seed, **params).fit_transform(X, graph=graph, coords=coords)

    return call


def unavailable_peers(names: Sequence[str]) -> dict[str, str]:
    """Return ``{name: reason}`` for the methods among ``names`` that are peer tools which cannot run.

    A peer cannot run when its package is importable neither here nor in the interpreter named for it,
    or that interpreter cannot be started (:func:`spotfill.benchmark.peers.unavailable_reason`); the
    reason says what to install or which variable to fix. Names are
    resolved as :func:`resolve_method` does, so a registered method or control is never a peer.
    """
    from ..methods import get_method

    peer_of: dict[str, str] = {}
    for spec in names:
        base, _ = parse_method_spec(spec)
        if base in CONTROLS or ":" in base:
            continue
        try:
            get_method(base)
        except UnknownMethodError:
            peer_of[spec] = base
    if not peer_of:
        return {}
    peers = importlib.import_module("spotfill.benchmark.peers")
    reasons = {base: peers.unavailable_reason(base) for base in set(peer_of.values()) if base in peers.PEERS}
    return {spec: reasons[base] for spec, base in peer_of.items() if reasons.get(base) is not None}


def check_prediction(P, shape: tuple[int, int], name: str) -> np.ndarray | sp.csr_matrix:
    """Validate a method's output: same shape as the data, real and finite; return a dense array or CSR."""
    if sp.issparse(P):
        out = sp.csr_matrix(P)
        values = out.data
    else:
        out = np.asarray(P)
        values = out
    if out.shape != tuple(shape):
        msg = f"method {name!r} returned shape {out.shape}, expected {tuple(shape)} (spots x genes)."
        raise InputError(msg)
    if values.dtype.kind not in "biuf":
        msg = f"method {name!r} returned values of dtype {values.dtype}; expected real numbers (expected counts)."
        raise InputError(msg)
    if values.size and not np.all(np.isfinite(values)):
        msg = f"method {name!r} returned NaN or infinite values."
        raise InputError(msg)
    return out
