"""The page shell: isolate memory, then the Cache API, origin on a miss, the last-known-good
copy in KV last.

FFI module (runs only in workerd). Pure rules — which headers survive, what counts as a usable
shell, where a shell splits around its slot — live in ``shellrules`` and ``inject`` so CPython
tests cover them.

A shell version is immutable (its cache key carries the version), so an isolate keeps the one it
served, split around its slot, for as long as it keeps the shell pointer (``SHELL_POINTER_TTL``).
Requests then build their page from three ready JS Blobs and the shelf's, with no Cache API
read and no HTML parse per request; the rewriter runs twice per version and TTL instead.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

from js import AbortSignal, Array, Blob, Headers, HTMLRewriter, Response, caches, fetch
from pyodide.ffi import JsException, create_proxy

from . import ffi, inject, schema
from .memo import TtlMemo
from .shellrules import (
    CACHE_CONTROL_SHELL,
    NO_POINTER_VERSION,
    ShellPointerMemo,
    cache_key_url,
    usable_shell,
)

__all__ = ["PreparedShell", "ShelfBlobs", "ShellSource", "ShellStore"]

# Distinct (host, shell, version) triples an isolate sees; a bound against odd Host headers.
_CACHE_KEY_MEMO_SIZE = 256
# Prepared shells an isolate keeps (a shell is at most MAX_SHELL_BYTES, 5 MB).
_PREPARED_MEMO_SIZE = 4
# Finished pages a prepared shell keeps, per shelf, within about this many characters.
_PAGE_BUDGET_CHARS = 8 * 1024 * 1024
_HTML_TYPE = "text/html; charset=utf-8"


class ShellSource:
    """A shell ready to serve: a JS body (stream or string) and its content type."""

    __slots__ = ("body", "content_type", "source", "version")

    def __init__(self, body: Any, content_type: str, source: str, version: str) -> None:
        self.body = body
        self.content_type = content_type
        self.source = source
        self.version = version


def _blob(*parts: Any) -> Any:
    """A JS Blob of the given parts (Python text is encoded once, Blobs are referenced)."""
    return Blob.new(Array.of(*parts))


class ShelfBlobs(Protocol):
    """A shelf's HTML as JS Blobs: its cards and payload (None for an empty shelf), its payload."""

    @property
    def cards_blob(self) -> Any: ...
    @property
    def script_blob(self) -> Any: ...


class PreparedShell:
    """A shell version split around its first slot, as JS Blobs ready to concatenate.

    ``page(shelf)`` is byte for byte what the HTML rewriter would make of the
    shell for that shelf (the split is checked against two rewriter passes when it is made). The
    page is one Blob of three references, built once per shelf and kept (within
    ``_PAGE_BUDGET_CHARS``): every visitor of a segment gets the same bytes, and building a new
    Blob of a 1 MB shell per request cost the Python isolate about a third more CPU per request
    (bench/ab.mjs). A shell with no slot is kept whole. A shell whose split cannot be trusted is
    kept whole too, with ``needs_rewriter`` set: requests still skip the cache, and inject with
    HTMLRewriter.
    """

    __slots__ = (
        "_max_pages", "_pages", "after", "before", "before_inner", "cards_slot", "content_type",
        "needs_rewriter", "whole",
    )  # fmt: skip

    def __init__(
        self, parts: tuple[str, str, str] | None, text: str, cards_slot: bool, content_type: str,
        needs_rewriter: bool = False,
    ) -> None:  # fmt: skip
        self.content_type = content_type
        self.cards_slot = cards_slot
        self.needs_rewriter = needs_rewriter
        # Keyed by the shelf object itself: the dict holds it, so its identity is never reused.
        self._pages: dict[ShelfBlobs, Any] = {}
        self._max_pages = max(1, _PAGE_BUDGET_CHARS // max(1, len(text)))
        if parts is None:  # no slot, or a split not to be trusted: the shell as it is
            self.whole = _blob(text)
            self.before = self.before_inner = self.after = None
        else:
            before, inner, after = parts
            self.whole = None
            self.before = _blob(before)
            self.before_inner = _blob(self.before, inner)
            self.after = _blob(after)

    def page(self, shelf: ShelfBlobs) -> Any:
        """The page for ``shelf``: its cards (when it has any and the slot renders them) or its
        payload alone in the slot."""
        if self.whole is not None:
            return self.whole
        pages = self._pages
        page = pages.get(shelf)
        if page is None:
            if len(pages) >= self._max_pages:
                del pages[next(iter(pages))]
            if shelf.cards_blob is not None and self.cards_slot:
                page = _blob(self.before, shelf.cards_blob, self.after)
            else:
                page = _blob(self.before_inner, shelf.script_blob, self.after)
            pages[shelf] = page
        return page


class _SplitPass:
    """One-off HTMLRewriter handler marking the first slot (see ``inject.split_marked``)."""

    def __init__(self, markers: tuple[str, str, str], replace: bool, html_opts: Any) -> None:
        self.markers = markers
        self.replace = replace
        self.html_opts = html_opts
        self.done = False
        self.cards = False

    def element(self, el: Any) -> None:
        if self.done:
            return
        self.done = True
        self.cards = ffi.attribute(el, inject.RENDER_ATTR) == "cards"
        if self.replace:
            el.setInnerContent(self.markers[2], self.html_opts)
        else:
            el.prepend(self.markers[0], self.html_opts)
            el.append(self.markers[1], self.html_opts)


async def _rewrite(text: str, handler: _SplitPass) -> str:
    proxy = create_proxy(handler)
    try:
        out = HTMLRewriter.new().on(inject.SLOT_SELECTOR, proxy).transform(Response.new(text))
        return str(await out.text())
    finally:
        proxy.destroy()


class ShellStore:
    """Finds a shell for a route; one per isolate, holding prebuilt JS option objects."""

    def __init__(self, kv: Any, origin_url: str, timeout_ms: int, kv_text_opts: Any,
                 pointer_ttl_s: float) -> None:  # fmt: skip
        self._kv = kv
        self._origin_url = origin_url
        self._timeout_ms = timeout_ms
        self._text_opts = kv_text_opts
        self._pointers = ShellPointerMemo(pointer_ttl_s)
        self._origin_headers = ffi.js_object(
            [("accept", "text/html"), ("user-agent", "edgeshelf-worker")]
        )
        # Per isolate: the Cache object and the cache key of each (origin, shell, version),
        # so the hot path makes one FFI call for its lookup and validates/quotes nothing.
        self._cache = caches.default
        self._cache_keys: dict[tuple[str, str, str], str] = {}
        self._prepared: TtlMemo[tuple[str, str, str], PreparedShell] = TtlMemo(
            pointer_ttl_s, _PREPARED_MEMO_SIZE
        )
        self._preparing: set[tuple[str, str, str]] = set()
        self._markers = inject.split_markers(uuid.uuid4().hex)
        self._html_opts = ffi.js_object([("html", True)])

    def prepared(
        self, origin: str, name: str, version: str, renew: bool = False
    ) -> PreparedShell | None:
        """The isolate's split copy of a shell version, while it is fresh.

        ``renew``: the pointer was just read again and still names ``version``. A published
        version's content never changes (its cache entry is keyed by version and never
        refreshed), so the copy is kept for another TTL instead of being read and split again;
        ``NO_POINTER_VERSION`` (the origin's current page, no pointer) is always re-read.
        """
        key = (origin, name, version)
        now = time.monotonic()
        if renew and version != NO_POINTER_VERSION:
            entry = self._prepared.renew(key, now)
        else:
            entry = self._prepared.get(key, now)
        return entry.value if entry is not None else None

    def find(
        self, origin: str, name: str, version: str, renew: bool = False
    ) -> tuple[PreparedShell | None, str, Any]:
        """``(kept copy, "", None)``, or ``(None, cache key, started cache lookup)``."""
        kept = self.prepared(origin, name, version, renew)
        if kept is not None:
            return kept, "", None
        key, promise = self.cache_lookup(origin, name, version)
        return None, key, promise

    def claim_prepare(self, origin: str, name: str, version: str) -> bool:
        """Whether this request should read the shell whole and split it: the isolate keeps
        shells and no other request is splitting this version right now (a burst of requests
        at expiry would otherwise each split a large shell). ``release_prepare`` after."""
        key = (origin, name, version)
        if not self._prepared.enabled or key in self._preparing:
            return False
        self._preparing.add(key)
        return True

    def release_prepare(self, origin: str, name: str, version: str) -> None:
        self._preparing.discard((origin, name, version))

    async def prepare(
        self, origin: str, name: str, version: str, text: str, content_type: str
    ) -> PreparedShell:
        """Split a shell around its slot and keep it (see ``PreparedShell``)."""
        first = _SplitPass(self._markers, False, self._html_opts)
        prepended = await _rewrite(text, first)
        parts = None  # no slot: served as it is
        if first.done:
            replaced = await _rewrite(text, _SplitPass(self._markers, True, self._html_opts))
            parts = inject.split_marked(prepended, replaced, self._markers)
        untrusted = first.done and parts is None
        shell = PreparedShell(parts, text, first.cards, content_type, needs_rewriter=untrusted)
        self._prepared.put((origin, name, version), shell, time.monotonic())
        return shell

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
                backup = ffi.text(
                    await self._kv.get(schema.shell_backup_key(name, version), self._text_opts)
                )
            except JsException as exc:
                errors.append(f"kv-backup: {exc.name}")
                backup = None
            text = backup if usable_shell(backup) else None
        if text is None:
            return None
        cached = Response.new(
            text,
            ffi.js_object([("headers", ffi.js_object([
                ("content-type", "text/html; charset=utf-8"),
                ("cache-control", CACHE_CONTROL_SHELL),
            ]))]),
        )  # fmt: skip
        ffi.wait_until(ctx, self._cache.put(cache_key, cached))
        return ShellSource(text, "text/html; charset=utf-8", source, version)

    async def _from_origin(self, path: str, errors: list[str]) -> str | None:
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
            ctype = ffi.header(resp.headers, "content-type") or ""
            length = ffi.header(resp.headers, "content-length")
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
