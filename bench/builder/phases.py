"""Time the builder's plan, phase by phase, in a process of its own; print one JSON object.

    python -m bench.builder.phases --events E --catalog C [--state S] [--now T] [--profile-top N]
                                   [--engine duckdb|spark] [--confirm-into STATE]

The phases are the library calls ``builder.jobs.plan`` makes, called one by one with the same
settings: read + validate (``sources.load_inputs``), compute (``ranking.compute``: profiles,
segments, top-N, profile payloads in the engine), encode + plan (``plan.computed_batches`` fed to
``plan.build_plan``: streaming the payloads out of the engine, checking them, hashing, diffing
against the state, batching). ``--engine spark`` runs them on a local Spark session (its start
is not in any phase), and the JVM's peak RSS is reported beside this process's. Every table
the engine computes and every result it returns is timed (``engine_calls``): where the engine's
time goes. ``--confirm-into`` records the plan in a state file as a finished run would (for the
rerun measurement without publishing every key first). ``--state`` diffs
against a state file (the rerun case); without it the state is empty (the first run). The
process's own peak RSS (``ru_maxrss``) is read after each phase, so the report can say which
phase sets the peak. With ``--profile-top N`` the encode + plan phase runs under cProfile and
its N most expensive functions are reported instead (its timings are then not comparable).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.cloudflare import MAX_BULK_PAIRS
from builder.engines import Engine, EngineSettings, open_engine
from builder.plan import Plan, build_plan, computed_batches
from builder.ranking import MIN_SEGMENT_SIZE, RankingOptions, compute
from builder.sources import load_inputs
from builder.state import State

if TYPE_CHECKING:
    from collections.abc import Iterator

_ROOT = str(Path(__file__).resolve().parents[2]) + "/"
# Third-party and standard-library frames are named from their package, not their full path.
_STDLIB = re.compile(r"^.*/(?:site-packages|lib/python3\.\d+)/")


def _rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Clock:
    """Wall and CPU time (all threads of the process, so DuckDB's workers count) per phase."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.phases[name] = {
            "wall_s": round(wall - self._wall, 4),
            "cpu_s": round(cpu - self._cpu, 4),
            "rss_peak_mb": round(_rss_mb(), 1),
        }
        self._wall, self._cpu = wall, cpu


def _top(profile: cProfile.Profile, n: int) -> list[dict[str, Any]]:
    """The ``n`` functions with the most own time, with their cumulative time and call count."""
    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = _STDLIB.sub("", filename.removeprefix(_ROOT))
        rows.append(
            {
                "function": f"{where}:{line}({name})" if line else name,
                "calls": ncalls,
                "own_s": round(tottime, 3),
                "cumulative_s": round(cumtime, 3),
            }
        )
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    return rows[:n]


def _time_calls(engine: Engine, calls: list[dict[str, Any]]) -> None:
    """Record how long each table the engine computes and each result it returns takes.

    The profile of where an engine spends its time: one entry per cached table (named by what
    it holds) and per result read back, in order. Results stream, so their time is taken when
    the last batch has been read.
    """
    cache, batches = engine.cache, engine.batches

    def timed_cache(expr: Any, prefix: str = "t") -> Any:
        started = time.perf_counter()
        table = cache(expr, prefix)
        calls.append({"what": f"table {prefix}", "s": round(time.perf_counter() - started, 3)})
        return table

    def timed_batches(expr: Any, chunk: int) -> Iterator[Any]:
        started, rows = time.perf_counter(), 0
        for batch in batches(expr, chunk):
            rows += batch.num_rows
            yield batch
        columns = ", ".join(expr.columns[:3]) + (", …" if len(expr.columns) > 3 else "")
        calls.append(
            {
                "what": f"result of {rows:,} rows ({columns})",
                "s": round(time.perf_counter() - started, 3),
            }
        )

    engine.cache = timed_cache  # type: ignore[method-assign]
    engine.batches = timed_batches  # type: ignore[method-assign]


def _jvm_peak_mb(engine: Engine) -> float | None:
    """The Spark driver JVM's peak RSS (a child process, so not in this process's own)."""
    session = getattr(engine, "session", None)
    if session is None:
        return None
    pid = session.sparkContext._jvm.ProcessHandle.current().pid()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def _spark_conf(engine: Engine) -> dict[str, str]:
    session = getattr(engine, "session", None)
    if session is None:
        return {}
    keys = ("spark.master", "spark.sql.shuffle.partitions", "spark.driver.memory")
    return {k: str(session.conf.get(k, "(default)")) for k in keys}


def _confirm(plan: Plan, path: Path) -> None:
    """Record every planned write as Cloudflare-confirmed in ``path``, as a finished run would.

    What a successful ``run`` leaves behind, without sending millions of keys to a local API
    first: the rerun measured against it must then plan no writes.
    """
    with State(path) as target:
        rows: list[tuple[str, bytes, int]] = []
        for key, _value, ttl, digest, _phase in plan.writes():
            rows.append((key, digest, plan.now + ttl))
            if len(rows) == 50_000:
                target.confirm_written(rows)
                rows.clear()
        target.confirm_written(rows)


def measure(
    events: Path,
    catalog: Path,
    *,
    state: Path | None,
    now: int,
    schema: str,
    min_segment_size: int,
    profile_top: int = 0,
    engine_name: str = "duckdb",
    confirm_into: Path | None = None,
) -> dict[str, Any]:
    """Run the three phases once; their times, peak RSS, and what the plan counted."""
    calls: list[dict[str, Any]] = []
    engine = open_engine(EngineSettings(name=engine_name))
    _time_calls(engine, calls)
    clock = _Clock()  # from here: the JVM's start-up is the engine's, not a phase's
    inputs = load_inputs(engine, events=events, catalog=catalog, now=now)
    stats = inputs.stats
    clock.lap("read_validate")
    as_of = min(stats.max_ts if stats.max_ts is not None else now, now)
    options = RankingOptions(min_segment_size=min_segment_size)
    build = compute(engine, inputs, as_of=as_of, options=options)
    stats = build.input_stats  # repeated rows in a split input are counted by the compute
    clock.lap("compute")
    profiler = cProfile.Profile() if profile_top else None
    with State(state if state is not None else Path(":memory:")) as st:
        if profiler is not None:
            profiler.enable()
        plan = build_plan(
            st,
            computed_batches(build, schema),
            schema=schema,
            now=now,
            max_pairs=MAX_BULK_PAIRS,
        )
        if profiler is not None:
            profiler.disable()
        clock.lap("encode_plan")
        counts = plan.counts.as_dict()
        if confirm_into is not None:
            _confirm(plan, confirm_into)
    jvm_rss = _jvm_peak_mb(engine)
    spark_conf = _spark_conf(engine)
    build.close()
    wall = sum(p["wall_s"] for p in clock.phases.values())
    result: dict[str, Any] = {
        "phases": clock.phases,
        "total_s": round(wall, 4),
        "cpu_s": round(sum(p["cpu_s"] for p in clock.phases.values()), 4),
        "rss_peak_mb": round(_rss_mb(), 1),
        "events": stats.events,
        "duplicate_events": stats.duplicate_events,
        "catalog": stats.catalog,
        "as_of": as_of,
        "users": build.users,
        "segments": len(build.segments),
        "plan": counts,
        "profiled": profiler is not None,
        "engine": engine_name,
        "engine_calls": calls,
    }
    if jvm_rss is not None:
        result["jvm_rss_peak_mb"] = jvm_rss
        result["spark_conf"] = spark_conf
    if profiler is not None:
        result["profile_top"] = _top(profiler, profile_top)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--state", type=Path, default=None, help="diff against this state file")
    parser.add_argument("--now", type=int, required=True)
    parser.add_argument("--schema", default="v3")
    parser.add_argument("--min-segment-size", type=int, default=MIN_SEGMENT_SIZE)
    parser.add_argument("--profile-top", type=int, default=0)
    parser.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    parser.add_argument(
        "--confirm-into", type=Path, default=None, help="record the plan as confirmed here"
    )
    args = parser.parse_args(argv)
    result = measure(
        args.events,
        args.catalog,
        state=args.state,
        now=args.now,
        schema=args.schema,
        min_segment_size=args.min_segment_size,
        profile_top=args.profile_top,
        engine_name=args.engine,
        confirm_into=args.confirm_into,
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
