"""Diffing against the state: new, changed, expiring, unconfirmed, unchanged, removed keys."""

from __future__ import annotations

import gc
import tempfile
from typing import TYPE_CHECKING

import pytest

from builder.batching import BatchCounter
from builder.errors import PayloadError
from builder.plan import HOT_KEY_WARN_BYTES, Item, build_plan, check_payload
from builder.publish import Publisher
from builder.state import State
from edgeshelf.schema import SEGMENT_TTL, USER_TTL

if TYPE_CHECKING:
    from pathlib import Path

    from builder.cloudflare import KVClient
    from tests.builder.fakekv import FakeKV

NOW = 1_800_000_000


def seg(name: str, value: str = '{"ids":[]}', schema: str = "v3") -> Item:
    return Item(f"seg:{name}:{schema}", value, SEGMENT_TTL, "segments")


def user(n: int, value: str = "{}") -> Item:
    return Item(f"u:{n:08x}-0000-4000-8000-000000000000", value, USER_TTL, "profiles")


def publish(state: State, kv: KVClient, items: list[Item], now: int = NOW, schema: str = "v3"):
    plan = build_plan(state, items, schema=schema, now=now)
    report = Publisher(kv, state, clock=lambda: float(now)).publish(plan)
    return plan.counts, report


def test_first_run_writes_everything_and_rerun_nothing(
    state_path: Path, kv: KVClient, fake: FakeKV
) -> None:
    """Unchanged input a minute later plans zero writes and zero requests."""
    items = [seg("global"), seg("us-en-default"), *(user(i) for i in range(30))]
    with State(state_path) as state:
        counts, report = publish(state, kv, items)
        assert counts.writes == 32
        assert sum(report.written.values()) == 32
        again = build_plan(state, items, schema="v3", now=NOW + 60).counts
    assert (again.writes, again.skips, again.deleted, again.requests) == (0, 32, 0, 0)
    assert len(fake.store) == 32


def test_changed_values_and_removed_keys(state_path: Path, kv: KVClient, fake: FakeKV) -> None:
    """A changed value is rewritten; a key no longer computed is deleted from KV and state."""
    with State(state_path) as state:
        publish(state, kv, [seg("a"), seg("b"), user(1), user(2)])
        counts, report = publish(state, kv, [seg("a", '{"ids":["x"]}'), user(1)], now=NOW + 60)
        assert (counts.changed["segments"], counts.skipped["profiles"], counts.deleted) == (1, 1, 2)
        assert report.deleted == 2
        assert set(state.keys("*")) == {"seg:a:v3", user(1).key}
    assert fake.store == {"seg:a:v3": '{"ids":["x"]}', user(1).key: "{}"}


def test_unchanged_keys_are_refreshed_before_they_expire(state_path: Path, kv: KVClient) -> None:
    """Past half its TTL an unchanged segment is written again, so it never lapses."""
    items = [seg("a"), user(1)]
    with State(state_path) as state:
        publish(state, kv, items)
        later = NOW + SEGMENT_TTL // 2 + 1
        counts = build_plan(state, items, schema="v3", now=later).counts
    assert counts.refresh == {"segments": 1, "profiles": 0}
    assert counts.skipped == {"segments": 0, "profiles": 1}


def test_unconfirmed_keys_are_rewritten(state_path: Path, kv: KVClient) -> None:
    """A key marked sent-but-unconfirmed is written again even if its value is unchanged."""
    items = [seg("a"), user(1)]
    with State(state_path) as state:
        publish(state, kv, items)
        state.mark_unconfirmed([user(1).key])
        counts = build_plan(state, items, schema="v3", now=NOW).counts
    assert counts.unconfirmed == {"segments": 0, "profiles": 1}


def test_other_schemas_are_left_for_gc(state_path: Path, kv: KVClient, fake: FakeKV) -> None:
    """A run with schema v4 writes v4 keys and neither rewrites nor deletes v3 ones."""
    with State(state_path) as state:
        publish(state, kv, [seg("a"), user(1)])
        counts, _ = publish(state, kv, [seg("a", schema="v4"), user(1)], schema="v4")
    assert (counts.new["segments"], counts.deleted) == (1, 0)
    assert set(fake.store) == {"seg:a:v3", "seg:a:v4", user(1).key}


def test_items_out_of_order_are_a_bug_not_a_silent_misdiff(state_path: Path) -> None:
    """The merge join relies on key order, so an unordered stream is refused."""
    with State(state_path) as state, pytest.raises(AssertionError, match="out of order"):
        build_plan(state, [user(2), user(1)], schema="v3", now=NOW)


def test_oversized_values_are_refused_and_big_ones_warned() -> None:
    """Over the Worker's cap is refused; over 100 KB (hot-key guidance) is a warning."""
    with pytest.raises(PayloadError, match="over the limit"):
        check_payload("u:x", "x" * 3000, 2048)
    with pytest.raises(PayloadError, match="512"):
        check_payload("k" * 600, "v", 2048)
    warnings: list[str] = []
    check_payload("shell:home:1", "x" * (HOT_KEY_WARN_BYTES + 1), 5 << 20, warnings.append)
    assert warnings
    assert "hot-key" in warnings[0]


def test_plan_refuses_a_profile_the_worker_would_reject(state_path: Path) -> None:
    """A computed profile over MAX_PROFILE_BYTES stops the plan before anything is sent."""
    with State(state_path) as state, pytest.raises(PayloadError):
        build_plan(state, [user(1, "x" * 4096)], schema="v3", now=NOW)


def test_request_count_matches_batching() -> None:
    """10,001 small pairs need two bulk requests; a byte cap splits earlier."""
    counter = BatchCounter()
    for _ in range(10_001):
        counter.add(100)
    assert counter.batches == 2
    small = BatchCounter(max_pairs=10_000, max_bytes=1_000)
    for _ in range(25):
        small.add(100)
    assert small.batches == 3


def test_plan_counts_write_requests_across_phases(state_path: Path) -> None:
    """Segments and profiles share batches: 1 + 10,001 writes take 2 requests, not 3."""
    items = [seg("a"), *(user(i) for i in range(10_001))]
    with State(state_path) as state:
        counts = build_plan(state, items, schema="v3", now=NOW).counts
    assert (counts.write_requests, counts.delete_requests) == (2, 0)


def test_plan_predicts_ceil_of_all_writes_over_the_batch_size(state_path: Path) -> None:
    """Issue #6's case scaled down: 300 segments + 19,700 profiles are 2 requests, not 1 + 2."""
    items = [*(seg(f"s{i:03d}") for i in range(300)), *(user(i) for i in range(19_700))]
    with State(state_path) as state:
        counts = build_plan(state, items, schema="v3", now=NOW).counts
    assert (counts.writes_in("segments"), counts.writes_in("profiles")) == (300, 19_700)
    assert counts.write_requests == 2


def test_the_writes_file_is_read_back_in_order_and_removed_with_the_plan(state_path: Path) -> None:
    """A plan's writes come back in send order across file batches; its file goes with it."""
    items = [seg("a"), *(user(i, f'{{"n":{i}}}') for i in range(25_001))]
    with State(state_path) as state:
        plan = build_plan(state, items, schema="v3", now=NOW)
        path = plan.puts_file
        writes = list(plan.writes())
        assert [w[0] for w in writes] == [item.key for item in items]
        assert [w[1] for w in writes] == [item.value for item in items]
        assert [w[4] for w in writes] == ["segments"] + ["profiles"] * 25_001
        assert [p[0] for p in plan.puts("segments")] == ["seg:a:v3"]
        assert path.is_file()
        del plan
        gc.collect()
        assert not path.parent.exists()


def test_a_failed_plan_leaves_no_writes_file(
    state_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """When planning fails half-way, the temporary writes file is removed at once."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    items = [user(2), user(1)]  # out of order: the plan stops after the first write
    with State(state_path) as state, pytest.raises(AssertionError, match="out of order"):
        build_plan(state, items, schema="v3", now=NOW)
    assert not list(tmp_path.glob("edgeshelf-plan-*"))
