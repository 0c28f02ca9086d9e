"""The builder's operations as plain functions: plan, run, gc, publish-shell, status, verify.

The CLI (:mod:`builder.cli`) only parses options, builds the HTTP client and draws progress;
everything here is callable from Python (tests, notebooks, another scheduler) with a
:class:`~builder.cloudflare.KVClient` over any ``httpx`` transport.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from builder.cloudflare import MAX_BULK_GET, MAX_BULK_PAIRS, BulkPair, KVClient
from builder.engines import DUCKDB_MEMORY_LIMIT, EngineSettings, open_engine
from builder.errors import APIError, ConfigError, MassDeleteError, PayloadError
from builder.limiter import DEFAULT_LIMIT, SlidingWindowLimiter
from builder.plan import Item, Plan, PlanCounts, build_plan, check_payload, computed_items
from builder.publish import Publisher, PublishOptions, PublishReport, Retrier
from builder.ranking import Build, RankingOptions, compute
from builder.sources import InputStats, load_inputs
from builder.state import DEFAULT_STATE, RunLock, State
from edgeshelf.schema import (
    MAX_SHELL_BYTES,
    SEGMENT_PREFIX,
    USER_PREFIX,
    encode_shell_pointer,
    segment_key_schema,
    shell_backup_key,
    shell_pointer_key,
    valid_schema,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "GcResult",
    "RemoteDiff",
    "Reporter",
    "RunResult",
    "RunSettings",
    "Silent",
    "gc",
    "load_build",
    "plan",
    "publish_shell",
    "remote_diff",
    "run",
    "status",
]

# A run refuses to delete more than this share of the published keys (when that is over
# MASS_DELETE_FLOOR keys): an export that came out empty or truncated must not wipe KV.
MAX_DELETE_FRACTION: Final = 0.25
MASS_DELETE_FLOOR: Final = 1000


class Reporter(Protocol):
    """Progress and warnings; the CLI draws them with rich."""

    def phase(self, name: str) -> None: ...
    def start(self, phase: str, total: int) -> None: ...
    def advance(self, phase: str, n: int) -> None: ...
    def warn(self, message: str) -> None: ...


class Silent:
    """A :class:`Reporter` that reports nothing (warnings are collected)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def phase(self, name: str) -> None:
        pass

    def start(self, phase: str, total: int) -> None:
        pass

    def advance(self, phase: str, n: int) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)


@dataclass(frozen=True)
class RunSettings:
    """Inputs and knobs of ``plan`` and ``run``."""

    events: Path | str
    catalog: Path | str
    state: Path = DEFAULT_STATE
    schema: str = "v3"
    ranking: RankingOptions = field(default_factory=RankingOptions)
    publish: PublishOptions = field(default_factory=PublishOptions)
    rate_limit: int = DEFAULT_LIMIT
    now: int | None = None
    memory_limit: str = DUCKDB_MEMORY_LIMIT
    max_delete_fraction: float = MAX_DELETE_FRACTION
    engine: EngineSettings = field(default_factory=EngineSettings)

    def __post_init__(self) -> None:
        if not valid_schema(self.schema):
            raise ConfigError(f"--schema must look like v3, got {self.schema!r}")


@dataclass
class RunResult:
    """What ``plan`` / ``run`` did; ``report`` is None for a dry run."""

    inputs: InputStats
    counts: PlanCounts
    report: PublishReport | None
    duration: float
    schema: str
    as_of: int

    @property
    def complete(self) -> bool:
        return self.report is None or (
            self.report.failed == 0 and self.report.deferred_deletes == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "as_of": self.as_of,
            "inputs": {
                "events": self.inputs.events,
                "duplicate_events": self.inputs.duplicate_events,
                "catalog": self.inputs.catalog,
            },
            "plan": self.counts.as_dict(),
            "publish": None if self.report is None else self.report.as_dict(),
            "complete": self.complete,
            "duration": round(self.duration, 3),
        }


def load_build(settings: RunSettings, now: int, reporter: Reporter) -> tuple[Build, InputStats]:
    """Read and validate the inputs, then compute profiles and segments.

    The build holds the engine it was computed on; ``build.close()`` releases it.
    """
    engine = open_engine(dataclasses.replace(settings.engine, memory_limit=settings.memory_limit))
    try:
        reporter.phase(f"reading and validating inputs ({engine.name})")
        inputs = load_inputs(engine, events=settings.events, catalog=settings.catalog, now=now)
        stats = inputs.stats
        reporter.phase("computing profiles and segments")
        as_of = min(stats.max_ts if stats.max_ts is not None else now, now)
        return compute(engine, inputs, as_of=as_of, options=settings.ranking), stats
    except BaseException:
        engine.close()
        raise


def _plan(
    settings: RunSettings, state: State, now: int, reporter: Reporter
) -> tuple[Build, InputStats, PlanCounts, Plan]:
    build, stats = load_build(settings, now, reporter)
    try:
        return _diff(settings, state, now, reporter, build, stats)
    except BaseException:
        build.close()
        raise


def _diff(
    settings: RunSettings,
    state: State,
    now: int,
    reporter: Reporter,
    build: Build,
    stats: InputStats,
) -> tuple[Build, InputStats, PlanCounts, Plan]:
    reporter.start("planning", len(build.segments) + build.users)
    the_plan = build_plan(
        state,
        computed_items(build, settings.schema),
        schema=settings.schema,
        now=now,
        warn=reporter.warn,
        progress=lambda n: reporter.advance("planning", n),
        max_pairs=settings.publish.max_pairs,
    )
    published = state.count_scope(settings.schema)
    limit = max(MASS_DELETE_FLOOR, settings.max_delete_fraction * published)
    if the_plan.counts.deleted > limit:
        message = (
            f"the plan deletes {the_plan.counts.deleted} of {published} published keys "
            f"({the_plan.counts.deleted / max(published, 1):.0%}); is the input complete? "
            f"If it is intended, rerun with --max-delete {the_plan.counts.deleted / published:.2f}"
        )
        reporter.warn(message)
        the_plan.counts.mass_delete = message
    return build, stats, the_plan.counts, the_plan


def plan(settings: RunSettings, reporter: Reporter | None = None) -> RunResult:
    """Dry run: what ``run`` would write, skip and delete, and how many requests it would make."""
    reporter = reporter or Silent()
    started = time.monotonic()
    now = settings.now if settings.now is not None else int(time.time())
    # A dry run must not create a state file: with none yet, diff against an empty one.
    path = settings.state if settings.state.exists() else Path(":memory:")
    with State(path) as state:
        build, stats, counts, _ = _plan(settings, state, now, reporter)
        build.close()
    return RunResult(stats, counts, None, time.monotonic() - started, settings.schema, build.as_of)


def run(
    settings: RunSettings,
    kv: KVClient,
    *,
    identity: str,
    reporter: Reporter | None = None,
) -> RunResult:
    """Plan and publish under the lock; the state records exactly what Cloudflare confirmed."""
    reporter = reporter or Silent()
    started = time.monotonic()
    now = settings.now if settings.now is not None else int(time.time())
    with RunLock(State.lock_path(settings.state)), State(settings.state) as state:
        state.bind(identity)
        build, stats, counts, the_plan = _plan(settings, state, now, reporter)
        build.close()
        if counts.mass_delete:
            raise MassDeleteError(counts.mass_delete)
        wall = time.time()
        publisher = Publisher(
            kv,
            state,
            limiter=SlidingWindowLimiter(settings.rate_limit),
            options=settings.publish,
            progress=reporter,
            # Expiry is recorded on the same clock the plan compares it with (--now included).
            clock=lambda: now + (time.time() - wall),
        )
        report = PublishReport()
        try:
            report = publisher.publish(the_plan)
        finally:
            result = RunResult(
                stats, counts, report, time.monotonic() - started, settings.schema, build.as_of
            )
            summary = result.as_dict()
            summary["finished_at"] = int(time.time())
            state.record_run(summary)
    return result


@dataclass
class GcResult:
    """Keys of retired schemas found and deleted by ``gc``."""

    found: int = 0
    deleted: int = 0
    failed: int = 0
    requests: int = 0
    by_schema: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "deleted": self.deleted,
            "failed": self.failed,
            "requests": self.requests,
            "by_schema": dict(sorted(self.by_schema.items())),
        }


def _list_all(kv: KVClient, retrier: Retrier, prefix: str) -> Iterator[str]:
    cursor: str | None = None
    while True:
        page, cursor = retrier.call(functools.partial(kv.list_keys_page, prefix, cursor))
        for key in page:
            yield key.name
        if cursor is None:
            return


def gc(
    kv: KVClient,
    *,
    keep: Iterable[str],
    state_path: Path = DEFAULT_STATE,
    identity: str,
    dry_run: bool = False,
    rate_limit: int = DEFAULT_LIMIT,
    options: PublishOptions | None = None,
) -> GcResult:
    """Delete every ``seg:`` key whose schema is not in ``keep`` (list by prefix + bulk delete)."""
    kept = set(keep)
    bad = [s for s in kept if not valid_schema(s)]
    if not kept or bad:
        raise ConfigError(f"--keep needs schema versions like v4, got {sorted(bad) or 'none'}")
    retrier = Retrier(SlidingWindowLimiter(rate_limit), options or PublishOptions())
    result = GcResult()
    with RunLock(State.lock_path(state_path)), State(state_path) as state:
        state.bind(identity)
        doomed = []
        for name in _list_all(kv, retrier, SEGMENT_PREFIX):
            schema = segment_key_schema(name)
            if schema is not None and schema not in kept:
                doomed.append(name)
                result.by_schema[schema] = result.by_schema.get(schema, 0) + 1
        result.found = len(doomed)
        if not dry_run:
            known = set(state.keys(SEGMENT_PREFIX + "*"))
            for start in range(0, len(doomed), MAX_BULK_PAIRS):
                chunk = doomed[start : start + MAX_BULK_PAIRS]
                state.mark_unconfirmed([k for k in chunk if k in known])
                done, failed, _ = retrier.bulk(
                    chunk, lambda ks: kv.bulk_delete(ks).unsuccessful_keys
                )
                state.confirm_deleted(done)
                result.deleted += len(done)
                result.failed += len(failed)
    result.requests = retrier.requests
    return result


def publish_shell(
    kv: KVClient,
    *,
    name: str,
    html: bytes,
    version: str,
    path: str = "/",
    reporter: Reporter | None = None,
    rate_limit: int = DEFAULT_LIMIT,
    options: PublishOptions | None = None,
) -> tuple[str, str]:
    """Store the shell under ``shell:<name>:<version>``, then point ``shell:<name>`` at it.

    The copy is written (and confirmed) before the pointer moves, so a reader that follows the
    pointer always finds the version it names. Returns the two keys written.
    """
    reporter = reporter or Silent()
    try:
        backup, pointer = shell_backup_key(name, version), shell_pointer_key(name)
        pointer_value = encode_shell_pointer(version, path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        text = html.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            f"the shell must be UTF-8 HTML ({exc.reason} at byte {exc.start})"
        ) from exc
    check_payload(backup, html, MAX_SHELL_BYTES, reporter.warn)
    retrier = Retrier(SlidingWindowLimiter(rate_limit), options or PublishOptions())
    for key, value in ((backup, text), (pointer, pointer_value)):
        pair = BulkPair(key=key, value=value)

        def send(_keys: list[str], pair: BulkPair = pair) -> list[str]:
            return kv.bulk_put([pair]).unsuccessful_keys

        _, failed, error = retrier.bulk([key], send)
        if failed:
            raise APIError(f"{key} was not written: {error}")
    return backup, pointer


def status(state_path: Path = DEFAULT_STATE) -> dict[str, Any]:
    """What the state file knows: target, keys per kind, unconfirmed keys, the last run."""
    with State(state_path) as state:
        return {
            "state": str(state_path),
            "target": state.get_meta("target"),
            "keys": state.counts(),
            "last_run": state.last_run(),
        }


@dataclass
class RemoteDiff:
    """Keys whose KV content differs from the computed output."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.different or self.extra)


def remote_diff(
    kv: KVClient,
    items: Iterable[Item],
    *,
    schema: str,
    extra_prefixes: Iterable[str] = (),
    rate_limit: int = DEFAULT_LIMIT,
) -> RemoteDiff:
    """Compare KV with ``items`` key by key through the API (``POST /bulk/get``, 100 at a time).

    ``extra_prefixes`` are listed too, and any key under them that is not computed (segment keys
    of other schemas aside) counts as ``extra``. Meant for tests and spot checks: a million keys
    need ten thousand requests.
    """
    retrier = Retrier(SlidingWindowLimiter(rate_limit), PublishOptions())
    diff = RemoteDiff()
    expected_keys: set[str] = set()
    chunk: list[Item] = []

    def check() -> None:
        got = retrier.call(lambda: kv.bulk_get([i.key for i in chunk]))
        for item in chunk:
            value = got.get(item.key)
            if value is None:
                diff.missing.append(item.key)
            elif value != item.value:
                diff.different.append(item.key)
        diff.checked += len(chunk)
        chunk.clear()

    for item in items:
        expected_keys.add(item.key)
        chunk.append(item)
        if len(chunk) == MAX_BULK_GET:
            check()
    if chunk:
        check()
    for prefix in extra_prefixes:
        for name in _list_all(kv, retrier, prefix):
            if name in expected_keys:
                continue
            if name.startswith(SEGMENT_PREFIX) and segment_key_schema(name) != schema:
                continue
            if name.startswith((SEGMENT_PREFIX, USER_PREFIX)):
                diff.extra.append(name)
    return diff
