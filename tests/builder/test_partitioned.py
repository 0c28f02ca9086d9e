"""DuckDB split by user (a large input, run part by part) gives what one table gives, exactly.

``DuckDBEngine(partition_rows=...)`` forces the split on small files: the same bytes for every
key, the same plan, the same counts (duplicates included) and the same refusals.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builder.engines import DuckDBEngine
from builder.errors import InputError
from builder.plan import build_plan, computed_items
from builder.ranking import RankingOptions, compute
from builder.sources import load_inputs, named_events, repeated_rows
from builder.state import State
from tests.builder.conftest import NOW, SMALL_K
from tests.builder.helpers import (
    CATALOG_HEADER,
    EVENT_HEADER,
    T0,
    UID,
    UID2,
    UID3,
    catalog_rows,
    csv_to_parquet,
    write_csv,
)

if TYPE_CHECKING:
    from builder.sample import SampleFiles

SCHEMA = "v3"


def _output(
    engine: DuckDBEngine, events: Path, catalog: Path, now: int, options: RankingOptions
) -> tuple[Any, ...]:
    try:
        inputs = load_inputs(engine, events=events, catalog=catalog, now=now)
        parts = len(inputs.event_parts)
        as_of = min(inputs.stats.max_ts if inputs.stats.max_ts is not None else now, now)
        build = compute(engine, inputs, as_of=as_of, options=options)
        items = [(item.key, item.value) for item in computed_items(build, SCHEMA)]
        with State(Path(":memory:")) as state:
            plan = build_plan(state, computed_items(build, SCHEMA), schema=SCHEMA, now=now)
            writes = list(plan.writes())
            counts = plan.counts.as_dict()
        return parts, build.input_stats, build.segment_sizes, items, counts, writes
    finally:
        engine.close()


def test_the_sample_split_by_user_gives_the_same_keys_values_and_plan(
    small_sample: SampleFiles,
) -> None:
    """The sample split into several parts gives every key, value, count and write of one part."""
    options = RankingOptions(min_segment_size=SMALL_K)
    args = (small_sample.events, small_sample.catalog, NOW, options)
    whole = _output(DuckDBEngine(), *args)
    split = _output(DuckDBEngine(partition_rows=1_500), *args)
    assert whole[0] == 1
    assert split[0] > 3
    assert split[1:] == whole[1:]
    assert len(whole[3]) > 600


def test_the_parts_keep_visitor_ids_as_16_byte_uuids_and_videos_as_numbers(
    small_sample: SampleFiles,
) -> None:
    """Each part file stores the visitor ID as Parquet's UUID and the video as its number."""
    engine = DuckDBEngine(partition_rows=1_500)
    try:
        load_inputs(engine, events=small_sample.events, catalog=small_sample.catalog, now=NOW)
        files = sorted(engine._spill.glob("*/part-*.parquet"))
        assert len(files) > 3
        for file in files:
            schema = pq.read_schema(file)
            assert schema.field("uid").type.byte_width == 16
            columns = pq.ParquetFile(file).schema
            assert str(columns.column(columns.names.index("uid")).logical_type) == "UUID"
            assert schema.field("vno").type == pa.int32()
            assert "user_id" not in schema.names
            assert "video_id" not in schema.names
    finally:
        engine.close()


def test_repeated_rows_count_once_in_every_part(tmp_path: Path) -> None:
    """Rows repeated verbatim count once when split, empty parts included, as in one table."""
    rows: list[list[object]] = [
        [uid, f"v{i % 5}", T0 - 60 * i, "us", "en", 40 + i]
        for i, uid in enumerate([UID, UID2, UID3] * 6)
    ]
    rows += rows[:4]  # four rows repeated verbatim, in whichever parts their users are
    ev = csv_to_parquet(write_csv(tmp_path / "e.csv", EVENT_HEADER, rows), tmp_path / "e.parquet")
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog_rows())
    options = RankingOptions(min_segment_size=1, min_video_users=1)
    whole = _output(DuckDBEngine(), ev, cat, T0 + 3_600, options)
    # More parts than users: some parts are empty.
    split = _output(DuckDBEngine(partition_rows=4), ev, cat, T0 + 3_600, options)
    assert whole[1].duplicate_events == 4
    assert split[0] > 3
    assert split[1:] == whole[1:]


def _repeats_input(tmp_path: Path) -> tuple[Path, Path, list[list[object]]]:
    """Events where four (user, video) pairs get more rows: three verbatim copies, two new."""

    def row(i: int, earlier: int = 0, longer: int = 0) -> list[object]:
        uid = [UID, UID2, UID3][i % 3]
        return [uid, f"v{i % 5}", T0 - 60 * i - earlier, "us", "en", 40 + i + longer]

    rows = [row(i) for i in range(18)]
    rows += [
        row(0),  # a verbatim repeat
        row(1),
        row(1),  # a row three times
        row(2, earlier=1),  # the same pair a second earlier: a new row
        row(3, longer=1),  # the same pair and time, another duration: a new row
    ]
    ev = csv_to_parquet(write_csv(tmp_path / "e.csv", EVENT_HEADER, rows), tmp_path / "e.parquet")
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog_rows())
    return ev, cat, rows


def test_repeated_rows_are_found_among_the_pairs_seen_more_than_once(tmp_path: Path) -> None:
    """``repeated_rows`` counts exactly the surplus copies; same pair, other values: not one."""
    ev, cat, _ = _repeats_input(tmp_path)
    engine = DuckDBEngine(partition_rows=4)
    try:
        inputs = load_inputs(engine, events=ev, catalog=cat, now=T0 + 3_600)
        found = []
        for part in inputs.event_parts:
            pairs = part.group_by(["uid", "vno"]).aggregate(n=part.count())
            found.append(repeated_rows(engine, part, pairs))
        assert sum(found) == 3
        assert len(found) > 3  # empty parts included
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("extra", "repeats"),
    [
        ([], 0),
        ([(3, 0, 1), (4, 0, 2)], 0),  # same pair and time, other durations: compared in full
        ([(0, 0, 0), (0, 0, 0), (4, 0, 0)], 3),
        ([(1, 0, 0), (1, 0, 5)], 1),  # one copy, and one row differing only in its duration
    ],
)
def test_repeated_rows_are_told_from_rows_that_share_only_their_time(
    tmp_path: Path, extra: list[tuple[int, int, int]], repeats: int
) -> None:
    """Rows sharing user, video and time but not every value are not repeats; copies are."""
    rows: list[list[object]] = [
        [[UID, UID2, UID3][i % 3], f"v{i % 5}", T0 - 60 * i - earlier, "us", "en", 40 + i + longer]
        for i, earlier, longer in [(i, 0, 0) for i in range(18)] + extra
    ]
    ev = csv_to_parquet(write_csv(tmp_path / "e.csv", EVENT_HEADER, rows), tmp_path / "e.parquet")
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog_rows())
    engine = DuckDBEngine(partition_rows=4)
    try:
        inputs = load_inputs(engine, events=ev, catalog=cat, now=T0 + 3_600)
        found = 0
        for part in inputs.event_parts:
            pairs = part.group_by(["uid", "vno"]).aggregate(n=part.count())
            found += repeated_rows(engine, part, pairs)
        assert found == repeats
    finally:
        engine.close()


def test_a_split_input_counts_its_repeated_rows_in_the_compute(tmp_path: Path) -> None:
    """Split, the load counts every row and the build the repeats; the events are distinct."""
    ev, cat, rows = _repeats_input(tmp_path)
    engine = DuckDBEngine(partition_rows=4)
    try:
        inputs = load_inputs(engine, events=ev, catalog=cat, now=T0 + 3_600)
        assert inputs.repeats_unchecked
        assert (inputs.stats.events, inputs.stats.duplicate_events) == (len(rows), 0)
        [n] = engine.rows(named_events(inputs).aggregate(n=ibis._.count()))
        assert n["n"] == len(rows) - 3
        build = compute(engine, inputs, as_of=T0, options=RankingOptions(min_segment_size=1))
        assert build.input_stats == replace(inputs.stats, events=len(rows) - 3, duplicate_events=3)
    finally:
        engine.close()


def test_a_bad_row_in_a_split_input_is_refused_with_the_same_message(tmp_path: Path) -> None:
    """A split input is refused with one table's message: file, row, column, value, count."""
    good = [[UID2, "v2", T0, "gb", "en", 30], [UID, "v1", T0, "us", "en", 5]] * 10
    rows: list[list[object]] = [*good[:7], [UID3, "v1", T0, "us", "en", -3], *good[7:]]
    rows.append([UID, "v1", T0, "us", "en", -4])
    ev = csv_to_parquet(write_csv(tmp_path / "e.csv", EVENT_HEADER, rows), tmp_path / "e.parquet")
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog_rows())
    refusals = []
    for engine in (DuckDBEngine(), DuckDBEngine(partition_rows=5)):
        try:
            with pytest.raises(InputError) as info:
                load_inputs(engine, events=ev, catalog=cat, now=T0 + 3_600)
        finally:
            engine.close()
        refusals.append(info.value)
    whole, split = refusals
    assert (whole.row, whole.column) == (8, "watch_seconds")
    assert str(split) == str(whole)
    assert "(and 1 more bad rows)" in str(split)


def test_a_corrupt_file_is_refused_when_split_as_when_whole(
    small_sample: SampleFiles, tmp_path: Path
) -> None:
    """Damaged data pages (an intact footer) are refused, naming the file, on the split path too."""
    data = bytearray(small_sample.events.read_bytes())
    for start in range(len(data) // 10, len(data) * 8 // 10, 4_096):  # every column's pages
        data[start : start + 64] = bytes((b * 7 + 13) % 256 for b in data[start : start + 64])
    bad = tmp_path / "events.parquet"
    bad.write_bytes(bytes(data))
    messages = []
    for engine, split in ((DuckDBEngine(), False), (DuckDBEngine(partition_rows=1_500), True)):
        try:
            # The footer is intact: the row count (hence the split) is still known.
            assert (engine.partition_count(engine.read(str(bad))) > 1) is split
            with pytest.raises(InputError) as info:
                load_inputs(engine, events=bad, catalog=small_sample.catalog, now=NOW)
        finally:
            engine.close()
        assert info.value.file == str(bad)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "cannot read" in messages[0]
