"""``scripts/bench builder``: the builder at a million users, against the local v4 KV API.

    uv run python -m bench.builder [--smoke] [--users N --events N --videos N] [--reps R]
                                   [--out-dir DIR] [--work-dir DIR] [--no-api-rate-limit]
                                   [--no-spark] [--no-large]

Steps, each in a process of its own so its peak RSS is its own (``os.wait4``'s rusage):

1. ``edgeshelf-builder sample`` (seeded) writes the events and the catalog.
2. The plan's phases (read + validate, compute, encode + plan) are timed ``--reps`` times in
   fresh processes against an empty state (``bench.builder.phases``), then once more under
   cProfile to show where the encode + plan time goes.
3. The local stack starts (the real per-token limit of 1,200 requests per 5 minutes stays on
   unless ``--no-api-rate-limit``) and ``edgeshelf-builder run --json`` publishes everything;
   the local API's counters (``stack.api_stats()``) are polled while it runs, so the requests
   actually made, their timeline and the busiest 5-minute window are measured, not inferred.
4. The same ``run`` again on unchanged input, ``--reps`` times: it must write nothing. The plan
   phases are timed against the full state as well.
5. The same plan phases on a local Spark session (``--engine spark``), once, with the JVM's
   peak RSS and the time of every table and result the engine computes (unless ``--no-spark``).
6. Ten times larger (10,000,000 users, 100,000,000 events, 1,000,000 videos; unless
   ``--no-large``): the plan phases on DuckDB against an empty state, the plan recorded as
   confirmed (what a finished run leaves), then the phases again against that state, which must
   plan no writes. The data set is generated once and reused while its parameters and the
   DuckDB version are the same (``WORK/large-data/params.json``).

Raw results go to ``DIR/bench-builder.json``; ``bench.builder.report`` renders
``DIR/benchmarks-builder.md`` and ``DIR/img/bench-builder-*.png`` from it. DIR is ``docs/``, or
``.edgeshelf/bench-builder-smoke/`` with ``--smoke`` (tiny sizes, one repetition, < 60 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "local"))

from localstack import LocalStack  # noqa: E402  (lives in scripts/local, not a package)

from bench.builder import report  # noqa: E402
from builder.engines import DUCKDB_MEMORY_LIMIT  # noqa: E402

BUILDER = Path(sys.executable).parent / "edgeshelf-builder"
FULL = {"users": 1_000_000, "events": 10_000_000, "videos": 100_000}
SMOKE = {"users": 2_000, "events": 20_000, "videos": 500}
LARGE = {"users": 10_000_000, "events": 100_000_000, "videos": 1_000_000}
SMOKE_LARGE = {"users": 5_000, "events": 50_000, "videos": 800}
# Targets of issue 15 for the large data set, and the 1M-user figure it must not lose.
LARGE_TARGET_S = 120.0
LARGE_RSS_MB = 4 * 1024
BASELINE_1M_S = 31.5
# 100M events are 2.7 GB of Parquet; DuckDB spills up to ~15 GB beside it.
LARGE_DISK_GB = 30
SEED = 1
# The sample's newest event is at 2025-06-01T00:00Z; every plan and run is pinned an hour after
# it, so reruns are reproducible whatever the wall clock says.
NOW = 1_748_736_000 + 3_600
BULK_PAIRS = 10_000
API_WINDOW_S = 300
RUN_TIMEOUT_S = 4 * 3600


def _log(message: str) -> None:
    print(f"[bench builder {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# --- the machine ---------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gb() -> float:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def _package_version(package_json: Path) -> str | None:
    try:
        version = json.loads(package_json.read_text()).get("version")
    except (OSError, ValueError):
        return None
    return str(version) if version else None


def _node_version() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    proc = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or None


def machine_and_versions() -> dict[str, Any]:
    import duckdb  # noqa: PLC0415  (only the parent's metadata needs it)

    modules = ROOT / "node_modules"
    dirty = _git("status", "--porcelain", "--", "builder", "src", "bench/builder")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(dirty),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "ram_gb": _ram_gb(),
            "os": _os_name(),
            "kernel": platform.release(),
        },
        "versions": {
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "ibis": metadata.version("ibis-framework"),
            "pyspark": metadata.version("pyspark"),
            "edgeshelf": metadata.version("edgeshelf"),
            "httpx": metadata.version("httpx"),
            "node": _node_version(),
            "workerd": _package_version(modules / "workerd" / "package.json"),
            "miniflare": _package_version(modules / "miniflare" / "package.json"),
        },
    }


# --- child processes -----------------------------------------------------------------------
class Child:
    """A child process whose output lines are timestamped and whose rusage is kept."""

    def __init__(self, cmd: list[str], *, env: dict[str, str] | None = None) -> None:
        self.cmd = cmd
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[tuple[float, str]] = []
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, False), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, True), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _drain(self, stream: IO[str] | None, timed: bool) -> None:
        if stream is None:
            return
        for line in stream:
            if timed:
                self.stderr.append((round(time.monotonic() - self.started, 3), line.rstrip()))
            else:
                self.stdout.append(line)

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait (killing it past ``timeout``); wall time, exit code and peak RSS of the child.

        ``os.wait4`` reports the child's own rusage (plus its reaped descendants'), so the
        peak RSS is this step's alone, not the benchmark's.
        """
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.monotonic() - self.started
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        for t in self._threads:
            t.join(timeout=10)
        return {
            "exit_code": self.proc.returncode,
            "wall_s": round(wall, 3),
            "user_s": round(usage.ru_utime, 3),
            "sys_s": round(usage.ru_stime, 3),
            "rss_peak_mb": round(usage.ru_maxrss / 1024, 1),
        }

    def check(self, result: dict[str, Any]) -> None:
        if result["exit_code"] != 0:
            tail = "\n".join(line for _, line in self.stderr[-40:])
            raise SystemExit(f"{' '.join(self.cmd[:3])} exited {result['exit_code']}:\n{tail}")


def sample(data: Path, sizes: dict[str, int]) -> dict[str, Any]:
    shutil.rmtree(data, ignore_errors=True)
    cmd = [str(BUILDER), "sample", "--out", str(data), "--seed", str(SEED)]
    cmd += [f"--{k}={v}" for k, v in sizes.items()]
    child = Child(cmd)
    result = child.wait(3600)
    child.check(result)
    result["events_bytes"] = (data / "events.parquet").stat().st_size
    result["catalog_bytes"] = (data / "catalog.parquet").stat().st_size
    result["load_after"] = _load()
    return result


def phases(
    data: Path,
    *,
    state: Path | None,
    min_segment_size: int,
    profile_top: int = 0,
    engine: str = "duckdb",
    confirm_into: Path | None = None,
) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "bench.builder.phases",
        "--events", str(data / "events.parquet"), "--catalog", str(data / "catalog.parquet"),
        "--now", str(NOW), "--min-segment-size", str(min_segment_size),
        "--profile-top", str(profile_top), "--engine", engine,
    ]  # fmt: skip
    if state is not None:
        cmd += ["--state", str(state)]
    if confirm_into is not None:
        cmd += ["--confirm-into", str(confirm_into)]
    load_before = _load()
    child = Child(cmd)
    proc = child.wait(3600)
    child.check(proc)
    result: dict[str, Any] = json.loads("".join(child.stdout))
    result["process"] = proc
    result["load"] = [load_before, _load()]
    return result


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def summarise_phases(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of each phase's wall time and of the total, over the repetitions."""
    names = list(reps[0]["phases"])
    return {
        "phases_wall_s": {n: _median([r["phases"][n]["wall_s"] for r in reps]) for n in names},
        "phases_cpu_s": {n: _median([r["phases"][n]["cpu_s"] for r in reps]) for n in names},
        "total_s": _median([r["total_s"] for r in reps]),
        "total_range_s": [min(r["total_s"] for r in reps), max(r["total_s"] for r in reps)],
        "rss_peak_mb": max(r["process"]["rss_peak_mb"] for r in reps),
    }


# --- the run against the local API ---------------------------------------------------------
class Poller:
    """Samples the local API's counters (and the load average) while a run goes on."""

    def __init__(self, stack: LocalStack, interval: float) -> None:
        self.stack, self.interval = stack, interval
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        stats = self.stack.api_stats()
        self.samples.append(
            {
                "t": round(time.monotonic() - self.started, 3),
                "requests": stats["requests"],
                "pairs_written": stats["pairs_written"],
                "rate_limited": stats["faults"].get("rate_limited", 0),
                "load1": _load(),
            }
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sample()
            except Exception as exc:  # a missed sample is not a failed run
                _log(f"stats poll failed: {exc}")
            self._stop.wait(self.interval)

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.samples


def busiest_window(samples: list[dict[str, Any]], window: float = API_WINDOW_S) -> int:
    """The most requests counted in any ``window`` seconds (at the poller's resolution)."""
    best = 0
    for i, s in enumerate(samples):
        base = 0
        for earlier in samples[:i]:
            if earlier["t"] <= s["t"] - window:
                base = earlier["requests"]
        best = max(best, s["requests"] - base)
    return best


def cli_run(
    stack: LocalStack, data: Path, state: Path, *, min_segment_size: int, poll: float
) -> dict[str, Any]:
    """One ``edgeshelf-builder run --json`` with the API's counters zeroed before it."""
    stack.reset_faults()
    before = stack.api_stats()
    cmd = [
        sys.executable, "-m", "bench.builder.logged_cli", "run",
        "--events", str(data / "events.parquet"), "--catalog", str(data / "catalog.parquet"),
        "--state", str(state), "--now", str(NOW), "--min-segment-size", str(min_segment_size),
        "--json",
    ]  # fmt: skip
    poller = Poller(stack, poll)
    load_before = _load()
    child = Child(cmd, env={**os.environ, **stack.builder_env()})
    proc = child.wait(RUN_TIMEOUT_S)
    samples = poller.stop()
    child.check(proc)
    after = stack.api_stats()
    summary: dict[str, Any] = json.loads(child.stdout[-1])
    plan, publish = summary["plan"], summary["publish"]
    changed = int(plan["write"]["total"]) + int(plan["delete"])
    return {
        "process": proc,
        "load": [load_before, _load()],
        "summary": summary,
        "phase_lines": [[t, line] for t, line in child.stderr if not line.startswith("stamina.")],
        "retry_lines": [
            [t, json.loads(line.split(" ", 1)[1])]
            for t, line in child.stderr
            if line.startswith("stamina.retry_scheduled ")
        ],
        "api": {
            "requests": after["requests"] - before["requests"],
            "writes": after["writes"] - before["writes"],
            "pairs_written": after["pairs_written"] - before["pairs_written"],
            "deletes": after["deletes"] - before["deletes"],
            "pairs_deleted": after["pairs_deleted"] - before["pairs_deleted"],
            "by_route": after["by_route"],
            "by_status": after["by_status"],
            "rate_limited": after["faults"].get("rate_limited", 0),
            "config": after["config"],
        },
        "timeline": samples,
        "busiest_window": busiest_window(samples),
        "keys_computed": sum(plan["computed"].values()),
        "keys_changed": changed,
        "requests_literal": math.ceil(changed / BULK_PAIRS),
        "requests_planned": plan["requests"]["total"],
        "requests_builder": publish["requests"],
        "retries": publish["retries"],
    }


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each issue-6 builder target, with the measured figure and whether it was met."""
    plan_s = data["plan_first"]["median"]["total_s"]
    first, reruns = data["run"], data["reruns"]
    # Attempts as the builder counts them: a retried request that failed in transport may never
    # reach the API's counter, and the target counts it anyway.
    extra = first["requests_builder"] - first["retries"] - first["requests_literal"]
    rerun_pairs = max(r["api"]["pairs_written"] + r["api"]["pairs_deleted"] for r in reruns)
    rerun_writes = max(r["api"]["writes"] + r["api"]["deletes"] for r in reruns)
    users = data["params"]["users"]
    out = [
        {
            "id": "compute_plan",
            "target": f"compute + plan for {users:,} users ≤ 60 s "
            f"on this {data['meta']['machine']['nproc']}-core machine",
            "measured": f"{plan_s:.1f} s (median of {len(data['plan_first']['reps'])}; "
            "read + validate, compute, encode + plan)",
            "met": plan_s <= 60,
        },
        {
            "id": "requests",
            "target": "requests = ⌈changed keys / 10,000⌉ plus retries",
            "measured": f"{first['requests_builder']:,} requests ({first['retries']} of them "
            f"retries; {first['api']['requests']:,} reached the API) for "
            f"{first['keys_changed']:,} changed keys; ⌈changed / 10,000⌉ + retries = "
            f"{first['requests_literal'] + first['retries']:,}"
            + (f"; {extra:+d} over the formula" if extra else ""),
            "met": extra <= 0,
            # The builder's own per-phase rule, which the report explains.
            "note": " (deletions are batched apart from writes)"
            if extra > 0
            and first["requests_builder"] == first["requests_planned"] + first["retries"]
            else "",
        },
        {
            "id": "rerun",
            "target": "a rerun on unchanged input writes nothing",
            "measured": f"{rerun_writes} write requests, {rerun_pairs} pairs written or deleted "
            f"in {len(reruns)} rerun(s)",
            "met": rerun_pairs == 0 and rerun_writes == 0,
        },
    ]
    if not data["params"]["smoke"]:
        out.append(
            {
                "id": "no_slower",
                "target": f"compute + plan for {users:,} users no more than 10% slower than "
                f"before the engines ({BASELINE_1M_S} s)",
                "measured": f"{plan_s:.1f} s ({plan_s / BASELINE_1M_S - 1:+.0%})",
                "met": plan_s <= BASELINE_1M_S * 1.1,
            }
        )
    if "large" in data:
        out += large_targets(data["large"])
    return out


def large_targets(large: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 15's targets for the 10,000,000-user data set."""
    first, rerun = large["first"], large["rerun"]
    sizes = large["params"]
    plan = first["plan"]
    writes, deletes = plan["write"]["total"], plan["delete"]
    literal = math.ceil(writes / BULK_PAIRS) + math.ceil(deletes / BULK_PAIRS)
    rss = max(first["process"]["rss_peak_mb"], rerun["process"]["rss_peak_mb"])
    return [
        {
            "id": "large_compute_plan",
            "target": f"compute + plan for {sizes['users']:,} users / {sizes['events']:,} "
            f"events ≤ {LARGE_TARGET_S:.0f} s",
            "measured": f"{first['total_s']:.1f} s (read + validate "
            f"{first['phases']['read_validate']['wall_s']:.1f} s, compute "
            f"{first['phases']['compute']['wall_s']:.1f} s, encode + plan "
            f"{first['phases']['encode_plan']['wall_s']:.1f} s)",
            "met": first["total_s"] <= LARGE_TARGET_S,
        },
        {
            "id": "large_rss",
            "target": f"peak RSS ≤ 4 GiB at {sizes['users']:,} users",
            "measured": f"{rss / 1024:.2f} GiB (largest of the two plans)",
            "met": rss <= LARGE_RSS_MB,
        },
        {
            "id": "large_requests",
            "target": "requests planned = ⌈changed keys / 10,000⌉",
            "measured": f"{plan['requests']['total']:,} planned for {writes:,} writes and "
            f"{deletes:,} deletions; ⌈changed / 10,000⌉ = {literal:,}",
            "met": plan["requests"]["total"] == literal,
        },
        {
            "id": "large_rerun",
            "target": "a rerun on unchanged input plans 0 writes",
            "measured": f"{rerun['plan']['write']['total']:,} writes, "
            f"{rerun['plan']['delete']:,} deletions planned against the recorded state",
            "met": rerun["plan"]["write"]["total"] == 0 and rerun["plan"]["delete"] == 0,
        },
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/bench builder", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--users", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--videos", type=int)
    parser.add_argument("--reps", type=int, help="repetitions of timed steps (3; smoke 1)")
    parser.add_argument("--min-segment-size", type=int, default=50)
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--work-dir", type=Path, help="data and state (under .edgeshelf/)")
    parser.add_argument(
        "--no-api-rate-limit",
        action="store_true",
        help="switch the local API's 1,200 requests / 5 min limit off (default: on, as real)",
    )
    parser.add_argument("--profile-top", type=int, default=20, help="0: no cProfile step")
    parser.add_argument("--no-spark", action="store_true", help="skip the local Spark step")
    parser.add_argument("--no-large", action="store_true", help="skip the 10M-user step")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)

    sizes = dict(SMOKE if args.smoke else FULL)
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    reps = args.reps or (1 if args.smoke else 3)
    name = "bench-builder-smoke" if args.smoke else "bench-builder"
    out_dir = args.out_dir or (ROOT / ".edgeshelf" / name if args.smoke else ROOT / "docs")
    work = args.work_dir or ROOT / ".edgeshelf" / name
    data_dir, state = work / "data", work / "state.sqlite"
    work.mkdir(parents=True, exist_ok=True)

    data: dict[str, Any] = {
        "meta": machine_and_versions(),
        "params": {
            **sizes,
            "seed": SEED,
            "now": NOW,
            "reps": reps,
            "smoke": args.smoke,
            "min_segment_size": args.min_segment_size,
            "api_rate_limit": not args.no_api_rate_limit,
            "duckdb_memory_limit": DUCKDB_MEMORY_LIMIT,
        },
        "load": {"start": _load()},
    }
    _log(f"sample {sizes} (seed {SEED})")
    data["sample"] = sample(data_dir, sizes)
    _log(f"sample: {data['sample']['wall_s']:.1f} s")
    plan_steps(data, data_dir, reps=reps, k=args.min_segment_size, profile_top=args.profile_top)
    checkpoint = work / "bench-builder.partial.json"  # what a crash further on leaves
    checkpoint.write_text(json.dumps(data, indent=1) + "\n")
    for path in (state, state.with_name(state.name + ".lock")):
        path.unlink(missing_ok=True)
    run_steps(
        data,
        data_dir,
        state,
        reps=reps,
        k=args.min_segment_size,
        log_path=work / "stack.log",
        api_defaults={"rate_limit": None} if args.no_api_rate_limit else None,
        poll=0.25 if args.smoke else 1.0,
    )
    checkpoint.write_text(json.dumps(data, indent=1) + "\n")
    again: list[dict[str, Any]] = []
    for i in range(reps):
        again.append(phases(data_dir, state=state, min_segment_size=args.min_segment_size))
        _log(f"plan phases, full state, rep {i + 1}/{reps}: {again[-1]['total_s']:.1f} s")
    data["plan_rerun"] = {"reps": again, "median": summarise_phases(again)}
    if not args.no_spark:
        _log("plan phases on a local Spark session")
        data["spark"] = phases(data_dir, state=None, min_segment_size=args.min_segment_size,
                               engine="spark")  # fmt: skip
        _log(f"spark: {data['spark']['total_s']:.1f} s")
        checkpoint.write_text(json.dumps(data, indent=1) + "\n")
    if not args.no_large:
        data["large"] = large_steps(
            work, SMOKE_LARGE if args.smoke else LARGE, k=args.min_segment_size
        )
    data["load"]["end"] = _load()
    data["targets"] = targets(data)

    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "bench-builder.json"
    raw.write_text(json.dumps(data, indent=1) + "\n")
    written = report.render(data, out_dir)
    _log(f"wrote {raw} and {', '.join(str(p) for p in written)}")
    for t in data["targets"]:
        _log(f"{'met' if t['met'] else 'NOT MET'}: {t['target']}: {t['measured']}")
    return 0


def large_steps(work: Path, sizes: dict[str, int], *, k: int) -> dict[str, Any]:
    """The plan at ten times the size: empty state, recorded as confirmed, then a rerun."""
    import duckdb  # noqa: PLC0415  (only the parent's metadata needs it)

    data_dir = work / "large-data"
    marker = data_dir / "params.json"
    want = {**sizes, "seed": SEED, "duckdb": duckdb.__version__}
    reused = marker.exists() and json.loads(marker.read_text()) == want
    generated: dict[str, Any] | None = None
    if not reused:
        free_gb = shutil.disk_usage(work).free / 1e9
        if free_gb < LARGE_DISK_GB * sizes["events"] / LARGE["events"]:
            raise SystemExit(f"{free_gb:.0f} GB free under {work}: not enough for {sizes}")
        _log(f"large sample {sizes} (seed {SEED})")
        generated = sample(data_dir, sizes)
        marker.write_text(json.dumps(want) + "\n")
    state = work / "large-state.sqlite"
    for path in (state, state.with_name(state.name + ".lock")):
        path.unlink(missing_ok=True)
    _log("large: plan phases, empty state (recorded as confirmed afterwards)")
    first = phases(data_dir, state=None, min_segment_size=k, confirm_into=state)
    _log(f"large: {first['total_s']:.1f} s; plan phases against the recorded state")
    rerun = phases(data_dir, state=state, min_segment_size=k)
    _log(f"large rerun: {rerun['total_s']:.1f} s, {rerun['plan']['write']['total']} writes")
    return {
        "params": sizes,
        "sample": generated,
        "reused_data": reused,
        "events_bytes": (data_dir / "events.parquet").stat().st_size,
        "first": first,
        "rerun": rerun,
    }


def plan_steps(
    data: dict[str, Any], data_dir: Path, *, reps: int, k: int, profile_top: int
) -> None:
    """The plan's phases against an empty state, ``reps`` times, then once under cProfile."""
    first: list[dict[str, Any]] = []
    for i in range(reps):
        first.append(phases(data_dir, state=None, min_segment_size=k))
        _log(f"plan phases, empty state, rep {i + 1}/{reps}: {first[-1]['total_s']:.1f} s")
    data["plan_first"] = {"reps": first, "median": summarise_phases(first)}
    if profile_top:
        prof = phases(data_dir, state=None, min_segment_size=k, profile_top=profile_top)
        data["profile"] = {
            "phase": "encode_plan",
            "wall_s": prof["phases"]["encode_plan"]["wall_s"],
            "top": prof["profile_top"],
        }
        _log("cProfile of encode + plan done")


def run_steps(
    data: dict[str, Any],
    data_dir: Path,
    state: Path,
    *,
    reps: int,
    k: int,
    log_path: Path,
    api_defaults: dict[str, Any] | None,
    poll: float,
) -> None:
    """On a fresh local stack: the first run (publishes everything), then ``reps`` reruns."""
    stack = LocalStack.start(log_path, quiet=True, api_defaults=api_defaults)
    try:
        data["meta"]["versions"]["stack_runtime"] = stack.runtime
        _log("run: publishing everything to the local API")
        data["run"] = run = cli_run(stack, data_dir, state, min_segment_size=k, poll=poll)
        _log(
            f"run: {run['process']['wall_s']:.1f} s, {run['api']['requests']} requests, "
            f"{run['api']['pairs_written']:,} pairs"
        )
        data["reruns"] = []
        for i in range(reps):
            rerun = cli_run(stack, data_dir, state, min_segment_size=k, poll=poll)
            data["reruns"].append(rerun)
            _log(
                f"rerun {i + 1}/{reps}: {rerun['process']['wall_s']:.1f} s, "
                f"{rerun['api']['requests']} requests, {rerun['api']['pairs_written']} pairs"
            )
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
