"""The public surface: what the top level exports, and the namespaces beside it."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import greenheart

INIT = Path(greenheart.__file__)


def test_every_export_is_importable_from_the_top_level_and_is_what_it_names():
    for name, module in greenheart._EXPORTS.items():
        assert getattr(greenheart, name) is getattr(importlib.import_module(module), name)
    assert set(greenheart.__all__) == {"__version__", *greenheart._EXPORTS}


def test_what_type_checkers_are_shown_is_what_is_exported():
    tree = ast.parse(INIT.read_text())
    guarded = next(
        n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.dump(n.test)
    )
    shown = {
        (node.module, alias.name)
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert shown == {(module, name) for name, module in greenheart._EXPORTS.items()}


@pytest.mark.parametrize(
    "namespace", ["greenheart.fleet", "greenheart.curve", "greenheart.recording"]
)
def test_each_namespace_exports_what_it_lists(namespace):
    module = importlib.import_module(namespace)
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_the_top_level_warns_of_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert greenheart.HeartMonitor is not None


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nonsense'"):
        greenheart.Nonsense  # noqa: B018
