"""The whole system, offline: sample data -> builder -> local KV -> personalized pages.

Run through ``scripts/demo``. Steps: (1) the builder writes a sample data set; (2) the local
stack starts (the Worker in workerd, the local v4 KV API, the origin stand-in) and the builder
publishes the page shell; (3) the builder computes and publishes profiles and segments;
(4) the homepage is requested as several visitors, each shelf is checked against what the
builder published (read back through the v4 API), and the metrics are computed from the
Worker's JSON logs; (5) an experiment starts (90/10 personalized/control), sample users visit
and the Worker's log lines are kept as exposures; (6) the builder's lift report runs on the
sample, whose window holds SIMULATED visitors with a known lift, and the lift must lie inside
the report's interval; then the experiment is stopped. Then it keeps serving until Ctrl-C;
``--once`` exits after the checks, 0 only if every check held.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from localstack import LocalStack, StackError
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from edgeshelf import schema
from edgeshelf.experiment import Experiment, assign, decode_experiment
from edgeshelf.profile import Audience
from edgeshelf.segments import LEVELS, chain_for

ROOT = Path(__file__).resolve().parents[2]
SHELL_FILE = ROOT / "scripts" / "local" / "shells" / "home.html"
COOKIE = "es_uid"
AUDIENCE = "es_aud"
KNOWN_USERS = 4
# The demo's experiment: the sample simulates its window, right after the sample's events, with
# a known lift of LIFT in watches per user (builder/simulate.py); `experiment set` then records
# the window's start as started_at.
EXPERIMENT: Experiment = {
    "name": "demo-shelf",
    "salt": "demo1",
    "arms": [
        {"name": "personalized", "weight": 90, "treatment": "personalized"},
        {"name": "control", "weight": 10, "treatment": "control"},
    ],
}
LIFT = 0.15
EXPOSURE_VISITS = 40
_SHELF_RE = re.compile(r'<script type="application/json" id="edgeshelf-shelf">(.*?)</script>', re.S)
_CARDS_RE = re.compile(r'<ul class="row es-rendered" id="edgeshelf-cards">(.*?)</ul>', re.S)
_THUMB_RE = re.compile(r'<div class="thumb">([^<]*)</div>')


class DemoError(RuntimeError):
    """A step of the demo could not run at all (as opposed to a check that did not hold)."""


# --- talking to the local v4 API -----------------------------------------------------------


class KVReader:
    """Reads back what was published, through the Cloudflare v4 API (as an auditor would)."""

    def __init__(self, stack: LocalStack) -> None:
        self.base = stack.kv_base
        self.http = httpx.Client(headers=stack.auth, timeout=30)

    def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        cursor = ""
        while True:
            params = {"prefix": prefix, "limit": "1000", **({"cursor": cursor} if cursor else {})}
            body = self.http.get(f"{self.base}/keys", params=params).raise_for_status().json()
            out += [k["name"] for k in body["result"]]
            cursor = body["result_info"].get("cursor") or ""
            if not cursor:
                return out

    def get_many(self, keys: list[str]) -> dict[str, str | None]:
        values: dict[str, str | None] = {}
        for start in range(0, len(keys), 100):
            r = self.http.post(
                f"{self.base}/bulk/get", json={"keys": keys[start : start + 100], "type": "text"}
            )
            values.update(r.raise_for_status().json()["result"]["values"])
        return values

    def get(self, key: str) -> str | None:
        r = self.http.get(f"{self.base}/values/{key}")
        if r.status_code == 404:
            return None
        return r.raise_for_status().text

    def close(self) -> None:
        self.http.close()


# --- visitors --------------------------------------------------------------------------------


@dataclass
class Visitor:
    """One visitor to show: who they are, what they send, and what they should get."""

    label: str
    country: str = "US"
    accept_language: str = "en-US,en;q=0.9"
    uid: str | None = None
    gpc: bool = False
    profile: schema.Profile | None = None
    expect_cookie: bool = False


@dataclass
class Visit:
    visitor: Visitor
    status: int
    set_cookie: str  # the ID cookie set, if any
    audience_cookie: str  # the audience cookie set, if any
    segment: str
    fallback: str
    ids: list[str]
    cards: list[str]
    expected_segment: str
    expected_level: str
    expected_ids: list[str]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audience(v: Visitor) -> tuple[str, str, str]:
    """The (country, lang, bucket) the Worker should place this visitor in."""
    if v.profile is not None:
        return v.profile["country"], v.profile["lang"], v.profile["affinity_bucket"]
    lang = schema.normalize_lang(v.accept_language.split(",")[0])
    return schema.normalize_country(v.country), lang, schema.DEFAULT_BUCKET


def expected_shelf(
    v: Visitor, published: set[str], kv: KVReader, seg_schema: str
) -> tuple[str, str, list[str]]:
    """The first published segment along the documented fallback chain, and its IDs in KV."""
    for step in chain_for(Audience(*audience(v), "kv"), seg_schema):
        if step.segment in published:
            stored = schema.decode_segment(kv.get(step.key), seg_schema)
            if stored is not None:
                return step.segment, LEVELS[step.level], stored["ids"]
    return "", "none", []


def visit(http: httpx.Client, worker: str, v: Visitor) -> httpx.Response:
    headers = {
        "accept": "text/html",
        "accept-language": v.accept_language,
        # The local stack's way to set request.cf for one request (Miniflare).
        "MF-CF-Blob": json.dumps({"country": v.country}),
    }
    if v.uid is not None:
        headers["cookie"] = f"{COOKIE}={v.uid}"
    if v.gpc:
        headers["sec-gpc"] = "1"
    http.cookies.clear()  # every visitor is exactly the headers above
    return http.get(worker + "/", headers=headers)


def check_visit(
    v: Visitor, resp: httpx.Response, published: set[str], kv: KVReader, seg_schema: str
) -> Visit:
    debug = dict(
        part.strip().split("=", 1)
        for part in resp.headers.get("x-edgeshelf-debug", "").split(";")
        if "=" in part
    )
    found = _SHELF_RE.findall(resp.text)
    shelf: dict[str, Any] = json.loads(found[0]) if len(found) == 1 else {}
    cards_block = _CARDS_RE.search(resp.text)
    cards = _THUMB_RE.findall(cards_block.group(1)) if cards_block else []
    exp_seg, exp_level, exp_ids = expected_shelf(v, published, kv, seg_schema)
    set_cookies = resp.headers.get_list("set-cookie")
    result = Visit(
        visitor=v,
        status=resp.status_code,
        set_cookie=next((c for c in set_cookies if c.startswith(f"{COOKIE}=")), ""),
        audience_cookie=next((c for c in set_cookies if c.startswith(f"{AUDIENCE}=")), ""),
        segment=str(shelf.get("segment", "")),
        fallback=debug.get("fallback", "?"),
        ids=list(shelf.get("ids", [])),
        cards=cards,
        expected_segment=exp_seg,
        expected_level=exp_level,
        expected_ids=exp_ids,
    )
    p = result.problems
    if resp.status_code != 200:
        p.append(f"status {resp.status_code}")
    if len(found) != 1:
        p.append(f"{len(found)} shelf payloads in the page")
    minted = re.match(rf"{COOKIE}=([^;]+);", result.set_cookie)
    if v.expect_cookie:
        if not minted or not schema.valid_uid(minted.group(1)):
            p.append("no visitor ID minted")
        elif "HttpOnly" not in result.set_cookie or "Secure" not in result.set_cookie:
            p.append("ID cookie lacks HttpOnly/Secure")
    elif v.uid is not None:
        # No audience cookie came with the request: the profile is read, and the audience
        # cookie issued with the visitor's own ID rolled forward (never another one).
        if not minted or minted.group(1) != v.uid:
            p.append("the returning visitor's ID was not rolled forward")
    elif result.set_cookie:
        p.append("an ID was set where none should be")
    if (v.uid is not None or v.expect_cookie) != bool(result.audience_cookie):
        p.append("audience cookie " + ("missing" if result.audience_cookie == "" else "set"))
    if (result.segment, result.fallback) != (exp_seg, exp_level):
        p.append(f"got {result.segment or '-'}/{result.fallback}, want {exp_seg}/{exp_level}")
    if result.ids != exp_ids:
        p.append("shelf differs from the published segment")
    if result.cards != result.ids:
        p.append("server-rendered cards differ from the shelf")
    return result


# --- picking known users from what the builder published --------------------------------------


def pick_segments(exact: list[str], n: int) -> list[str]:
    """Up to ``n`` exact segments, greedily the most different in country, language and bucket."""
    chosen: list[str] = []
    seen: tuple[set[str], set[str], set[str]] = (set(), set(), set())
    pool = sorted(exact)
    while pool and len(chosen) < n:

        def novelty(seg: str) -> tuple[int, int]:
            parts = seg.split("-", 2)
            return (sum(p not in s for p, s in zip(parts, seen, strict=True)), -pool.index(seg))

        best = max(pool, key=novelty)
        pool.remove(best)
        chosen.append(best)
        for part, s in zip(best.split("-", 2), seen, strict=True):
            s.add(part)
    return chosen


def builder_profile(text: str | None) -> schema.Profile | None:
    """A profile as the builder wrote it: the demo reads its own builder's output."""
    if text is None or schema.read_profile(text) is None:
        return None
    return cast("schema.Profile", json.loads(text))


def find_users(
    kv: KVReader, targets: list[str], published: set[str]
) -> tuple[dict[str, tuple[str, schema.Profile]], tuple[str, schema.Profile] | None]:
    """A user for each target segment, and one whose own segment was too small to publish."""
    found: dict[str, tuple[str, schema.Profile]] = {}
    folded: tuple[str, schema.Profile] | None = None
    target_countries = {t.split("-", 1)[0] for t in targets}
    keys = kv.keys(schema.USER_PREFIX)
    for start in range(0, len(keys), 100):
        for key, text in kv.get_many(keys[start : start + 100]).items():
            profile = builder_profile(text)
            if profile is None:
                continue
            uid = key.removeprefix(schema.USER_PREFIX)
            seg = schema.segment_id(profile["country"], profile["lang"], profile["affinity_bucket"])
            lang_default = schema.segment_id(
                profile["country"], profile["lang"], schema.DEFAULT_BUCKET
            )
            if seg in targets and seg not in found:
                found[seg] = (uid, profile)
            elif (
                folded is None
                and seg not in published
                and lang_default in published
                and profile["country"] not in target_countries
            ):
                folded = (uid, profile)
        if len(found) == len(targets) and folded is not None:
            break
    return found, folded


# --- metrics from the Worker's logs --------------------------------------------------------------


def metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    reads = sum(int(r.get("kv_reads", 0)) for r in records)
    misses = sum(int(r.get("kv_misses", 0)) for r in records)
    fallbacks = sum(1 for r in records if int(r.get("fallback", 0)) > 0)
    shells: dict[str, int] = {}
    for r in records:
        shells[str(r.get("shell"))] = shells.get(str(r.get("shell")), 0) + 1
    return {
        "requests": len(records),
        "kv_reads": reads,
        "kv_misses": misses,
        "kv_miss_rate": misses / reads if reads else 0.0,
        "fallbacks": fallbacks,
        "fallback_rate": fallbacks / len(records) if records else 0.0,
        "shells": shells,
    }


def wait_for_records(stack: LocalStack, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The Worker's request records once ``n`` of them reached the log (it is written async)."""
    return stack.wait_worker_logs(lambda records: len(records) >= n, timeout)


# --- the builder CLI -----------------------------------------------------------------------------


def builder(console: Console, args: list[str], env: dict[str, str]) -> None:
    """Run ``edgeshelf-builder`` on this terminal (its own progress and summary); stop on error."""
    exe = shutil.which("edgeshelf-builder")
    if exe is None:
        raise DemoError("edgeshelf-builder is not installed (run scripts/setup)")
    console.file.flush()
    code = subprocess.run([exe, *args], env=env, check=False).returncode
    if code != 0:
        raise DemoError(f"edgeshelf-builder {args[0]} exited {code} (its output is above)")


# --- the show -----------------------------------------------------------------------------------


def step(console: Console, n: int, title: str) -> None:
    console.print()
    console.rule(f"[bold]{n}. {title}", align="left", style="grey50")


def place(profile: schema.Profile) -> str:
    return f"{profile['country'].upper()} · {profile['lang']} · {profile['affinity_bucket']}"


def short(ids: list[str], n: int = 3) -> str:
    return " ".join(ids[:n]) + (f" +{len(ids) - n}" if len(ids) > n else "")


def run_demo(args: argparse.Namespace, console: Console) -> int:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="edgeshelf-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data, state = workdir / "sample", workdir / "builder-state.sqlite"
    state.unlink(missing_ok=True)  # the stack's KV starts empty, so must the builder's state
    seg_schema = str(
        tomllib.loads((ROOT / "wrangler.toml").read_text())["vars"].get("SEGMENT_SCHEMA", "v3")
    )

    step(console, 1, "Sample data, with a SIMULATED experiment window (edgeshelf-builder sample)")
    experiment_file = workdir / "experiment.json"
    experiment_file.write_text(json.dumps(EXPERIMENT, indent=2) + "\n")
    sample_args = ["--out", str(data), "--users", str(args.users), "--events", str(args.events)]
    sample_args += ["--experiment", str(experiment_file), "--lift", str(LIFT)]
    builder(console, ["sample", *sample_args], dict(os.environ))

    step(console, 2, "Local stack: Worker, Cloudflare v4 KV API, origin stand-in")
    try:
        stack = LocalStack.start(
            workdir / "stack.log", ports=(args.port, args.api_port, args.origin_port), timeout=90
        )
    except StackError as exc:
        raise DemoError(
            f"{exc}\n(ports {args.port}/{args.api_port}/{args.origin_port} busy? "
            "try --port/--api-port/--origin-port)"
        ) from exc
    try:
        return _with_stack(args, console, stack, data, state, seg_schema)
    finally:
        stack.stop()


def _with_stack(
    args: argparse.Namespace,
    console: Console,
    stack: LocalStack,
    data: Path,
    state: Path,
    seg_schema: str,
) -> int:
    console.print(f"Worker  [cyan]{stack.worker}[/]   runtime {stack.runtime}")
    console.print(f"KV API  [cyan]{stack.api}[/]   namespace {stack.kv_namespace_id}")
    console.print(f"origin  [cyan]{stack.origin}[/]   logs {stack.log_path}")
    env = {**os.environ, **stack.builder_env(), "COLUMNS": str(console.width)}
    # The origin serves SHELL_FILE; publishing it from there keeps the site's headers (its
    # Content-Security-Policy, ...) with the copy the Worker serves this version from.
    version = "home-" + hashlib.sha256(SHELL_FILE.read_bytes()).hexdigest()[:10]
    shell_args = ["--name", "home", "--from-origin", stack.origin + "/", "--version", version]
    builder(console, ["publish-shell", *shell_args], env)

    step(console, 3, "Builder: events -> profiles and segments -> KV (edgeshelf-builder run)")
    run_args = ["--events", str(data / "events.parquet"), "--catalog"]
    run_args += [str(data / "catalog.parquet"), "--state", str(state)]
    builder(console, ["run", *run_args], env)

    kv = KVReader(stack)
    http = httpx.Client(timeout=30)
    try:
        checks, example = _visitors(console, stack, kv, http, seg_schema)
        checks += _experiment(console, stack, kv, http, data, env)
    finally:
        kv.close()
        http.close()
    held = sum(ok for _, ok, _ in checks)
    console.print()
    for name, ok, shown in checks:
        if shown or not ok:
            console.print(("[green]✓[/] " if ok else "[red]✗[/] ") + name, highlight=False)
    all_ok = held == len(checks)
    colour = "green" if all_ok else "red"
    console.print(f"[bold {colour}]{held}/{len(checks)} checks held[/]")
    if not args.once:
        _serve(console, stack, example)
    return 0 if all_ok else 1


Check = tuple[str, bool, bool]  # what must hold, whether it held, whether to list it


def _cast(
    targets: list[str],
    users: dict[str, tuple[str, schema.Profile]],
    folded: tuple[str, schema.Profile] | None,
) -> list[Visitor]:
    """Who visits, in order: cold, returning, known users, a folded one, nowhere, GPC."""
    visitors = [
        Visitor("new visitor · US · en", expect_cookie=True),
        Visitor("same visitor, returning"),  # uid filled in from the first response
    ]
    for seg in targets:
        if seg in users:
            uid, profile = users[seg]
            visitors.append(Visitor(f"known user · {place(profile)}", uid=uid, profile=profile))
    if folded is not None:
        uid, profile = folded
        visitors.append(Visitor(f"known user · {place(profile)} *", uid=uid, profile=profile))
    visitors.append(
        Visitor(
            "new visitor · NZ · mi (no data)",
            country="NZ",
            accept_language="mi-NZ,mi;q=0.9",
            expect_cookie=True,
        )
    )
    visitors.append(
        Visitor("Sec-GPC: 1 · FR · fr", country="FR", accept_language="fr-FR,fr;q=0.9", gpc=True)
    )
    return visitors


def _show_visits(
    console: Console, visits: list[Visit], folded: tuple[str, schema.Profile] | None
) -> None:
    table = Table(show_lines=False, header_style="bold", pad_edge=False)
    for col in ("visitor", "ID", "segment", "fallback", "shelf (first IDs)", ""):
        table.add_column(col, overflow="fold")
    for vis in visits:
        if vis.visitor.gpc:
            cookie = "none (GPC)"
        elif vis.visitor.expect_cookie:
            cookie = "minted"
        else:
            cookie = "rolled" if vis.set_cookie else "kept"
        mark = "[green]✓[/]" if vis.ok else "[red]✗[/]"
        table.add_row(
            vis.visitor.label, cookie, vis.segment or "-", vis.fallback, short(vis.ids), mark
        )
    console.print(table)
    if folded is not None:
        p = folded[1]
        own = schema.segment_id(p["country"], p["lang"], p["affinity_bucket"])
        console.print(
            f"* {own} has fewer than K users: the builder folded it into the language "
            "default, which the Worker fell back to.",
            style="grey50",
        )
    for vis in visits:
        for problem in vis.problems:
            console.print(f"[red]{vis.visitor.label}: {problem}[/]", highlight=False)


def _show_metrics(console: Console, m: dict[str, Any]) -> None:
    console.print()
    table = Table(
        title="Metrics from the Worker's JSON logs", title_justify="left", header_style="bold"
    )
    for col in ("requests", "KV reads", "KV misses", "KV miss rate", "fallback rate", "shell from"):
        table.add_column(col, justify="right")
    table.add_row(
        str(m["requests"]),
        str(m["kv_reads"]),
        str(m["kv_misses"]),
        f"{m['kv_miss_rate']:.1%}",
        f"{m['fallbacks']}/{m['requests']} = {m['fallback_rate']:.1%}",
        ", ".join(f"{k} {v}" for k, v in sorted(m["shells"].items())),
    )
    console.print(table)


def _visitors(
    console: Console, stack: LocalStack, kv: KVReader, http: httpx.Client, seg_schema: str
) -> tuple[list[Check], Visitor | None]:
    """Request the page as each visitor; the checks, and a known user to suggest trying."""
    step(console, 4, "Visitors: the homepage as several people see it")
    seg_keys = [k for k in kv.keys(schema.SEGMENT_PREFIX) if k.endswith(":" + seg_schema)]
    published = {k[len(schema.SEGMENT_PREFIX) : -len(seg_schema) - 1] for k in seg_keys}
    exact = [s for s in published if s != schema.GLOBAL_SEGMENT and not s.endswith("-default")]
    targets = pick_segments(exact, KNOWN_USERS)
    users, folded = find_users(kv, targets, published)

    visits: list[Visit] = []
    for v in _cast(targets, users, folded):
        if v.label.startswith("same visitor") and visits:
            minted = re.match(rf"{COOKIE}=([^;]+);", visits[0].set_cookie)
            v.uid = minted.group(1) if minted else str(uuid.uuid4())
        visits.append(check_visit(v, visit(http, stack.worker, v), published, kv, seg_schema))
    _show_visits(console, visits, folded)
    m = metrics(wait_for_records(stack, len(visits)))
    _show_metrics(console, m)

    known = [vis for vis in visits if vis.visitor.profile is not None and vis.fallback == "exact"]
    shelves = {tuple(vis.ids) for vis in known}
    segments = {vis.segment for vis in known}
    observed = sum(1 for vis in visits if vis.fallback not in ("exact", "?"))
    checks: list[Check] = [
        (f"{vis.visitor.label}: shelf as published", vis.ok, False) for vis in visits
    ]
    checks += [
        (
            f"sample users found for {len(users)}/{len(targets)} chosen exact segments",
            len(users) == len(targets),
            True,
        ),
        ("a sample user whose own segment was folded away", folded is not None, True),
        (
            f"{len(known)} known users on {len(segments)} distinct segments, distinct shelves",
            len(known) >= 3 and len(shelves) == len(known) == len(segments),
            True,
        ),
        (
            f"every visitor's shelf equals the published segment ({len(visits)} visitors)",
            all(vis.ok for vis in visits),
            True,
        ),
        ("one log record per request", m["requests"] == len(visits), True),
        ("logged fallbacks match the pages", m["fallbacks"] == observed, True),
    ]
    return checks, (known[0].visitor if known else None)


# --- the experiment ---------------------------------------------------------------------------


def builder_output(args: list[str], env: dict[str, str]) -> str:
    """Run ``edgeshelf-builder`` and return its stdout (for commands whose output is data)."""
    exe = shutil.which("edgeshelf-builder")
    if exe is None:
        raise DemoError("edgeshelf-builder is not installed (run scripts/setup)")
    proc = subprocess.run([exe, *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DemoError(f"edgeshelf-builder {args[0]} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def _exposure_visits(
    console: Console, stack: LocalStack, kv: KVReader, http: httpx.Client
) -> tuple[list[Check], dict[str, int]]:
    """Sample users visit once each; the arms they should be in, as the builder computes them."""
    uids = sorted(k.removeprefix(schema.USER_PREFIX) for k in kv.keys(schema.USER_PREFIX))
    uids = uids[:EXPOSURE_VISITS]
    expected: dict[str, int] = {arm["name"]: 0 for arm in EXPERIMENT["arms"]}
    for uid in uids:
        expected[assign(EXPERIMENT, uid)["name"]] += 1
    # The Worker reads exp:active through an isolate memo: wait until a page carries it.
    probe, seen, deadline = Visitor("probe", uid=uids[0]), False, time.monotonic() + 20
    supported = True
    while time.monotonic() < deadline:
        found = _SHELF_RE.findall(visit(http, stack.worker, probe).text)
        shelf = json.loads(found[0]) if len(found) == 1 else {}
        supported = "exp" in shelf
        seen = shelf.get("exp") == EXPERIMENT["name"]
        if seen or not supported:
            break
        time.sleep(0.5)
    if seen:  # the probe's last request was an exposure too
        expected[assign(EXPERIMENT, uids[0])["name"]] += 1
    before = len(stack.worker_logs())
    for uid in uids:
        visit(http, stack.worker, Visitor("exposure", uid=uid))
    stack.wait_worker_logs(lambda r: len(r) >= before + len(uids))
    console.print(
        f"{len(uids)} sample users visited; by their IDs the builder expects "
        + ", ".join(f"{n} in {arm}" for arm, n in expected.items())
    )
    if not supported:
        console.print(
            "[yellow]note:[/] this Worker does not serve experiments yet (its shelf payload "
            'has no "exp"): its logs carry no exposures, so the report counts none'
        )
        return [], expected
    return [
        (f"the Worker serves {EXPERIMENT['name']} after `experiment set`", seen, True)
    ], expected


def _experiment(
    console: Console,
    stack: LocalStack,
    kv: KVReader,
    http: httpx.Client,
    data: Path,
    env: dict[str, str],
) -> list[Check]:
    """Start the experiment, collect exposures, run the lift report, stop the experiment."""
    workdir = data.parent
    simulation = json.loads((data / "simulation.json").read_text())
    step(console, 5, "Experiment: 90/10 personalized/control (edgeshelf-builder experiment set)")
    document: Experiment = {**EXPERIMENT, "started_at": int(simulation["started_at"])}
    (workdir / "experiment.json").write_text(json.dumps(document, indent=2) + "\n")
    builder(console, ["experiment", "set", str(workdir / "experiment.json")], env)
    stored = decode_experiment(kv.get(schema.EXPERIMENT_KEY))
    checks: list[Check] = [
        ("exp:active holds the experiment as set", stored == document, True),
    ]
    visit_checks, expected = _exposure_visits(console, stack, kv, http)
    checks += visit_checks
    logs = workdir / "worker-logs.jsonl"
    logs.write_text("".join(json.dumps(r) + "\n" for r in stack.worker_logs()))

    step(console, 6, "Lift report on the sample (edgeshelf-builder report)")
    truth = float(simulation["expected_difference_given_arms"]["personalized"])
    console.print(
        f"[bold]SIMULATED[/] window: {simulation['users']} sample users over "
        f"{simulation['days']} days, personalized watching {simulation['lift']:+.0%} more than "
        f"control by construction: {simulation['true_difference']['personalized']:+.2f} "
        f"watches per user on average, {truth:+.2f} given who landed in each arm"
    )
    page, as_json = workdir / "report.html", workdir / "report.json"
    report_args = ["report", "--events", str(data / "events.parquet"), "--catalog"]
    report_args += [str(data / "catalog.parquet"), "--exposures", str(logs)]
    builder(console, [*report_args, "--out", str(page), "--out", str(as_json)], env)
    result = json.loads(as_json.read_text())
    arms = {arm["name"]: arm for arm in result["arms"]}
    diff = arms["personalized"]["vs_baseline"]["watches_per_user"]
    inside = diff["ci_low"] is not None and diff["ci_low"] <= truth <= diff["ci_high"]
    console.print(
        f"personalized - control, watches per user: {diff['diff']:+.2f} "
        f"(95% CI {diff['ci_low']:+.2f} to {diff['ci_high']:+.2f}, p {diff['p_value']:.2g}); "
        f"simulated {truth:+.2f}: {'inside' if inside else 'OUTSIDE'} the interval"
    )
    console.print(f"report page: {page}")
    exposures = result["exposures"]
    checks += [
        (f"the simulated lift ({truth:+.2f} watches per user) is inside the report's 95% CI",
         inside, True),
        (f"no sample-ratio mismatch (users p = {result['srm_users_p']:.3f})",
         not result["srm"], True),
        (f"exposure logs read with no line skipped ({exposures['lines']} lines)",
         exposures["skipped"] == 0, True),
    ]  # fmt: skip
    if exposures["total"]:
        got = {name: arm["exposures"] for name, arm in arms.items()}
        checks.append(
            (
                f"exposures per arm {got} = the builder's arms for the visitors",
                got == expected,
                True,
            )
        )
    builder(console, ["experiment", "stop"], env)
    checks.append(
        ("experiment stop removes exp:active", kv.get(schema.EXPERIMENT_KEY) is None, True)
    )
    return checks


def _serve(console: Console, stack: LocalStack, example: Visitor | None) -> None:
    lines = [f"Open [bold cyan]{stack.worker}/[/] in a browser: you are a new visitor."]
    if example is not None and example.uid is not None:
        lines += [
            f"As {example.label}:",
            f"  curl -s -H 'cookie: {COOKIE}={example.uid}' {stack.worker}/ \\",
            "    | grep -o 'edgeshelf-shelf\">[^<]*'",
        ]
    lines.append("Ctrl-C stops the stack.")
    console.print(Panel.fit("\n".join(lines), title="serving", border_style="cyan"))
    try:
        while stack.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("\nstopping")
        return
    # Ctrl-C reaches the whole process group: the stack may see it first and stop cleanly.
    if stack.process.returncode == 0:
        console.print("\nthe stack stopped")
    else:
        code = stack.process.returncode
        console.print(f"[red]the stack exited with {code}:[/]\n{stack.log_tail()}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--once", action="store_true", help="run the checks, then exit (0 = all held)")
    p.add_argument("--port", type=int, default=8787, help="Worker port (default 8787)")
    p.add_argument("--api-port", type=int, default=8788, help="local v4 API port (default 8788)")
    p.add_argument("--origin-port", type=int, default=8789, help="origin port (default 8789)")
    p.add_argument("--workdir", help="where sample data, state and logs go (default: a temp dir)")
    p.add_argument("--users", type=int, default=5000, help="sample users (default 5000)")
    p.add_argument("--events", type=int, default=100_000, help="sample events (default 100000)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    try:
        return run_demo(args, console)
    except DemoError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("\ninterrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
