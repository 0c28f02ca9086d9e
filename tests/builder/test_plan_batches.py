"""Profiles planned in batches (``computed_batches``) give the plan of one item at a time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from builder.engines import DuckDBEngine
from builder.errors import PayloadError
from builder.plan import ItemBatch, build_plan, computed_batches, computed_items, value_hash
from builder.ranking import RankingOptions, compute
from builder.sources import load_inputs
from builder.state import State
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
        changed = [(i.key, b"x" * 16, NOW + i.ttl) for i in profiles[1::7]]
        expiring = [(i.key, value_hash(i.value, i.ttl), NOW + 60) for i in profiles[2::11]]
        gone = [(f"u:{i:08x}-0000-4000-8000-000000000000", b"y" * 16, NOW + 60) for i in range(5)]
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
    batch = ItemBatch(
        keys=["u:a", "u:b"], values=["{}", "x" * 5000], sizes=[2, 5000], ttl=60, phase="profiles"
    )
    errors = []
    for items in ([batch], list(batch.items())):
        with State(Path(":memory:")) as state, pytest.raises(PayloadError) as info:
            build_plan(state, items, schema=SCHEMA, now=NOW)
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert "u:b" in errors[0]
