"""Text forms of method parameters, shared by the command line and the benchmark harness.

``"spotfill[gene_prior=5,smooth=0.5]"`` names a registered method with keyword parameters, and
``"mean,spotfill[n_latent=10,smooth=0]"`` is a list of two such names (commas inside brackets do
not split it).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from ._errors import InputError

__all__ = ["parse_method_spec", "parse_params", "parse_value", "split_top_level"]

_SPEC = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<params>.*)\]$", re.DOTALL)


_WORDS = {"true": True, "false": False, "none": None, "null": None}


def parse_value(text: str) -> Any:
    """Read ``text`` as a Python literal (``5``, ``0.5``, ``True``, ``None``), else return it unchanged.

    ``true``/``false``/``none`` (any case, as shells and YAML write them) are the booleans and
    ``None``: left as strings they would read as true.
    """
    word = text.strip().lower()
    if word in _WORDS:
        return _WORDS[word]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(items: list[str] | tuple[str, ...], *, usage: str) -> dict[str, Any]:
    """Read ``key=value`` items into keyword parameters (``-`` in keys becomes ``_``).

    Raises
    ------
    InputError
        An item without ``=`` or without a key (the message is ``"{usage}, got {item!r}."``), or a key
        given twice.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            msg = f"{usage}, got {item!r}."
            raise InputError(msg)
        name = key.strip().replace("-", "_")
        if name in params:
            msg = f"parameter {name!r} is given twice ({item!r} and an earlier {name}=...): give it once."
            raise InputError(msg)
        params[name] = parse_value(value.strip())
    return params


_CLOSE = {"[": "]", "(": ")"}


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` at ``sep`` outside brackets, parentheses and quotes; strip the parts, drop empty ones.

    So ``"mean, ae[hidden=(64, 32), name='a,b']"`` is two parts.
    """
    parts: list[str] = []
    stack: list[str] = []
    quote: str | None = None
    start = 0
    for i, ch in enumerate(text):
        if quote is not None:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in _CLOSE:
            stack.append(_CLOSE[ch])
        elif ch in ")]":
            if not stack or stack.pop() != ch:
                msg = f"unbalanced {ch!r} in {text!r}."
                raise InputError(msg)
        elif ch == sep and not stack:
            parts.append(text[start:i])
            start = i + 1
    if stack or quote is not None:
        what = f"quote {quote}" if quote is not None else repr({"]": "[", ")": "("}[stack[-1]])
        msg = f"unbalanced {what} in {text!r}."
        raise InputError(msg)
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name[key=value,...]"`` into the name and its parameters (``"name"`` gives ``{}``).

    Raises
    ------
    InputError
        Malformed brackets or a parameter without ``=``.
    """
    spec = spec.strip()
    if "[" not in spec and "]" not in spec:
        return spec, {}
    match = _SPEC.match(spec)
    if match is None:
        msg = f"cannot read the method {spec!r}: write name[key=value,key=value], e.g. spotfill[gene_prior=5]."
        raise InputError(msg)
    params = parse_params(split_top_level(match["params"]), usage=f"a method parameter in {spec!r} is not key=value")
    return match["name"].strip(), params
