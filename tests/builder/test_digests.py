"""The state's digest of a value: one definition, made alike in Python, DuckDB and Spark."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.digests import (
    DIGEST_BYTES,
    as_current,
    digest_expr,
    legacy_hash,
    value_hash,
    value_hashes,
    verify,
)
from builder.engines import DuckDBEngine, Engine
from builder.errors import PayloadError
from builder.plan import build_plan, computed_batches, computed_items
from builder.ranking import RankingOptions, compute
from builder.sources import load_inputs
from builder.state import State
from tests.builder.conftest import NOW

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from builder.sample import SampleFiles
    from builder.spark import SparkEngine

SCHEMA = "v3"
_VALUES = ['{"a":1}', "é", "", "line\nbreak", "quote ' and \\ backslash", "日本語 🎬", "x" * 5000]


def test_the_state_digest_of_a_value_is_pinned() -> None:
    """The digest a state row keeps does not drift: a changed formula would rewrite every key."""
    # SHA-1 of "<ttl>\n<value>" in UTF-8 (state format 2).
    assert value_hash('{"a":1}', 2_592_000).hex() == "07949d2b289bd6a0c75f944836c6b871d11b6d9f"
    assert value_hash("é", 60) == hashlib.sha1("60\né".encode(), usedforsecurity=False).digest()
    assert len(value_hash("", 1)) == DIGEST_BYTES
    assert value_hashes(["é", '{"a":1}'], 60) == [value_hash("é", 60), value_hash('{"a":1}', 60)]
    # BLAKE2b-128 of the same text: the digests state format 1 holds.
    assert legacy_hash('{"a":1}', 2_592_000).hex() == "366dde4d111ae57cc2be8e0553eafd49"
    assert legacy_hash("é", 60).hex() == "878c03d4d3569fbe24916d339c12fda8"


def test_a_legacy_digest_counts_as_the_current_one_only_for_its_own_value() -> None:
    """A format-1 digest of the same value and TTL matches; of another value or TTL it does not."""
    value, ttl = '{"a":1}', 60
    now = value_hash(value, ttl)
    assert as_current(legacy_hash(value, ttl), value, ttl, now) == now
    assert as_current(legacy_hash('{"a":2}', ttl), value, ttl, now) != now
    assert as_current(legacy_hash(value, ttl + 1), value, ttl, now) != now
    assert as_current(value_hash('{"a":2}', ttl), value, ttl, now) != now


def _engine_digests(engine: Engine, values: list[str], ttl: int) -> list[bytes]:
    data = pa.table({"i": pa.array(range(len(values)), pa.int64()), "value": values})
    t = engine.small_table("digests_under_test", data)
    rows = engine.rows(t.mutate(digest=digest_expr(t.value, ttl)).order_by("i"))
    return [bytes(row["digest"]) for row in rows]


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.text(), min_size=1, max_size=20), ttl=st.integers(1, 10**9))
def test_duckdb_makes_the_digest_python_makes(values: list[str], ttl: int) -> None:
    """DuckDB's digest of any text is value_hash's, byte for byte."""
    with DuckDBEngine() as engine:
        assert _engine_digests(engine, values, ttl) == value_hashes(values, ttl)


@pytest.mark.spark
def test_spark_makes_the_digest_python_makes(spark_engine: Callable[[], SparkEngine]) -> None:
    """Spark's digest of unicode, newlines, quotes and long text is value_hash's."""
    engine = spark_engine()
    try:
        assert _engine_digests(engine, _VALUES, 2_592_000) == value_hashes(_VALUES, 2_592_000)
    finally:
        engine.close()


def test_a_wrong_engine_digest_stops_the_run() -> None:
    """A sampled row whose digest is not value_hash's raises PayloadError naming the value."""
    good = value_hashes(["a", "b"], 60)
    batch = pa.record_batch({"value": ["a", "b"], "digest": pa.array(good, pa.binary())})
    verify(batch, [0, 1], 60)
    doctored = pa.record_batch(
        {"value": ["a", "b"], "digest": pa.array([good[0], legacy_hash("b", 60)], pa.binary())}
    )
    with pytest.raises(PayloadError, match="'b'"):
        verify(doctored, [0, 1], 60)


def test_a_state_of_legacy_digests_plans_no_rewrite(
    small_sample: SampleFiles, tmp_path: Path
) -> None:
    """A format-1 state's unchanged keys are skipped, and the changed ones get today's digest."""
    with DuckDBEngine() as engine:
        inputs = load_inputs(
            engine, events=small_sample.events, catalog=small_sample.catalog, now=NOW
        )
        build = compute(engine, inputs, as_of=min(inputs.stats.max_ts or NOW, NOW),
                        options=RankingOptions(min_segment_size=5))  # fmt: skip
        items = list(computed_items(build, SCHEMA))
        rows = [(i.key, legacy_hash(i.value, i.ttl), NOW + i.ttl) for i in items]
        changed = {items[3].key, items[-2].key}
        rows = [(k, legacy_hash("old", 1) if k in changed else h, e) for k, h, e in rows]
        for source in (computed_items, computed_batches):
            with State(tmp_path / f"{source.__name__}.sqlite") as state:
                state.confirm_written(rows)
                plan = build_plan(state, source(build, SCHEMA), schema=SCHEMA, now=NOW)
                writes = list(plan.writes())
            assert {key for key, *_ in writes} == changed
            assert all(digest == value_hash(value, ttl) for _, value, ttl, digest, _ in writes)
            assert plan.counts.changed == {"segments": 1, "profiles": 1}
            assert plan.counts.skips == len(items) - 2
