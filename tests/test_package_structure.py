"""Conventions every public function follows (after scanpy's test_sig_conventions)."""

from __future__ import annotations

import inspect

import pytest

import spotfill

ADATA_FUNCTIONS = ["spatial_neighbors", "impute"]


@pytest.mark.parametrize("name", ADATA_FUNCTIONS)
def test_adata_first_then_keyword_only(name):
    sig = inspect.signature(getattr(spotfill, name))
    params = list(sig.parameters.values())
    assert params[0].name == "adata"
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    # at most one option (e.g. impute's `method`) may follow adata positionally
    assert len(positional) <= 2, positional
    assert "copy" in sig.parameters
    assert sig.parameters["copy"].default is False
    assert sig.parameters["copy"].kind is inspect.Parameter.KEYWORD_ONLY


def test_public_api_is_documented():
    for name in spotfill.__all__:
        obj = getattr(spotfill, name)
        if callable(obj) or inspect.ismodule(obj):
            assert obj.__doc__, f"spotfill.{name} has no docstring"


def test_version_is_exposed():
    assert spotfill.__version__.count(".") == 2


def test_methods_do_not_import_benchmark_or_cli():
    """Data flows one way: io -> graph -> methods; benchmark, plotting and cli sit on top."""
    import pathlib

    root = pathlib.Path(spotfill.__file__).parent
    for sub in ("io", "graph", "methods", "nn", "train", "datasets"):
        for path in (root / sub).rglob("*.py"):
            text = path.read_text()
            for banned in ("from ..benchmark", "from ..plotting", "from ..cli", "spotfill.cli"):
                assert banned not in text, f"{path.relative_to(root)} imports {banned}"


def test_package_marks_itself_as_typed():
    # PEP 561: type checkers read the package's annotations only when it ships py.typed
    import importlib.resources

    assert importlib.resources.files("spotfill").joinpath("py.typed").is_file()
