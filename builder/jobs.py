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
from typing import TYPE_CHECKING, Any

from builder.batching import batches
from builder.cloudflare import MAX_BULK_GET, MAX_BULK_PAIRS, KVClient
from builder.engines import DUCKDB_MEMORY_LIMIT, EngineSettings, open_engine
from builder.errors import BuilderError, ConfigError, InputError, MassDeleteError
from builder.guards import MAX_DELETE_FRACTION, mass_delete
from builder.limiter import DEFAULT_LIMIT, SlidingWindowLimiter
from builder.plan import (
    Item,
    Plan,
    PlanCounts,
    build_plan,
    check_payload,
    computed_batches,
)
from builder.publish import Publisher, PublishOptions, PublishReport, Retrier
from builder.ranking import Build, RankingOptions, compute
from builder.reporting import Silent
from builder.shellcopy import operator_headers, shell_copy
from builder.sources import InputStats, load_inputs
from builder.state import DEFAULT_STATE, RunLock, State
from edgeshelf.schema import (
    MAX_SHELL_BYTES,
    SEGMENT_PREFIX,
    USER_PREFIX,
    ShellCopy,
    decode_shell_copy,
    encode_shell_pointer,
    segment_key_schema,
    shell_backup_key,
    shell_pointer_key,
    valid_schema,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from builder.reporting import Reporter

__all__ = [
    "GcResult",
    "RemoteDiff",
    "RunResult",
    "RunSettings",
    "gc",
    "load_build",
    "plan",
    "point_shell",
    "publish_shell",
    "remote_diff",
    "run",
    "status",
]


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
    """What ``plan`` / ``run`` did; ``report`` is None for a dry run.

    A run stopped by an exception (a 403 mid-publish, Ctrl-C) names it in ``error``; its report
    still counts what was written before, and ``unconfirmed`` the keys of the run's scope whose
    content in KV is unknown until the next run rewrites them.
    """

    inputs: InputStats
    counts: PlanCounts
    report: PublishReport | None
    duration: float
    schema: str
    as_of: int
    error: str | None = None
    unconfirmed: int | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and (
            self.report is None or (self.report.failed == 0 and self.report.deferred_deletes == 0)
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
            "error": self.error,
            "unconfirmed": self.unconfirmed,
            "duration": round(self.duration, 3),
        }


def load_build(settings: RunSettings, now: int, reporter: Reporter) -> Build:
    """Read and validate the inputs, then compute profiles and segments.

    The build holds the engine it was computed on; ``build.close()`` releases it. Its
    ``input_stats`` are the inputs' final counts.
    """
    engine = open_engine(dataclasses.replace(settings.engine, memory_limit=settings.memory_limit))
    try:
        reporter.phase(f"reading and validating inputs ({engine.name})")
        inputs = load_inputs(engine, events=settings.events, catalog=settings.catalog, now=now)
        stats = inputs.stats
        reporter.phase("computing profiles and segments")
        as_of = min(stats.max_ts if stats.max_ts is not None else now, now)
        return compute(engine, inputs, as_of=as_of, options=settings.ranking)
    except BaseException:
        engine.close()
        raise


def _plan(
    settings: RunSettings, state: State, now: int, reporter: Reporter
) -> tuple[Build, InputStats, PlanCounts, Plan]:
    build = load_build(settings, now, reporter)
    try:
        return _diff(settings, state, now, reporter, build, build.input_stats)
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
        computed_batches(build, settings.schema),
        schema=settings.schema,
        now=now,
        warn=reporter.warn,
        progress=lambda n: reporter.advance("planning", n),
        max_pairs=settings.publish.max_pairs,
    )
    message = mass_delete(
        the_plan.counts.deleted,
        state.count_scope(settings.schema),
        settings.max_delete_fraction,
        doing="the plan deletes",
        keys="published keys",
        question="is the input complete?",
    )
    if message is not None:
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
        stopped: BaseException | None = None
        try:
            publisher.publish(the_plan, report)
        except BaseException as exc:
            stopped = exc
            raise
        finally:
            result = RunResult(
                stats,
                counts,
                report,
                time.monotonic() - started,
                settings.schema,
                build.as_of,
                error=None if stopped is None else _describe(stopped),
                unconfirmed=state.count_scope(settings.schema, unconfirmed=True),
            )
            summary = result.as_dict()
            summary["finished_at"] = int(time.time())
            state.record_run(summary)
            if stopped is not None:
                stopped.add_note(
                    f"the run stopped after {sum(report.written.values())} keys were written; "
                    f"{result.unconfirmed} are unconfirmed and the next run rewrites them "
                    "(recorded as incomplete: edgeshelf-builder status)"
                )
    return result


def _describe(exc: BaseException) -> str:
    """What stopped a run, for the state file and ``status`` (messages never hold the token)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, BuilderError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass
class GcResult:
    """Segment keys listed, those of retired schemas found and deleted by ``gc``.

    ``refused`` says why a dry run's deletion would be refused (a real run raises instead).
    """

    listed: int = 0
    found: int = 0
    deleted: int = 0
    failed: int = 0
    requests: int = 0
    by_schema: dict[str, int] = field(default_factory=dict)
    refused: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "found": self.found,
            "deleted": self.deleted,
            "failed": self.failed,
            "requests": self.requests,
            "by_schema": dict(sorted(self.by_schema.items())),
            "refused": self.refused,
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
    served: str | None,
    delete_served: bool = False,
    max_delete_fraction: float = MAX_DELETE_FRACTION,
    dry_run: bool = False,
    rate_limit: int = DEFAULT_LIMIT,
    options: PublishOptions | None = None,
    reporter: Reporter | None = None,
) -> GcResult:
    """Delete every ``seg:`` key whose schema is not in ``keep`` (list by prefix + bulk delete).

    ``served`` is the schema the Worker reads (``SEGMENT_SCHEMA``; ``None``: unknown). Its keys
    are deleted only with ``delete_served``, and, as for ``run``, no more than
    ``max_delete_fraction`` of the segment keys listed (over 1,000 of them). A refusal raises
    :class:`~builder.errors.ConfigError` or :class:`~builder.errors.MassDeleteError` before
    anything is deleted; a dry run reports it in ``refused`` and as a warning instead.
    """
    reporter = reporter or Silent()
    kept = set(keep)
    bad = [s for s in kept if not valid_schema(s)]
    if not kept or bad:
        raise ConfigError(f"--keep needs schema versions like v4, got {sorted(bad) or 'none'}")
    if served is None and not delete_served:
        raise ConfigError(
            "cannot tell which segment schema the Worker reads: name its wrangler.toml "
            "(--wrangler), or pass --delete-served-schema to delete whatever --keep leaves"
        )
    retrier = Retrier.with_limit(rate_limit, options, on_wait=reporter.waiting)
    result = GcResult()
    with RunLock(State.lock_path(state_path)), State(state_path) as state:
        state.bind(identity)
        doomed = []
        for name in _list_all(kv, retrier, SEGMENT_PREFIX):
            schema = segment_key_schema(name)
            result.listed += schema is not None
            if schema is not None and schema not in kept:
                doomed.append(name)
                result.by_schema[schema] = result.by_schema.get(schema, 0) + 1
        result.found = len(doomed)
        refusal = _gc_refusal(result, served, delete_served, max_delete_fraction)
        if refusal is not None:
            if not dry_run:
                raise refusal
            result.refused = str(refusal)
            reporter.warn(result.refused)
        if not dry_run:
            known = set(state.keys(SEGMENT_PREFIX + "*"))
            for chunk in batches(doomed, MAX_BULK_PAIRS):
                state.mark_unconfirmed([k for k in chunk if k in known])
                done, failed, _ = retrier.bulk(
                    chunk, lambda ks: kv.bulk_delete(ks).unsuccessful_keys
                )
                state.confirm_deleted(done)
                result.deleted += len(done)
                result.failed += len(failed)
    result.requests = retrier.requests
    return result


def _gc_refusal(
    found: GcResult, served: str | None, delete_served: bool, fraction: float
) -> BuilderError | None:
    """Why ``gc`` must not delete what it found (the served schema first), or ``None``."""
    if served in found.by_schema and not delete_served:
        return ConfigError(
            f"gc would delete the {found.by_schema[served]} segment keys of {served}, the "
            f"schema the Worker reads (SEGMENT_SCHEMA in wrangler.toml); switch the Worker "
            f"first (docs/operations.md), or pass --delete-served-schema"
        )
    message = mass_delete(
        found.found,
        found.listed,
        fraction,
        doing="gc would delete",
        keys="segment keys",
        question="is --keep right?",
    )
    return None if message is None else MassDeleteError(message)


def publish_shell(
    kv: KVClient,
    *,
    name: str,
    html: bytes,
    version: str,
    path: str = "/",
    headers: Iterable[tuple[str, str]] = (),
    reporter: Reporter | None = None,
    rate_limit: int = DEFAULT_LIMIT,
    options: PublishOptions | None = None,
) -> tuple[str, str]:
    """Store the shell's copy under ``shell:<name>:<version>``, then point ``shell:<name>`` at it.

    The copy is the page with the site's ``headers`` (``builder.shellcopy``: the Worker serves
    every page of the version with them); a header the Worker would not keep is refused. The
    copy is written (and confirmed) before the pointer moves, so a reader that follows the
    pointer always finds the version it names. Returns the two keys written.
    """
    reporter = reporter or Silent()
    backup, pointer, pointer_value = _shell_keys(name, version, path)
    kept = operator_headers(headers)
    check_payload(backup, html, MAX_SHELL_BYTES, reporter.warn)
    copy = shell_copy(html, kept, backup, reporter.warn)
    retrier = Retrier.with_limit(rate_limit, options, on_wait=reporter.waiting)
    for key, value in ((backup, copy), (pointer, pointer_value)):
        retrier.put_one(kv, key, value)
    return backup, pointer


def point_shell(
    kv: KVClient,
    *,
    name: str,
    version: str,
    path: str = "/",
    reporter: Reporter | None = None,
    rate_limit: int = DEFAULT_LIMIT,
    options: PublishOptions | None = None,
) -> tuple[str, str, ShellCopy]:
    """Point ``shell:<name>`` at a version already published (a roll-back): nothing else is sent.

    The version's copy is read back first and must be one the Worker can serve; otherwise
    :class:`~builder.errors.InputError` (exit 3) and the pointer is left where it was. Returns
    the copy's key, the pointer's key and the copy.
    """
    reporter = reporter or Silent()
    backup, pointer, pointer_value = _shell_keys(name, version, path)
    retrier = Retrier.with_limit(rate_limit, options, on_wait=reporter.waiting)
    raw = retrier.call(lambda: kv.get_value(backup))
    if raw is None:
        raise InputError(
            f"no copy of version {version!r} (publish it with --file or --from-origin first)",
            file=backup,
        )
    copy = decode_shell_copy(raw.decode("utf-8", errors="replace"))
    if copy is None:
        raise InputError("not a shell copy the Worker can serve; the pointer stays", file=backup)
    retrier.put_one(kv, pointer, pointer_value)
    return backup, pointer, copy


def _shell_keys(name: str, version: str, path: str) -> tuple[str, str, str]:
    """The copy's key, the pointer's key and the pointer's value (bad names are usage errors)."""
    try:
        return (
            shell_backup_key(name, version),
            shell_pointer_key(name),
            encode_shell_pointer(version, path),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


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
    retrier = Retrier.with_limit(rate_limit)
    diff = RemoteDiff()
    expected_keys: set[str] = set()
    for chunk in batches(items, MAX_BULK_GET):
        keys = [i.key for i in chunk]
        expected_keys.update(keys)
        got = retrier.call(functools.partial(kv.bulk_get, keys))
        for item in chunk:
            value = got.get(item.key)
            if value is None:
                diff.missing.append(item.key)
            elif value != item.value:
                diff.different.append(item.key)
        diff.checked += len(chunk)
    for prefix in extra_prefixes:
        for name in _list_all(kv, retrier, prefix):
            if name in expected_keys:
                continue
            if name.startswith(SEGMENT_PREFIX) and segment_key_schema(name) != schema:
                continue
            if name.startswith((SEGMENT_PREFIX, USER_PREFIX)):
                diff.extra.append(name)
    return diff
