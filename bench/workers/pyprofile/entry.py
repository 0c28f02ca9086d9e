"""FFI cost probe: runs one operation N times inside a request, for ``bench/lib/ffi.mjs``.

workerd freezes clocks during synchronous execution, so nothing here times itself: the harness
times ``/op/<name>?n=N`` from outside and subtracts ``/op/noop?n=N``. The operations are the
building blocks of edgeshelf's read path (FFI crossings, conversions, the pure helpers).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

from js import Array, Headers, HTMLRewriter, Object, Promise, Response
from pyodide.ffi import create_proxy, to_js

from edgeshelf import identity, inject, schema
from edgeshelf.metrics import RequestRecord
from edgeshelf.profile import audience_for
from edgeshelf.segments import chain_for, ids_from
from edgeshelf.shellrules import cache_key_url

UID = "0d7c3b2a-1111-4222-8333-444455556666"
COOKIE = f"es_uid={UID}; theme=dark"
IDS = [f"v{i:03d}-music" for i in range(50)]
SEGMENT = json.dumps({"built_at": 1763900000, "ids": IDS, "version": 3})
PROFILE = json.dumps(
    {
        "affinity_bucket": "music",
        "country": "us",
        "fv": 1,
        "lang": "en",
        "last_seen": 1763900000,
        "recent_categories": ["music", "gaming"],
    },
    sort_keys=True,
)
SHELF = inject.Shelf(IDS, "us-en-music", 0, "v3")
PAIRS = [
    ["content-type", "text/html; charset=utf-8"],
    ["cache-control", "private, no-store"],
    ["vary", "Cookie"],
    ["server-timing", "kv;dur=1.00, shell;dur=0.00;desc=cache"],
]
TEMPLATE = Headers.new(to_js(PAIRS[:3]))
INIT = Object.fromEntries(to_js([("headers", TEMPLATE)]))
TEXT_4K = "x" * 4096


class _Handler:
    def element(self, el: Any) -> None:
        pass


def _record() -> RequestRecord:
    r = RequestRecord(method="GET", path="/", visitor="cookie", profile="kv")
    r.profile_read, r.segment, r.fallback = "hit", "us-en-music", 0
    r.segment_reads.append("hit")
    r.kv_reads, r.shell, r.shell_version = 1, "cache", "bench1"
    return r


def _ops(req: Any) -> dict[str, Any]:
    headers = req.headers
    url = str(req.url)
    record = _record()
    line = record.to_json()
    audience = audience_for(PROFILE, "US", "en")

    def rewriter() -> None:
        proxy = create_proxy(_Handler())
        HTMLRewriter.new().on(inject.SLOT_SELECTOR, proxy).onDocument(proxy)
        proxy.destroy()

    def proxy_cycle() -> None:
        create_proxy(_Handler()).destroy()

    return {
        "noop": lambda: None,
        "js_getattr": lambda: str(req.method),
        "js_getattr_missing": lambda: getattr(req, "js_object", req),
        "headers_get": lambda: headers.get("cookie"),
        "perf_counter": time.perf_counter,
        "urlsplit": lambda: urlsplit(url),
        "to_js_pairs": lambda: to_js(PAIRS),
        "headers_from_to_js": lambda: Headers.new(to_js(PAIRS)),
        "headers_clone_template": lambda: Headers.new(TEMPLATE).set("server-timing", "x"),
        "init_fromentries": lambda: Object.fromEntries(to_js([("headers", TEMPLATE)])),
        "response_new": lambda: Response.new("x", INIT),
        "proxy_create_destroy": proxy_cycle,
        "rewriter_setup": rewriter,
        "str_to_js_4k": lambda: Array.of(TEXT_4K),
        "read_uid": lambda: identity.read_uid(COOKIE, "es_uid"),
        "profile_key": lambda: schema.profile_key(UID),
        "mint_uid": identity.mint_uid,
        "audience_for": lambda: audience_for(PROFILE, "US", "en"),
        "chain_for": lambda: chain_for(audience, "v3"),
        "ids_from_segment": lambda: ids_from(SEGMENT, "v3"),
        "cache_key_url": lambda: cache_key_url("http://127.0.0.1:8787", "home", "bench1"),
        "cards_and_script_html": lambda: inject.cards_html(IDS) + inject.script_html(SHELF),
        "record_to_json": record.to_json,
        "print_log_line": lambda: print(line),
    }


class Default:
    def __init__(self, ctx: Any, env: Any) -> None:
        self.env = env

    async def fetch(self, request: Any) -> Any:
        url = str(request.url)
        path, _, query = url[url.index("/", 8) :].partition("?")
        n = int(query.removeprefix("n=") or "1")
        name = path.removeprefix("/op/")
        if name == "await_js_promise":
            for _ in range(n):
                await Promise.resolve(1)
            return Response.new("ok")
        op = _ops(request).get(name)
        if op is None:
            return Response.new(
                "unknown op", to_js({"status": 404}, dict_converter=Object.fromEntries)
            )
        for _ in range(n):
            op()
        return Response.new("ok")
