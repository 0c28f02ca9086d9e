"""Reading and validating the inputs (watch events, catalog): the rules, once, for every engine.

The engine (:mod:`builder.engines`) reads each file into a table of its raw columns; the rules
here are Ibis expressions that every engine runs the same way. Each row gets a ``problem`` (the
first rule it breaks, as ``column|message``); the first bad row is reported as file, row
(1 = first data row, where the engine can number rows) and column, with the bad value and how
many other rows are bad. Nothing downstream runs unless both files are entirely valid, so
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

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

import ibis
import ibis.expr.datatypes as dt

from builder.engines import ROW, Engine, RawInput
from builder.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    import ibis.expr.types as ir

__all__ = [
    "BAD_UTF8",
    "CATALOG_COLUMNS",
    "EVENT_COLUMNS",
    "KEPT_EVENT_COLUMNS",
    "MAX_FUTURE_SKEW",
    "MIN_TIMESTAMP",
    "UID_PATTERN",
    "VIDEO_ID_PATTERN",
    "InputStats",
    "Inputs",
    "load_inputs",
    "named_events",
    "repeated_rows",
]

EVENT_COLUMNS: Final = ("user_id", "video_id", "ts", "country", "lang", "watch_seconds")
KEPT_EVENT_COLUMNS: Final = ("uid", "vno", "ts", "country", "lang", "watch_seconds")
"""A validated event as kept: the visitor ID as a UUID, the video as its catalog number."""
CATALOG_COLUMNS: Final = ("video_id", "category", "lang", "published_at")
MAX_FUTURE_SKEW: Final = 86_400
MIN_TIMESTAMP: Final = 946_684_800  # 2000-01-01T00:00:00Z: anything earlier is a unit mistake

# The same patterns as edgeshelf.schema's valid_uid / valid_video_id, applied in bulk by the
# engine; tests/builder/test_sources.py checks that they agree with the schema module on samples.
UID_PATTERN: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
VIDEO_ID_PATTERN: Final = r"[A-Za-z0-9_-]{1,64}"
BAD_UTF8: Final = "__bad_utf8"
"""A column an engine's reader may add: the first column of the row that is not valid UTF-8."""

_EPOCH: Final = ibis.timestamp("1970-01-01 00:00:00")
_T = TypeVar("_T")


@dataclass(frozen=True)
class InputStats:
    """What was loaded: row counts after validation, and the newest event time.

    When :attr:`Inputs.repeats_unchecked`, ``events`` and ``duplicate_events`` count repeated
    rows as events until the compute has found them (``Build.input_stats`` has the final
    counts).
    """

    events: int
    duplicate_events: int
    catalog: int
    max_ts: int | None


@dataclass(frozen=True)
class Inputs:
    """The validated inputs as engine tables, and their counts.

    ``catalog`` has ``video_id, category, lang, published_at`` (raw category and language; the
    ranking normalises them) and ``vno``, the video's number (0-based, in ``video_id`` order).
    ``events`` has :data:`KEPT_EVENT_COLUMNS`, each distinct row once: ``uid``, the visitor ID
    as a UUID (its text on engines without one), ``vno``, the video's number, and ``ts`` and
    ``watch_seconds`` as float64 epoch seconds and seconds. Sixteen bytes and a number instead
    of two strings make every later read, grouping and join of the events cheaper;
    :func:`named_events` gives them back with their IDs.
    """

    events: ir.Table
    catalog: ir.Table
    stats: InputStats
    event_parts: tuple[ir.Table, ...] = ()
    """The events split by user (every user's rows in one part), or ``(events,)``."""
    repeats_unchecked: bool = False
    """True when the parts may still hold rows repeated verbatim (DuckDB's split of a large
    input): the compute finds them with :func:`repeated_rows` while it aggregates each part by
    (user, video), which costs far less than a check of its own, and counts them once."""


def _full_match(value: ir.StringValue, pattern: str) -> ir.BooleanValue:
    # \A and \z mean the same in RE2 (DuckDB) and java.util.regex (Spark); `$` does not (Java
    # lets it match before a final newline).
    return value.re_search(rf"\A(?:{pattern})\z")


def _type_name(dtype: dt.DataType) -> str:
    return str(dtype).upper()


def _epoch_seconds(value: ir.TimestampValue) -> ir.FloatingValue:
    return value.delta(_EPOCH, unit="microsecond").cast("float64") / 1e6


def _time(col: ir.Column, source: str, name: str) -> ir.FloatingValue:
    """Epoch seconds (float64) from a timestamp, date, number or text column."""
    dtype = col.type()
    if dtype.is_timestamp():
        return _epoch_seconds(col)
    if dtype.is_date():
        return _epoch_seconds(col.cast(dt.Timestamp(timezone="UTC")))
    if dtype.is_numeric():
        return col.cast("float64")
    if dtype.is_string():
        parsed = col.try_cast(dt.Timestamp(timezone="UTC"))
        return col.try_cast("float64").coalesce(_epoch_seconds(parsed))
    raise InputError(
        f"has type {_type_name(dtype)}; expected a timestamp or epoch seconds",
        file=source,
        column=name,
    )


def _number(col: ir.Column, source: str, name: str) -> ir.FloatingValue:
    dtype = col.type()
    if dtype.is_numeric():
        return col.cast("float64")
    if dtype.is_string():
        return col.try_cast("float64")
    raise InputError(f"has type {_type_name(dtype)}; expected a number", file=source, column=name)


def _text(col: ir.Column, source: str, name: str) -> ir.StringValue:
    dtype = col.type()
    if dtype.is_binary() or dtype.is_nested():
        raise InputError(f"has type {_type_name(dtype)}; expected text", file=source, column=name)
    return col.cast("string")


def _raw(col: ir.Column) -> ir.StringValue:
    return col.cast("string").substr(0, 80)


def _bad_number(value: ir.FloatingValue) -> ir.BooleanValue:
    return value.isnull() | value.isnan() | value.isinf()


def _problem(
    raw: ir.Table, rules: Sequence[tuple[ir.BooleanValue, ir.StringValue | str]]
) -> ir.StringValue:
    """The first rule a row breaks, as ``column|message``; NULL for a good row."""
    if BAD_UTF8 in raw.columns:
        bad = raw[BAD_UTF8]
        rules = [(bad.notnull(), bad + "|not utf-8: invalid byte sequence"), *rules]
    return ibis.cases(*rules, else_=ibis.null("string"))


def _require(raw: RawInput, wanted: Sequence[str]) -> None:
    columns = [c for c in raw.table.columns if c not in (ROW, BAD_UTF8)]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)} (has: {', '.join(columns) or 'none'})",
            file=raw.source,
            column=missing[0],
        )


def _run(engine: Engine, raw: RawInput, fn: Callable[[], _T]) -> _T:
    """Run a query over ``raw``; the engine's read errors become the refusal of its file."""
    try:
        return fn()
    except InputError:
        raise
    except Exception as exc:
        refusal = engine.read_error(exc, raw.source)
        if refusal is None:
            raise
        raise refusal from exc


def _check(
    engine: Engine, raw: RawInput, checked: ir.Table, newest: str | None = None
) -> tuple[int, float | None]:
    """Raise InputError for the first row whose ``problem`` is set.

    Returns the row count and, when ``newest`` names a column, its largest value (every row is
    good by then), read in the same pass.
    """
    bad = checked.problem.notnull()
    extra = {} if newest is None else {"top": checked[newest].max()}
    summary = checked.aggregate(
        rows=checked.count(),
        bad=bad.sum(),
        first=checked[ROW].min(where=bad),
        problem=checked.problem.argmin(checked[ROW], where=bad),
        **extra,
    )
    [row] = _run(engine, raw, lambda: engine.rows(summary))
    if row["bad"]:
        column, _, message = str(row["problem"]).partition("|")
        count = int(row["bad"])
        more = f" (and {count - 1} more bad rows)" if count > 1 else ""
        raise InputError(
            message + more,
            file=raw.source,
            row=engine.row_number(raw, int(row["first"])),
            column=column,
        )
    return int(row["rows"]), row.get("top")


def _load_catalog(engine: Engine, raw: RawInput) -> tuple[ir.Table, int]:
    _require(raw, CATALOG_COLUMNS)
    r = raw.table
    vid = _text(r.video_id, raw.source, "video_id")
    cat = _text(r.category, raw.source, "category")
    lang = _text(r.lang, raw.source, "lang")
    pub = _time(r.published_at, raw.source, "published_at")
    rules = [
        (r.video_id.isnull(), "video_id|missing value"),
        (
            ~_full_match(vid, VIDEO_ID_PATTERN),
            "video_id|not a valid video id (letters, digits, _ and -, at most 64): "
            + _raw(r.video_id),
        ),
        (r.published_at.isnull(), "published_at|missing value"),
        (
            _bad_number(pub),
            "published_at|not a timestamp or epoch seconds: " + _raw(r.published_at),
        ),
    ]
    checked = r.select(
        r[ROW], video_id=vid, category=cat, lang=lang, published_at=pub,
        problem=_problem(r, rules),
    )  # fmt: skip
    rows, _ = _check(engine, raw, checked)
    good = checked.select(ROW, "video_id", "category", "lang", "published_at")
    dup = good.group_by("video_id").aggregate(
        n=good.count(), first=good[ROW].min(), second=good[ROW].max()
    )
    dup = dup.filter(dup.n > 1).order_by("second").limit(1)
    found = _run(engine, raw, lambda: engine.rows(dup))
    if found:
        video, first, second = found[0]["video_id"], found[0]["first"], found[0]["second"]
        first_row = engine.row_number(raw, int(first))
        raise InputError(
            f"duplicate video_id {video!r}" + (f" (first on row {first_row})" if first_row else ""),
            file=raw.source,
            row=engine.row_number(raw, int(second)),
            column="video_id",
        )
    # The video's number stands for the video from here to the shelves: it is carried by every
    # event instead of its ID (grouping and joining by a number is cheaper, and orders the same).
    numbered = good.drop(ROW).mutate(vno=ibis.row_number().over(order_by="video_id").cast("int32"))
    catalog = engine.cache(numbered, "catalog")
    return catalog, rows


def _load_events(engine: Engine, raw: RawInput, catalog: ir.Table, now: int) -> _Events:
    _require(raw, EVENT_COLUMNS)
    src = raw.source
    known = catalog.select(known_video=catalog.video_id, known_vno=catalog.vno)
    r = raw.table
    t = r.left_join(known, _text(r.video_id, src, "video_id") == known.known_video)
    uid = _text(t.user_id, src, "user_id")
    ts = _time(t.ts, src, "ts")
    secs = _number(t.watch_seconds, src, "watch_seconds")
    latest = now + MAX_FUTURE_SKEW
    rules = [
        (t.user_id.isnull(), "user_id|missing value"),
        (
            ~_full_match(uid, UID_PATTERN),
            "user_id|not a visitor ID (a lower-case UUIDv4 as crypto.randomUUID() prints it): "
            + _raw(t.user_id),
        ),
        (t.video_id.isnull(), "video_id|missing value"),
        (
            t.known_video.isnull(),
            "video_id|unknown video (not in the catalog): " + _raw(t.video_id),
        ),
        (t.ts.isnull(), "ts|missing value"),
        (_bad_number(ts), "ts|not a timestamp or epoch seconds: " + _raw(t.ts)),
        (ts < MIN_TIMESTAMP, "ts|before 2000-01-01, not epoch seconds: " + _raw(t.ts)),
        (ts > latest, "ts|more than a day in the future (milliseconds?): " + _raw(t.ts)),
        (t.watch_seconds.isnull(), "watch_seconds|missing value"),
        (_bad_number(secs), "watch_seconds|not a number: " + _raw(t.watch_seconds)),
        (secs < 0, "watch_seconds|negative duration: " + _raw(t.watch_seconds)),
    ]
    typed = t.select(
        t[ROW],
        # Only good rows are kept, and their IDs are valid: a bad row's uid is simply NULL.
        uid=uid.try_cast("uuid"),
        vno=t.known_vno,
        ts=ts,
        country=_text(t.country, src, "country"),
        lang=_text(t.lang, src, "lang"),
        watch_seconds=secs,
        problem=_problem(t, rules),
    )
    parts = engine.partition_count(raw)
    if parts > 1:
        return _load_event_parts(engine, raw, typed, parts)
    # Kept once: the check and the deduplication below both read it.
    checked = _run(engine, raw, lambda: engine.cache(typed, "checked"))
    rows, _ = _check(engine, raw, checked)
    events = engine.cache(checked.select(*KEPT_EVENT_COLUMNS).distinct(), "events")
    engine.release(checked)
    [kept] = engine.rows(events.aggregate(n=events.count(), top=events.ts.max()))
    return _Events((events,), rows, int(kept["n"]), kept["top"], repeats_unchecked=False)


@dataclass(frozen=True)
class _Events:
    """Validated events (one table, or its parts), with their counts and newest time."""

    tables: tuple[ir.Table, ...]
    rows: int
    kept: int
    """Rows kept: distinct rows, or all rows while ``repeats_unchecked``."""
    top: float | None
    repeats_unchecked: bool


def _load_event_parts(engine: Engine, raw: RawInput, typed: ir.Table, parts: int) -> _Events:
    """The checked events split by user (:meth:`Engine.partitioned`).

    The same rules and the same check as one table; only good rows are ever used, so the row
    identifier is kept for bad rows only (what the refusal reports). The check's pass also
    finds the newest event. Identical rows have the same visitor, hence the same part; they are
    found and counted once by the compute (:func:`repeated_rows`).
    """
    row = ibis.ifelse(typed.problem.isnull(), ibis.null("int64"), typed[ROW])
    typed = typed.mutate(**{ROW: row})
    split = _run(engine, raw, lambda: engine.partitioned(typed, "uid", parts, "checked"))
    rows, top = _check(engine, raw, ibis.union(*split), newest="ts")
    tables = tuple(part.select(*KEPT_EVENT_COLUMNS) for part in split)
    return _Events(tables, rows, rows, top, repeats_unchecked=True)


def repeated_rows(engine: Engine, events: ir.Table, pairs: ir.Table) -> int:
    """How many rows of ``events`` repeat another one verbatim (each counted once is kept).

    ``pairs`` has a row per (``uid``, ``vno``) of ``events`` with ``n``, its number of rows: a
    repeated row's pair has ``n > 1``, and few pairs do (0.5% at 10M users in the sample), so
    only their rows are compared, in the aggregation the compute makes anyway. Identical rows
    have the same time too: the rows are compared by (user, video, time) first, which reads no
    text, and in full only if some of them share all three (at 10M users, 0.2 s a part instead
    of 0.4 s for an input without repeats).
    """
    multi = pairs.filter(pairs.n > 1).select("uid", "vno")
    surplus = 0
    for columns in (("uid", "vno", "ts"), KEPT_EVENT_COLUMNS):
        suspects = events.select(*columns).semi_join(multi, ["uid", "vno"])
        row_value = ibis.struct({c: suspects[c] for c in columns})
        [found] = engine.rows(suspects.aggregate(n=suspects.count(), distinct=row_value.nunique()))
        surplus = int(found["n"] or 0) - int(found["distinct"] or 0)
        if not surplus:  # no two rows share these columns, so none is repeated
            return 0
    return surplus


def load_inputs(engine: Engine, *, events: Path | str, catalog: Path | str, now: int) -> Inputs:
    """Read and validate both inputs on ``engine``; raise InputError if either is bad."""
    for source in (str(events), str(catalog)):
        engine.check_source(source)
    catalog_table, n_catalog = _load_catalog(engine, engine.read(str(catalog)))
    loaded = _load_events(engine, engine.read(str(events)), catalog_table, now)
    tables = loaded.tables
    if loaded.repeats_unchecked:
        # Repeated rows are always in one part (they have one user): distinct part by part.
        distinct = [t.distinct() for t in tables]
        events_table = distinct[0] if len(distinct) == 1 else ibis.union(*distinct)
    else:
        [events_table] = tables  # one table, deduplicated when loaded
    stats = InputStats(
        events=loaded.kept,
        duplicate_events=loaded.rows - loaded.kept,
        catalog=n_catalog,
        max_ts=None if loaded.top is None else int(loaded.top),
    )
    return Inputs(
        events=events_table,
        catalog=catalog_table,
        stats=stats,
        event_parts=tables,
        repeats_unchecked=loaded.repeats_unchecked,
    )


def named_events(inputs: Inputs) -> ir.Table:
    """The validated events with their IDs as text: :data:`EVENT_COLUMNS`, as in the input."""
    events, videos = inputs.events, inputs.catalog.select("vno", "video_id")
    named = events.join(videos, "vno")
    return named.select(
        user_id=named.uid.cast("string"),
        video_id="video_id",
        ts="ts",
        country="country",
        lang="lang",
        watch_seconds="watch_seconds",
    )
