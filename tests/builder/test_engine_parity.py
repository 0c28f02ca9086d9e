"""DuckDB and Spark run the one definition: the same bytes for every key, the same plan, the
same refusals.

Spark runs as one local session for the whole test session (``local[2]``, no UI, two shuffle
partitions); every build on it is compared with the same build on DuckDB.
"""

from __future__ import annotations

import csv
import json
import os
import string
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.engines import DuckDBEngine, Engine
from builder.errors import InputError
from builder.plan import build_plan, computed_items
from builder.ranking import RankingOptions, compute
from builder.sources import load_inputs
from builder.state import State
from tests.builder.conftest import NOW, SMALL_K
from tests.builder.helpers import (
    CATALOG_HEADER,
    EVENT_HEADER,
    T0,
    UID,
    UID2,
    catalog_rows,
    csv_to_parquet,
    write_csv,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from builder.sample import SampleFiles
    from builder.spark import SparkEngine

pytestmark = pytest.mark.spark

SCHEMA = "v3"


def _output(
    engine: Engine, events: Path, catalog: Path, now: int, options: RankingOptions
) -> tuple[dict[str, str], dict[str, Any], list[tuple[str, str, int, bytes, str]]]:
    """Every computed key -> value, and the plan against an empty state (counts and writes)."""
    inputs = load_inputs(engine, events=events, catalog=catalog, now=now)
    as_of = min(inputs.stats.max_ts if inputs.stats.max_ts is not None else now, now)
    build = compute(engine, inputs, as_of=as_of, options=options)
    items = {item.key: item.value for item in computed_items(build, SCHEMA)}
    with State(Path(":memory:")) as state:
        plan = build_plan(state, computed_items(build, SCHEMA), schema=SCHEMA, now=now)
        writes = list(plan.writes())
        counts = plan.counts.as_dict()
    return items, counts, writes


def _both(
    spark_engine: Callable[[], SparkEngine],
    events: Path,
    catalog: Path,
    now: int,
    options: RankingOptions,
) -> None:
    duck = DuckDBEngine()
    try:
        want = _output(duck, events, catalog, now, options)
    finally:
        duck.close()
    spark = spark_engine()
    try:
        got = _output(spark, events, catalog, now, options)
    finally:
        spark.close()
    want_items, got_items = want[0], got[0]
    assert set(got_items) == set(want_items)
    differ = [k for k in want_items if got_items[k] != want_items[k]]
    assert differ == [], [(k, want_items[k], got_items[k]) for k in differ[:3]]
    assert got[1] == want[1]
    assert got[2] == want[2]


def test_sample_gives_the_same_bytes_and_plan_on_both_engines(
    spark_engine: Callable[[], SparkEngine], small_sample: SampleFiles
) -> None:
    """On the sample data set every key, value and planned write is identical on both engines."""
    options = RankingOptions(min_segment_size=SMALL_K)
    _both(spark_engine, small_sample.events, small_sample.catalog, NOW, options)


# --- random small data sets ----------------------------------------------------------------

_UIDS = [f"{i:08x}-{i:04x}-4{i:03x}-8{i:03x}-{i:012x}" for i in range(1, 13)]
_VIDEOS = [f"v{i}" for i in range(8)]
# Raw catalog and event values, messy on purpose: case, region subtags, junk, empty.
_CATEGORIES = ["Music", "music", "Stand-up Comedy", "gaming", "", "kids!", "News"]
_LANGS = ["en", "en-US", "pt_BR", "de", "", "x", "ja"]
_COUNTRIES = ["us", "US", "de", "jp", "", "zzz", "br"]

_row = st.tuples(
    st.sampled_from(_UIDS),
    st.sampled_from(_VIDEOS),
    # A narrow window of whole and fractional seconds, as numbers and as ISO 8601 text with and
    # without an offset: equal timestamps happen often.
    st.one_of(
        st.integers(T0 - 30 * 86_400, T0),
        st.sampled_from([T0 - 5, T0 - 5.5, T0, "2025-05-23T11:33:20Z", "2025-05-23 13:33:20"]),
        st.sampled_from(["2025-05-23T13:33:20+02:00", "2025-05-23T11:33:20.250Z"]),
    ),
    st.sampled_from(_COUNTRIES),
    st.sampled_from(_LANGS),
    st.one_of(st.sampled_from([0, 1, 30, 300, 14_400, 20_000]), st.integers(0, 5_000)),
)


@st.composite
def _data_sets(draw: st.DrawFn) -> tuple[list[list[Any]], list[list[Any]], RankingOptions]:
    catalog = [
        [
            vid,
            draw(st.sampled_from(_CATEGORIES)),
            draw(st.sampled_from(_LANGS)),
            T0 - draw(st.integers(0, 3)) * 86_400,  # equal publication dates: ties by id
            draw(st.text(string.ascii_letters, max_size=5)),
        ]
        for vid in _VIDEOS
    ]
    events: list[list[Any]] = [list(r) for r in draw(st.lists(_row, min_size=0, max_size=60))]
    repeat: bool = draw(st.booleans())
    if events and repeat:
        events.append(list(events[0]))  # a row repeated verbatim counts once
    options = RankingOptions(
        min_segment_size=draw(st.integers(1, 3)),
        top_n=draw(st.integers(1, 6)),
        min_video_users=draw(st.integers(1, 3)),
        min_events=draw(st.integers(1, 3)),
        min_evidence=draw(st.sampled_from([0.0, 60.0, 300.0])),
    )
    return events, catalog, options


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=_data_sets())
def test_random_small_data_sets_give_the_same_bytes_and_plan(
    spark_engine: Callable[[], SparkEngine],
    tmp_path_factory: pytest.TempPathFactory,
    data: tuple[list[list[Any]], list[list[Any]], RankingOptions],
) -> None:
    """On random small inputs (ties, repeats, messy values) both engines agree byte for byte."""
    events, catalog, options = data
    root = tmp_path_factory.mktemp("parity")
    ev = write_csv(root / "events.csv", EVENT_HEADER, events)
    cat = write_csv(root / "catalog.csv", CATALOG_HEADER, catalog)
    _both(spark_engine, ev, cat, T0 + 3_600, options)


# --- refusals --------------------------------------------------------------------------------

_GOOD = [UID2, "v2", T0, "gb", "en", 30]
REFUSALS: dict[str, tuple[list[object], str]] = {
    "negative duration": ([UID, "v1", T0, "us", "en", -3], "watch_seconds"),
    "not a number": ([UID, "v1", T0, "us", "en", "ten"], "watch_seconds"),
    "unknown video": ([UID, "nope", T0, "us", "en", 5], "video_id"),
    "key-like user id": (["../u:admin", "v1", T0, "us", "en", 5], "user_id"),
    "milliseconds": ([UID, "v1", T0 * 1000, "us", "en", 5], "ts"),
    "not a timestamp": ([UID, "v1", "yesterday", "us", "en", 5], "ts"),
    "missing value": ([UID, "v1", T0, "us", "en", ""], "watch_seconds"),
}


def _refusal(engine: Engine, events: Path, catalog: Path) -> InputError:
    try:
        with pytest.raises(InputError) as info:
            load_inputs(engine, events=events, catalog=catalog, now=T0 + 3_600)
    finally:
        engine.close()
    return info.value


@pytest.mark.parametrize("name", list(REFUSALS))
def test_bad_rows_are_refused_with_the_same_message(
    spark_engine: Callable[[], SparkEngine], tmp_path: Path, name: str
) -> None:
    """A bad row is refused on both engines with one message: file, row, column, value, count."""
    bad, column = REFUSALS[name]
    ev = write_csv(tmp_path / "events.csv", EVENT_HEADER, [_GOOD, _GOOD, bad, _GOOD, bad])
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog_rows())
    duck = _refusal(DuckDBEngine(), ev, cat)
    spark = _refusal(spark_engine(), ev, cat)
    assert (duck.row, duck.column) == (3, column)
    assert str(spark) == str(duck)
    assert "(and 1 more bad rows)" in str(spark)


def test_spark_numbers_rows_of_a_file_read_in_many_splits(
    spark_engine: Callable[[], SparkEngine], tmp_path: Path
) -> None:
    """A file Spark reads in many partitions still reports the bad row's number, as DuckDB does."""
    rows: list[list[object]] = [[UID, f"v{i % 5}", T0 - i, "us", "en", 10] for i in range(3_000)]
    rows[2_345][5] = -1
    ev = write_csv(tmp_path / "events.csv", EVENT_HEADER, rows)
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog_rows())
    spark = spark_engine()
    spark.session.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    try:
        assert spark.session.read.csv(str(ev)).rdd.getNumPartitions() > 10
        refused = _refusal(spark, ev, cat)
    finally:
        spark.session.conf.unset("spark.sql.files.maxPartitionBytes")
    assert (refused.row, refused.column) == (2_346, "watch_seconds")
    assert str(refused) == str(_refusal(DuckDBEngine(), ev, cat))


def test_unreadable_inputs_are_refused_on_spark_naming_the_file(
    spark_engine: Callable[[], SparkEngine], tmp_path: Path, small_sample: SampleFiles
) -> None:
    """A truncated Parquet file, a ragged CSV line and a Latin-1 byte are refused, not crashes."""
    cut = tmp_path / "events.parquet"
    cut.write_bytes(small_sample.events.read_bytes()[:1000])
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(",".join(EVENT_HEADER) + f"\n{UID},v1,{T0},us,en,5\n{UID},v1,{T0},us\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        (",".join(EVENT_HEADER) + f"\n{UID},v1,{T0},us,caf\xe9,5\n").encode("latin-1")
    )
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog_rows())
    for path in (cut, ragged, latin):
        refused = _refusal(spark_engine(), path, cat)
        assert str(refused).startswith(str(path)), refused
    assert "not utf-8" in str(_refusal(spark_engine(), latin, cat))
    assert _refusal(spark_engine(), latin, cat).column == "lang"


def test_empty_and_malformed_csv_headers_are_refused_alike(
    spark_engine: Callable[[], SparkEngine], tmp_path: Path
) -> None:
    """An empty CSV and a header naming a column twice get the same refusal on both engines."""
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog_rows())
    empty = tmp_path / "events.csv"
    empty.write_bytes(b"")
    twice = tmp_path / "twice.csv"
    with twice.open("w", newline="") as fh:
        csv.writer(fh).writerows([[*EVENT_HEADER, "ts"], [UID, "v1", T0, "us", "en", 5, T0]])
    for path in (empty, twice):
        assert str(_refusal(spark_engine(), path, cat)) == str(_refusal(DuckDBEngine(), path, cat))


@pytest.mark.slow
def test_spark_connect_plans_what_duckdb_plans(small_sample: SampleFiles, tmp_path: Path) -> None:
    """Through Spark Connect (SPARK_REMOTE; here a local server) the plan is DuckDB's exactly."""
    args = [
        "plan", "--events", str(small_sample.events), "--catalog", str(small_sample.catalog),
        "--state", str(tmp_path / "state.sqlite"), "--min-segment-size", str(SMALL_K),
        "--now", str(NOW), "--json",
    ]  # fmt: skip
    plans = {}
    for engine, extra in (("duckdb", {}), ("spark", {"SPARK_REMOTE": "local[2]"})):
        env = {**os.environ, "EDGESHELF_ENGINE": engine, **extra}
        proc = subprocess.run(
            ["uv", "run", "edgeshelf-builder", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        plans[engine] = json.loads(proc.stdout)
    assert plans["spark"]["plan"] == plans["duckdb"]["plan"]
    assert plans["spark"]["inputs"] == plans["duckdb"]["inputs"]
    assert plans["spark"]["plan"]["write"]["total"] > 600


def test_a_parquet_directory_is_read_and_refused_without_a_row(
    spark_engine: Callable[[], SparkEngine], tmp_path: Path
) -> None:
    """A lake-style folder of Parquet files is read; a bad row is named by all but its row."""
    good = [[UID, "v1", T0, "us", "en", 5]] * 3
    bad = [[UID2, "v2", T0, "gb", "en", -7]]
    folder = tmp_path / "events"
    folder.mkdir()
    for name, rows in (("part-0", good), ("part-1", good + bad)):
        src = write_csv(tmp_path / f"{name}.csv", EVENT_HEADER, rows)
        csv_to_parquet(src, folder / f"{name}.parquet")
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog_rows())
    refused = _refusal(spark_engine(), folder, cat)
    assert (refused.file, refused.row, refused.column) == (str(folder), None, "watch_seconds")
    assert str(refused) == f"{folder}, column watch_seconds: negative duration: -7"
