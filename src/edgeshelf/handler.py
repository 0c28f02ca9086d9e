"""The read path: request -> identity -> audience -> segment -> shell -> injected page.

FFI module (runs only in the Workers runtime); every decision it makes is delegated to a pure
module, and every value it reads from JavaScript crosses ``ffi``. The steps have modules of
their own: ``identity`` (who is asking), ``audience_cookie`` and ``profile`` (which audience:
the one the browser carries, else the stored profile or request signals), ``shelves`` (the shelf
along the fallback chain), ``shell`` (the page shell from memory, cache, KV or origin). Per
request FFI work is kept small (docs/benchmarks.md measures each crossing): option objects and
response headers are built once per isolate or shell version, independent reads start
together, and with the shell split in isolate memory the page is three ready JS Blobs and the
shelf's, with no HTML parse. When the isolate does not keep the shell (TTL 0, or a split it
cannot trust), HTMLRewriter injects per request.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

from js import HTMLRewriter, Object, Request, Response, console, fetch
from pyodide.ffi import JsException, to_js

from . import ffi, identity, inject, schema
from .arms import ExperimentStore
from .audience_cookie import read_audience, set_audience_header
from .config import Config, load_config
from .metrics import RequestRecord
from .profile import Audience, audience_for
from .segments import LEVELS, Step, treatment_chain
from .shell import ShellSource, ShellStore
from .shelves import ReadyShelf, ShelfStore

__all__ = ["handle"]

_PERSONALIZED_METHODS = ("GET", "HEAD")
_UNAVAILABLE_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Back soon</title>"
    "<h1>We'll be right back</h1><p>This page is briefly unavailable. Please retry in a minute."
)


class _Isolate:
    """Everything built once per isolate: configuration, prebuilt JS option objects, and the
    shelf and shell stores with what they keep in memory."""

    def __init__(self, env: Any) -> None:
        self.config: Config = load_config(lambda name: getattr(env, name, None))
        cfg = self.config
        self.kv = env.EDGESHELF_KV
        self.metrics = getattr(env, "EDGESHELF_METRICS", None)
        self.text_opts = ffi.js_object([("type", "text"), ("cacheTtl", cfg.kv_cache_ttl)])
        self.shelves = ShelfStore(self.kv, self.text_opts, cfg.segment_memo_ttl_s, cfg.schema)
        self.shells = ShellStore(
            self.kv, cfg.origin_url, cfg.origin_timeout_ms, self.text_opts,
            cfg.pointer_ttl_s, cfg.no_pointer_shell_ttl_s,
        )  # fmt: skip
        self.experiments = ExperimentStore(self.kv, self.text_opts, cfg.pointer_ttl_s)
        # Crawlers always get the global shelf (a search engine sees the same page each time).
        self.global_chain = [
            Step(2, schema.GLOBAL_SEGMENT, schema.segment_key(schema.GLOBAL_SEGMENT, cfg.schema))
        ]
        for problem in cfg.problems:
            console.log(json.dumps({"event": "edgeshelf.config", "problem": problem}))


_ISOLATE: _Isolate | None = None


def _isolate(env: Any) -> _Isolate:
    global _ISOLATE  # noqa: PLW0603  # one per isolate by design: workerd reuses module state
    if _ISOLATE is None:
        _ISOLATE = _Isolate(env)
    return _ISOLATE


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
        response = await _personalize(iso, js_req, ctx, parts, shell_name, record)
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
    headers = [
        ["content-type", "text/html; charset=utf-8"],
        ["cache-control", "no-store"],
        ["retry-after", "30"],
    ]
    return Response.new(_UNAVAILABLE_PAGE, ffi.response_init(headers, status))


async def _personalize(
    iso: _Isolate, js_req: Any, ctx: Any, parts: Any, shell_name: str, record: RequestRecord
) -> Any:
    cfg = iso.config
    headers = js_req.headers

    # 1. Identity: a crawler, GPC (no persistent ID), a returning ID, or a new one; and the
    # audience a returning visitor's browser carries (the audience cookie), if it is valid.
    cookies = ffi.header(headers, "cookie")
    who = identity.identify(
        cookies,
        ffi.header(headers, "sec-gpc"),
        ffi.header(headers, "user-agent"),
        ffi.cf_value(js_req, "botManagement", "verifiedBot") is True,
        cfg.cookie_name,
        cfg.audience_cookie,
    )
    record.visitor, record.bot = who.kind, who.kind == "bot"
    carried = None
    if cfg.audience_ttl > 0 and who.kind == "cookie" and who.uid is not None:
        carried = read_audience(cookies, cfg.audience_cookie, who.uid)

    # 2. Start the independent reads together: the profile (unless the cookie carries the
    # audience), the shell pointer and the experiment (both only when the isolate's are stale).
    profile_promise = None
    if who.kind == "cookie" and who.uid is not None and carried is None:
        profile_promise = iso.kv.get(schema.profile_key(who.uid), iso.text_opts)
    pointer_promise = iso.shells.pointer_promise(shell_name)
    experiment_promise = iso.experiments.promise()
    request_origin = f"{parts.scheme}://{parts.netloc}"
    if pointer_promise is None:  # the isolate's pointer is fresh: start the shell's lookup now
        version, shell_path = iso.shells.current(shell_name, parts.path)
        lookup = iso.shells.lookup(request_origin, shell_name, version, shell_path)

    # 3. Audience and arm -> shelf. A failure here costs the shelf, not the page.
    kv_started = time.perf_counter()
    audience, audience_cookie = await _choose_audience(
        iso, js_req, headers, who, carried, profile_promise, record
    )
    if pointer_promise is not None:
        version, shell_path = await iso.shells.read_pointer(
            shell_name, pointer_promise, parts.path, record
        )
        lookup = iso.shells.lookup(request_origin, shell_name, version, shell_path, renew=True)
    ready = await _shelf(iso, who, audience, experiment_promise, record)
    record.kv_ms = (time.perf_counter() - kv_started) * 1000

    # 4. The shell: isolate memory, the cache, the version's copy in KV or the origin.
    shell_started = time.perf_counter()
    shell = await iso.shells.serve(ctx, lookup, record)
    record.shell_ms = (time.perf_counter() - shell_started) * 1000
    if shell is None:
        return _unavailable()
    record.shell, record.shell_version = shell.source, shell.version
    set_cookies = identity.issue_cookies(who, cfg.cookie_name, audience_cookie)
    return _respond(iso, record, shell, ready, set_cookies)


async def _choose_audience(
    iso: _Isolate, js_req: Any, headers: Any, who: identity.Identity,
    carried: Audience | None, profile_promise: Any, record: RequestRecord,
) -> tuple[Audience | None, str | None]:  # fmt: skip
    """The visitor's audience (None for a crawler), and the audience cookie to issue, if any."""
    if record.bot:
        return None, None
    cfg = iso.config
    audience_cookie = None
    if carried is not None:
        audience, record.audience = carried, "cookie"
    else:
        try:
            audience, read_ok = await _audience(js_req, headers, profile_promise, record)
        except Exception as exc:  # containment: fall back to request signals
            record.errors.append(f"profile: {type(exc).__name__}")
            audience, read_ok = audience_for(None, None, None), False
        record.audience = audience.source
        # Issued once the profile was read (found or not) or a new ID was minted; never after
        # a failed read, whose stand-in audience must not stick for AUDIENCE_TTL.
        if cfg.audience_ttl > 0 and who.uid is not None and read_ok:
            audience_cookie = set_audience_header(
                cfg.audience_cookie, audience, who.uid, cfg.audience_ttl
            )
    record.profile = audience.source
    return audience, audience_cookie


async def _shelf(
    iso: _Isolate, who: identity.Identity, audience: Audience | None,
    experiment_promise: Any, record: RequestRecord,
) -> ReadyShelf:  # fmt: skip
    """The visitor's shelf: their arm's treatment along its chain (crawlers: the global one)."""
    seg_schema = iso.config.schema
    exp = arm_name = None
    try:
        experiment = await iso.experiments.current(experiment_promise, record)
        if audience is None:
            steps = iso.global_chain
        else:
            # Only visitors with an ID are enrolled: GPC has none, crawlers no audience.
            arm = iso.experiments.arm_for(experiment, who.uid)
            treatment = "personalized"
            if experiment is not None and arm is not None:
                exp, arm_name, treatment = experiment["name"], arm["name"], arm["treatment"]
            seg_schema, steps = treatment_chain(treatment, audience, seg_schema)
        record.exp, record.arm = exp, arm_name
        return await iso.shelves.find(steps, seg_schema, record, exp, arm_name)
    except Exception as exc:  # containment: the shell's default content stays
        record.errors.append(f"segment: {type(exc).__name__}")
        ready = iso.shelves.empty(exp, arm_name)
        record.segment, record.fallback = "", ready.shelf.fallback
        return ready


async def _audience(
    js_req: Any, headers: Any, profile_promise: Any, record: RequestRecord
) -> tuple[Audience, bool]:
    """The audience from the stored profile and request signals, and whether the read worked."""
    profile_text, read_ok = None, True
    if profile_promise is not None:
        try:
            profile_text = ffi.text(await profile_promise)
        except JsException as exc:
            record.errors.append(f"kv-profile: {exc.name}")
            read_ok = False
        record.kv_read("hit" if profile_text is not None else "miss")
        record.profile_read = "miss" if profile_text is None else "hit"
    audience = audience_for(
        profile_text, ffi.cf_text(js_req, "country"), ffi.header(headers, "accept-language")
    )
    if profile_text is not None and audience.source != "kv":
        record.profile_read = "invalid"
    return audience, read_ok


def _respond(
    iso: _Isolate, record: RequestRecord, shell: ShellSource, ready: ReadyShelf,
    set_cookies: tuple[str, ...],
) -> Any:  # fmt: skip
    """The page: the split shell's ready page, or the shell injected by HTMLRewriter."""
    split = shell.split
    if record.method == "HEAD":
        body = None
    elif split is not None:
        body = split.page(ready)
    else:
        body = shell.body
    base = Response.new(body, shell.init)
    out = base.headers
    out.set("server-timing", _server_timing(record, shell.source))
    for cookie in set_cookies:  # edgeshelf's own: the origin's never travel with a shell
        out.append("set-cookie", cookie)
    if iso.config.debug_headers:
        shelf = ready.shelf
        out.set(
            "x-edgeshelf-debug",
            f"segment={shelf.segment}; fallback={LEVELS[shelf.fallback]}; shell={shell.source}",
        )
    if record.method == "HEAD" or (split is not None and not split.needs_rewriter):
        return base
    return HTMLRewriter.new().on(inject.SLOT_SELECTOR, ready.rewriter_handler()).transform(base)


def _server_timing(record: RequestRecord, source: str) -> str:
    return f"kv;dur={record.kv_ms:.2f}, shell;dur={record.shell_ms:.2f};desc={source}"
