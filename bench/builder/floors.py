"""The floor of one machine: the passes any build of the ranking must make, each run alone.

    python -m bench.builder.floors --events E [--memory-limit 3.2GB] [--plan-rows N]

Each pass is one plain DuckDB query over the events file, with nothing else in it, so its time
is a lower bound for the same work inside the builder (docs/builder.md, "How far one machine
goes"). Whatever engine or plan is used, the definition in :mod:`builder.ranking` needs at least:

- ``scan``: reading the six event columns once;
- ``validate``: the visitor-ID rule (:data:`builder.sources.UID_PATTERN`) on every row;
- ``user_video``: one row per (user, video) -- a video's candidates count *distinct* viewers,
  so repeated watches must be folded before anything is counted per segment;
- ``user``: one row per user (the profile and the user's segment);
- ``plan`` (with ``--plan-rows N``): :func:`builder.plan.build_plan` itself on N new keys of a
  profile's size, as a first run plans them (a digest, a diff step and a row of the plan's
  writes file per key).

The engine passes run with the builder's own DuckDB settings (``memory_limit``, two threads on
this machine). Prints one JSON object: seconds per pass, and their sum.
"""

# ruff: noqa: S608  # SQL from constants and a file path quoted by quote_sql()

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from builder.engines import DUCKDB_MEMORY_LIMIT, quote_sql
from builder.plan import ItemBatch, build_plan
from builder.sources import UID_PATTERN
from builder.state import State
from edgeshelf.schema import USER_PREFIX, USER_TTL

if TYPE_CHECKING:
    from collections.abc import Iterator

_PROFILE = (
    '{"country":"us","lang":"en","affinity_bucket":"music",'
    '"recent_categories":["music","news","sports"],"last_seen":1748736000}'
)
_CHUNK = 50_000  # what Build.profile_batches yields at a time


def engine_passes(events: Path, memory_limit: str = DUCKDB_MEMORY_LIMIT) -> dict[str, Any]:
    """Seconds of each engine pass over ``events`` (Parquet), and the rows it produced."""
    src = f"read_parquet({quote_sql(str(events))})"
    queries = {
        "scan": f"SELECT count(*), sum(length(user_id) + length(video_id) + length(country) "
        f"+ length(lang)), sum(epoch(ts)), sum(watch_seconds) FROM {src}",
        "validate": f"SELECT count(*) FILTER (WHERE NOT regexp_full_match(user_id, "
        f"{quote_sql(UID_PATTERN)})) FROM {src}",
        "user_video": "SELECT count(*) FROM (SELECT user_id::UUID AS uid, video_id, "
        f"sum(watch_seconds), count(*), max(ts) FROM {src} GROUP BY ALL)",
        "user": "SELECT count(*) FROM (SELECT user_id::UUID AS uid, sum(watch_seconds), "
        f"count(*), max(ts), max(country), max(lang) FROM {src} GROUP BY ALL)",
    }
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgeshelf-floors-") as spill:
        con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": spill})
        try:
            for name, sql in queries.items():
                started = time.perf_counter()
                [(rows, *_)] = con.execute(sql).fetchall()
                out[name] = {"s": round(time.perf_counter() - started, 2), "rows": int(rows)}
        finally:
            con.close()
    return out


def plan_pass(rows: int) -> dict[str, Any]:
    """Seconds for :func:`builder.plan.build_plan` to plan ``rows`` new profile-sized keys.

    The plan itself, on an empty state (a first run: every key is written), fed in the engine's
    batch size: digest, diff, batching and the plan's rows, nothing the engine computes.
    """
    keys = [f"{USER_PREFIX}{i:036d}" for i in range(rows)]

    def computed() -> Iterator[ItemBatch]:
        for start in range(0, rows, _CHUNK):
            chunk = keys[start : start + _CHUNK]
            yield ItemBatch.of(chunk, [_PROFILE] * len(chunk), USER_TTL, "profiles")

    with State(Path(":memory:")) as state:
        started = time.perf_counter()
        plan = build_plan(state, computed(), schema="v1", now=1_748_736_000)
        seconds = time.perf_counter() - started
    return {"s": round(seconds, 2), "rows": plan.counts.writes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=Path, required=True, help="events Parquet file")
    parser.add_argument("--memory-limit", default=DUCKDB_MEMORY_LIMIT)
    parser.add_argument("--plan-rows", type=int, default=0, help="also time N plan rows")
    args = parser.parse_args(argv)
    passes = engine_passes(args.events, args.memory_limit)
    if args.plan_rows:
        passes["plan"] = plan_pass(args.plan_rows)
    result = {
        "events": str(args.events),
        "duckdb": duckdb.__version__,
        "passes": passes,
        "sum_s": round(sum(p["s"] for p in passes.values()), 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
