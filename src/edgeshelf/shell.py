"""The page shell: Cache API first, origin on a miss, the last-known-good copy in KV last.

FFI module (runs only in workerd). Pure rules — which headers survive, what counts as a usable
shell — live in ``shellrules`` so CPython tests cover them.
"""

from __future__ import annotations

import time
from typing import Any

from js import AbortSignal, Headers, Object, Response, caches, fetch
from pyodide.ffi import JsException, to_js

from . import schema
from .shellrules import (
    CACHE_CONTROL_SHELL,
    NO_POINTER_VERSION,
    ShellPointerMemo,
    cache_key_url,
    usable_shell,
)

__all__ = ["ShellSource", "ShellStore"]

# Distinct (host, shell, version) triples an isolate sees; a bound against odd Host headers.
_CACHE_KEY_MEMO_SIZE = 256


def _js_object(pairs: list[tuple[str, Any]]) -> Any:
    return Object.fromEntries(to_js(pairs))


class ShellSource:
    """A shell ready to serve: a JS body (stream or string) and its content type."""

    __slots__ = ("body", "content_type", "source", "version")

    def __init__(self, body: Any, content_type: str, source: str, version: str) -> None:
        self.body = body
        self.content_type = content_type
        self.source = source
        self.version = version


class ShellStore:
    """Finds a shell for a route; one per isolate, holding prebuilt JS option objects."""

    def __init__(self, kv: Any, origin_url: str, timeout_ms: int, kv_text_opts: Any,
                 pointer_ttl_s: float) -> None:  # fmt: skip
        self._kv = kv
        self._origin_url = origin_url
        self._timeout_ms = timeout_ms
        self._text_opts = kv_text_opts
        self._pointers = ShellPointerMemo(pointer_ttl_s)
        self._origin_headers = _js_object(
            [("accept", "text/html"), ("user-agent", "edgeshelf-worker")]
        )
        # Per isolate: the Cache object and the cache key of each (origin, shell, version),
        # so the hot path makes one FFI call for its lookup and validates/quotes nothing.
        self._cache = caches.default
        self._cache_keys: dict[tuple[str, str, str], str] = {}

    def pointer_promise(self, name: str) -> Any | None:
        """A KV read of the shell pointer, or None while the isolate's copy is fresh."""
        if self._pointers.fresh(name, time.monotonic()):
            return None
        return self._kv.get(schema.shell_pointer_key(name), self._text_opts)

    def resolve_pointer(
        self, name: str, pointer_text: Any, fetched: bool, route_path: str
    ) -> tuple[str, str]:
        """(version, origin path) for a shell, remembering a freshly read pointer."""
        if fetched:
            pointer = schema.decode_shell_pointer(pointer_text)
            self._pointers.store(name, pointer, time.monotonic())
        return self._pointers.get(name, route_path)

    def cache_lookup(self, origin: str, name: str, version: str) -> tuple[str, Any]:
        key = self._cache_keys.get((origin, name, version))
        if key is None:
            if len(self._cache_keys) >= _CACHE_KEY_MEMO_SIZE:
                self._cache_keys.clear()
            key = self._cache_keys[(origin, name, version)] = cache_key_url(origin, name, version)
        return key, self._cache.match(key)

    async def fill(
        self, ctx: Any, cache_key: str, name: str, version: str, path: str,
        errors: list[str],
    ) -> ShellSource | None:  # fmt: skip
        """On a cache miss: origin (with a timeout), then the last-known-good copy in KV."""
        text: str | None = None
        source = "origin"
        if self._origin_url:
            text = await self._from_origin(path, errors)
        if text is None and version != NO_POINTER_VERSION:
            source = "kv-backup"
            try:
                backup = await self._kv.get(schema.shell_backup_key(name, version), self._text_opts)
            except JsException as exc:
                errors.append(f"kv-backup: {exc.name}")
                backup = None
            text = backup if usable_shell(backup) else None
        if text is None:
            return None
        cached = Response.new(
            text,
            _js_object([("headers", _js_object([
                ("content-type", "text/html; charset=utf-8"),
                ("cache-control", CACHE_CONTROL_SHELL),
            ]))]),
        )  # fmt: skip
        ctx.waitUntil(self._cache.put(cache_key, cached))
        return ShellSource(text, "text/html; charset=utf-8", source, version)

    async def _from_origin(self, path: str, errors: list[str]) -> str | None:
        init = _js_object(
            [
                ("headers", Headers.new(self._origin_headers)),
                ("signal", AbortSignal.timeout(self._timeout_ms)),
                ("redirect", "follow"),
            ]
        )
        try:
            resp = await fetch(self._origin_url + path, init)
            if resp.status != 200:
                errors.append(f"origin: status {resp.status}")
                return None
            ctype = resp.headers.get("content-type") or ""
            length = resp.headers.get("content-length")
            if "text/html" not in ctype.lower():
                errors.append("origin: not text/html")
                return None
            if length is not None and length.isdigit() and int(length) > schema.MAX_SHELL_BYTES:
                errors.append("origin: shell too large")
                return None
            text = await resp.text()
        except JsException as exc:
            errors.append(f"origin: {exc.name}")
            return None
        if not usable_shell(text):
            errors.append("origin: shell too large or empty")
            return None
        return str(text)
