"""Helpers for runtime tests: writing fixtures into KV and reading pages back."""

from __future__ import annotations

import itertools
import json
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
