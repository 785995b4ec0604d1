"""The method registry: one name per method or preset, used by ``impute``, the CLI and the benchmark."""

from __future__ import annotations

import inspect
import sys
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .._errors import SpotfillWarning, UnknownMethodError
from ._base import BaseImputer

__all__ = ["MethodSpec", "get_method", "list_methods", "make_method", "register"]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: the estimator class plus preset parameters."""

    name: str
    cls: type[BaseImputer]
    family: str
    description: str
    key_params: tuple[str, ...] = ()
    preset: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, MethodSpec] = {}


def register(
    name: str,
    *,
    family: str,
    description: str,
    key_params: tuple[str, ...] = (),
    preset: Mapping[str, Any] | None = None,
) -> Callable[[type[BaseImputer]], type[BaseImputer]]:
    """Class decorator (or plain call with ``register(...)(cls)``) adding a method to the registry."""

    def deco(cls: type[BaseImputer]) -> type[BaseImputer]:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            msg = f"method name {name!r} is already registered"
            raise ValueError(msg)
        _REGISTRY[name] = MethodSpec(name, cls, family, description, tuple(key_params), dict(preset or {}))
        return cls

    return deco


def _ensure_loaded() -> None:
    # importing the package's method modules runs their @register decorators
    from . import _load_all  # noqa: F401


def get_method(name: str) -> MethodSpec:
    """Look up a registered method by name."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        msg = f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))} (see spotfill.list_methods())."
        raise UnknownMethodError(msg) from None


def make_method(name: str, **params: Any) -> BaseImputer:
    """Build the estimator registered as ``name``; ``params`` override the preset's parameters.

    Parameters that the estimator does not take raise a clear error, except ``seed`` and ``device``,
    which are passed only to estimators that accept them (a GPU ``device`` for a method that runs
    only on the CPU is ignored with a :class:`~spotfill.SpotfillWarning`). ``None`` for a parameter whose options
    include ``"none"`` but not ``None`` (``shrink``, ``data_transform``) is that option: the command
    line's ``--param shrink=none`` arrives as ``None``.
    """
    return build_method(name, params)


def build_method(name: str, params: dict[str, Any]) -> BaseImputer:
    """Do :func:`make_method`'s work, for it and for :func:`spotfill.impute`.

    Called straight from either, so that the device warning names the line that called them.
    """
    spec = get_method(name)
    valid = set(spec.cls._param_names())
    kwargs = dict(spec.preset)
    for key in ("seed", "device", "progress"):  # options every method is offered; those without one ignore it
        if key in params and key not in valid:
            value = params.pop(key)
            if key == "device" and _asks_for_gpu(value):
                msg = f"method {spec.name!r} runs on the CPU only; device={value!r} is ignored."
                warnings.warn(msg, SpotfillWarning, stacklevel=3)  # 3: the caller of make_method or impute
    kwargs.update(params)
    for key in _none_options(spec.cls):
        if key in kwargs and kwargs[key] is None:
            kwargs[key] = "none"
    est = spec.cls.__new__(spec.cls)
    BaseImputer.set_params(est, **{k: v for k, v in kwargs.items() if k not in valid})  # raises on unknown
    return spec.cls(**kwargs)


def _asks_for_gpu(device: Any) -> bool:
    """Whether ``device`` asks for a GPU (``"cuda"``, ``"cuda:1"``, a torch device).

    A name that is no device raises an :class:`~spotfill.InputError`, as it does for the methods that take one.
    """
    if device is None:
        return False
    from ..train import device_type

    return device_type(device) == "cuda"


def _none_options(cls: type[BaseImputer]) -> list[str]:
    """Parameters that take the option ``"none"`` but not ``None``.

    The command line and ``name[key=value]`` specs read ``none`` as ``None`` (``radius=none``); for
    these parameters (``shrink``, ``data_transform``) the only meaning it can have is ``"none"``. Each
    annotation is read on its own, so one that cannot be evaluated affects only its parameter.
    """
    namespace = vars(sys.modules[cls.__module__]) if cls.__module__ in sys.modules else {}
    out = []
    for name, param in inspect.signature(cls.__init__).parameters.items():
        hint = param.annotation
        if isinstance(hint, str):
            try:
                hint = eval(hint, dict(namespace))  # noqa: S307 - the class's own annotation text
            except Exception:  # noqa: BLE001 - a name only imported for type checking: not such a parameter
                continue
        if typing.get_origin(hint) is typing.Literal and "none" in typing.get_args(hint):
            out.append(name)
    return out


def list_methods() -> pd.DataFrame:
    """Return a table of the registered methods: name, family, description and key parameters."""
    _ensure_loaded()
    rows = [
        {
            "name": s.name,
            "family": s.family,
            "description": s.description,
            "key_params": ", ".join(s.key_params),
            "keeps_observed": s.cls.keeps_observed,
        }
        for s in _REGISTRY.values()
    ]
    return pd.DataFrame(rows, columns=["name", "family", "description", "key_params", "keeps_observed"])
