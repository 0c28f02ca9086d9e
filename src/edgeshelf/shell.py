"""The page shell: isolate memory, then the Cache API, then the version's copy in KV, then the
origin (FFI module).

Pure rules (cache keys, lifetimes, which headers travel with a shell, what is usable) live in
``shellrules`` and ``schema``; splitting a shell around its slot in ``split``.

A published version is tied to its content: when the pointer names ``V`` and the copy
``shell:<name>:<V>`` exists, the cache is filled from that copy, so a roll-back or an eviction
never stores today's origin HTML under an older label. The origin is asked only when there is
no copy (no pointer at all, or a pointer published without one), and what it answers is kept
in the cache briefly (``NO_POINTER_SHELL_TTL``), since nothing ties it to a version. The
origin's own response headers (its security policy, links, ...) travel with the shell through
every source (``schema.kept_headers``).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from js import AbortSignal, Error, Headers, Response, TransformStream, caches, fetch
from pyodide.ffi import JsException, create_proxy

from . import ffi, inject, schema
from .memo import TtlMemo
from .shellrules import (
    NO_POINTER_VERSION,
    ShellPointerMemo,
    cache_control_for,
    cache_key_url,
    usable_shell,
)
from .split import SplitShell, page_init, split_shell

if TYPE_CHECKING:
    from .metrics import RequestRecord

__all__ = ["ShellLookup", "ShellSource", "ShellStore"]

# Distinct (host, shell, version) triples an isolate sees; a bound against odd Host headers.
_CACHE_KEY_MEMO_SIZE = 256
# Split shells an isolate keeps (a shell is at most MAX_SHELL_BYTES, 5 MB).
_SPLIT_MEMO_SIZE = 4
_HTML_TYPE = "text/html; charset=utf-8"


class ShellSource:
    """A shell ready to serve: its JS body (None when ``split`` holds it), where it came from,
    and the JS response init with its headers."""

    __slots__ = ("body", "init", "source", "split", "version")

    def __init__(
        self, body: Any, init: Any, source: str, version: str, split: SplitShell | None = None
    ) -> None:
        self.body = body
        self.init = init
        self.source = source
        self.version = version
        self.split = split


class ShellLookup:
    """One request's way to its shell: the isolate's split copy, or a cache match under way."""

    __slots__ = ("cache_key", "cache_promise", "kept", "name", "origin", "path", "version")

    def __init__(
        self, origin: str, name: str, version: str, path: str, kept: SplitShell | None,
        cache_key: str, cache_promise: Any,
    ) -> None:  # fmt: skip
        self.origin = origin
        self.name = name
        self.version = version
        self.path = path
        self.kept = kept
        self.cache_key = cache_key
        self.cache_promise = cache_promise


class _ByteCap:
    """A TransformStream transformer passing chunks through until ``limit`` bytes, then failing
    the stream (which cancels the source: the origin's answer is not read past the limit).

    Called synchronously per chunk by the stream, with one await for the whole body: cheaper
    from Python than awaiting ``reader.read()`` per chunk.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0
        self.over = False

    def transform(self, chunk: Any, controller: Any) -> None:
        self.seen += int(chunk.byteLength)
        if self.seen > self.limit:
            self.over = True
            controller.error(Error.new("shell too large"))
        else:
            controller.enqueue(chunk)


async def _read_bounded(resp: Any, limit: int) -> str | None:
    """The body as text, or None past ``limit`` bytes, whether or not it declares a length."""
    length = ffi.header(resp.headers, "content-length")
    if length is not None and length.isdigit():
        return None if int(length) > limit else str(await resp.text())
    body = ffi.py(resp.body)
    if body is None:
        return ""
    cap = _ByteCap(limit)
    transformer = create_proxy(cap)
    try:
        return str(await Response.new(body.pipeThrough(TransformStream.new(transformer))).text())
    except JsException:
        if cap.over:
            return None
        raise
    finally:
        transformer.destroy()


class ShellStore:
    """Finds a shell for a route; one per isolate, holding prebuilt JS option objects."""

    def __init__(
        self, kv: Any, origin_url: str, timeout_ms: int, kv_text_opts: Any,
        pointer_ttl_s: float, no_pointer_ttl_s: int,
    ) -> None:  # fmt: skip
        self._kv = kv
        self._origin_url = origin_url
        self._timeout_ms = timeout_ms
        self._text_opts = kv_text_opts
        self._no_pointer_ttl_s = no_pointer_ttl_s
        self._pointers = ShellPointerMemo(pointer_ttl_s)
        self._origin_headers = ffi.js_object(
            [("accept", "text/html"), ("user-agent", "edgeshelf-worker")]
        )
        # Per isolate: the Cache object and the cache key of each (origin, shell, version),
        # so the hot path makes one FFI call for its lookup and validates/quotes nothing.
        self._cache = caches.default
        self._cache_keys: dict[tuple[str, str, str], str] = {}
        self._split: TtlMemo[tuple[str, str, str], SplitShell] = TtlMemo(
            pointer_ttl_s, _SPLIT_MEMO_SIZE
        )
        self._splitting: set[tuple[str, str, str]] = set()
        self._markers = inject.split_markers(uuid.uuid4().hex)
        self._html_opts = ffi.js_object([("html", True)])

    # --- the pointer ------------------------------------------------------------------------

    def pointer_promise(self, name: str) -> Any | None:
        """A KV read of the shell pointer, or None while the isolate's copy is fresh."""
        if self._pointers.fresh(name, time.monotonic()):
            return None
        return self._kv.get(schema.shell_pointer_key(name), self._text_opts)

    def current(self, name: str, route_path: str) -> tuple[str, str]:
        """(version, origin path) from the isolate's pointer memo."""
        return self._pointers.get(name, route_path)

    async def read_pointer(
        self, name: str, promise: Any, route_path: str, record: RequestRecord
    ) -> tuple[str, str]:
        """Await a pointer read and remember it; a failed read keeps the last good pointer."""
        now = time.monotonic()
        try:
            text = ffi.text(await promise)
        except JsException as exc:
            kept = self._pointers.failed(name, now)
            record.kv_read("error")
            record.errors.append(
                f"kv-pointer: {exc.name}; "
                + (f"kept version {kept}" if kept is not None else "no earlier pointer")
            )
            return self._pointers.get(name, route_path)
        record.kv_read("hit" if text is not None else "miss")
        self._pointers.store(name, schema.decode_shell_pointer(text), now)
        return self._pointers.get(name, route_path)

    # --- finding the shell ------------------------------------------------------------------

    def lookup(
        self, origin: str, name: str, version: str, path: str, renew: bool = False
    ) -> ShellLookup:
        """The isolate's split copy of the version, else a started Cache API match.

        ``renew``: the pointer was just read again and still names ``version``. A published
        version's content never changes, so its split copy is kept for another TTL instead of
        being read and split again; ``NO_POINTER_VERSION`` (the origin's current page) is
        always re-read.
        """
        key = (origin, name, version)
        now = time.monotonic()
        if renew and version != NO_POINTER_VERSION:
            entry = self._split.renew(key, now)
        else:
            entry = self._split.get(key, now)
        if entry is not None:
            return ShellLookup(origin, name, version, path, entry.value, "", None)
        cache_key = self._cache_keys.get(key)
        if cache_key is None:
            if len(self._cache_keys) >= _CACHE_KEY_MEMO_SIZE:
                self._cache_keys.clear()
            cache_key = self._cache_keys[key] = cache_key_url(origin, name, version)
        return ShellLookup(
            origin, name, version, path, None, cache_key, self._cache.match(cache_key)
        )

    async def serve(
        self, ctx: Any, lookup: ShellLookup, record: RequestRecord
    ) -> ShellSource | None:
        """The shell for this request, or None when no source has one (the caller's 503).

        One request per version reads the shell whole and splits it for the isolate, the others
        stream it from the cache meanwhile (a burst at expiry would otherwise split a large
        shell many times over).
        """
        if lookup.kept is not None:
            return ShellSource(None, lookup.kept.init, "memory", lookup.version, lookup.kept)
        key = (lookup.origin, lookup.name, lookup.version)
        claimed = self._split.enabled and key not in self._splitting
        if claimed:
            self._splitting.add(key)
        try:
            found = await self._from_cache(lookup, whole=claimed, errors=record.errors)
            if found is None:
                found = await self._fill(ctx, lookup, record.errors)
            if found is None:
                return None
            body, content_type, headers, source = found
            if claimed and isinstance(body, str):
                split = await self._split_and_keep(key, body, content_type, headers, record)
                if split is not None:
                    return ShellSource(None, split.init, source, lookup.version, split)
            return ShellSource(body, page_init(content_type, headers), source, lookup.version)
        finally:
            if claimed:
                self._splitting.discard(key)

    async def _split_and_keep(
        self, key: tuple[str, str, str], text: str, content_type: str,
        headers: tuple[tuple[str, str], ...], record: RequestRecord,
    ) -> SplitShell | None:  # fmt: skip
        """Split a shell and keep it; on any trouble this request uses the rewriter."""
        try:
            split = await split_shell(text, content_type, headers, self._markers, self._html_opts)
        except JsException as exc:
            record.errors.append(f"shell-split: {exc.name}")
            return None
        self._split.put(key, split, time.monotonic())
        if split.needs_rewriter:  # logged once per version and TTL, not per request
            record.errors.append("shell-split: split not trusted, injecting per request")
        return split

    async def _from_cache(
        self, lookup: ShellLookup, whole: bool, errors: list[str]
    ) -> tuple[Any, str, tuple[tuple[str, str], ...], str] | None:
        """A cached shell: read whole (to split it) or its body streamed through."""
        try:
            cached = ffi.py(await lookup.cache_promise)
            if cached is None:
                return None
            content_type = ffi.header(cached.headers, "content-type") or _HTML_TYPE
            headers = schema.kept_headers(ffi.header_pairs(cached.headers))
            body = await cached.text() if whole else cached.body
        except JsException as exc:  # a cache that fails is a cache that missed
            errors.append(f"cache: {exc.name}")
            return None
        return body, content_type, headers, "cache"

    async def _fill(
        self, ctx: Any, lookup: ShellLookup, errors: list[str]
    ) -> tuple[str, str, tuple[tuple[str, str], ...], str] | None:
        """On a cache miss: the version's copy in KV, else the origin; then into the cache."""
        copy = None
        if lookup.version != NO_POINTER_VERSION:
            copy = await self._copy(lookup.name, lookup.version, errors)
        if copy is not None:
            text, headers, source = copy.html, copy.headers, "kv-copy"
        else:
            fetched = await self._from_origin(lookup.path, errors) if self._origin_url else None
            if fetched is None:
                return None
            (text, headers), source = fetched, "origin"
        pinned = source == "kv-copy"
        if pinned or self._no_pointer_ttl_s > 0:
            cache_control = cache_control_for(pinned, self._no_pointer_ttl_s)
            init = ffi.response_init(
                [[n, v] for n, v in headers]
                + [["content-type", _HTML_TYPE], ["cache-control", cache_control]]
            )
            ffi.wait_until(ctx, self._cache.put(lookup.cache_key, Response.new(text, init)))
        return text, _HTML_TYPE, headers, source

    async def _copy(self, name: str, version: str, errors: list[str]) -> schema.ShellCopy | None:
        try:
            text = ffi.text(
                await self._kv.get(schema.shell_backup_key(name, version), self._text_opts)
            )
        except JsException as exc:
            errors.append(f"kv-copy: {exc.name}")
            return None
        copy = schema.decode_shell_copy(text)
        if text is not None and copy is None:
            errors.append("kv-copy: not a usable shell")
        return copy

    async def _from_origin(
        self, path: str, errors: list[str]
    ) -> tuple[str, tuple[tuple[str, str], ...]] | None:
        init = ffi.js_object(
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
            if "text/html" not in (ffi.header(resp.headers, "content-type") or "").lower():
                errors.append("origin: not text/html")
                return None
            headers = schema.kept_headers(ffi.header_pairs(resp.headers))
            text = await _read_bounded(resp, schema.MAX_SHELL_BYTES)
        except JsException as exc:
            errors.append(f"origin: {exc.name}")
            return None
        if text is None or not usable_shell(text):
            errors.append("origin: shell too large or empty")
            return None
        return text, headers
