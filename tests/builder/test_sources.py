"""Reading and validating inputs: good files load, bad ones are refused with file/row/column."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.engines import DuckDBEngine, Engine
from builder.errors import InputError
from builder.sources import (
    EVENT_COLUMNS,
    KEPT_EVENT_COLUMNS,
    UID_PATTERN,
    VIDEO_ID_PATTERN,
    Inputs,
    load_inputs,
    named_events,
)
from edgeshelf.schema import valid_uid, valid_video_id
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
    from pathlib import Path

    from builder.sample import SampleFiles

NOW = T0 + 3_600


def _load(events: Path, catalog: Path, now: int = NOW) -> tuple[Engine, Inputs, object]:
    engine = DuckDBEngine()
    inputs = load_inputs(engine, events=events, catalog=catalog, now=now)
    return engine, inputs, inputs.stats


def _events(engine: Engine, inputs: Inputs) -> list[tuple[object, ...]]:
    rows = engine.rows(inputs.events.order_by(list(inputs.events.columns)))
    return [tuple(r.values()) for r in rows]


def _refusal(tmp_path: Path, rows: list[list[object]], *, header: list[str] | None = None,
             catalog: list[list[object]] | None = None) -> InputError:  # fmt: skip
    events = write_csv(tmp_path / "events.csv", header or EVENT_HEADER, rows)
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog or catalog_rows())
    with pytest.raises(InputError) as info:
        _load(events, cat)
    return info.value


def test_sample_parquet_and_csv_load_identically(
    small_sample: SampleFiles, small_sample_csv: SampleFiles
) -> None:
    """The same sample as Parquet and as CSV loads into the same events table."""
    tables = []
    for files in (small_sample, small_sample_csv):
        engine, inputs, stats = _load(files.events, files.catalog, now=2_000_000_000)
        assert stats.events == files.event_rows  # type: ignore[attr-defined]
        tables.append(_events(engine, inputs))
    assert tables[0] == tables[1]


def test_timestamps_may_be_iso_strings_with_offsets_or_epoch_seconds(tmp_path: Path) -> None:
    """``ts`` accepts epoch seconds and ISO 8601 (offsets honoured) in the same file."""
    rows = [
        [UID, "v1", str(T0), "us", "en", 10],
        [UID, "v2", "2025-05-23T10:00:00+02:00", "us", "en", 10],
    ]
    events = write_csv(tmp_path / "e.csv", EVENT_HEADER, rows)
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    engine, inputs, _ = _load(events, cat)
    got = sorted(r["ts"] for r in engine.rows(inputs.events))
    assert got == [1_747_987_200.0, float(T0)]


def test_missing_column_is_named(tmp_path: Path) -> None:
    """A file without ``watch_seconds`` is refused naming the file and that column."""
    header = EVENT_HEADER[:-1]
    err = _refusal(tmp_path, [[UID, "v1", T0, "us", "en"]], header=header)
    assert err.column == "watch_seconds"
    assert "events.csv" in str(err)
    assert "missing column" in str(err)


@pytest.mark.parametrize(
    ("bad_row", "column", "needle"),
    [
        ([UID, "v1", T0, "us", "en", "ten"], "watch_seconds", "not a number"),
        ([UID, "v1", T0, "us", "en", -3], "watch_seconds", "negative duration"),
        ([UID, "nope", T0, "us", "en", 5], "video_id", "unknown video"),
        ([UID.upper(), "v1", T0, "us", "en", 5], "user_id", "not a visitor ID"),
        (["../../etc", "v1", T0, "us", "en", 5], "user_id", "not a visitor ID"),
        ([UID, "v1", "yesterday", "us", "en", 5], "ts", "not a timestamp"),
        ([UID, "v1", T0 * 1000, "us", "en", 5], "ts", "milliseconds"),
        ([UID, "v1", 12, "us", "en", 5], "ts", "before 2000"),
        ([UID, "v1", T0, "us", "en", ""], "watch_seconds", "missing value"),
    ],
)
def test_bad_event_rows_are_refused_with_row_and_column(
    tmp_path: Path, bad_row: list[object], column: str, needle: str
) -> None:
    """Each kind of bad value is reported on its row (1 = first data row) and column."""
    good = [UID2, "v2", T0, "gb", "en", 30]
    err = _refusal(tmp_path, [good, good, bad_row, good])
    assert (err.row, err.column) == (3, column)
    assert needle in str(err)
    assert str(err).startswith(f"{tmp_path / 'events.csv'}, row 3, column {column}: ")


def test_count_of_other_bad_rows_is_reported(tmp_path: Path) -> None:
    """The first bad row is named, and how many more there are."""
    bad = [UID, "v1", T0, "us", "en", -1]
    err = _refusal(tmp_path, [bad, bad, bad])
    assert err.row == 1
    assert "and 2 more bad rows" in str(err)


def test_timestamp_within_a_day_in_the_future_is_kept(tmp_path: Path) -> None:
    """Producer clock skew of up to a day is tolerated rather than refused."""
    events = write_csv(tmp_path / "e.csv", EVENT_HEADER, [[UID, "v1", NOW + 3_000, "us", "en", 10]])
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    _, _, stats = _load(events, cat)
    assert stats.max_ts == NOW + 3_000  # type: ignore[attr-defined]


def test_ragged_csv_row_is_refused_with_its_row(tmp_path: Path) -> None:
    """A CSV line with a missing field is an error at that row, not silently skipped."""
    path = tmp_path / "events.csv"
    path.write_text(
        ",".join(EVENT_HEADER) + f"\n{UID},v1,{T0},us,en,5\n{UID},v1,{T0},us\n", encoding="utf-8"
    )
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    with pytest.raises(InputError) as info:
        _load(path, cat)
    assert info.value.row == 2
    assert "Expected Number of Columns" in str(info.value)


def test_non_utf8_csv_is_refused(tmp_path: Path) -> None:
    """A Latin-1 CSV is refused with a message about the encoding."""
    path = tmp_path / "events.csv"
    path.write_bytes((",".join(EVENT_HEADER) + f"\n{UID},v1,{T0},us,caf\xe9,5\n").encode("latin-1"))
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    with pytest.raises(InputError, match="utf-8"):
        _load(path, cat)


def test_non_utf8_byte_near_the_top_is_reported_on_its_row(tmp_path: Path) -> None:
    """A Latin-1 byte on the second data row is blamed on that row, not on the header."""
    good = f"{UID},v1,{T0},us,en,5\n"
    text = ",".join(EVENT_HEADER) + "\n" + good + f"{UID2},v2,{T0},fr,fran\xe7ais,5\n" + good
    path = tmp_path / "events.csv"
    path.write_bytes(text.encode("latin-1"))
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    with pytest.raises(InputError, match="not utf-8") as info:
        _load(path, cat)
    assert info.value.row == 2


@pytest.mark.parametrize("content", [b"", b"\n", b"\xef\xbb\xbf"])
def test_empty_csv_is_refused_not_a_crash(tmp_path: Path, content: bytes) -> None:
    """An empty CSV (a failed export) is an input refusal naming the file, not a traceback."""
    path = tmp_path / "events.csv"
    path.write_bytes(content)
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    with pytest.raises(InputError, match="no header line") as info:
        _load(path, cat)
    assert info.value.file == str(path)


def test_utf16_csv_is_refused_at_the_header(tmp_path: Path) -> None:
    """A UTF-16 export is refused at its header line with the decoding problem."""
    path = tmp_path / "events.csv"
    path.write_bytes((",".join(EVENT_HEADER) + f"\n{UID},v1,{T0},us,en,5\n").encode("utf-16"))
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    with pytest.raises(InputError, match="utf-8") as info:
        _load(path, cat)
    assert info.value.row == 0


def test_truncated_parquet_is_refused(tmp_path: Path, small_sample: SampleFiles) -> None:
    """A Parquet file cut short is refused naming the file."""
    cut = tmp_path / "events.parquet"
    cut.write_bytes(small_sample.events.read_bytes()[:1000])
    with pytest.raises(InputError, match=re.escape(str(cut))) as info:
        _load(cut, small_sample.catalog)
    assert "magic bytes" in str(info.value)
    assert "LINE 1" not in str(info.value)  # the builder's own SQL is not the user's problem
    assert "read_parquet" not in str(info.value)


def test_parquet_rows_are_numbered_like_csv_rows(tmp_path: Path) -> None:
    """In Parquet the bad row is numbered from 1 too."""
    rows = [[UID, "v1", T0, "us", "en", 5], [UID, "v1", T0, "us", "en", -5]]
    src = write_csv(tmp_path / "e.csv", EVENT_HEADER, rows)
    events = csv_to_parquet(src, tmp_path / "events.parquet")
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    with pytest.raises(InputError) as info:
        _load(events, cat)
    assert (info.value.row, info.value.column) == (2, "watch_seconds")


def test_duplicate_catalog_video_is_refused(tmp_path: Path) -> None:
    """A video listed twice in the catalog is refused at its second row."""
    catalog = [*catalog_rows(3), ["v1", "news", "en", T0, "again"]]
    err = _refusal(tmp_path, [[UID, "v1", T0, "us", "en", 5]], catalog=catalog)
    assert (err.row, err.column) == (4, "video_id")
    assert "duplicate" in str(err)


def test_invalid_catalog_video_id_is_refused(tmp_path: Path) -> None:
    """A catalog id the Worker would reject (here with a space) is refused."""
    catalog = [*catalog_rows(2), ["bad id", "news", "en", T0, "x"]]
    err = _refusal(tmp_path, [[UID, "v1", T0, "us", "en", 5]], catalog=catalog)
    assert (err.row, err.column) == (3, "video_id")


def test_identical_event_rows_count_once(tmp_path: Path) -> None:
    """An exported row repeated verbatim (a retried export) is counted once."""
    row = [UID, "v1", T0, "us", "en", 5]
    events = write_csv(tmp_path / "e.csv", EVENT_HEADER, [row, row, row])
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    _, _, stats = _load(events, cat)
    assert (stats.events, stats.duplicate_events) == (1, 2)  # type: ignore[attr-defined]


def test_unsupported_extension_is_refused(tmp_path: Path) -> None:
    """Only .parquet, .csv and .csv.gz are read."""
    path = tmp_path / "events.json"
    path.write_text("[]")
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    with pytest.raises(InputError, match="unsupported file type"):
        _load(path, cat)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A path that does not exist is an input error, not a traceback."""
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    with pytest.raises(InputError, match="no such file"):
        _load(tmp_path / "nope.csv", cat)


@given(st.text(alphabet="0123456789abcdefABCDEF-4", min_size=30, max_size=40))
def test_uid_pattern_agrees_with_schema(text: str) -> None:
    """The SQL pattern for user IDs accepts exactly what schema.valid_uid accepts."""
    assert (re.fullmatch(UID_PATTERN, text) is not None) == valid_uid(text)


@given(st.text(min_size=0, max_size=70))
def test_video_id_pattern_agrees_with_schema(text: str) -> None:
    """The SQL pattern for video IDs accepts exactly what schema.valid_video_id accepts."""
    assert (re.fullmatch(VIDEO_ID_PATTERN, text) is not None) == valid_video_id(text)


def test_parquet_column_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    """A Parquet ``watch_seconds`` stored as booleans is refused naming the column and type."""
    path = tmp_path / "events.parquet"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT '{UID}' AS user_id, 'v1' AS video_id, {T0} AS ts, 'us' AS country, "
        f"'en' AS lang, true AS watch_seconds) TO '{path}' (FORMAT parquet)"
    )
    cat = write_csv(tmp_path / "c.csv", CATALOG_HEADER, catalog_rows())
    with pytest.raises(InputError) as info:
        _load(path, cat)
    assert info.value.column == "watch_seconds"
    assert "has type BOOLEAN; expected a number" in str(info.value)


def test_named_events_give_back_the_input_ids(tmp_path: Path) -> None:
    """The events are kept by UUID and video number; ``named_events`` gives their text back."""
    ids = [(UID, "v1", T0 - 10), (UID2, "v3", T0 - 20), (UID, "v0", T0 - 30)]
    rows: list[list[object]] = [[uid, vid, ts, "us", "en", 30] for uid, vid, ts in ids]
    events = write_csv(tmp_path / "events.csv", EVENT_HEADER, rows)
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog_rows())
    engine, inputs, _ = _load(events, cat)
    try:
        assert tuple(inputs.events.columns) == KEPT_EVENT_COLUMNS
        assert inputs.events.schema()["uid"].is_uuid()
        named = named_events(inputs)
        assert tuple(named.columns) == EVENT_COLUMNS
        got = sorted((r["user_id"], r["video_id"], r["ts"]) for r in engine.rows(named))
    finally:
        engine.close()
    assert got == sorted((uid, vid, float(ts)) for uid, vid, ts in ids)
