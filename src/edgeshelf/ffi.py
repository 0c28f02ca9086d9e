"""The FFI boundary: where a JavaScript value becomes a Python value, alike on every Pyodide.

FFI module (imports ``js`` and ``pyodide``; runs only in the Workers runtime). Since Pyodide
0.27 a JavaScript ``null`` crosses into Python as ``pyodide.ffi.jsnull``, not ``None``
(``undefined`` is ``None`` on every version). Production runs Pyodide 0.28 (314 next), the
offline workerd Pyodide 0.26, so the same ``headers.get("sec-gpc") is None`` is true on one and
false on the other. Every value the Worker reads from JavaScript (headers of requests and
responses, KV reads, Cache API matches, ``request.cf`` fields, element attributes) therefore
goes through :func:`py`, directly or through a typed reader built on it, and the pure modules
only ever see Python values. Nothing else in the Worker names ``jsnull``
(``tests/unit/test_ffi_boundary.py`` checks that).
"""

from __future__ import annotations

from asyncio import Future
from typing import Any

from js import Headers, Object
from pyodide.ffi import create_proxy, to_js

try:
    from pyodide.ffi import jsnull as _JSNULL
except ImportError:  # Pyodide 0.26: null already arrives as None
    _JSNULL = None

__all__ = [
    "attribute",
    "cf_text",
    "cf_value",
    "header",
    "header_pairs",
    "js_object",
    "py",
    "response_init",
    "text",
    "wait_until",
]


def py(value: Any) -> Any:
    """``value`` as it came, except that JavaScript ``null`` (and ``undefined``) is ``None``."""
    return None if value is _JSNULL else value


def text(value: Any) -> str | None:
    """A JavaScript string as ``str``; ``null``, ``undefined`` and any non-string as ``None``."""
    value = py(value)
    return value if isinstance(value, str) else None


def header(headers: Any, name: str) -> str | None:
    """One header of a JS ``Headers`` (``get`` answers ``null`` for a missing one)."""
    return text(headers.get(name))


def header_pairs(headers: Any) -> list[tuple[str, str]]:
    """Every header of a JS ``Headers`` as ``(name, value)`` pairs, in iteration order."""
    return [(str(entry[0]), str(entry[1])) for entry in headers]


def cf_value(js_request: Any, *path: str) -> Any:
    """A field of ``request.cf`` by path (``"botManagement", "verifiedBot"``); None when any
    step is missing or ``null`` (``cf`` itself is absent locally and on some requests)."""
    value = py(getattr(js_request, "cf", None))
    for name in path:
        if value is None:
            return None
        value = py(getattr(value, name, None))
    return value


def cf_text(js_request: Any, name: str) -> str | None:
    """A string field of ``request.cf``; None when it is missing or not a string."""
    return text(cf_value(js_request, name))


def attribute(element: Any, name: str) -> str | None:
    """An HTMLRewriter element's attribute (``getAttribute`` answers ``null`` when absent)."""
    return text(element.getAttribute(name))


def js_object(pairs: list[tuple[str, Any]]) -> Any:
    """A plain JS object from Python pairs (``to_js`` alone would make a ``Map``)."""
    return Object.fromEntries(to_js(pairs))


def response_init(headers: list[list[str]], status: int | None = None) -> Any:
    """A JS ``{status, headers}`` for ``new Response(body, init)``, which copies the headers,
    so one init can serve many responses."""
    pairs: list[tuple[str, Any]] = [("headers", Headers.new(to_js(headers)))]
    if status is not None:
        pairs.append(("status", status))
    return js_object(pairs)


def wait_until(ctx: Any, pending: Any) -> None:
    """``ctx.waitUntil(pending)`` for a JS promise, which Pyodide hands to Python as a Future.

    Passed back as it is, the Future would reach JavaScript as a *borrowed* proxy, destroyed
    when ``waitUntil`` returns and before the runtime awaits it ("This borrowed proxy was
    automatically destroyed"), so the work it stands for could be cut off with the request.
    The proxy made here lives until the Future settles, as the SDK's own ``patchWaitUntil``
    does for handlers it wraps.
    """
    if not isinstance(pending, Future):
        ctx.waitUntil(pending)
        return
    proxy = create_proxy(pending)
    ctx.waitUntil(proxy)
    pending.add_done_callback(lambda _done: proxy.destroy())
