"""Helpers for runtime tests: writing fixtures into KV and reading pages back."""

from __future__ import annotations

import itertools
import json
import re
import string
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from edgeshelf import schema
from tests.support.pages import shelf_from_html

if TYPE_CHECKING:
    from localstack import LocalStack

# Two-letter countries and three-letter languages nobody else uses: every test gets its own
# segment namespace on the shared stack, so tests never see each other's segments.
_PAIRS = itertools.product(
    (a + b for a in "qrstuvwxyz" for b in string.ascii_lowercase),
    (a + b + c for a in "qz" for b in string.ascii_lowercase for c in string.ascii_lowercase),
)


@dataclass(frozen=True)
class Audience:
    country: str
    lang: str
    bucket: str

    @property
    def exact(self) -> str:
        return schema.segment_id(self.country, self.lang, self.bucket)

    @property
    def lang_default(self) -> str:
        return schema.segment_id(self.country, self.lang, schema.DEFAULT_BUCKET)


def fresh_audience() -> Audience:
    country, lang = next(_PAIRS)
    return Audience(country, lang, "b" + uuid.uuid4().hex[:10])


def put_profile(stack: LocalStack, uid: str, aud: Audience, **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "country": aud.country,
        "lang": aud.lang,
        "affinity_bucket": aud.bucket,
        "recent_categories": [aud.bucket],
        "last_seen": int(time.time()),
    }
    fields.update(overrides)
    stack.kv_put(schema.profile_key(uid), schema.encode_profile(**fields))


def put_segment(stack: LocalStack, seg_id: str, ids: list[str], seg_schema: str = "v3") -> None:
    text = schema.encode_segment(ids, built_at=int(time.time()), schema=seg_schema)
    stack.kv_put(schema.segment_key(seg_id, seg_schema), text)


def put_raw(stack: LocalStack, key: str, value: str | bytes) -> None:
    stack.kv_put(key, value)


def visit(
    stack: LocalStack,
    *,
    uid: str | None = None,
    country: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    path: str = "/",
) -> httpx.Response:
    h = dict(headers or {})
    if uid is not None:
        h["cookie"] = f"es_uid={uid}"
    if country is not None:
        h["MF-CF-Blob"] = json.dumps({"country": country.upper()})
    return httpx.request(method, stack.worker + path, headers=h, timeout=30)


def shelf(resp: httpx.Response) -> dict[str, Any]:
    found = shelf_from_html(resp.text)
    assert found is not None, f"no shelf injected:\n{resp.text[:500]}"
    return found


def debug(resp: httpx.Response) -> dict[str, str]:
    raw = resp.headers.get("x-edgeshelf-debug", "")
    return dict(part.strip().split("=", 1) for part in raw.split(";") if "=" in part)


def video_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(n)]


COOKIE_ATTRS = "Path=/; HttpOnly; Secure; SameSite=Lax"
MINTED = re.compile(
    r"es_uid=([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}); "
    r"Max-Age=34560000; " + re.escape(COOKIE_ATTRS)
)
AUDIENCE_SET = re.compile(
    r"es_aud=(a1\.[a-z]{2}\.[a-z]{2,3}\.[a-z0-9_]{1,32}\.[kr]\.[0-9a-f]{8}); "
    r"Max-Age=(\d+); " + re.escape(COOKIE_ATTRS)
)


def issued(resp: httpx.Response, ttl: int = 3600) -> tuple[str, str]:
    """The (ID, audience cookie value) pair a response sets, in that order, with every flag."""
    cookies = resp.headers.get_list("set-cookie")
    assert len(cookies) == 2, cookies
    uid, aud = MINTED.fullmatch(cookies[0]), AUDIENCE_SET.fullmatch(cookies[1])
    assert uid is not None, cookies
    assert aud is not None, cookies
    assert aud.group(2) == str(ttl), cookies
    return uid.group(1), aud.group(1)
