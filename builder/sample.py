"""A deterministic, realistic sample data set: catalog + watch events, generated inside DuckDB.

Realistic means: users spread over ~20 country/language locales with a long tail (some too
small to get segments of their own), 14 categories of uneven popularity, each user with a
favourite and a second category, mostly watching in their own language, Zipf-like popularity
within each category, activity skewed towards heavy users, watch times typical of the category
(shorts are short), a few bounces, some travel (a different country), more recent events more
frequent. Every random draw is a hash of (seed, tag, index), so the same seed gives the same rows
(for a given DuckDB version) and 10,000,000 events take seconds, not minutes.
"""

# ruff: noqa: S608  # SQL is assembled from constants, integers and the output path (quoted).

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import duckdb

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CATEGORIES",
    "DEFAULT_END",
    "LOCALES",
    "SAMPLE_MEMORY_LIMIT",
    "SampleFiles",
    "write_sample",
]

SAMPLE_MEMORY_LIMIT: Final = "4GB"
DEFAULT_END: Final = int(dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp())
WINDOW_DAYS: Final = 30

# (country, lang, weight): weights are relative shares of users.
LOCALES: Final = (
    ("us", "en", 28.0), ("gb", "en", 7.0), ("ca", "en", 3.0), ("ca", "fr", 1.5),
    ("au", "en", 2.0), ("in", "en", 5.0), ("in", "hi", 4.0), ("de", "de", 8.0),
    ("at", "de", 1.0), ("fr", "fr", 7.0), ("es", "es", 4.0), ("mx", "es", 5.0),
    ("ar", "es", 2.0), ("br", "pt", 7.0), ("pt", "pt", 1.0), ("jp", "ja", 6.0),
    ("kr", "ko", 3.0), ("it", "it", 3.0), ("nl", "nl", 2.0), ("pl", "pl", 2.0),
    ("se", "sv", 0.8), ("is", "is", 0.1),
)  # fmt: skip

# (category, popularity weight, min seconds, max seconds) of a typical watch.
CATEGORIES: Final = (
    ("shorts", 18.0, 5, 60), ("music", 14.0, 90, 320), ("gaming", 12.0, 120, 3600),
    ("news", 8.0, 40, 600), ("sports", 9.0, 60, 900), ("comedy", 8.0, 60, 600),
    ("cooking", 6.0, 180, 1200), ("education", 6.0, 300, 1800), ("kids", 5.0, 120, 900),
    ("tech", 5.0, 180, 1500), ("travel", 4.0, 180, 1200), ("fitness", 3.0, 300, 1800),
    ("film", 2.0, 120, 7200), ("documentary", 2.0, 900, 3600),
)  # fmt: skip


@dataclass(frozen=True)
class SampleFiles:
    """The paths written by :func:`write_sample` and their row counts."""

    events: Path
    catalog: Path
    users: int
    videos: int
    event_rows: int


def _h(seed: int, tag: str, index: str) -> str:
    """SQL for a 64-bit hash of ``index`` in the stream named ``tag``.

    ``hash(a, b, c)`` would be simpler, but DuckDB combines the argument hashes so weakly that
    draws of different tags for the same index are almost perfectly correlated; hashing the
    index XOR a per-(seed, tag) constant gives independent streams.
    """
    digest = hashlib.blake2b(f"{seed}:{tag}".encode(), digest_size=8).digest()
    return f"hash(xor(CAST({index} AS UBIGINT), {int.from_bytes(digest, 'big')}::UBIGINT))"


def _u(seed: int, tag: str, index: str) -> str:
    """SQL for a uniform draw in [0, 1) from the stream ``tag``."""
    return f"(({_h(seed, tag, index)} >> 11)::DOUBLE / 9007199254740992.0)"


def _cumulative(
    con: duckdb.DuckDBPyConnection, name: str, rows: list[tuple[str | int | float, ...]]
) -> None:
    """A table of weighted choices with ``lo``/``hi`` bounds in [0, 1) to range-join against."""
    total = sum(float(r[-1]) for r in rows)
    acc, out = 0.0, []
    for idx, row in enumerate(rows):
        lo = acc / total
        acc += float(row[-1])
        out.append((idx, *row[:-1], lo, 1.0 if idx == len(rows) - 1 else acc / total))
    kinds = {str: "VARCHAR", int: "BIGINT", float: "DOUBLE"}
    cols = ", ".join(f"c{i} {kinds[type(v)]}" for i, v in enumerate(rows[0][:-1]))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (idx INT, {cols}, lo DOUBLE, hi DOUBLE)")
    marks = ", ".join("?" for _ in range(len(rows[0]) + 2))
    con.executemany(f"INSERT INTO {name} VALUES ({marks})", out)


def write_sample(
    out: Path,
    *,
    users: int = 5_000,
    videos: int = 2_000,
    events: int = 100_000,
    seed: int = 1,
    fmt: Literal["parquet", "csv"] = "parquet",
    end: int = DEFAULT_END,
) -> SampleFiles:
    """Write ``events.<fmt>`` and ``catalog.<fmt>`` into ``out`` and return their paths."""
    if users < 1 or videos < 1 or events < 0:
        raise ValueError("users and videos must be >= 1, events >= 0")
    out.mkdir(parents=True, exist_ok=True)
    # Capped like the build itself: at 100,000,000 events the temporary tables spill to disk
    # instead of taking most of the machine (uncapped, DuckDB would use 80% of its memory).
    with tempfile.TemporaryDirectory(prefix="edgeshelf-sample-") as spill:
        con = duckdb.connect(config={"memory_limit": SAMPLE_MEMORY_LIMIT, "temp_directory": spill})
        try:
            return _generate(con, out, users, videos, events, int(seed), fmt, int(end))
        finally:
            con.close()


def _generate(
    con: duckdb.DuckDBPyConnection,
    out: Path,
    n_users: int,
    n_videos: int,
    n_events: int,
    seed: int,
    fmt: Literal["parquet", "csv"],
    end: int,
) -> SampleFiles:
    con.execute("SET TimeZone = 'UTC'")
    _cumulative(con, "locales", [(c, lang, w) for c, lang, w in LOCALES])
    _cumulative(con, "cats", [(c, lo, hi, w) for c, w, lo, hi in CATEGORIES])
    langs: dict[str, float] = {}
    for _, lang, w in LOCALES:
        langs[lang] = langs.get(lang, 0.0) + w
    _cumulative(con, "vlangs", sorted(langs.items()))
    width = max(7, len(str(n_videos)))
    con.execute(
        f"""
        CREATE TEMP TABLE catalog AS
        SELECT i, 'v' || lpad(i::VARCHAR, {width}, '0') AS video_id, c.c0 AS category,
               l.c0 AS lang,
               make_timestamp(CAST(
                   ({end} - floor(365 * 86400 * pow({_u(seed, "pub", "i")}, 2))) * 1e6 AS BIGINT))
                   AS published_at,
               upper(c.c0[1]) || c.c0[2:] || ' #' || i AS title
        FROM range({n_videos}) t(i)
        JOIN cats c ON {_u(seed, "vcat", "i")} >= c.lo AND {_u(seed, "vcat", "i")} < c.hi
        JOIN vlangs l ON {_u(seed, "vlang", "i")} >= l.lo AND {_u(seed, "vlang", "i")} < l.hi
        """
    )
    # Pools to draw a video from: by (category, language), by category, or any video; each
    # video's rank within a pool is a seeded shuffle, drawn Zipf-like (rank ~ size * u^3).
    con.execute(
        f"""
        CREATE TEMP TABLE pools AS
        SELECT pool, video_id,
               row_number() OVER (PARTITION BY pool ORDER BY {_h(seed, "pop", "i")}, i)
                   - 1 AS rank
        FROM (SELECT category || '/' || lang AS pool, video_id, i FROM catalog
              UNION ALL SELECT category || '/*', video_id, i FROM catalog
              UNION ALL SELECT '*', video_id, i FROM catalog)
        """
    )
    con.execute("CREATE TEMP TABLE pool_sizes AS SELECT pool, count(*) AS n FROM pools GROUP BY 1")
    h1, h2 = _h(seed, "uid1", "i"), _h(seed, "uid2", "i")
    con.execute(
        f"""
        CREATE TEMP TABLE users AS
        SELECT i,
               printf('%08x-%04x-4%03x-%x%03x-%012x', {h1} >> 32, ({h1} >> 16) & 65535,
                      {h1} & 4095, 8 + ({h2} >> 62), ({h2} >> 48) & 4095,
                      {h2} & 281474976710655) AS user_id,
               l.c0 AS country, l.c1 AS lang, f.c0 AS fav, s.c0 AS second
        FROM range({n_users}) t(i)
        JOIN locales l ON {_u(seed, "loc", "i")} >= l.lo AND {_u(seed, "loc", "i")} < l.hi
        JOIN cats f ON {_u(seed, "fav", "i")} >= f.lo AND {_u(seed, "fav", "i")} < f.hi
        JOIN cats s ON {_u(seed, "snd", "i")} >= s.lo AND {_u(seed, "snd", "i")} < s.hi
        """
    )
    window = WINDOW_DAYS * 86_400
    con.execute(
        f"""
        CREATE TEMP TABLE picks AS
        SELECT j, u.user_id,
               CASE WHEN {_u(seed, "trv", "j")} < 0.005 THEN tl.c0 ELSE u.country END AS country,
               u.lang,
               CASE WHEN {_u(seed, "ec", "j")} < 0.55 THEN u.fav
                    WHEN {_u(seed, "ec", "j")} < 0.75 THEN u.second ELSE rc.c0 END AS category,
               CASE WHEN {_u(seed, "el", "j")} < 0.8 THEN u.lang ELSE 'en' END AS vlang,
               {end} - floor({window} * pow({_u(seed, "ts", "j")}, 1.5)) AS ts,
               {_u(seed, "rank", "j")} AS r_rank, {_u(seed, "dur", "j")} AS r_dur
        FROM range({n_events}) t(j)
        JOIN users u ON u.i = least(floor({n_users} * pow({_u(seed, "who", "j")}, 1.6)),
                                    {n_users - 1})
        JOIN cats rc ON {_u(seed, "rc", "j")} >= rc.lo AND {_u(seed, "rc", "j")} < rc.hi
        JOIN locales tl ON {_u(seed, "tl", "j")} >= tl.lo AND {_u(seed, "tl", "j")} < tl.hi
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE sample_events AS
        SELECT p.j, p.user_id, pl.video_id, make_timestamp(CAST(p.ts * 1e6 AS BIGINT)) AS ts,
               p.country, p.lang,
               CASE WHEN p.r_dur < 0.03 THEN floor(p.r_dur * 150)
                    ELSE c.c1 + floor((c.c2 - c.c1) * pow(p.r_dur, 2)) END AS watch_seconds
        FROM picks p
        JOIN cats c ON c.c0 = p.category
        LEFT JOIN pool_sizes a ON a.pool = p.category || '/' || p.vlang
        LEFT JOIN pool_sizes b ON b.pool = p.category || '/*'
        JOIN pool_sizes z ON z.pool = '*'
        JOIN pools pl
          ON pl.pool = COALESCE(a.pool, b.pool, z.pool)
         AND pl.rank = least(floor(COALESCE(a.n, b.n, z.n) * pow(p.r_rank, 3)),
                             COALESCE(a.n, b.n, z.n) - 1)
        """
    )
    suffix = "parquet" if fmt == "parquet" else "csv"
    opts = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER true"
    ts_col = "ts" if fmt == "parquet" else "strftime(ts, '%Y-%m-%dT%H:%M:%SZ') AS ts"
    pub_col = "published_at" if fmt == "parquet" else "epoch(published_at)::BIGINT AS published_at"
    events_path, catalog_path = out / f"events.{suffix}", out / f"catalog.{suffix}"
    con.execute(
        f"COPY (SELECT user_id, video_id, {ts_col}, country, lang, "
        f"watch_seconds::INTEGER AS watch_seconds FROM sample_events ORDER BY ts, j) "
        f"TO '{_escape(events_path)}' ({opts})"
    )
    con.execute(
        f"COPY (SELECT video_id, category, lang, {pub_col}, title FROM catalog ORDER BY i) "
        f"TO '{_escape(catalog_path)}' ({opts})"
    )
    return SampleFiles(events_path, catalog_path, n_users, n_videos, n_events)


def _escape(path: Path) -> str:
    return str(path).replace("'", "''")
