"""An in-memory Workers KV behind the v4 API, as an ``httpx.MockTransport`` handler.

It speaks the envelope, checks the bearer token and the documented limits, and lets a test
script faults: ``fault(...)`` queues responses for the next matching requests, ``partial``
makes bulk writes report some keys as unsuccessful.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable

# A recognisable canary, not a credential: tests assert it never shows up in any output.
TOKEN = "tok-CANARY-5f3a9e-never-print-me"  # noqa: S105
ACCOUNT = "acc0123"
NAMESPACE = "ns0123"
BASE = "https://kv.test/client/v4"
_PATH = re.compile(rf"^/client/v4/accounts/{ACCOUNT}/storage/kv/namespaces/{NAMESPACE}/(.+)$")


def envelope(result: Any = None, *, success: bool = True, errors: list[Any] | None = None,
             info: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The v4 API envelope."""
    body: dict[str, Any] = {
        "success": success,
        "errors": errors or [],
        "messages": [],
        "result": result,
    }
    if info is not None:
        body["result_info"] = info
    return body


@dataclass
class FakeKV:
    """The namespace's content plus everything the tests want to observe or inject."""

    store: dict[str, str] = field(default_factory=dict)
    ttl: dict[str, int | None] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[tuple[str, Callable[[httpx.Request], httpx.Response | None]]] = field(
        default_factory=list
    )
    refuse_keys: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    puts: int = 0
    delay: float = 0.0
    in_flight: int = 0
    peak: int = 0

    def fault(
        self,
        route: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """The next ``times`` requests to ``route`` (e.g. ``PUT bulk``) answer ``status``."""
        for _ in range(times):
            payload = (
                body
                if body is not None
                else envelope(
                    success=False,
                    errors=[{"code": 10000 + status, "message": f"injected {status}"}],
                )
            )

            def respond(_req: httpx.Request, payload: Any = payload) -> httpx.Response:
                return httpx.Response(status, json=payload, headers=headers)

            self.faults.append((route, respond))

    def raise_on(self, route: str, exc: Exception, *, times: int = 1) -> None:
        """The next ``times`` requests to ``route`` fail at the transport level."""
        for _ in range(times):

            def boom(_req: httpx.Request, exc: Exception = exc) -> httpx.Response:
                raise exc

            self.faults.append((route, boom))

    def count(self, route: str) -> int:
        return sum(1 for r, _ in self.requests if r == route)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=BASE + "/",
            transport=self.transport(),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    # --- the API ----------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        match = _PATH.match(request.url.path)
        if match is None:
            return httpx.Response(404, json=envelope(success=False, errors=[{"code": 7003}]))
        rest = match.group(1)
        route = f"{request.method} {rest.split('/')[0] if rest.startswith('values/') else rest}"
        with self.lock:
            self.requests.append((route, str(request.url)))
            for i, (want, respond) in enumerate(self.faults):
                if want == route:
                    del self.faults[i]
                    return respond(request) or httpx.Response(500)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(
                403, json=envelope(success=False, errors=[{"code": 10000, "message": "auth"}])
            )
        handler = {
            "PUT bulk": self._bulk_put,
            "POST bulk/delete": self._bulk_delete,
            "POST bulk/get": self._bulk_get,
            "GET keys": self._keys,
            "GET values": self._get_value,
        }.get(route)
        if handler is None:
            return httpx.Response(405, json=envelope(success=False, errors=[{"code": 405}]))
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)  # outside the lock: requests overlap like real ones
            with self.lock:
                return handler(request, rest)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _bulk_put(self, request: httpx.Request, _rest: str) -> httpx.Response:
        body = json.loads(request.content)
        if not isinstance(body, list) or len(body) > 10_000 or len(request.content) > 100_000_000:
            return httpx.Response(413, json=envelope(success=False, errors=[{"code": 10026}]))
        bad = []
        for pair in body:
            key = pair["key"]
            if key in self.refuse_keys:
                bad.append(key)
                continue
            ttl = pair.get("expiration_ttl")
            if ttl is not None and ttl < 60:
                return httpx.Response(400, json=envelope(success=False, errors=[{"code": 10033}]))
            self.store[key] = pair["value"]
            self.ttl[key] = ttl
            self.puts += 1
        return httpx.Response(
            200,
            json=envelope({"successful_key_count": len(body) - len(bad), "unsuccessful_keys": bad}),
        )

    def _bulk_delete(self, request: httpx.Request, _rest: str) -> httpx.Response:
        keys = json.loads(request.content)
        for key in keys:
            self.store.pop(key, None)
            self.ttl.pop(key, None)
        return httpx.Response(
            200, json=envelope({"successful_key_count": len(keys), "unsuccessful_keys": []})
        )

    def _bulk_get(self, request: httpx.Request, _rest: str) -> httpx.Response:
        body = json.loads(request.content)
        keys = body["keys"]
        if len(keys) > 100:
            return httpx.Response(400, json=envelope(success=False, errors=[{"code": 10050}]))
        return httpx.Response(200, json=envelope({"values": {k: self.store.get(k) for k in keys}}))

    def _keys(self, request: httpx.Request, _rest: str) -> httpx.Response:
        prefix = request.url.params.get("prefix", "")
        limit = int(request.url.params.get("limit", "1000"))
        cursor = request.url.params.get("cursor", "")
        names = sorted(k for k in self.store if k.startswith(prefix) and k > cursor)
        page = names[:limit]
        nxt = page[-1] if len(names) > limit else ""
        return httpx.Response(
            200,
            json=envelope([{"name": k} for k in page], info={"count": len(page), "cursor": nxt}),
        )

    def _get_value(self, _request: httpx.Request, rest: str) -> httpx.Response:
        key = unquote(rest[len("values/") :])
        if key not in self.store:
            return httpx.Response(404, json=envelope(success=False, errors=[{"code": 10009}]))
        return httpx.Response(200, content=self.store[key].encode())
