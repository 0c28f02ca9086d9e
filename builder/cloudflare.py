"""A small Workers KV client over the Cloudflare v4 REST API, on an injected ``httpx.Client``.

Only the calls the builder needs: bulk write, bulk delete, bulk get, list keys, get one value.
Every response is unwrapped from the v4 envelope; failures become :mod:`builder.errors`
exceptions (retryable or not) with ``raise ... from`` so the cause is kept. Retrying is the
caller's decision (:mod:`builder.publish`): one method call is exactly one HTTP request, which
is what the rate limiter counts.

The token is only ever set as a default header by :func:`make_http_client`; no message here is
built from request headers.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict
from urllib.parse import quote

import httpx

from builder.errors import APIError, RateLimitedError, RetryableAPIError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from builder.config import Target

__all__ = [
    "MAX_BULK_BYTES",
    "MAX_BULK_GET",
    "MAX_BULK_PAIRS",
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "BulkPair",
    "BulkResult",
    "KVClient",
    "ListedKey",
    "make_http_client",
    "parse_retry_after",
]

MAX_BULK_PAIRS: Final = 10_000
MAX_BULK_BYTES: Final = 100 * 1000 * 1000
MAX_BULK_GET: Final = 100
MAX_KEY_BYTES: Final = 512
MAX_VALUE_BYTES: Final = 25 * 1024 * 1024
DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=30.0)


class BulkPair(TypedDict):
    """One element of a bulk write body."""

    key: str
    value: str
    expiration_ttl: NotRequired[int]


@dataclass(frozen=True)
class BulkResult:
    """What a bulk write or delete reported: how many succeeded, which keys to retry."""

    successful_key_count: int
    unsuccessful_keys: list[str]


@dataclass(frozen=True)
class ListedKey:
    """A key as listed by ``GET /keys``."""

    name: str
    expiration: int | None


def make_http_client(
    target: Target,
    *,
    transport: httpx.BaseTransport | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    max_connections: int = 8,
) -> httpx.Client:
    """An ``httpx.Client`` for ``target``: base URL, bearer token, timeouts, pool limits."""
    return httpx.Client(
        base_url=target.base_url + "/",
        headers={"Authorization": f"Bearer {target.token}", "User-Agent": "edgeshelf-builder"},
        timeout=timeout,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=4),
        transport=transport,
        follow_redirects=False,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``retry-after`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def _errors_text(body: object, secret: str = "") -> str:
    """The envelope's errors for a message; ``secret`` is cut out of them before truncating."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            parts = []
            for err in errors[:3]:
                if isinstance(err, dict):
                    text = f"{err.get('code', '?')}: {err.get('message', '')}"
                    if secret:
                        # A proxy or API that echoes request headers must not carry the token
                        # into our exceptions, output and state file.
                        text = text.replace(secret, "[redacted]")
                    parts.append(text[:210])
            if parts:
                return "; ".join(parts)
    return "no error details"


class KVClient:
    """One Workers KV namespace through the v4 API; each method makes exactly one request."""

    def __init__(self, http: httpx.Client, *, account_id: str, namespace_id: str) -> None:
        self._http = http
        self._prefix = f"accounts/{account_id}/storage/kv/namespaces/{namespace_id}"
        # Only to redact it from server-supplied text; never used to build a message.
        scheme, _, credential = http.headers.get("authorization", "").partition(" ")
        self._secret = credential.strip() if scheme.lower() == "bearer" else ""

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: object = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        what = f"{method} {path.split('?', maxsplit=1)[0]}"
        try:
            if json_body is None:
                response = self._http.request(method, f"{self._prefix}/{path}", params=params)
            else:
                # Compact JSON: the 100 MB bulk limit counts the body we send.
                content = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False)
                response = self._http.request(
                    method,
                    f"{self._prefix}/{path}",
                    params=params,
                    content=content.encode("utf-8"),
                    headers={"Content-Type": "application/json"},
                )
        except httpx.TimeoutException as exc:
            raise RetryableAPIError(f"{what}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise RetryableAPIError(f"{what}: connection failed ({type(exc).__name__})") from exc
        status = response.status_code
        if status == 429:
            raise RateLimitedError(
                f"{what}: rate limited (429)",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 500 or status == 408:
            raise RetryableAPIError(f"{what}: HTTP {status}", status=status)
        return response

    def _result(self, response: httpx.Response, what: str) -> tuple[Any, dict[str, Any]]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if response.is_success:
                # A 2xx with a truncated or foreign body: the outcome is unknown, so retry.
                raise RetryableAPIError(
                    f"{what}: unreadable response body", status=response.status_code
                ) from exc
            raise APIError(
                f"{what}: HTTP {response.status_code}", status=response.status_code
            ) from exc
        if not isinstance(body, dict):
            raise RetryableAPIError(f"{what}: response is not an API envelope")
        if not response.is_success or body.get("success") is not True:
            raise APIError(
                f"{what}: HTTP {response.status_code}: {_errors_text(body, self._secret)}",
                status=response.status_code,
            )
        info = body.get("result_info")
        return body.get("result"), info if isinstance(info, dict) else {}

    @staticmethod
    def _bulk_result(result: object, sent: int, what: str) -> BulkResult:
        if result is None:
            # Older API versions answered bulk calls with ``"result": null`` on full success.
            return BulkResult(successful_key_count=sent, unsuccessful_keys=[])
        if not isinstance(result, dict):
            raise RetryableAPIError(f"{what}: unexpected result {type(result).__name__}")
        bad = result.get("unsuccessful_keys") or []
        if not isinstance(bad, list) or not all(isinstance(k, str) for k in bad):
            raise RetryableAPIError(f"{what}: malformed unsuccessful_keys")
        count = result.get("successful_key_count", sent - len(bad))
        return BulkResult(
            successful_key_count=int(count) if isinstance(count, int) else sent - len(bad),
            unsuccessful_keys=list(bad),
        )

    def bulk_put(self, pairs: Sequence[BulkPair]) -> BulkResult:
        """``PUT /bulk``: write up to 10,000 pairs (≤ 100 MB) at once."""
        if not pairs or len(pairs) > MAX_BULK_PAIRS:
            raise ValueError(f"a bulk write takes 1..{MAX_BULK_PAIRS} pairs, got {len(pairs)}")
        response = self._request("PUT", "bulk", json_body=list(pairs))
        result, _ = self._result(response, "PUT bulk")
        return self._bulk_result(result, len(pairs), "PUT bulk")

    def bulk_delete(self, keys: Sequence[str]) -> BulkResult:
        """``POST /bulk/delete``: delete up to 10,000 keys (missing keys are not an error)."""
        if not keys or len(keys) > MAX_BULK_PAIRS:
            raise ValueError(f"a bulk delete takes 1..{MAX_BULK_PAIRS} keys, got {len(keys)}")
        response = self._request("POST", "bulk/delete", json_body=list(keys))
        result, _ = self._result(response, "POST bulk/delete")
        return self._bulk_result(result, len(keys), "POST bulk/delete")

    def bulk_get(self, keys: Sequence[str]) -> dict[str, str | None]:
        """``POST /bulk/get`` as text: up to 100 keys; missing keys map to ``None``."""
        if not keys or len(keys) > MAX_BULK_GET:
            raise ValueError(f"a bulk get takes 1..{MAX_BULK_GET} keys, got {len(keys)}")
        response = self._request("POST", "bulk/get", json_body={"keys": list(keys), "type": "text"})
        result, _ = self._result(response, "POST bulk/get")
        values = result.get("values") if isinstance(result, dict) else None
        if not isinstance(values, dict):
            raise RetryableAPIError("POST bulk/get: result has no values")
        return {k: (v if isinstance(v, str) else None) for k, v in values.items()}

    def list_keys_page(
        self, prefix: str, cursor: str | None = None, limit: int = 1000
    ) -> tuple[list[ListedKey], str | None]:
        """One page of ``GET /keys``; the second element is the next cursor or ``None``."""
        params: dict[str, Any] = {"prefix": prefix, "limit": max(10, min(limit, 1000))}
        if cursor:
            params["cursor"] = cursor
        response = self._request("GET", "keys", params=params)
        result, info = self._result(response, "GET keys")
        if not isinstance(result, list):
            raise RetryableAPIError("GET keys: result is not a list")
        keys = []
        for item in result:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                exp = item.get("expiration")
                keys.append(
                    ListedKey(item["name"], int(exp) if isinstance(exp, int | float) else None)
                )
        nxt = info.get("cursor")
        return keys, (nxt if isinstance(nxt, str) and nxt else None)

    def list_keys(self, prefix: str, limit: int = 1000) -> Iterator[ListedKey]:
        """Every key under ``prefix``, following cursors (no retries: see publish.list_all)."""
        cursor: str | None = None
        while True:
            page, cursor = self.list_keys_page(prefix, cursor, limit)
            yield from page
            if cursor is None:
                return

    def get_value(self, key: str) -> bytes | None:
        """``GET /values/{key}``: the raw bytes, or ``None`` when the key does not exist."""
        path = "values/" + quote(key, safe="")
        response = self._request("GET", path)
        if response.status_code == 404:
            return None
        if not response.is_success:
            self._result(response, "GET values")
        return response.content
