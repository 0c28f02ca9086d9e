"""Reading and validating the inputs (watch events, catalog) with DuckDB.

Parquet (``.parquet``) and CSV (``.csv``, ``.csv.gz``) are told apart by extension. Both are
loaded into DuckDB tables ``catalog`` and ``events`` in one pass each, with every row checked in
SQL; the first bad row is reported as file, row (1 = first data row) and column, together with
how many other rows are bad. Nothing downstream runs unless both files are entirely valid, so
nothing is ever published from a half-read input.

Documented handling rather than refusal:

- ``country`` / ``lang`` that are empty or malformed become the unknown ``xx`` (at user level,
  through :func:`edgeshelf.schema.normalize_country` and ``normalize_lang``);
- a catalog ``category`` that is empty becomes the ``default`` bucket;
- an event up to :data:`MAX_FUTURE_SKEW` seconds in the future (producer clock skew) is kept and
  treated as happening at the build time; further in the future is refused (usually milliseconds
  passed as seconds);
- an event row repeated identically (an export retried) counts once.
"""

# ruff: noqa: S608  # SQL is assembled from constants, column names checked against a fixed
# list and file paths quoted by _quote(); no cell of the input is ever spliced into SQL.

from __future__ import annotations

import csv
import gzip
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import duckdb

from builder.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = [
    "CATALOG_COLUMNS",
    "EVENT_COLUMNS",
    "MAX_FUTURE_SKEW",
    "MIN_TIMESTAMP",
    "InputStats",
    "load_inputs",
]

EVENT_COLUMNS: Final = ("user_id", "video_id", "ts", "country", "lang", "watch_seconds")
CATALOG_COLUMNS: Final = ("video_id", "category", "lang", "published_at")
MAX_FUTURE_SKEW: Final = 86_400
MIN_TIMESTAMP: Final = 946_684_800  # 2000-01-01T00:00:00Z: anything earlier is a unit mistake

# The same patterns as edgeshelf.schema's valid_uid / valid_video_id, applied in bulk by DuckDB;
# tests/builder/test_sources.py checks that they agree with the schema module on samples.
UID_PATTERN: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
VIDEO_ID_PATTERN: Final = r"[A-Za-z0-9_-]{1,64}"

_NUMERIC_TYPES: Final = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE",
)  # fmt: skip
_LINE_RE: Final = re.compile(r"CSV Error on Line: (\d+)")
# What a malformed, truncated, mis-encoded or unreadable file raises; anything else (a binder
# error, say) is a bug here and must not be reported as the user's input being wrong.
_READ_ERRORS: Final = (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException)


@dataclass(frozen=True)
class InputStats:
    """What was loaded: row counts after validation, and the newest event time."""

    events: int
    duplicate_events: int
    catalog: int
    max_ts: int | None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _csv_header(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        # Only the first line, as bytes: decoding a whole text chunk would blame the header for
        # a bad byte on a later row, which DuckDB then reports with its row number.
        with opener(path, "rb") as fh:
            line = fh.readline()
        text = line.decode("utf-8-sig")
        header = next(csv.reader([text.rstrip("\r\n")]), [])
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the CSV header: {exc}", file=str(path), row=0) from exc
    if not any(h.strip() for h in header):
        raise InputError("no header line (the file is empty)", file=str(path), row=0)
    return header


def _reader(path: Path, row_alias: str) -> tuple[str, list[str]]:
    """SQL for a relation over ``path`` with a 1-based row number column, and its columns."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return (
            f"(SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {row_alias} "
            f"FROM read_parquet({_quote(str(path))}, file_row_number = true))",
            [],
        )
    if name.endswith((".csv", ".csv.gz")):
        header = _csv_header(path)
        if len(set(header)) != len(header):
            raise InputError("the header names a column twice", file=str(path), row=0)
        cols = ", ".join(f"{_quote(h)}: 'VARCHAR'" for h in header)
        # Explicit dialect and columns: DuckDB's sniffer would otherwise silently skip ragged
        # leading rows. With a fixed dialect a malformed line is an error with its number.
        src = (
            f"read_csv({_quote(str(path))}, header = true, auto_detect = false, skip = 0, "
            f"delim = ',', quote = '\"', escape = '\"', strict_mode = true, "
            f"null_padding = false, columns = {{{cols}}})"
        )
        return f"(SELECT *, row_number() OVER () AS {row_alias} FROM {src})", header
    raise InputError("unsupported file type: use .parquet, .csv or .csv.gz", file=str(path))


def _columns(con: duckdb.DuckDBPyConnection, relation: str, path: Path) -> dict[str, str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    except _READ_ERRORS as exc:
        raise _input_error(exc, path) from exc
    return {str(r[0]): str(r[1]).upper() for r in rows}


def _input_error(exc: Exception, path: Path) -> InputError:
    text = str(exc)
    # DuckDB appends the failing SQL ("LINE 1: ...") and a caret line: our query, not the
    # user's problem, so it stays out of the message.
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.lstrip().startswith(("LINE ", "^"))
    ]
    found = _LINE_RE.search(text)
    row = int(found.group(1)) - 1 if found else None
    summary = "; ".join(lines[:3]) if lines else type(exc).__name__
    return InputError(f"cannot read: {summary[:300]}", file=str(path), row=row)


def _require(columns: dict[str, str], wanted: Sequence[str], path: Path) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)} (has: {', '.join(columns) or 'none'})",
            file=str(path),
            column=missing[0],
        )


def _time_expr(col: str, sql_type: str, path: Path) -> str:
    """SQL giving epoch seconds (DOUBLE) from a timestamp, date, number or string column."""
    if sql_type.startswith(("TIMESTAMP", "DATE")):
        return f"epoch(r.{col})"
    if sql_type in _NUMERIC_TYPES or sql_type.startswith("DECIMAL"):
        return f"CAST(r.{col} AS DOUBLE)"
    if sql_type == "VARCHAR":
        return f"COALESCE(TRY_CAST(r.{col} AS DOUBLE), epoch(TRY_CAST(r.{col} AS TIMESTAMPTZ)))"
    raise InputError(
        f"has type {sql_type}; expected a timestamp or epoch seconds", file=str(path), column=col
    )


def _number_expr(col: str, sql_type: str, path: Path) -> str:
    if sql_type in _NUMERIC_TYPES or sql_type.startswith("DECIMAL"):
        return f"CAST(r.{col} AS DOUBLE)"
    if sql_type == "VARCHAR":
        return f"TRY_CAST(r.{col} AS DOUBLE)"
    raise InputError(f"has type {sql_type}; expected a number", file=str(path), column=col)


def _text_expr(col: str, sql_type: str, path: Path) -> str:
    if (
        sql_type in ("BLOB", "BIT")
        or sql_type.endswith("[]")
        or sql_type.startswith(("STRUCT", "MAP", "LIST", "UNION"))
    ):
        raise InputError(f"has type {sql_type}; expected text", file=str(path), column=col)
    return f"CAST(r.{col} AS VARCHAR)"


def _raw(col: str) -> str:
    return f"left(CAST(r.{col} AS VARCHAR), 80)"


def _check_table(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    """Raise InputError for the first row of ``table`` whose ``problem`` is set."""
    bad = con.execute(
        f"SELECT count(*), arg_min(problem, __row), min(__row) FROM {table} "
        "WHERE problem IS NOT NULL"
    ).fetchone()
    assert bad is not None
    count, problem, row = bad
    if count:
        column, _, message = str(problem).partition("|")
        more = f" (and {count - 1} more bad rows)" if count > 1 else ""
        raise InputError(message + more, file=str(path), row=int(row), column=column)


def _load_catalog(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    relation, _ = _reader(path, "__row")
    types = _columns(con, relation, path)
    _require(types, CATALOG_COLUMNS, path)
    vid = _text_expr("video_id", types["video_id"], path)
    cat = _text_expr("category", types["category"], path)
    lang = _text_expr("lang", types["lang"], path)
    pub = _time_expr("published_at", types["published_at"], path)
    sql = f"""
        CREATE OR REPLACE TABLE catalog_raw AS
        SELECT r.__row, {vid} AS video_id, {cat} AS category, {lang} AS lang,
               {pub} AS published_at,
               CASE
                 WHEN r.video_id IS NULL THEN 'video_id|missing value'
                 WHEN NOT regexp_full_match({vid}, '{VIDEO_ID_PATTERN}')
                   THEN 'video_id|not a valid video id (letters, digits, _ and -, at most 64): '
                        || {_raw("video_id")}
                 WHEN r.published_at IS NULL THEN 'published_at|missing value'
                 WHEN {pub} IS NULL OR isnan({pub}) OR isinf({pub})
                   THEN 'published_at|not a timestamp or epoch seconds: ' || {_raw("published_at")}
               END AS problem
        FROM {relation} r
    """
    try:
        con.execute(sql)
    except _READ_ERRORS as exc:
        raise _input_error(exc, path) from exc
    _check_table(con, "catalog_raw", path)
    dup = con.execute(
        "SELECT video_id, min(__row), max(__row) FROM catalog_raw "
        "GROUP BY video_id HAVING count(*) > 1 ORDER BY 3 LIMIT 1"
    ).fetchone()
    if dup is not None:
        raise InputError(
            f"duplicate video_id {dup[0]!r} (first on row {dup[1]})",
            file=str(path),
            row=int(dup[2]),
            column="video_id",
        )
    count = con.execute("SELECT count(*) FROM catalog_raw").fetchone()
    return int(count[0]) if count else 0


def _load_events(con: duckdb.DuckDBPyConnection, path: Path, now: int) -> tuple[int, int]:
    relation, _ = _reader(path, "__row")
    types = _columns(con, relation, path)
    _require(types, EVENT_COLUMNS, path)
    uid = _text_expr("user_id", types["user_id"], path)
    vid = _text_expr("video_id", types["video_id"], path)
    country = _text_expr("country", types["country"], path)
    lang = _text_expr("lang", types["lang"], path)
    ts = _time_expr("ts", types["ts"], path)
    secs = _number_expr("watch_seconds", types["watch_seconds"], path)
    latest = now + MAX_FUTURE_SKEW
    sql = f"""
        CREATE OR REPLACE TABLE events_raw AS
        SELECT r.__row, {uid} AS user_id, {vid} AS video_id, {ts} AS ts,
               {country} AS country, {lang} AS lang, {secs} AS watch_seconds,
               CASE
                 WHEN r.user_id IS NULL THEN 'user_id|missing value'
                 WHEN NOT regexp_full_match({uid}, '{UID_PATTERN}')
                   THEN 'user_id|not a visitor ID (a lower-case UUIDv4 as '
                        || 'crypto.randomUUID() prints it): ' || {_raw("user_id")}
                 WHEN r.video_id IS NULL THEN 'video_id|missing value'
                 WHEN c.video_id IS NULL
                   THEN 'video_id|unknown video (not in the catalog): ' || {_raw("video_id")}
                 WHEN r.ts IS NULL THEN 'ts|missing value'
                 WHEN {ts} IS NULL OR isnan({ts}) OR isinf({ts})
                   THEN 'ts|not a timestamp or epoch seconds: ' || {_raw("ts")}
                 WHEN {ts} < {MIN_TIMESTAMP}
                   THEN 'ts|before 2000-01-01, not epoch seconds: ' || {_raw("ts")}
                 WHEN {ts} > {latest}
                   THEN 'ts|more than a day in the future (milliseconds?): ' || {_raw("ts")}
                 WHEN r.watch_seconds IS NULL THEN 'watch_seconds|missing value'
                 WHEN {secs} IS NULL OR isnan({secs}) OR isinf({secs})
                   THEN 'watch_seconds|not a number: ' || {_raw("watch_seconds")}
                 WHEN {secs} < 0
                   THEN 'watch_seconds|negative duration: ' || {_raw("watch_seconds")}
               END AS problem
        FROM {relation} r LEFT JOIN catalog_raw c ON c.video_id = {vid}
    """
    try:
        con.execute(sql)
    except _READ_ERRORS as exc:
        raise _input_error(exc, path) from exc
    _check_table(con, "events_raw", path)
    con.execute(
        """
        CREATE OR REPLACE TABLE events AS
        SELECT DISTINCT user_id, video_id, ts, country, lang, watch_seconds FROM events_raw
        """
    )
    raw = con.execute("SELECT count(*) FROM events_raw").fetchone()
    kept = con.execute("SELECT count(*) FROM events").fetchone()
    con.execute("DROP TABLE events_raw")
    assert raw is not None
    assert kept is not None
    return int(kept[0]), int(raw[0]) - int(kept[0])


def load_inputs(
    con: duckdb.DuckDBPyConnection, *, events: Path, catalog: Path, now: int
) -> InputStats:
    """Load both files into tables ``catalog`` and ``events``; raise InputError if any is bad.

    ``catalog`` has ``video_id, category, lang, published_at`` (raw category and language; the
    ranking normalises them), ``events`` has the six event columns with ``ts`` and
    ``watch_seconds`` as DOUBLE epoch seconds and seconds.
    """
    for path in (events, catalog):
        if not path.is_file():
            raise InputError("no such file", file=str(path))
    con.execute("SET TimeZone = 'UTC'")
    n_catalog = _load_catalog(con, catalog)
    n_events, dups = _load_events(con, events, now)
    con.execute(
        """
        CREATE OR REPLACE TABLE catalog AS
        SELECT video_id, category, lang, published_at FROM catalog_raw
        """
    )
    con.execute("DROP TABLE catalog_raw")
    top = con.execute("SELECT max(ts) FROM events").fetchone()
    max_ts = None if top is None or top[0] is None else int(top[0])
    return InputStats(events=n_events, duplicate_events=dups, catalog=n_catalog, max_ts=max_ts)
