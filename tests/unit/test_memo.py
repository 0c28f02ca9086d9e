"""The isolate's time-bounded memo: freshness, the size bound, and the off switch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf.memo import Entry, TtlMemo
from tests.unit.strategies import FAST


def test_an_entry_is_fresh_until_its_ttl_then_gone() -> None:
    memo: TtlMemo[str, str | None] = TtlMemo(10, 8)
    memo.put("seg:a", "value", now=100.0)
    assert memo.get("seg:a", 100.0) == Entry("value", 110.0)
    assert memo.get("seg:a", 109.999) is not None
    assert memo.get("seg:a", 110.0) is None
    assert len(memo) == 0  # a stale entry is dropped, not kept around


def test_a_missing_value_is_remembered_as_none() -> None:
    """A KV miss is an answer too: remembering it spares the next visitor the read."""
    memo: TtlMemo[str, str | None] = TtlMemo(5, 8)
    memo.put("seg:gone", None, now=0.0)
    entry = memo.get("seg:gone", 1.0)
    assert entry is not None
    assert entry.value is None
    assert memo.get("seg:never-read", 1.0) is None


def test_ttl_zero_turns_the_memo_off() -> None:
    memo: TtlMemo[str, str] = TtlMemo(0, 8)
    memo.put("k", "v", now=0.0)
    assert not memo.enabled
    assert memo.get("k", 0.0) is None
    assert len(memo) == 0
    assert TtlMemo(-3, 8).enabled is False
    assert TtlMemo(1, 8).enabled is True


def test_the_oldest_stored_goes_first_and_a_rewrite_counts_as_new() -> None:
    memo: TtlMemo[str, int] = TtlMemo(60, 3)
    for i, key in enumerate("abc"):
        memo.put(key, i, now=0.0)
    memo.put("a", 10, now=1.0)  # "a" is now the newest
    memo.put("d", 3, now=1.0)  # evicts "b", the oldest stored
    assert [k for k in "abcd" if memo.get(k, 2.0) is not None] == ["a", "c", "d"]
    entry = memo.get("a", 2.0)
    assert entry == Entry(10, 61.0)


def test_max_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_size"):
        TtlMemo(1, 0)


@FAST
@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 9), st.floats(0, 1)), max_size=60
    )
)
def test_never_more_than_max_size_and_never_a_stale_answer(
    ops: list[tuple[str, int, float]],
) -> None:
    """Against a model: every answer is the last value stored for the key, and still fresh."""
    memo: TtlMemo[str, int] = TtlMemo(2.0, 4)
    now = 0.0
    last: dict[str, tuple[int, float]] = {}
    for key, value, step in ops:
        now += step
        if value % 3:
            memo.put(key, value, now)
            last[key] = (value, now)
        else:
            entry = memo.get(key, now)
            if entry is not None:
                assert (entry.value, entry.expires) == (last[key][0], last[key][1] + 2.0)
                assert entry.expires > now
        assert len(memo) <= 4


def test_renew_keeps_a_known_value_for_another_ttl_even_once_stale() -> None:
    """A value confirmed unchanged elsewhere (a shell version its pointer names again) is kept,
    not rebuilt; renewing what was never stored gives nothing."""
    memo: TtlMemo[str, str] = TtlMemo(10, 4)
    memo.put("shell", "split", now=0.0)
    assert memo.renew("shell", 15.0) == Entry("split", 25.0)
    assert memo.get("shell", 24.0) == Entry("split", 25.0)
    assert memo.renew("never", 15.0) is None
    off: TtlMemo[str, str] = TtlMemo(0, 4)
    off.put("shell", "split", now=0.0)
    assert off.renew("shell", 1.0) is None
