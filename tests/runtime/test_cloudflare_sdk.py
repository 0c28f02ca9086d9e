"""The official `cloudflare` Python SDK (5.9.0), pointed at the local v4 KV API, works unchanged."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import pytest
from cloudflare import (
    BadRequestError,
    Cloudflare,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cloudflare.types.kv.namespace_bulk_update_params import Body as Pair

pytestmark = pytest.mark.runtime


@pytest.fixture(autouse=True)
def _faults_off(stack) -> Iterator[None]:
    """Each test starts and ends with the local API's faults off and its counters zeroed."""
    stack.reset_faults()
    yield
    stack.reset_faults()


@pytest.fixture
def cf(stack) -> Iterator[Cloudflare]:
    """An SDK client on the local API with retries off, so every answer is seen as sent."""
    client = Cloudflare(api_token=stack.token, base_url=stack.api, max_retries=0)
    yield client
    client.close()


def raw_get(stack, key: str) -> httpx.Response:
    """Read a value back through the API with plain HTTP, the key percent-encoded."""
    return httpx.get(f"{stack.kv_base}/values/{quote(key, safe='')}", headers=stack.auth)


def test_sdk_writes_a_value_with_metadata(stack, cf, key_prefix):
    """values.update (multipart, key not percent-encoded) stores the value and its metadata."""
    key = f"{key_prefix}seg:us-en-shorts:v3"
    ids = {"account_id": stack.account_id, "namespace_id": stack.kv_namespace_id}
    cf.kv.namespaces.values.update(key, value=b'{"ids": [1, 2, 3]}', metadata={"v": 3}, **ids)
    r = raw_get(stack, key)
    assert r.status_code == 200
    assert r.content == b'{"ids": [1, 2, 3]}'
    assert cf.kv.namespaces.values.get(key, **ids).read() == b'{"ids": [1, 2, 3]}'
    assert cf.kv.namespaces.metadata.get(key, **ids) == {"v": 3}


def test_sdk_writes_binary_value_with_ttl(stack, cf, key_prefix):
    """values.update without metadata keeps binary bytes exact and honours expiration_ttl."""
    key = f"{key_prefix}blob"
    value = bytes(range(256))
    now = time.time()
    cf.kv.namespaces.values.update(
        key,
        account_id=stack.account_id,
        namespace_id=stack.kv_namespace_id,
        value=value,
        expiration_ttl=120,
    )
    r = raw_get(stack, key)
    assert r.content == value
    assert now + 115 <= int(r.headers["expiration"]) <= now + 125


def test_sdk_bulk_writes_and_reads_back(stack, cf, key_prefix):
    """bulk_update writes 25 pairs that bulk_get, keys.list paging and plain GET all read back."""
    ns = stack.kv_namespace_id
    body: list[Pair] = [{"key": f"{key_prefix}{i:02d}", "value": f"v{i}"} for i in range(23)]
    b64 = base64.b64encode(b"\x00\x01").decode()
    body.append({"key": f"{key_prefix}b64", "value": b64, "base64": True})
    body.append({"key": f"{key_prefix}meta", "value": "m", "metadata": {"seg": "us"}})
    result = cf.kv.namespaces.bulk_update(ns, account_id=stack.account_id, body=body)
    assert result is not None
    assert result.successful_key_count == 25
    assert result.unsuccessful_keys == []

    listed = cf.kv.namespaces.keys.list(
        ns, account_id=stack.account_id, prefix=key_prefix, limit=10
    )
    names = [k.name for k in listed]  # iterating follows result_info.cursor page by page
    assert names == sorted(p["key"] for p in body)

    got = cf.kv.namespaces.bulk_get(
        ns,
        account_id=stack.account_id,
        keys=[f"{key_prefix}00", f"{key_prefix}meta", f"{key_prefix}missing"],
        with_metadata=True,
    )
    assert got is not None
    values = got.to_dict()["values"]
    assert values[f"{key_prefix}00"]["value"] == "v0"
    assert values[f"{key_prefix}meta"]["metadata"] == {"seg": "us"}
    assert values[f"{key_prefix}missing"] is None
    assert raw_get(stack, f"{key_prefix}b64").content == b"\x00\x01"
    assert stack.api_stats()["pairs_written"] == 25


def test_sdk_bulk_delete(stack, cf, key_prefix):
    """bulk_delete removes the keys it names."""
    ns = stack.kv_namespace_id
    body: list[Pair] = [{"key": f"{key_prefix}{i}", "value": "x"} for i in range(3)]
    cf.kv.namespaces.bulk_update(ns, account_id=stack.account_id, body=body)
    deleted = cf.kv.namespaces.bulk_delete(
        ns, account_id=stack.account_id, body=[f"{key_prefix}0", f"{key_prefix}1"]
    )
    assert deleted is not None
    assert deleted.successful_key_count == 2
    assert raw_get(stack, f"{key_prefix}0").status_code == 404
    assert raw_get(stack, f"{key_prefix}2").content == b"x"


def test_sdk_sees_the_namespace(stack, cf):
    """The SDK lists and fetches the local namespace (its pager stops on the empty page)."""
    listed = list(cf.kv.namespaces.list(account_id=stack.account_id))
    assert [n.id for n in listed] == [stack.kv_namespace_id]
    one = cf.kv.namespaces.get(stack.kv_namespace_id, account_id=stack.account_id)
    assert one is not None
    assert one.title == "EDGESHELF_KV"


def test_sdk_maps_errors_to_its_exceptions(stack, cf, key_prefix):
    """Missing keys, bad input, a wrong token and a 429 raise the SDK's matching exceptions."""
    ids = {"account_id": stack.account_id, "namespace_id": stack.kv_namespace_id}
    with pytest.raises(NotFoundError):
        cf.kv.namespaces.values.get(f"{key_prefix}missing", **ids)
    with pytest.raises(BadRequestError, match="Expiration TTL must be at least 60"):
        cf.kv.namespaces.values.update(f"{key_prefix}k", value=b"v", expiration_ttl=30, **ids)
    wrong = Cloudflare(api_token="0" * 40, base_url=stack.api, max_retries=0)
    with pytest.raises(PermissionDeniedError):
        wrong.kv.namespaces.values.update(f"{key_prefix}k", value=b"v", **ids)
    wrong.close()
    stack.faults(rate429=1.0, retry_after=7)
    with pytest.raises(RateLimitError) as caught:
        cf.kv.namespaces.values.update(f"{key_prefix}k", value=b"v", **ids)
    assert caught.value.response.headers["retry-after"] == "7"
    stack.reset_faults()
    assert raw_get(stack, f"{key_prefix}k").status_code == 404


def test_sdk_retries_through_injected_429s(stack, key_prefix):
    """With retries on, the SDK waits out injected 429s (retry-after) and the write lands."""
    # Seed 42 answers the first two requests 429 and lets the third through.
    stack.faults(rate429=0.5, retry_after=1, seed=42)
    client = Cloudflare(api_token=stack.token, base_url=stack.api, max_retries=3)
    client.kv.namespaces.values.update(
        f"{key_prefix}k",
        account_id=stack.account_id,
        namespace_id=stack.kv_namespace_id,
        value=b"landed",
    )
    client.close()
    stats = stack.api_stats()
    assert stats["faults"]["rate429"] == 2
    assert stats["pairs_written"] == 1
    stack.reset_faults()
    assert raw_get(stack, f"{key_prefix}k").content == b"landed"
