"""``edgeshelf-builder``: the command line, a thin shell over :mod:`builder.jobs`.

Exit codes (docs/builder.md): 0 done; 1 finished with keys not confirmed (rerun to complete);
2 configuration or usage error; 3 input refused; 4 another run holds the lock; 5 Cloudflare
refused a request; 130 interrupted. Progress goes to stderr (drawn only on a terminal), the
summary to stdout (``--json`` for machines). The API token is never printed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from builder import experiments, jobs, shellcopy
from builder.cloudflare import KVClient, make_http_client
from builder.config import Target, load_target, served_schema
from builder.engines import DEFAULT_ENGINE, ENGINES, EngineSettings
from builder.errors import BuilderError, ConfigError, PublishIncompleteError
from builder.exposures import read_exposures
from builder.guards import MAX_DELETE_FRACTION
from builder.limiter import DEFAULT_LIMIT
from builder.publish import PublishOptions
from builder.ranking import MIN_SEGMENT_SIZE, MIN_VIDEO_USERS, RankingOptions
from builder.reporting import Silent
from builder.sample import write_sample
from builder.state import DEFAULT_STATE
from edgeshelf.experiment import Experiment, treatment_schema

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["main"]

_PHASE_LABELS = {
    "planning": "diffing against state",
    "segments": "writing segments",
    "profiles": "writing profiles",
    "deletes": "deleting stale keys",
}


def _waiting_text(until: float) -> str:
    """What the run says while a 429 holds every request (local time; cron logs say which)."""
    when = datetime.fromtimestamp(until).astimezone()
    left = max(0.0, until - time.time())
    return (
        f"rate limited by Cloudflare (HTTP 429): every request waits until "
        f"{when:%H:%M:%S %Z} ({left:.0f} s)"
    )


class _RichReporter:
    """Draws phases as rich progress bars on stderr; warnings as yellow lines."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.paused_until = 0.0

    def __enter__(self) -> _RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def phase(self, name: str) -> None:
        self.console.log(name)

    def start(self, phase: str, total: int) -> None:
        self.tasks[phase] = self.progress.add_task(_PHASE_LABELS.get(phase, phase), total=total)

    def advance(self, phase: str, n: int) -> None:
        if self.paused_until and time.time() >= self.paused_until:
            self.paused_until = 0.0
            self._describe("")
        if phase in self.tasks:
            self.progress.advance(self.tasks[phase], n)

    def waiting(self, until: float) -> None:
        # Said once as a line (it stays on screen) and on every bar until requests resume.
        self.paused_until = max(self.paused_until, until)
        text = _waiting_text(self.paused_until)
        self.console.print(Text("waiting: ", style="yellow") + Text(text), soft_wrap=True)
        when = datetime.fromtimestamp(self.paused_until)
        self._describe(f" — waiting (429) until {when:%H:%M:%S}")

    def _describe(self, suffix: str) -> None:
        finished = {task.id for task in self.progress.tasks if task.finished}
        for phase, task_id in self.tasks.items():
            if task_id not in finished:
                label = _PHASE_LABELS.get(phase, phase) + suffix
                self.progress.update(task_id, description=label)

    def warn(self, message: str) -> None:
        self.console.print(Text("warning: ", style="yellow") + Text(message), soft_wrap=True)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _fail(exc: BaseException, code: int, message: str | None = None) -> None:
    # Text, not markup: messages quote user input and "[[kv_namespaces]]"; no wrapping, so a
    # cron log keeps file/row/column on one greppable line.
    console = _stderr()
    text = str(exc) if message is None else message
    console.print(Text("error: ", style="red") + Text(text), soft_wrap=True)
    for note in getattr(exc, "__notes__", ()):
        console.print(Text(str(note)), soft_wrap=True)
    sys.exit(code)


def _run_guarded(fn: Callable[[], None]) -> None:
    """Map the library's errors to one message and the documented exit code."""
    try:
        fn()
    except BuilderError as exc:
        _fail(exc, exc.exit_code)
    except KeyboardInterrupt as exc:
        _fail(exc, 130, "interrupted; the state records what was confirmed")


def _target(
    ctx: click.Context, wrangler: Path, timeout: float | None = None
) -> tuple[Target, KVClient, httpx.Client]:
    target = load_target(wrangler=wrangler)
    transport = (ctx.obj or {}).get("transport")  # the seam the CLI tests use
    if timeout is None:
        http = make_http_client(target, transport=transport)
    else:
        limits = httpx.Timeout(connect=min(10.0, timeout), read=timeout, write=timeout, pool=30.0)
        http = make_http_client(target, transport=transport, timeout=limits)
    kv = KVClient(http, account_id=target.account_id, namespace_id=target.namespace_id)
    return target, kv, http


def _emit(data: dict[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
    else:
        human()


def _summary(result: jobs.RunResult) -> None:
    c = result.counts
    table = Table(title=f"edgeshelf builder — schema {result.schema}", show_header=True)
    table.add_column("")
    table.add_column("segments", justify="right")
    table.add_column("profiles", justify="right")
    for label, row in (
        ("computed", c.computed),
        ("new", c.new),
        ("changed", c.changed),
        ("expiring (refresh)", c.refresh),
        ("unconfirmed", c.unconfirmed),
        ("skipped (unchanged)", c.skipped),
    ):
        table.add_row(label, str(row["segments"]), str(row["profiles"]))
    if result.report is not None:
        w = result.report.written
        table.add_row("written", str(w["segments"]), str(w["profiles"]))
    console = Console(highlight=False)
    console.print(table)
    lines = [
        f"keys planned: {c.writes} to write, {c.skips} skipped, {c.deleted} to delete; "
        f"{c.requests} requests planned",
    ]
    r = result.report
    if r is not None:
        lines.append(
            f"keys written: {sum(r.written.values())}  deleted: {r.deleted}  failed: {r.failed}"
            f"  deletes deferred: {r.deferred_deletes}  requests: {r.requests}"
            f"  retries: {r.retries}"
        )
        for err in r.errors[:5]:
            lines.append(f"last error: {err}")
    lines.append(f"duration: {result.duration:.1f}s")
    for line in lines:
        console.print(Text(line), soft_wrap=True)


_max_delete = click.option(
    "--max-delete",
    type=click.FloatRange(0, 1),
    default=MAX_DELETE_FRACTION,
    show_default=True,
    help="Refuse to delete a larger share of the published keys (over 1,000 keys).",
)


def _run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--events",
            required=True,
            help="Watch events: a .parquet, .csv or .csv.gz file (on Spark also a path Spark "
            "reads itself, s3a:// gs:// abfss:// ..., or a table name).",
        ),
        click.option(
            "--catalog",
            required=True,
            help="Video catalog, as --events.",
        ),
        click.option(
            "--engine",
            type=click.Choice(ENGINES),
            envvar="EDGESHELF_ENGINE",
            default=DEFAULT_ENGINE,
            show_default=True,
            help="Where to compute: embedded DuckDB, or Spark [env: EDGESHELF_ENGINE].",
        ),
        click.option(
            "--spark-master",
            default=None,
            help="Spark master URL (spark://..., yarn, k8s://...); without it, SPARK_REMOTE "
            "(Spark Connect) or a local session.",
        ),
        click.option(
            "--state",
            type=click.Path(path_type=Path),
            default=DEFAULT_STATE,
            show_default=True,
            help="SQLite state file.",
        ),
        click.option(
            "--schema", default="v3", show_default=True, help="Segment key schema to write."
        ),
        click.option(
            "--min-segment-size",
            type=click.IntRange(1),
            default=MIN_SEGMENT_SIZE,
            show_default=True,
            help="K: fewest users a segment may describe.",
        ),
        click.option(
            "--min-video-users",
            type=click.IntRange(1),
            default=MIN_VIDEO_USERS,
            show_default=True,
            help="Fewest distinct users of a segment who watched a video for it to be shelved.",
        ),
        click.option(
            "--top-n",
            type=click.IntRange(1, 50),
            default=50,
            show_default=True,
            help="Videos per segment.",
        ),
        click.option(
            "--now",
            type=int,
            default=None,
            help="Pretend this is the time (epoch seconds); for reproducible runs.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1, 10_000),
            default=10_000,
            show_default=True,
            help="Pairs per bulk request.",
        ),
        _max_delete,
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _settings(kw: dict[str, Any], publish: PublishOptions | None = None) -> jobs.RunSettings:
    return jobs.RunSettings(
        events=kw["events"],
        catalog=kw["catalog"],
        state=kw["state"],
        schema=kw["schema"],
        ranking=RankingOptions(
            min_segment_size=kw["min_segment_size"],
            top_n=kw["top_n"],
            min_video_users=kw["min_video_users"],
        ),
        publish=publish or PublishOptions(max_pairs=kw["batch_size"]),
        rate_limit=kw.get("rate_limit", DEFAULT_LIMIT),
        now=kw["now"],
        max_delete_fraction=kw["max_delete"],
        engine=EngineSettings.from_env(name=kw["engine"], spark_master=kw["spark_master"]),
    )


def _reporter(as_json: bool) -> AbstractContextManager[Any]:
    console = _stderr()
    if as_json or not console.is_terminal:
        return nullcontext(_LineReporter(console))
    return _RichReporter(console)


class _LineReporter(Silent):
    """For cron logs and ``--json``: phases, warnings and 429 waits as plain lines on stderr."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def phase(self, name: str) -> None:
        self.console.print(Text(name), soft_wrap=True)

    def waiting(self, until: float) -> None:
        self.console.print(Text(f"waiting: {_waiting_text(until)}"), soft_wrap=True)

    def warn(self, message: str) -> None:
        super().warn(message)
        self.console.print(Text(f"warning: {message}"), soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeshelf", prog_name="edgeshelf-builder")
def main() -> None:
    """Build visitor profiles and segment shelves from watch events and publish them to KV."""


@main.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory to write.")
@click.option("--users", type=click.IntRange(1), default=5_000, show_default=True)
@click.option("--videos", type=click.IntRange(1), default=2_000, show_default=True)
@click.option("--events", type=click.IntRange(0), default=100_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet")
@click.option(
    "--experiment",
    "experiment_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also SIMULATE this experiment after the sample: visitors who respond to their shelf.",
)
@click.option(
    "--lift",
    type=click.FloatRange(min=-0.99),
    default=0.15,
    show_default=True,
    help="The simulated lift in watches of personalized arms over control.",
)
@click.option("--window-days", type=click.IntRange(1, 90), default=7, show_default=True)
def sample(
    out: Path,
    users: int,
    videos: int,
    events: int,
    seed: int,
    fmt: Literal["parquet", "csv"],
    experiment_file: Path | None,
    lift: float,
    window_days: int,
) -> None:
    """Write a deterministic, realistic sample data set (events + catalog)."""

    def body() -> None:
        doc = None if experiment_file is None else experiments.load_experiment_file(experiment_file)
        files = write_sample(out, users=users, videos=videos, events=events, seed=seed, fmt=fmt)
        click.echo(f"wrote {files.events} ({files.event_rows} events, {files.users} users)")
        click.echo(f"wrote {files.catalog} ({files.videos} videos)")
        if doc is not None:
            from builder.simulate import simulate_experiment  # noqa: PLC0415 (numpy, on demand)

            sim = simulate_experiment(files, doc, lift=lift, days=window_days, seed=seed)
            click.echo(
                f"SIMULATED experiment {sim.experiment}: {sim.window_events} watches by "
                f"{sim.users} users over {sim.days} days from {sim.started_at}, added to "
                f"{files.events}; true lift in watches per user vs {sim.baseline}: "
                + ", ".join(f"{a} {r:+.1%}" for a, r in sim.true_relative.items())
                + f" (recorded in {files.events.parent / 'simulation.json'})"
            )

    _run_guarded(body)


@main.command()
@_run_options
def plan(**kw: Any) -> None:
    """Dry run: what would be written, skipped and deleted, and how many requests."""

    def body() -> None:
        with _reporter(kw["as_json"]) as reporter:
            result = jobs.plan(_settings(kw), reporter)
        _emit(result.as_dict(), kw["as_json"], lambda: _summary(result))

    _run_guarded(body)


@main.command()
@_run_options
@click.option(
    "--wrangler",
    type=click.Path(path_type=Path),
    default=Path("wrangler.toml"),
    show_default=True,
    help="Where to find the namespace id if EDGESHELF_KV_NAMESPACE_ID is unset.",
)
@click.option("--concurrency", type=click.IntRange(1, 16), default=4, show_default=True)
@click.option(
    "--rate-limit",
    type=click.IntRange(1, 1200),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Requests per 5 minutes (Cloudflare allows 1,200).",
)
@click.option(
    "--attempts",
    type=click.IntRange(1, 20),
    default=8,
    show_default=True,
    help="Tries per request.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for a request to be sent or answered before retrying it.",
)
@click.pass_context
def run(ctx: click.Context, /, **kw: Any) -> None:
    """Compute, diff and publish to Workers KV; exit 1 if any key was not confirmed."""

    def body() -> None:
        target, kv, http = _target(ctx, kw["wrangler"], kw["timeout"])
        publish = PublishOptions(
            concurrency=kw["concurrency"], attempts=kw["attempts"], max_pairs=kw["batch_size"]
        )
        with http, _reporter(kw["as_json"]) as reporter:
            result = jobs.run(
                _settings(kw, publish), kv, identity=target.identity, reporter=reporter
            )
        _emit(result.as_dict(), kw["as_json"], lambda: _summary(result))
        if not result.complete:
            incomplete = PublishIncompleteError("some keys were not confirmed; rerun to complete")
            _fail(incomplete, incomplete.exit_code)

    _run_guarded(body)


@main.command()
@click.option("--keep", multiple=True, required=True, help="Schema version(s) to keep, e.g. v4.")
@click.option("--state", type=click.Path(path_type=Path), default=DEFAULT_STATE, show_default=True)
@click.option("--wrangler", type=click.Path(path_type=Path), default=Path("wrangler.toml"))
@click.option("--dry-run", is_flag=True, help="List what would be deleted, delete nothing.")
@click.option(
    "--delete-served-schema",
    is_flag=True,
    help="Also delete the schema the Worker reads (SEGMENT_SCHEMA in --wrangler's file).",
)
@_max_delete
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def gc(
    ctx: click.Context,
    keep: tuple[str, ...],
    state: Path,
    wrangler: Path,
    dry_run: bool,
    delete_served_schema: bool,
    max_delete: float,
    as_json: bool,
) -> None:
    """Delete segment keys of every schema not kept (list by prefix + bulk delete)."""

    def body() -> None:
        target, kv, http = _target(ctx, wrangler)
        with http:
            result = jobs.gc(
                kv,
                keep=keep,
                state_path=state,
                identity=target.identity,
                served=served_schema(wrangler),
                delete_served=delete_served_schema,
                max_delete_fraction=max_delete,
                dry_run=dry_run,
                reporter=_LineReporter(_stderr()),
            )
        _emit(
            result.as_dict(),
            as_json,
            lambda: click.echo(
                f"segment keys of retired schemas: {result.found} "
                f"{dict(sorted(result.by_schema.items()))}; deleted {result.deleted}, "
                f"failed {result.failed}, requests {result.requests}"
                + (" (dry run)" if dry_run else "")
            ),
        )
        if result.failed:
            _fail(RuntimeError(f"{result.failed} keys were not deleted; rerun gc"), 1)

    _run_guarded(body)


def _header_names(headers: Iterable[tuple[str, str]]) -> str:
    """The names of a shell copy's headers, each once, in order (``none`` without any)."""
    return ", ".join(dict.fromkeys(name for name, _ in headers)) or "none"


@main.command("publish-shell")
@click.option("--name", required=True, help="Shell name, e.g. home.")
@click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The page, from a file (or use --from-origin).",
)
@click.option(
    "--from-origin",
    "from_origin",
    metavar="URL",
    help="Fetch the page and the site's headers from the origin (a 200 text/html answer).",
)
@click.option(
    "--header",
    "header_args",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="A header to serve the page with (repeatable); replaces the origin's of that name.",
)
@click.option(
    "--existing",
    is_flag=True,
    help="Point the shell at this version's copy already in KV (a roll-back); sends no page.",
)
@click.option("--version", "version", required=True, help="Version label, e.g. 2025-06-01.1.")
@click.option("--path", "path", default="/", show_default=True, help="Origin path of the page.")
@click.option("--wrangler", type=click.Path(path_type=Path), default=Path("wrangler.toml"))
@click.pass_context
def publish_shell(
    ctx: click.Context,
    name: str,
    file: Path | None,
    from_origin: str | None,
    header_args: tuple[str, ...],
    existing: bool,
    version: str,
    path: str,
    wrangler: Path,
) -> None:
    """Store a shell version's copy (the page and the site's headers), then move the pointer.

    With --existing, only move the pointer, to a version whose copy is already in KV.
    """

    def body() -> None:
        if existing:
            if file is not None or from_origin is not None or header_args:
                raise ConfigError(
                    "--existing sends no page: leave out --file, --from-origin and --header"
                )
            _, kv, http = _target(ctx, wrangler)
            with http:
                backup, pointer, copy = jobs.point_shell(
                    kv, name=name, version=version, path=path, reporter=_LineReporter(_stderr())
                )
            click.echo(
                f"{pointer} -> {version}: the copy already in {backup} "
                f"({len(copy.html.encode())} bytes, headers: {_header_names(copy.headers)})"
            )
            return
        if file is not None and from_origin is not None:
            raise ConfigError("give the page with --file F or with --from-origin URL, not both")
        given = shellcopy.operator_headers(shellcopy.parse_header(h) for h in header_args)
        _, kv, http = _target(ctx, wrangler)
        console = _stderr()
        if file is not None:
            html, headers = file.read_bytes(), given
        elif from_origin is not None:
            transport = (ctx.obj or {}).get("origin_transport")  # the CLI tests' seam
            with shellcopy.origin_client(transport) as origin:
                page = shellcopy.fetch_origin_page(origin, from_origin)
            html, headers = page.html, shellcopy.merge_headers(page.headers, given)
            console.print(
                Text(
                    f"fetched {page.url}: {len(html)} bytes; kept {len(page.headers)} headers, "
                    f"left out {', '.join(page.dropped) or 'none'}"
                ),
                soft_wrap=True,
            )
        else:
            raise ConfigError("give the page with --file F or with --from-origin URL")
        with http:
            backup, pointer = jobs.publish_shell(
                kv,
                name=name,
                html=html,
                version=version,
                path=path,
                headers=headers,
                reporter=_LineReporter(console),
            )
        click.echo(
            f"wrote {backup} (headers: {_header_names(headers)}), then {pointer} -> {version}"
        )

    _run_guarded(body)


@main.command()
@click.option("--state", type=click.Path(path_type=Path), default=DEFAULT_STATE, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def status(state: Path, as_json: bool) -> None:
    """What the state file records: target, keys per kind, the last run."""

    def body() -> None:
        if not state.exists():
            _fail(FileNotFoundError(f"no state file at {state} (nothing published yet)"), 2)
        info = jobs.status(state)

        def human() -> None:
            click.echo(f"state: {info['state']}")
            click.echo(f"target: {info['target'] or '(none yet)'}")
            for kind, n in sorted(info["keys"].items()):
                click.echo(f"  {kind}: {n}")
            last = info["last_run"]
            if last:
                pub = last.get("publish") or {}
                written = pub.get("written", {}).get("total")
                # Runs recorded before "unconfirmed" existed have none to show.
                unconfirmed = last.get("unconfirmed")
                click.echo(
                    f"last run: schema {last.get('schema')}, finished_at {last.get('finished_at')}"
                    f", {'complete' if last.get('complete') else 'INCOMPLETE'}, written {written}"
                    f", failed {pub.get('failed')}"
                    + ("" if unconfirmed is None else f", unconfirmed {unconfirmed}")
                )
                if last.get("error"):
                    click.echo(f"  stopped by: {last['error']}")

        _emit(info, as_json, human)

    _run_guarded(body)


# --- experiments (issue 16) -------------------------------------------------------------------

_WRANGLER_OPTION = click.option(
    "--wrangler",
    type=click.Path(path_type=Path),
    default=Path("wrangler.toml"),
    show_default=True,
    help="Where to find the namespace id if EDGESHELF_KV_NAMESPACE_ID is unset.",
)


def _arms_line(exp: Experiment) -> str:
    return ", ".join(f"{a['name']} {a['weight']} → {a['treatment']}" for a in exp["arms"])


@main.group()
def experiment() -> None:
    """Start, show and stop the experiment the Worker serves (KV key exp:active)."""


@experiment.command("set")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_WRANGLER_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the published document as JSON.")
@click.pass_context
def experiment_set(ctx: click.Context, file: Path, wrangler: Path, as_json: bool) -> None:
    """Validate FILE and publish it as the active experiment (records started_at)."""

    def body() -> None:
        doc = experiments.load_experiment_file(file)
        _, kv, http = _target(ctx, wrangler)
        with http:
            result = experiments.set_experiment(kv, doc, source=str(file))
        exp, old = result.experiment, result.replaced
        if old is not None and old["name"] != exp["name"]:
            _LineReporter(_stderr()).warn(f"replaced the running experiment {old['name']}")
        started = "kept from the running experiment" if result.kept_start else "recorded"

        def human() -> None:
            click.echo(f"exp:active ← {exp['name']} (salt {exp['salt']}): {_arms_line(exp)}")
            click.echo(f"started_at {exp['started_at']} ({started})")
            click.echo("Workers see it within about a minute (KV propagation and their memo)")

        _emit(dict(exp), as_json, human)

    _run_guarded(body)


@experiment.command("stop")
@_WRANGLER_OPTION
@click.pass_context
def experiment_stop(ctx: click.Context, wrangler: Path) -> None:
    """Remove the active experiment: everyone gets the personalized shelf again."""

    def body() -> None:
        _, kv, http = _target(ctx, wrangler)
        with http:
            before = experiments.stop_experiment(kv)
        if before.experiment is not None:
            click.echo(f"stopped {before.experiment['name']}; exp:active deleted")
        elif before.present:
            click.echo("deleted exp:active (it held an invalid document)")
        else:
            click.echo("no experiment was active")

    _run_guarded(body)


@experiment.command("show")
@_WRANGLER_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the document as JSON.")
@click.pass_context
def experiment_show(ctx: click.Context, wrangler: Path, as_json: bool) -> None:
    """Print the active experiment (exit 1 if exp:active holds an invalid document)."""

    def body() -> None:
        _, kv, http = _target(ctx, wrangler)
        with http:
            active = experiments.read_experiment(kv)
        exp = active.experiment
        data: dict[str, Any] = {"active": exp is not None, "experiment": exp}
        if active.present and exp is None:
            data["invalid"] = experiments.invalid_reason(active.raw)

        def human() -> None:
            if exp is None and not active.present:
                click.echo("no experiment is active: every visitor gets the personalized shelf")
                return
            if exp is None:
                return
            table = Table(title=f"{exp['name']} (salt {exp['salt']})", title_justify="left")
            for col in ("arm", "weight", "share", "treatment"):
                table.add_column(col, justify="right" if col in ("weight", "share") else "left")
            total = sum(a["weight"] for a in exp["arms"])
            for a in exp["arms"]:
                share = f"{a['weight'] / total:.1%}"
                table.add_row(a["name"], str(a["weight"]), share, a["treatment"])
            Console(highlight=False).print(table)
            click.echo(f"started_at {exp.get('started_at', '(not recorded)')}")

        _emit(data, as_json, human)
        if "invalid" in data:
            _fail(
                ValueError(
                    f"exp:active holds an invalid document ({data['invalid']}); the Worker "
                    "ignores it and serves everyone personalized: run `experiment set` or `stop`"
                ),
                1,
            )

    _run_guarded(body)


def _epoch(value: str | None) -> int | None:
    """``--since``: epoch seconds or an ISO 8601 date/time (UTC unless it has an offset)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"--since must be epoch seconds or ISO 8601, got {value!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


@main.command()
@click.option("--events", type=click.Path(path_type=Path), required=True, help="Watch events.")
@click.option("--catalog", type=click.Path(path_type=Path), required=True, help="Video catalog.")
@click.option(
    "--exposures",
    type=click.Path(path_type=Path, exists=True),
    multiple=True,
    help="Worker logs (JSON lines or Logpush; files, .gz, or directories); repeatable.",
)
@click.option("--since", help="Window start (epoch seconds or ISO 8601); default: started_at.")
@click.option(
    "--experiment",
    "experiment_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The experiment document (default: read exp:active from KV).",
)
@click.option("--baseline", help="Arm to compare with (default: the control arm, else the first).")
@click.option("--schema", default="v3", show_default=True, help="The Worker's SEGMENT_SCHEMA.")
@click.option(
    "--min-segment-size",
    type=click.IntRange(1),
    default=MIN_SEGMENT_SIZE,
    show_default=True,
    help="K, as the builder runs with it.",
)
@click.option("--top-n", type=click.IntRange(1, 50), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Also write the report to an .html or .md page with plots, or to .json; repeatable.",
)
@_WRANGLER_OPTION
@click.pass_context
def report(ctx: click.Context, /, **kw: Any) -> None:
    """Lift per arm of the experiment, with intervals, differences and a sample-ratio check."""

    def body() -> None:
        outs: tuple[Path, ...] = kw["out"]
        for out in outs:
            if out.suffix.lower() not in (".html", ".htm", ".md", ".markdown", ".json"):
                raise ConfigError(f"--out must end in .html, .md or .json, got {out.name!r}")
        since = _epoch(kw["since"])
        if kw["experiment_file"] is not None:
            exp = experiments.load_experiment_file(kw["experiment_file"])
        else:
            _, kv, http = _target(ctx, kw["wrangler"])
            with http:
                active = experiments.read_experiment(kv)
            if active.experiment is None:
                state = "holds an invalid document" if active.present else "is not set"
                raise ConfigError(f"exp:active {state}: give --experiment FILE")
            exp = active.experiment
        wanted = {treatment_schema(a["treatment"]) for a in exp["arms"]} - {None, kw["schema"]}
        schema_shelves = {}
        if wanted:
            _, kv, http = _target(ctx, kw["wrangler"])
            with http:
                for seg_schema in sorted(s for s in wanted if s is not None):
                    schema_shelves[seg_schema] = experiments.read_segments(kv, seg_schema)
        # scipy and matplotlib take seconds to import: only the report command pays for them.
        from builder.report import ReportSettings, compute_report  # noqa: PLC0415
        from builder.report_render import print_report, write_page  # noqa: PLC0415

        settings = ReportSettings(
            events=kw["events"],
            catalog=kw["catalog"],
            experiment=exp,
            since=since,
            baseline=kw["baseline"],
            schema=kw["schema"],
            ranking=RankingOptions(min_segment_size=kw["min_segment_size"], top_n=kw["top_n"]),
            schema_shelves=schema_shelves,
        )
        exposures = None
        if kw["exposures"]:
            start = since if since is not None else exp.get("started_at")
            exposures = read_exposures(kw["exposures"], exp, since=start)
        result = compute_report(settings, exposures)
        for out in outs:
            if out.suffix.lower() == ".json":
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(result.as_dict(), sort_keys=True) + "\n")
                written = [out]
            else:
                written = write_page(result, out)
            _stderr().print(Text("wrote " + ", ".join(str(p) for p in written)), soft_wrap=True)
        _emit(result.as_dict(), kw["as_json"], lambda: print_report(result, Console()))

    _run_guarded(body)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
