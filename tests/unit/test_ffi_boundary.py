"""The FFI boundary is one module: no other Worker module reads a JS value that may be ``null``.

Pyodide 0.27+ turns JavaScript ``null`` into ``jsnull``, not ``None``; the offline workerd (0.26)
cannot show the difference, so this checks the shape of the code under CPython, and the runtime
tests on Pyodide 0.28 and 314 (scripts/test) check its behaviour.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
WORKER_FILES = sorted([SRC / "entry.py", *(SRC / "edgeshelf").glob("*.py")])
BOUNDARY = SRC / "edgeshelf" / "ffi.py"
# JS methods only the boundary calls: getAttribute answers null for "nothing here", and
# waitUntil must not be handed a borrowed proxy (ffi.wait_until).
BOUNDARY_METHODS = {"getAttribute", "waitUntil"}


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _is_header_get(call: ast.Call) -> bool:
    """``<something>.headers.get(...)`` or ``headers.get(...)``."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "get"):
        return False
    owner = func.value
    return (isinstance(owner, ast.Name) and owner.id == "headers") or (
        isinstance(owner, ast.Attribute) and owner.attr == "headers"
    )


@pytest.mark.parametrize("path", [p for p in WORKER_FILES if p != BOUNDARY], ids=lambda p: p.name)
def test_only_the_boundary_reads_nullable_js_values(path):
    """Header reads, getAttribute, waitUntil and request.cf are in ffi.py alone, jsnull too."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    assert "jsnull" not in source
    assert "JsNull" not in source
    for call in _calls(tree):
        assert not _is_header_get(call), f"{path.name}:{call.lineno}: use ffi.header()"
        func = call.func
        if isinstance(func, ast.Attribute):
            assert func.attr not in BOUNDARY_METHODS, f"{path.name}:{call.lineno}: use ffi"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "cf":
            raise AssertionError(f"{path.name}:{node.lineno}: read request.cf via ffi.cf_text()")


def test_the_guard_sees_a_reintroduced_header_check():
    """The check above would flag ``headers.get(...) is None``, the line that caused the 503s."""
    tree = ast.parse('if headers.get("sec-gpc") is None: pass\nx = req.headers.get("cookie")')
    assert sum(_is_header_get(c) for c in _calls(tree)) == 2
