"""The engine writes edgeshelf.schema.encode_profile's profile text byte for byte, or stops."""

from __future__ import annotations

from typing import Any

import ibis
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.engines import DuckDBEngine
from builder.errors import PayloadError
from builder.payloads import VERIFY_EVERY, profile_json, verify
from edgeshelf.schema import MAX_CATEGORIES, encode_profile, normalize_bucket

# Fields as they reach the encoder: already through the schema module's normalisers.
_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=32).map(
    normalize_bucket
)
_profile = st.fixed_dictionaries(
    {
        "user_id": st.just("0f8fad5b-d9cb-469f-a165-70867728950e"),
        "country": st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=2),
        "lang": st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=3),
        "bucket": _token,
        "recent": st.lists(_token, unique=True, max_size=MAX_CATEGORIES),
        "last_seen": st.integers(0, 2**53 - 1),
    }
)
_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("country", pa.string()),
        ("lang", pa.string()),
        ("bucket", pa.string()),
        ("recent", pa.list_(pa.string())),
        ("last_seen", pa.int64()),
    ]
)


def _encoded(rows: list[dict[str, Any]]) -> list[str]:
    engine = DuckDBEngine()
    try:
        t = engine.small_table("profiles_under_test", pa.Table.from_pylist(rows, schema=_SCHEMA))
        value = profile_json(t.country, t.lang, t.bucket, t.recent, t.last_seen)
        out = engine.rows(t.mutate(value=value, i=ibis.row_number()).order_by("i"))
    finally:
        engine.close()
    return [r["value"] for r in out]


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(_profile, min_size=1, max_size=20))
def test_engine_profile_text_is_encode_profiles(rows: list[dict[str, Any]]) -> None:
    """For any normalised profile the engine writes exactly what encode_profile writes."""
    want = [
        encode_profile(
            country=r["country"],
            lang=r["lang"],
            affinity_bucket=r["bucket"],
            recent_categories=r["recent"],
            last_seen=r["last_seen"],
        )
        for r in rows
    ]
    assert _encoded(rows) == want


def test_a_payload_that_differs_stops_the_run() -> None:
    """verify() re-encodes sampled rows and refuses a batch whose text drifted from the schema."""
    rows = [
        {"user_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "country": "us", "lang": "en",
         "bucket": "music", "recent": ["music"], "last_seen": 1_748_000_000 + i}
        for i in range(VERIFY_EVERY + 5)
    ]  # fmt: skip
    values = _encoded(rows)
    good = pa.Table.from_pylist(rows, schema=_SCHEMA).append_column("value", pa.array(values))
    verify(good.to_batches()[0])
    drifted = list(values)
    drifted[VERIFY_EVERY] = drifted[VERIFY_EVERY].replace('"fv":1', '"fv":2')
    bad = good.set_column(6, "value", pa.array(drifted))
    with pytest.raises(PayloadError, match="encode_profile"):
        verify(bad.to_batches()[0])
