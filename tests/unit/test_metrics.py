"""The per-request record: one JSON log line and an Analytics Engine data point within limits."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given
from hypothesis import strategies as st

from edgeshelf.metrics import RequestRecord
from tests.unit.strategies import FAST, hostile_text

PREFIX = '{"event":"edgeshelf.request"'
_times = st.floats(min_value=0, max_value=1e7, allow_nan=False)

records = st.builds(
    RequestRecord,
    method=hostile_text,
    path=hostile_text,
    visitor=st.sampled_from(["none", "cookie", "minted", "gpc"]),
    profile=st.sampled_from(["none", "kv", "request"]),
    profile_read=st.sampled_from(["hit", "miss", "invalid", "skipped"]),
    segment=hostile_text,
    fallback=st.integers(min_value=0, max_value=3),
    segment_reads=st.lists(st.sampled_from(["hit", "miss", "invalid"]), max_size=3),
    kv_reads=st.integers(min_value=0, max_value=10),
    kv_misses=st.integers(min_value=0, max_value=10),
    memo_reads=st.integers(min_value=0, max_value=3),
    shell=st.sampled_from(["memory", "cache", "origin", "kv-copy", "none"]),
    shell_version=hostile_text,
    status=st.integers(min_value=100, max_value=599),
    kv_ms=_times,
    shell_ms=_times,
    total_ms=_times,
    errors=st.lists(hostile_text, max_size=3),
)


def test_kv_read_counts_reads_and_misses() -> None:
    """Every read counts; anything but a hit (miss, invalid, error) counts as a miss."""
    record = RequestRecord()
    for outcome in ("hit", "miss", "invalid", "hit", "error"):
        record.kv_read(outcome)
    assert (record.kv_reads, record.kv_misses) == (5, 3)


def test_to_json_of_a_default_record() -> None:
    """A fresh record logs every field under its own name, after the event name."""
    line = RequestRecord().to_json()
    assert line.startswith(PREFIX + ",")
    assert json.loads(line) == {
        "event": "edgeshelf.request",
        **{f.name: getattr(RequestRecord(), f.name) for f in dataclasses.fields(RequestRecord)},
    }


@FAST
@given(records)
def test_to_json_is_one_line_of_json(record: RequestRecord) -> None:
    """Whatever the request put in the record, the log line is a single JSON object line."""
    line = record.to_json()
    assert line.startswith(PREFIX)
    assert "\n" not in line
    assert "\r" not in line
    assert line.isascii()
    parsed = json.loads(line)
    assert parsed["path"] == record.path
    assert parsed["errors"] == record.errors
    assert parsed["total_ms"] == round(record.total_ms, 3)
    assert set(parsed) == {"event"} | {f.name for f in dataclasses.fields(RequestRecord)}


def test_to_json_rounds_durations() -> None:
    """Durations are logged to the microsecond, not with float noise."""
    parsed = json.loads(RequestRecord(kv_ms=1.23456789, shell_ms=0.1 + 0.2).to_json())
    assert parsed["kv_ms"] == 1.235
    assert parsed["shell_ms"] == 0.3


def test_data_point_fields() -> None:
    """Blobs are the dimensions, doubles the summable counts, indexed by segment."""
    record = RequestRecord(segment="us-en-music", fallback=1, profile="kv", visitor="cookie")
    record.shell, record.audience, record.profile_read = "cache", "kv", "hit"
    record.kv_read("hit")
    record.kv_read("miss")
    record.total_ms = 12.5
    assert record.data_point() == {
        "indexes": ["us-en-music"],
        "blobs": ["us-en-music", "1", "cache", "kv", "cookie", "kv", "", ""],
        "doubles": [1.0, 2.0, 1.0, 1.0, 12.5, 0.0, 1.0],
    }
    assert RequestRecord(fallback=0).data_point()["doubles"][3] == 0.0


def test_crawlers_are_left_out_of_the_rates() -> None:
    """A crawler's point counts the request and marks it, but no reads, misses or fallback."""
    record = RequestRecord(segment="global", fallback=2, visitor="bot", bot=True, total_ms=3.0)
    record.kv_read("miss")
    assert record.data_point()["doubles"] == [1.0, 0.0, 0.0, 0.0, 3.0, 1.0, 0.0]
    assert json.loads(record.to_json())["bot"] is True


@FAST
@given(records)
def test_data_point_respects_analytics_engine_limits(record: RequestRecord) -> None:
    """At most 20 blobs and 20 doubles, and exactly one index of at most 96 bytes."""
    point = record.data_point()
    assert set(point) == {"indexes", "blobs", "doubles"}
    assert len(point["indexes"]) == 1
    assert len(point["indexes"][0].encode("utf-8", "surrogatepass")) <= 96
    assert record.segment.startswith(point["indexes"][0])
    assert len(point["blobs"]) <= 20
    assert all(isinstance(b, str) for b in point["blobs"])
    assert len(point["doubles"]) <= 20
    assert all(isinstance(d, float) for d in point["doubles"])
