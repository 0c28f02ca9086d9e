"""Profiles, segments and each segment's top-N, computed in DuckDB SQL.

Every watch event gets a weight, its **recency-decayed watch time**::

    w = min(watch_seconds, WATCH_CAP) * 0.5 ** ((as_of - ts) / half_life)

``as_of`` is the newest event's time (never later than now), so the same input always gives
the same bytes and a rerun on unchanged input writes nothing.

Per user (the ``u:<uid>`` profile): ``country`` and ``lang`` of the most recent event;
``affinity_bucket`` is the category with the largest summed ``w`` (ties: the greater name), or
``default`` when the user has fewer than ``min_events`` events or less than ``min_evidence``
decayed seconds in total; ``recent_categories`` are the categories of the latest watches, newest
first, at most 8; ``last_seen`` the newest event time.

Segments: ``<country>-<lang>-<bucket>`` exists when at least ``min_segment_size`` (K) users
share it. ``<country>-<lang>-default`` is always produced: from the watches of all the group's
users when the group has K users or more, otherwise from everyone's watches (global scores) so
that no segment describes a handful of people. ``global`` is always produced and, when there are
too few watched videos, padded with the newest catalog videos.

A segment's **score** for a video is the sum of ``w`` over the segment's users' watches of it,
multiplied by ``lang_boost`` when the video's catalog language equals the segment's language
(``global`` has no language). The top ``top_n`` by score (ties: smaller video id) form the
shelf; grouping by video means no duplicates.
"""

# ruff: noqa: S608  # SQL is assembled from constants and numeric options; input values only
# reach DuckDB as table data or bound parameters.

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from edgeshelf.schema import (
    DEFAULT_BUCKET,
    GLOBAL_SEGMENT,
    MAX_CATEGORIES,
    MAX_SEGMENT_IDS,
    normalize_bucket,
    normalize_country,
    normalize_lang,
    segment_id,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import duckdb

__all__ = [
    "HALF_LIFE",
    "LANG_BOOST",
    "MIN_EVENTS",
    "MIN_EVIDENCE",
    "MIN_SEGMENT_SIZE",
    "WATCH_CAP",
    "Build",
    "ProfileRow",
    "RankingOptions",
    "compute",
]

HALF_LIFE: Final = 7 * 86_400
WATCH_CAP: Final = 4 * 3_600
MIN_EVENTS: Final = 3
MIN_EVIDENCE: Final = 300.0
MIN_SEGMENT_SIZE: Final = 50
LANG_BOOST: Final = 2.0

ProfileRow = tuple[str, str, str, str, list[str], int]
"""``(user_id, country, lang, affinity_bucket, recent_categories, last_seen)``."""


@dataclass(frozen=True)
class RankingOptions:
    """The documented knobs of the score and the thresholds (defaults in docs/builder.md)."""

    half_life: float = HALF_LIFE
    watch_cap: float = WATCH_CAP
    min_events: int = MIN_EVENTS
    min_evidence: float = MIN_EVIDENCE
    min_segment_size: int = MIN_SEGMENT_SIZE
    lang_boost: float = LANG_BOOST
    top_n: int = MAX_SEGMENT_IDS

    def __post_init__(self) -> None:
        if not 1 <= self.top_n <= MAX_SEGMENT_IDS:
            raise ValueError(f"top_n must be between 1 and {MAX_SEGMENT_IDS}")
        if self.min_segment_size < 1 or self.half_life <= 0 or self.lang_boost < 1:
            raise ValueError("min_segment_size >= 1, half_life > 0 and lang_boost >= 1 required")


@dataclass(frozen=True)
class Build:
    """The computed output: segment shelves in memory, profiles left in DuckDB to stream."""

    con: duckdb.DuckDBPyConnection
    as_of: int
    segments: dict[str, list[str]]
    users: int
    segment_sizes: dict[str, int]

    def profiles(self, chunk: int = 50_000) -> Iterator[ProfileRow]:
        """Profiles in ``user_id`` order (the order of their keys), fetched chunk by chunk."""
        cur = self.con.cursor()
        cur.execute(
            "SELECT user_id, country, lang, bucket, recent, last_seen FROM profiles "
            "ORDER BY user_id"
        )
        while rows := cur.fetchmany(chunk):
            yield from rows
        cur.close()


def _map_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source_sql: str,
    fn: Callable[[object], str],
) -> None:
    """A ``raw -> norm`` table built with the schema module's own normaliser.

    Only distinct values cross into Python, so the one definition of normalisation (shared with
    the Worker) is used without a Python call per event.
    """
    raws = [r[0] for r in con.execute(source_sql).fetchall()]
    con.execute(f"CREATE OR REPLACE TABLE {name} (raw VARCHAR PRIMARY KEY, norm VARCHAR)")
    if raws:
        con.executemany(f"INSERT INTO {name} VALUES (?, ?)", [(r, fn(r)) for r in raws])


def compute(
    con: duckdb.DuckDBPyConnection, *, as_of: int, options: RankingOptions | None = None
) -> Build:
    """Compute profiles and segments from the ``events`` and ``catalog`` tables."""
    opt = options or RankingOptions()
    decay = f"pow(0.5, ({as_of} - least(e.ts, {as_of})) / {float(opt.half_life)})"
    weight = f"least(e.watch_seconds, {float(opt.watch_cap)}) * {decay}"

    _map_table(
        con,
        "cat_map",
        "SELECT DISTINCT COALESCE(category, '') FROM catalog",
        normalize_bucket,
    )
    _map_table(con, "vlang_map", "SELECT DISTINCT COALESCE(lang, '') FROM catalog", normalize_lang)
    con.execute(
        """
        CREATE OR REPLACE TABLE videos AS
        SELECT c.video_id, m.norm AS category, l.norm AS lang, c.published_at
        FROM catalog c
        JOIN cat_map m ON m.raw = COALESCE(c.category, '')
        JOIN vlang_map l ON l.raw = COALESCE(c.lang, '')
        """
    )
    # One pass over the events for everything per user and per (user, category).
    con.execute(
        f"""
        CREATE OR REPLACE TABLE user_cat AS
        SELECT e.user_id, v.category, sum({weight}) AS weight, count(*) AS n,
               max(least(e.ts, {as_of})) AS last_ts,
               arg_max(COALESCE(e.country, ''), e.ts) AS country,
               arg_max(COALESCE(e.lang, ''), e.ts) AS lang
        FROM events e JOIN videos v USING (video_id)
        GROUP BY e.user_id, v.category
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE users_raw AS
        SELECT user_id,
               arg_max(country, (last_ts, country)) AS raw_country,
               arg_max(lang, (last_ts, lang)) AS raw_lang,
               arg_max(category, (weight, category)) AS top_category,
               sum(weight) AS evidence, sum(n) AS n_events,
               CAST(max(last_ts) AS BIGINT) AS last_seen,
               list(category ORDER BY last_ts DESC, category)[1:{MAX_CATEGORIES}] AS recent
        FROM user_cat GROUP BY user_id
        """
    )
    _map_table(con, "country_map", "SELECT DISTINCT raw_country FROM users_raw", normalize_country)
    _map_table(con, "lang_map", "SELECT DISTINCT raw_lang FROM users_raw", normalize_lang)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE profiles AS
        SELECT u.user_id, c.norm AS country, l.norm AS lang,
               CASE WHEN u.n_events >= {int(opt.min_events)}
                         AND u.evidence >= {float(opt.min_evidence)}
                    THEN u.top_category ELSE '{DEFAULT_BUCKET}' END AS bucket,
               u.recent, u.last_seen
        FROM users_raw u
        JOIN country_map c ON c.raw = u.raw_country
        JOIN lang_map l ON l.raw = u.raw_lang
        """
    )
    con.execute("DROP TABLE user_cat")
    con.execute("DROP TABLE users_raw")
    return _segments(con, as_of, opt, weight)


def _top(rows: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for seg, vid in rows:
        out[seg].append(vid)
    return out


def _segments(
    con: duckdb.DuckDBPyConnection, as_of: int, opt: RankingOptions, weight: str
) -> Build:
    k, n, boost = int(opt.min_segment_size), int(opt.top_n), float(opt.lang_boost)
    con.execute(
        """
        CREATE OR REPLACE TABLE groups AS
        SELECT country, lang, bucket, count(*) AS members,
               sum(count(*)) OVER (PARTITION BY country, lang) AS lang_members
        FROM profiles GROUP BY country, lang, bucket
        """
    )
    # Which exact segment (if any) and which language group each user's watches count towards.
    con.execute(
        f"""
        CREATE OR REPLACE TABLE user_seg AS
        SELECT p.user_id, p.country, p.lang,
               CASE WHEN g.bucket <> '{DEFAULT_BUCKET}' AND g.members >= {k}
                    THEN g.bucket END AS bucket,
               g.lang_members >= {k} AS big_lang
        FROM profiles p JOIN groups g USING (country, lang, bucket)
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE scores AS
        SELECT s.country, s.lang, s.bucket, s.big_lang, e.video_id, sum({weight}) AS score,
               grouping(s.country, s.lang, s.bucket) AS level
        FROM events e JOIN user_seg s USING (user_id)
        GROUP BY GROUPING SETS (
            (s.country, s.lang, s.bucket, e.video_id),
            (s.country, s.lang, s.big_lang, e.video_id),
            (e.video_id)
        )
        """
    )
    # level 0: exact segment (bucket NULL = users without one: dropped); level 1: language
    # default (only groups with K users); level 7: global.
    ranked = f"""
        SELECT seg, video_id FROM (
            SELECT seg, video_id,
                   row_number() OVER (PARTITION BY seg ORDER BY score DESC, video_id) AS rn
            FROM (
                SELECT CASE WHEN s.level = 7 THEN '{GLOBAL_SEGMENT}'
                            ELSE s.country || '-' || s.lang || '-'
                                 || COALESCE(s.bucket, '{DEFAULT_BUCKET}') END AS seg,
                       s.video_id,
                       s.score * CASE WHEN s.level <> 7 AND v.lang = s.lang
                                      THEN {boost} ELSE 1.0 END AS score
                FROM scores s JOIN videos v USING (video_id)
                WHERE s.level = 7
                   OR (s.level = 0 AND s.bucket IS NOT NULL)
                   OR (s.level = 1 AND s.big_lang)
            )
        ) WHERE rn <= {n} ORDER BY seg, rn
    """
    segments = _top(con.execute(ranked).fetchall())
    # Small language groups: the global scores, boosted for their language. The candidates are
    # the global top-N plus the top-N of each video language, which must contain the answer.
    small = f"""
        WITH g AS (SELECT s.video_id, s.score, v.lang AS vlang
                   FROM scores s JOIN videos v USING (video_id) WHERE s.level = 7),
        cand AS (
            SELECT video_id, score, vlang FROM (
                SELECT *, row_number() OVER (ORDER BY score DESC, video_id) AS r_all,
                          row_number() OVER (PARTITION BY vlang ORDER BY score DESC, video_id)
                              AS r_lang
                FROM g) WHERE r_all <= {n} OR r_lang <= {n}),
        small AS (SELECT DISTINCT country, lang FROM groups WHERE lang_members < {k})
        SELECT seg, video_id FROM (
            SELECT sm.country || '-' || sm.lang || '-{DEFAULT_BUCKET}' AS seg, c.video_id,
                   row_number() OVER (
                       PARTITION BY sm.country, sm.lang
                       ORDER BY c.score * CASE WHEN c.vlang = sm.lang THEN {boost} ELSE 1.0 END
                                DESC, c.video_id) AS rn
            FROM small sm CROSS JOIN cand c
        ) WHERE rn <= {n} ORDER BY seg, rn
    """
    segments.update(_top(con.execute(small).fetchall()))
    # Segment IDs pass through the schema module, like every other key part.
    shelves = {
        (GLOBAL_SEGMENT if seg == GLOBAL_SEGMENT else segment_id(*seg.split("-", 2))): ids
        for seg, ids in segments.items()
    }
    shelves.setdefault(GLOBAL_SEGMENT, [])
    glob = shelves[GLOBAL_SEGMENT]
    if len(glob) < n:
        newest = con.execute(
            f"SELECT video_id FROM videos ORDER BY published_at DESC, video_id LIMIT {2 * n}"
        ).fetchall()
        for (vid,) in newest:
            if len(glob) >= n:
                break
            if vid not in glob:
                glob.append(vid)
    sizes = _sizes(con, k)
    users = con.execute("SELECT count(*) FROM profiles").fetchone()
    con.execute("DROP TABLE scores")
    return Build(
        con=con,
        as_of=as_of,
        segments=dict(sorted(shelves.items())),
        users=int(users[0]) if users else 0,
        segment_sizes=sizes,
    )


def _sizes(con: duckdb.DuckDBPyConnection, k: int) -> dict[str, int]:
    """Members per produced segment (language defaults count the whole language group)."""
    sizes: dict[str, int] = {}
    total = 0
    for country, lang, bucket, members, lang_members in con.execute(
        "SELECT country, lang, bucket, members, lang_members FROM groups"
    ).fetchall():
        total += int(members)
        sizes[segment_id(country, lang, DEFAULT_BUCKET)] = int(lang_members)
        if bucket != DEFAULT_BUCKET and members >= k:
            sizes[segment_id(country, lang, bucket)] = int(members)
    sizes[GLOBAL_SEGMENT] = total
    return dict(sorted(sizes.items()))
