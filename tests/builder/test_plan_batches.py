"""Profiles planned in batches (``computed_batches``) give the plan of one item at a time."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.batching import BatchCounter
from builder.digests import value_hash
from builder.engines import DuckDBEngine
from builder.errors import PayloadError
from builder.plan import (
    ItemBatch,
    _Writer,
    build_plan,
    computed_batches,
    computed_items,
)
from builder.ranking import RankingOptions, compute
from builder.sources import load_inputs
from builder.state import State
from edgeshelf.schema import USER_TTL
from tests.builder.conftest import NOW

if TYPE_CHECKING:
    from builder.sample import SampleFiles

SCHEMA = "v3"


def test_profiles_planned_in_batches_give_the_plan_of_one_item_at_a_time(
    small_sample: SampleFiles, tmp_path: Path
) -> None:
    """``computed_batches`` plans exactly what ``computed_items`` plans, against any state."""
    engine = DuckDBEngine()
    try:
        inputs = load_inputs(
            engine, events=small_sample.events, catalog=small_sample.catalog, now=NOW
        )
        as_of = min(inputs.stats.max_ts or NOW, NOW)
        build = compute(engine, inputs, as_of=as_of, options=RankingOptions(min_segment_size=5))
        items = list(computed_items(build, SCHEMA))
        profiles = [i for i in items if i.phase == "profiles"]
        assert len(profiles) >= 500
        # A state with every case: confirmed and unchanged, changed, unconfirmed, about to
        # expire, and keys no longer computed (deleted).
        confirmed = [(i.key, value_hash(i.value, i.ttl), NOW + i.ttl) for i in profiles[::3]]
        changed = [(i.key, b"x" * 20, NOW + i.ttl) for i in profiles[1::7]]
        expiring = [(i.key, value_hash(i.value, i.ttl), NOW + 60) for i in profiles[2::11]]
        gone = [(f"u:{i:08x}-0000-4000-8000-000000000000", b"y" * 20, NOW + 60) for i in range(5)]
        plans = []
        for source in (computed_items, computed_batches):
            with State(tmp_path / f"{source.__name__}.sqlite") as state:
                state.confirm_written(confirmed + changed + expiring + gone)
                state.mark_unconfirmed([profiles[5].key, profiles[6].key])
                plan = build_plan(state, source(build, SCHEMA), schema=SCHEMA, now=NOW)
                plans.append((plan.counts.as_dict(), list(plan.writes()), list(plan.deletes())))
    finally:
        engine.close()
    assert plans[1] == plans[0]
    counts: dict[str, Any] = plans[0][0]
    assert all(
        counts["write"][k]["profiles"] > 0 for k in ("new", "changed", "refresh", "unconfirmed")
    )
    assert counts["skip"]["profiles"] > 0
    assert len(plans[0][2]) == 5


def test_an_oversized_profile_in_a_batch_is_refused_as_one_item_at_a_time() -> None:
    """A batch with a value over the limit is refused with the per-key message."""
    batch = ItemBatch.of(["u:a", "u:b"], ["{}", "x" * 5000], 60, "profiles")
    errors = []
    for items in ([batch], list(batch.items())):
        with State(Path(":memory:")) as state, pytest.raises(PayloadError) as info:
            build_plan(state, items, schema=SCHEMA, now=NOW)
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert "u:b" in errors[0]


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=60),
    cuts=st.lists(st.integers(min_value=1, max_value=60), max_size=5),
    max_pairs=st.integers(min_value=1, max_value=7),
    max_bytes=st.integers(min_value=400, max_value=2_000),
    chunk=st.integers(min_value=1, max_value=9),
)
def test_a_first_runs_plan_made_in_bulk_is_the_plan_of_each_key_on_its_own(
    sizes: list[int], cuts: list[int], max_pairs: int, max_bytes: int, chunk: int
) -> None:
    """Against an empty state, batches planned in bulk give exactly what each key gives alone."""
    # The reference is worked out key by key here: every key new, its hash, its size, and the
    # requests BatchCounter.add counts one pair at a time (small caps, so the byte and pair
    # limits both cut batches; a small file chunk, so writes cross its flushes).
    keys = [f"u:{i:06d}" for i in range(len(sizes))]
    values = ["v" * size for size in sizes]
    bounds = sorted({0, len(keys), *(c for c in cuts if c < len(keys))})
    batches = [
        ItemBatch.of(keys[a:b], values[a:b], USER_TTL, "profiles")
        for a, b in itertools.pairwise(bounds)
    ]
    counter = BatchCounter(max_pairs=max_pairs, max_bytes=max_bytes)
    for key, size in zip(keys, sizes, strict=True):
        counter.add(BatchCounter.pair_size(len(key), size))
    with (
        pytest.MonkeyPatch.context() as mp,
        State(Path(":memory:")) as state,
    ):
        mp.setattr(_Writer, "CHUNK", chunk)
        plan = build_plan(
            state, batches, schema=SCHEMA, now=NOW, max_pairs=max_pairs, max_bytes=max_bytes
        )
        writes = list(plan.writes())
    assert writes == [
        (key, value, USER_TTL, value_hash(value, USER_TTL), "profiles")
        for key, value in zip(keys, values, strict=True)
    ]
    assert plan.counts.new["profiles"] == plan.counts.computed["profiles"] == len(keys)
    assert plan.counts.write_bytes == sum(sizes)
    assert plan.counts.write_requests == counter.batches


@pytest.mark.parametrize(
    "batches",
    [
        [["u:1", "u:3", "u:2"]],  # within a batch
        [["u:1", "u:3"], ["u:2", "u:4"]],  # across batches
        [["u:1", "u:1"]],  # a key twice
    ],
)
def test_keys_out_of_order_are_refused_in_bulk_too(batches: list[list[str]]) -> None:
    """A first run's bulk path refuses keys out of order, naming the two keys, like the diff."""
    items = [ItemBatch.of(keys, ["{}"] * len(keys), 60, "profiles") for keys in batches]
    with State(Path(":memory:")) as state, pytest.raises(AssertionError, match="out of order"):
        build_plan(state, items, schema=SCHEMA, now=NOW)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=500), max_size=80),
    max_pairs=st.integers(min_value=1, max_value=9),
    max_bytes=st.integers(min_value=500, max_value=5_000),
    as_array=st.booleans(),
)
def test_counting_pairs_in_bulk_counts_what_one_at_a_time_counts(
    sizes: list[int], max_pairs: int, max_bytes: int, as_array: bool
) -> None:
    """``BatchCounter.add_all`` (a list, or an array it may count by pairs alone) equals ``add``."""
    one = BatchCounter(max_pairs=max_pairs, max_bytes=max_bytes)
    bulk = BatchCounter(max_pairs=max_pairs, max_bytes=max_bytes)
    for size in sizes[:3]:  # a counter part-way through a batch
        one.add(size)
        bulk.add(size)
    for size in sizes[3:]:
        one.add(size)
    bulk.add_all(np.array(sizes[3:], np.int32) if as_array else sizes[3:])
    assert vars(bulk) == vars(one)
