"""The builder's public surface is pinned: every module lists what it exports, and it exists."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import builder
import tests.builder as pkg

MODULES = sorted(m.name for m in pkgutil.iter_modules(builder.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_module_all_is_complete_and_resolvable(name: str) -> None:
    """Every public top-level function and class is in ``__all__``, and every name resolves."""
    module = importlib.import_module(f"builder.{name}")
    exported = set(module.__all__)
    for attr in exported:
        assert hasattr(module, attr), f"builder.{name}.__all__ names missing {attr}"
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and getattr(value, "__module__", None) == module.__name__
    }
    assert public <= exported, f"builder.{name} does not export {sorted(public - exported)}"


def test_package_reexports_resolve() -> None:
    """``builder.__all__`` names only things that exist, sorted for review."""
    assert all(hasattr(builder, name) for name in builder.__all__)
    assert builder.__all__ == sorted(builder.__all__)


def test_every_test_has_a_docstring() -> None:
    """Each test in tests/builder states in one sentence what must hold."""
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"tests.builder.{info.name}")
        for attr, value in vars(module).items():
            if attr.startswith("test_") and inspect.isfunction(value):
                doc = inspect.getdoc(value)
                assert doc, f"{info.name}.{attr} has no docstring"
                assert doc.count("\n") == 0, f"{info.name}.{attr}: one sentence, one line"
