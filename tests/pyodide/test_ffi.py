"""The FFI boundary on a real Pyodide: JS null, undefined and promises arrive as the Worker expects.

Runs only inside Pyodide (scripts/local/pyodide/pytest.mjs, on 0.28 and 314): it needs the real
``js`` and ``pyodide.ffi`` modules, and CPython has neither (tests/conftest.py leaves it out).
"""

from __future__ import annotations

from js import JSON, Headers, Promise
from pyodide.code import run_js

from edgeshelf import ffi


def test_js_null_and_undefined_are_none():
    """JSON null (jsnull on Pyodide 0.27+) and undefined both come out as None."""
    assert ffi.py(JSON.parse("null")) is None
    assert ffi.py(run_js("undefined")) is None
    assert ffi.py(JSON.parse("0")) == 0


def test_null_is_not_none_without_the_boundary():
    """The premise: on this interpreter a JS null is not None until the boundary says so."""
    import pyodide  # noqa: PLC0415

    if tuple(int(p) for p in pyodide.__version__.split(".")[:2]) >= (0, 27):
        assert JSON.parse("null") is not None


def test_missing_header_is_none_and_present_header_is_text():
    """Headers.get answers null for a missing header; the boundary answers None or the text."""
    headers = Headers.new()
    headers.set("sec-gpc", "1")
    assert ffi.header(headers, "cookie") is None
    assert ffi.header(headers, "sec-gpc") == "1"


def test_text_refuses_what_is_not_a_string():
    """A KV read or header that is not a JS string never reaches the pure modules as one."""
    assert ffi.text(JSON.parse('"a"')) == "a"
    assert ffi.text(JSON.parse("42")) is None
    assert ffi.text(JSON.parse("{}")) is None
    assert ffi.text(JSON.parse("null")) is None


def test_cf_fields_from_missing_null_odd_and_real_cf():
    """request.cf may be absent, null, or hold a non-string; only a string country comes out."""
    assert ffi.cf_text(run_js("({})"), "country") is None
    assert ffi.cf_text(run_js("({cf: null})"), "country") is None
    assert ffi.cf_text(run_js("({cf: {country: null}})"), "country") is None
    assert ffi.cf_text(run_js("({cf: {country: 42}})"), "country") is None
    assert ffi.cf_text(run_js("({cf: {country: 'JP'}})"), "country") == "JP"


def test_missing_attribute_is_none():
    """getAttribute answers null for a missing attribute; the boundary answers None."""
    element = run_js("({getAttribute: (name) => name === 'data-x' ? 'cards' : null})")
    assert ffi.attribute(element, "data-x") == "cards"
    assert ffi.attribute(element, "data-y") is None


def test_wait_until_hands_javascript_a_proxy_that_outlives_the_call():
    """A JS promise reaches Python as a Future; waitUntil must get something still usable later."""
    ctx = run_js(
        """({
            waitUntil(p) { this.kept = p; },
            usable() {
                try { return typeof this.kept.then; } catch (e) { return String(e.message); }
            },
        })"""
    )
    pending = Promise.resolve(1)
    ffi.wait_until(ctx, pending)
    assert ctx.usable() == "function"


def test_header_pairs_lists_every_header():
    """A JS Headers object comes out as (name, value) pairs, repeated names included."""
    headers = Headers.new()
    headers.append("link", "</a>")
    headers.append("link", "</b>")
    headers.set("x-frame-options", "DENY")
    pairs = ffi.header_pairs(headers)
    assert ("x-frame-options", "DENY") in pairs
    assert sorted(v for n, v in pairs if n == "link") in (["</a>", "</b>"], ["</a>, </b>"])


def test_cf_value_walks_a_path_through_missing_and_null_steps():
    """A nested request.cf field is read where present and None where any step is missing."""
    verified = run_js("({cf: {botManagement: {verifiedBot: true}}})")
    assert ffi.cf_value(verified, "botManagement", "verifiedBot") is True
    assert ffi.cf_value(run_js("({cf: {botManagement: null}})"), "botManagement", "x") is None
    assert ffi.cf_value(run_js("({})"), "botManagement", "verifiedBot") is None
