"""The read path: request -> identity -> profile -> segment -> shell -> injected page.

FFI module (runs only in workerd); every decision it makes is delegated to a pure module.
Per-request FFI work is kept small (docs/benchmarks.md measures each crossing). Awaiting a JS
promise is the dearest step for Python, so the isolate keeps what is shared between visitors:
segment values (``SEGMENT_MEMO_TTL``) and the shell, split around its slot, with its pointer
(``SHELL_POINTER_TTL``). A known visitor's request then awaits one KV read (the profile), a new
visitor's none, and the page is three ready JS Blobs and the shelf's, with no HTML parse.
Option objects and response headers are built once per isolate, independent reads start
together, a segment's shelf HTML is built and converted to JS once per segment value. When the
isolate does not keep the shell (TTL 0, or a split it cannot trust), HTMLRewriter injects per
request, calling one isolate-wide proxy through a plain JS handler object.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

from js import Blob, Headers, HTMLRewriter, Object, Request, Response, console, fetch
from pyodide.ffi import JsException, create_proxy, to_js

from . import ffi, identity, inject, schema
from .config import Config, load_config
from .memo import TtlMemo
from .metrics import RequestRecord
from .profile import Audience, audience_for
from .segments import EMPTY_LEVEL, LEVELS, chain_for, ids_from
from .shell import PreparedShell, ShellSource, ShellStore

__all__ = ["handle"]

_PERSONALIZED_METHODS = ("GET", "HEAD")
_UNAVAILABLE_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Back soon</title>"
    "<h1>We'll be right back</h1><p>This page is briefly unavailable. Please retry in a minute."
)


# Shelves prepared for injection, per segment value; a few hundred segments per isolate at most.
_SHELF_MEMO_SIZE = 512
# Segment values (or their absence) an isolate keeps for SEGMENT_MEMO_TTL seconds.
_SEGMENT_MEMO_SIZE = 1024


class _Prepared:
    """A shelf as ready JS Blobs and as an HTMLRewriter handler prototype, built once per
    segment value.

    The prototype is a plain JS object holding the isolate's element function and the shelf's
    HTML as JS ``[html, {html: true}]`` argument arrays; each request's handler is
    ``Object.create(proto)``: one FFI call, no proxy, and no string crossing the FFI.
    """

    __slots__ = ("cards_blob", "proto", "script_blob", "shelf")

    def __init__(self, shelf: inject.Shelf, iso: _Isolate) -> None:
        self.shelf = shelf
        script = inject.script_html(shelf)
        cards_text = inject.cards_html(shelf.ids) + script if shelf.ids else None
        # For prepared shells (shell.PreparedShell): the same HTML as ready JS Blobs.
        self.script_blob = Blob.new(to_js([script]))
        self.cards_blob = Blob.new(to_js([cards_text])) if cards_text is not None else None
        cards = to_js([cards_text, iso.html_opts]) if cards_text is not None else None
        self.proto = ffi.js_object(
            [
                ("element", iso.element_fn),
                ("done", False),
                ("cards", cards),
                ("script", to_js([script, iso.html_opts])),
            ]
        )


class _Isolate:
    """Everything built once per isolate: configuration, prebuilt JS option objects and
    headers, and the shelves prepared for injection (per segment value)."""

    def __init__(self, env: Any) -> None:
        self.config: Config = load_config(lambda name: getattr(env, name, None))
        self.kv = env.EDGESHELF_KV
        self.metrics = getattr(env, "EDGESHELF_METRICS", None)
        self.text_opts = ffi.js_object([("type", "text"), ("cacheTtl", self.config.kv_cache_ttl)])
        self.html_opts = ffi.js_object([("html", True)])
        # Every request's HTMLRewriter handler calls it; it lives as long as the isolate.
        self.element_fn = create_proxy(_inject_into_slot, capture_this=True)
        self.shelves: dict[tuple[int, str, str], _Prepared] = {}
        self.segments: TtlMemo[str, str | None] = TtlMemo(
            self.config.segment_memo_ttl_s, _SEGMENT_MEMO_SIZE
        )
        self.response_inits: dict[str, Any] = {}
        self.no_shelf = _Prepared(inject.Shelf([], "", EMPTY_LEVEL, self.config.schema), self)
        self.shells = ShellStore(
            self.kv,
            self.config.origin_url,
            self.config.origin_timeout_ms,
            self.text_opts,
            self.config.pointer_ttl_s,
        )
        for problem in self.config.problems:
            console.log(f'{{"event":"edgeshelf.config","problem":{_json_str(problem)}}}')

    def prepare(self, memo_key: tuple[int, str, str], shelf: inject.Shelf) -> _Prepared:
        """The injection for a segment value, built once and kept in isolate memory."""
        if len(self.shelves) >= _SHELF_MEMO_SIZE:
            del self.shelves[next(iter(self.shelves))]
        prepared = self.shelves[memo_key] = _Prepared(shelf, self)
        return prepared

    def response_init(self, content_type: str) -> Any:
        """``{headers}`` with the personalized page's fixed headers; the Response copies them."""
        init = self.response_inits.get(content_type)
        if init is None:
            headers = Headers.new(
                to_js(
                    [
                        ["content-type", content_type],
                        ["cache-control", "private, no-store"],
                        ["vary", "Cookie"],
                    ]
                )
            )
            init = ffi.js_object([("headers", headers)])
            if len(self.response_inits) < 8:  # the shells we cache are all text/html
                self.response_inits[content_type] = init
        return init


def _json_str(text: str) -> str:
    return json.dumps(text)


_ISOLATE: _Isolate | None = None


def _isolate(env: Any) -> _Isolate:
    global _ISOLATE  # noqa: PLW0603  # one per isolate by design: workerd reuses module state
    if _ISOLATE is None:
        _ISOLATE = _Isolate(env)
    return _ISOLATE


# --- HTMLRewriter handler --------------------------------------------------------------------


def _inject_into_slot(handler: Any, el: Any) -> None:
    """Element handler: the first slot gets the shelf (cards too when it asks for them).

    Called with ``this`` (``handler``) set to the request's own handler object, which records
    that the shelf went in; the HTML is passed on as prebuilt JS arrays, never as Python text.
    """
    if handler.done:  # only the first slot gets the shelf
        return
    handler.done = True
    cards = ffi.py(handler.cards)
    if cards is not None and ffi.attribute(el, inject.RENDER_ATTR) == "cards":
        el.setInnerContent.apply(el, cards)
    else:
        el.append.apply(el, handler.script)


# --- the handler -----------------------------------------------------------------------------


async def handle(request: Any, env: Any, ctx: Any) -> Any:
    """Answer one request; never raises (the worst case is a 503 with Retry-After)."""
    started = time.perf_counter()
    js_req = getattr(request, "js_object", request)
    record = RequestRecord()
    try:
        iso = _isolate(env)
        method = str(js_req.method)
        parts = urlsplit(str(js_req.url))
        path = parts.path or "/"
        record.method, record.path = method, path[:256]
        shell_name = iso.config.paths.get(path)
        if method not in _PERSONALIZED_METHODS or shell_name is None:
            return await _passthrough(iso, js_req, parts)
        response = await _personalize(iso, js_req, ctx, parts, shell_name, record, started)
    except Exception as exc:  # containment: the visitor always gets a page
        record.errors.append(f"unhandled: {type(exc).__name__}")
        response = _unavailable()
    record.status = int(response.status)
    record.total_ms = (time.perf_counter() - started) * 1000
    _report(record)
    return response


def _report(record: RequestRecord) -> None:
    # Straight to console.log, where print() ends up too after Pyodide's stdout line buffering:
    # the same one message per request for Workers Logs, at a measured 0.05 ms less per request.
    console.log(record.to_json())
    iso = _ISOLATE
    if iso is not None and iso.metrics is not None:
        # Metrics must never cost a visitor their page.
        with contextlib.suppress(JsException):
            point = to_js(record.data_point(), dict_converter=Object.fromEntries)
            iso.metrics.writeDataPoint(point)


async def _passthrough(iso: _Isolate, js_req: Any, parts: Any) -> Any:
    """Everything that is not a personalized route goes to the origin untouched."""
    if not iso.config.origin_url:
        return _unavailable()
    target = iso.config.origin_url + parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        return await fetch(Request.new(target, js_req))
    except JsException:
        return _unavailable(status=502)


def _unavailable(status: int = 503) -> Any:
    headers = Headers.new(
        to_js(
            [
                ["content-type", "text/html; charset=utf-8"],
                ["cache-control", "no-store"],
                ["retry-after", "30"],
            ]
        )
    )
    init = ffi.js_object([("status", status), ("headers", headers)])
    return Response.new(_UNAVAILABLE_PAGE, init)


async def _personalize(
    iso: _Isolate, js_req: Any, ctx: Any, parts: Any, shell_name: str,
    record: RequestRecord, started: float,
) -> Any:  # fmt: skip
    cfg = iso.config
    headers = js_req.headers

    # 1. Identity. GPC: no persistent ID at all, request signals only.
    set_cookie: str | None = None
    uid: str | None = None
    if identity.wants_no_tracking(ffi.header(headers, "sec-gpc")):
        record.visitor = "gpc"
    else:
        uid = identity.read_uid(ffi.header(headers, "cookie"), cfg.cookie_name)
        if uid is None:
            uid = identity.mint_uid()
            set_cookie = identity.set_cookie_header(cfg.cookie_name, uid)
            record.visitor = "minted"
        else:
            record.visitor = "cookie"

    # 2. Start the independent reads together: the profile and the shell (pointer, then cache).
    profile_promise = (
        iso.kv.get(schema.profile_key(uid), iso.text_opts)
        if uid is not None and record.visitor == "cookie"
        else None
    )
    pointer_promise = iso.shells.pointer_promise(shell_name)
    request_origin = f"{parts.scheme}://{parts.netloc}"
    if pointer_promise is None:
        version, shell_path = iso.shells.resolve_pointer(shell_name, None, False, parts.path)
        kept, cache_key, cache_promise = iso.shells.find(request_origin, shell_name, version)

    # 3. Profile -> audience -> segment chain. A failure here costs the shelf, not the page.
    kv_started = time.perf_counter()
    try:
        audience = await _audience(iso, js_req, headers, profile_promise, record)
    except Exception as exc:  # containment: fall back to request signals
        record.errors.append(f"profile: {type(exc).__name__}")
        audience = audience_for(None, None, None)
    record.profile = audience.source

    if pointer_promise is not None:
        try:
            pointer_text = ffi.text(await pointer_promise)
        except JsException as exc:
            record.errors.append(f"kv-pointer: {exc.name}")
            pointer_text = None
        record.kv_read("hit" if pointer_text is not None else "miss")
        version, shell_path = iso.shells.resolve_pointer(shell_name, pointer_text, True, parts.path)
        kept, cache_key, cache_promise = iso.shells.find(
            request_origin, shell_name, version, renew=True
        )

    try:
        prepared = await _shelf(iso, audience, record)
    except Exception as exc:  # containment: the shell's default content stays
        record.errors.append(f"segment: {type(exc).__name__}")
        record.segment, record.fallback = "", EMPTY_LEVEL
        prepared = iso.no_shelf
    shelf = prepared.shelf
    record.kv_ms = (time.perf_counter() - kv_started) * 1000

    # 4. The shell: the isolate's prepared copy, else the cache, else origin / KV backup (filled
    #    into the cache via waitUntil), prepared for the next requests when the isolate keeps it.
    shell_started = time.perf_counter()
    if kept is not None:
        shell: ShellSource | None = ShellSource(None, kept.content_type, "memory", version)
    else:
        # One request per version splits it; the others stream the cached shell meanwhile.
        claimed = iso.shells.claim_prepare(request_origin, shell_name, version)
        try:
            shell = await _shell(
                iso, ctx, cache_promise, cache_key, shell_name, version, shell_path, record,
                whole=claimed,
            )  # fmt: skip
            if claimed and shell is not None and isinstance(shell.body, str):
                kept = await _prepare(iso, request_origin, shell_name, shell, record)
        finally:
            if claimed:
                iso.shells.release_prepare(request_origin, shell_name, version)
    record.shell_ms = (time.perf_counter() - shell_started) * 1000
    if shell is None:
        return _unavailable()
    record.shell, record.shell_version = shell.source, shell.version

    # 5. Inject and answer. The Response copies the isolate's prebuilt headers.
    method = record.method
    if method == "HEAD":
        body = None
    elif kept is not None:
        body = kept.page(prepared)
    else:
        body = shell.body
    base = Response.new(body, iso.response_init(shell.content_type))
    out = base.headers
    out.set("server-timing", _server_timing(record, shell.source))
    if set_cookie is not None:
        out.append("set-cookie", set_cookie)
    if cfg.debug_headers:
        out.set(
            "x-edgeshelf-debug",
            f"segment={shelf.segment}; fallback={LEVELS[shelf.fallback]}; shell={shell.source}",
        )
    if method == "HEAD" or (kept is not None and not kept.needs_rewriter):
        return base
    handler = Object.create(prepared.proto)
    return HTMLRewriter.new().on(inject.SLOT_SELECTOR, handler).transform(base)


def _server_timing(record: RequestRecord, source: str) -> str:
    return f"kv;dur={record.kv_ms:.2f}, shell;dur={record.shell_ms:.2f};desc={source}"


async def _audience(
    iso: _Isolate, js_req: Any, headers: Any, profile_promise: Any, record: RequestRecord
) -> Audience:
    profile_text = None
    if profile_promise is not None:
        try:
            profile_text = ffi.text(await profile_promise)
        except JsException as exc:
            record.errors.append(f"kv-profile: {exc.name}")
        record.kv_read("hit" if profile_text is not None else "miss")
        record.profile_read = "miss" if profile_text is None else "hit"
    if profile_text is not None:
        audience = audience_for(profile_text, None, None)
        if audience.source == "kv":
            return audience
        record.profile_read = "invalid"
    # Only now read the request's signals: a stored profile does not need them.
    return audience_for(
        None, ffi.cf_text(js_req, "country"), ffi.header(headers, "accept-language")
    )


async def _shelf(iso: _Isolate, audience: Any, record: RequestRecord) -> _Prepared:
    seg_schema = iso.config.schema
    memo = iso.segments
    for step in chain_for(audience, seg_schema):
        remembered = memo.get(step.key, time.monotonic())
        if remembered is not None:
            text = remembered.value
            record.memo_reads += 1
        else:
            try:
                text = ffi.text(await iso.kv.get(step.key, iso.text_opts))
            except JsException as exc:  # not kept: the next request tries KV again
                record.errors.append(f"kv-segment: {exc.name}")
                text = None
            else:
                memo.put(step.key, text, time.monotonic())
        # A segment value seen before was valid then and is valid now: same text, same shelf.
        memo_key = (step.level, step.key, text) if text is not None else None
        prepared = iso.shelves.get(memo_key) if memo_key is not None else None
        if prepared is None:
            ids = ids_from(text, seg_schema)
            if ids is not None and memo_key is not None:
                shelf = inject.Shelf(ids, step.segment, step.level, seg_schema)
                prepared = iso.prepare(memo_key, shelf)
        outcome = "hit" if prepared is not None else ("miss" if text is None else "invalid")
        if remembered is None:
            record.kv_read(outcome)
        record.segment_reads.append(outcome)
        if prepared is not None:
            record.segment, record.fallback = step.segment, step.level
            return prepared
    record.segment, record.fallback = "", EMPTY_LEVEL
    return iso.no_shelf


async def _shell(
    iso: _Isolate, ctx: Any, cache_promise: Any, cache_key: str, name: str, version: str,
    path: str, record: RequestRecord, whole: bool,
) -> ShellSource | None:  # fmt: skip
    try:
        cached = ffi.py(await cache_promise)
    except JsException as exc:
        record.errors.append(f"cache: {exc.name}")
        cached = None
    if cached is not None:
        ctype = ffi.header(cached.headers, "content-type") or "text/html; charset=utf-8"
        # Read whole when this request splits it for the isolate; streamed through otherwise.
        body = await cached.text() if whole else cached.body
        return ShellSource(body, ctype, "cache", version)
    return await iso.shells.fill(ctx, cache_key, name, version, path, record.errors)


async def _prepare(
    iso: _Isolate, origin: str, name: str, shell: ShellSource, record: RequestRecord
) -> PreparedShell | None:
    """Keep a shell split around its slot; on any trouble this request uses the rewriter."""
    try:
        kept = await iso.shells.prepare(origin, name, shell.version, shell.body, shell.content_type)
    except JsException as exc:
        record.errors.append(f"shell-prepare: {exc.name}")
        return None
    if kept.needs_rewriter:  # logged once per version and TTL, not per request
        record.errors.append("shell-prepare: split not trusted, injecting per request")
    return kept
