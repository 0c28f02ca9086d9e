"""Foundation: what the official `cloudflare` SDK writes to the local API, the Worker serves."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cloudflare import Cloudflare

from edgeshelf import schema
from tests.runtime.helpers import fresh_audience, shelf, visit

if TYPE_CHECKING:
    from cloudflare.types.kv.namespace_bulk_update_params import Body as Pair


def test_values_written_through_the_sdk_are_served_by_the_worker(stack, uid):
    """A profile PUT (multipart) and a segment bulk-written by the SDK drive the visitor's shelf."""
    aud = fresh_audience()
    ns = stack.kv_namespace_id
    ids = ["sdk01", "sdk02", "sdk03"]
    with Cloudflare(api_token=stack.token, base_url=stack.api, max_retries=3) as cf:
        profile = schema.encode_profile(
            country=aud.country,
            lang=aud.lang,
            affinity_bucket=aud.bucket,
            recent_categories=[aud.bucket],
            last_seen=int(time.time()),
        )
        cf.kv.namespaces.values.update(
            schema.profile_key(uid),
            account_id=stack.account_id,
            namespace_id=ns,
            value=profile.encode(),
            expiration_ttl=schema.USER_TTL,
        )
        body: list[Pair] = [
            {
                "key": schema.segment_key(aud.exact, "v3"),
                "value": schema.encode_segment(ids, built_at=int(time.time()), schema="v3"),
                "expiration_ttl": schema.SEGMENT_TTL,
            }
        ]
        result = cf.kv.namespaces.bulk_update(ns, account_id=stack.account_id, body=body)
        assert result is not None
        assert result.successful_key_count == 1

    got = shelf(visit(stack, uid=uid))
    assert got["ids"] == ids
    assert (got["segment"], got["fallback"]) == (aud.exact, 0)
