"""The public surface: every module's ``__all__`` lists exactly the public names it defines.

Like httpx's tests/test_exported_members.py, but read from the source with ``ast`` so the
workerd-only modules (``handler``, ``shell``), which cannot be imported under CPython, are
checked too; the pure ones are also imported to check that each listed name exists.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "edgeshelf"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_"))
# Only importable inside workerd (they import js / pyodide / workers at module level).
FFI_MODULES = {"arms", "ffi", "handler", "shell", "shelves", "split"}


def _tree(module: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in {
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    }


def _defined(body: list[ast.stmt]) -> set[str]:
    """Names bound at module level by definitions and assignments, not by imports."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.If | ast.Try) and not _is_type_checking(node):
            for block in (node.body, node.orelse, *(h.body for h in getattr(node, "handlers", []))):
                names |= _defined(block)
    return names


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            return [ast.literal_eval(e) for e in node.value.elts]
    return None


def test_modules_are_found() -> None:
    """The scan sees the package's modules, so the checks below cannot pass vacuously."""
    assert {"schema", "config", "identity", "inject", "handler", "shell"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_all_lists_exactly_the_public_names(module: str) -> None:
    """``__all__`` names every public name the module defines and nothing else, each once."""
    tree = _tree(module)
    declared = _declared_all(tree)
    assert declared is not None, f"edgeshelf.{module} has no literal __all__"
    assert len(declared) == len(set(declared)), "duplicates in __all__"
    public = {name for name in _defined(tree.body) if not name.startswith("_")}
    assert set(declared) == public


@pytest.mark.parametrize("module", sorted(set(MODULES) - FFI_MODULES))
def test_all_names_exist_at_runtime(module: str) -> None:
    """Every name in a pure module's ``__all__`` is an attribute of the imported module."""
    mod = importlib.import_module(f"edgeshelf.{module}")
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == []


def test_package_init_exports_nothing() -> None:
    """``edgeshelf/__init__.py`` stays empty: the Worker imports modules, not the package."""
    assert _defined(ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8")).body) == set()
