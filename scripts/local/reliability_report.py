"""Render docs/reliability.md and docs/reliability.json from a reliability run's figures.

Input: the JSON lines the ``record`` fixture of tests/reliability appends (one row per scenario)
and, optionally, pytest's JUnit XML of the same run. Every number in the page, the summary line
included, is computed from those files; nothing is typed in. ``scripts/reliability`` runs the
tests and then this.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import xml.etree.ElementTree as ET  # parses the JUnit file pytest just wrote
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AREAS = {
    "worker": "The Worker",
    "builder": "The builder",
    "security": "Security",
}
COMMAND = "scripts/reliability"
PACKAGES = ("duckdb", "httpx", "stamina", "hypothesis", "pytest", "click")


@dataclass(frozen=True)
class Tests:
    """Outcome of the pytest run, from its JUnit XML."""

    total: int
    failures: int
    errors: int
    skipped: int
    seconds: float
    fuzz_examples: str | None

    @property
    def passed(self) -> int:
        return self.total - self.failures - self.errors - self.skipped


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    order = {area: i for i, area in enumerate(AREAS)}
    return sorted(rows, key=lambda r: order.get(r["area"], len(order)))  # stable within an area


def read_junit(path: Path | None, fuzz_examples: str | None) -> Tests | None:
    if path is None or not path.exists():
        return None
    root = ET.parse(path).getroot()  # noqa: S314  # our own pytest's output
    suites = [root] if root.tag == "testsuite" else list(root)
    total = sum(int(s.get("tests", 0)) for s in suites)
    return Tests(
        total=total,
        failures=sum(int(s.get("failures", 0)) for s in suites),
        errors=sum(int(s.get("errors", 0)) for s in suites),
        skipped=sum(int(s.get("skipped", 0)) for s in suites),
        seconds=sum(float(s.get("time", 0)) for s in suites),
        fuzz_examples=fuzz_examples,
    )


def _run(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def _npm_version(name: str) -> str:
    try:
        data = json.loads((ROOT / "node_modules" / name / "package.json").read_text())
    except (OSError, ValueError):
        return "not installed"
    return str(data.get("version", "unknown"))


def git_commit() -> str:
    """The checkout's commit, marked when tracked files differ from it."""
    commit = _run(["git", "rev-parse", "--short", "HEAD"])
    dirty = bool(_run(["git", "status", "--porcelain", "--untracked-files=no"]))
    return commit + (" (with uncommitted changes)" if dirty else "")


def environment(commit: str | None = None) -> dict[str, Any]:
    """Where and with what the figures were produced (``commit``: when the run started)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["workerd"] = _npm_version("workerd")
    versions["miniflare"] = _npm_version("miniflare")
    versions["node"] = _run(["node", "--version"]).removeprefix("v")
    versions["wrk"] = _run(["wrk", "--version"]).split(" [")[0].removeprefix("wrk ")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or git_commit(),
        "machine": f"{_cpu()}, {os.cpu_count()} cores, {_memory_gib()} RAM",
        "os": platform.platform(),
        "versions": versions,
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    five_xx = sum(int(r["five_xx"]) for r in rows)
    lost = [r["keys_lost"] for r in rows if isinstance(r["keys_lost"], int)]
    return {
        "scenarios": len(rows),
        "five_xx": five_xx,
        "keys_lost": sum(lost),
        "scenarios_with_keys": len(lost),
    }


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(
    rows: list[dict[str, Any]], env: dict[str, Any], tests: Tests | None, exit_code: int | None
) -> str:
    s = summary(rows)
    headline = (
        f"**{s['five_xx']} 5xx and {s['keys_lost']} keys lost across {s['scenarios']} scenarios**"
    )
    out = [
        "# Reliability and security figures",
        "",
        "Every row is a test in `tests/reliability/` that injected the faults it names and "
        "recorded what came out; this page is generated from those records, never edited by "
        f"hand. Regenerate it with `{COMMAND}` (full size; `scripts/test` runs the same tests "
        "small).",
        "",
        headline + f" ({s['scenarios_with_keys']} of them compare KV with the builder's plan "
        "key by key).",
        "",
    ]
    if tests is not None:
        verdict = "all passed" if tests.failures + tests.errors == 0 else "**FAILURES**"
        examples = tests.fuzz_examples or ""
        if examples.isdigit():
            examples = f"{int(examples):,}"
        fuzz = (
            f", the Worker fuzz of `tests/runtime/test_fuzz.py` at {examples} examples included"
            if examples
            else ""
        )
        out += [
            f"pytest: {tests.total} tests, {tests.passed} passed, {tests.failures} failed, "
            f"{tests.errors} errors, {tests.skipped} skipped ({verdict}) in "
            f"{tests.seconds / 60:.1f} min{fuzz}.",
            "",
        ]
    if exit_code not in (None, 0):
        out += [f"**The run exited {exit_code}: these figures are not a passing run.**", ""]
    out += [
        "Columns: **load** is what the scenario ran (requests, users, keys); **faults** what "
        "was injected; **5xx** counts server errors nobody injected (the Worker's answers to "
        "visitors, plus the local API's own failures during builder runs); **keys lost** counts "
        "planned keys that were missing or different in KV afterwards (n/a where no published "
        "content is at stake).",
        "",
    ]
    for area, title in AREAS.items():
        area_rows = [r for r in rows if r["area"] == area]
        if not area_rows:
            continue
        out += [
            f"## {title}",
            "",
            "| scenario | load | faults injected | 5xx | keys lost | notes |",
            "|---|---|---|---:|---:|---|",
        ]
        out += [
            "| "
            + " | ".join(
                _cell(r[k]) for k in ("scenario", "load", "faults", "five_xx", "keys_lost", "notes")
            )
            + " |"
            for r in area_rows
        ]
        out.append("")
    others = [r for r in rows if r["area"] not in AREAS]
    if others:
        out += ["## Other", ""]
        out += [f"- {_cell(r['area'])}: {_cell(r['scenario'])}" for r in others]
        out.append("")
    v = env["versions"]
    out += [
        "## Run",
        "",
        f"- Date: {env['date']}; commit {env['commit']}",
        f"- Machine: {env['machine']}; {env['os']}",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Command: `{COMMAND}` (`EDGESHELF_FULL=1 EDGESHELF_FUZZ_EXAMPLES=10000 uv run pytest "
        "tests/reliability tests/runtime/test_fuzz.py`, then "
        "`uv run python scripts/local/reliability_report.py`)",
        "",
        "## What these figures do not show",
        "",
        "- The local API writes are visible at once; real KV takes up to a minute to propagate "
        "(docs/local-api.md lists the stand-in's deviations). Convergence is shown here, "
        "propagation delay is not.",
        "- A CSV cut inside its last field still parses as a shorter number; the builder's "
        "mass-deletion guard, not the parser, is what stops a badly truncated export.",
        "- A write the builder gave up on (a timeout) can still land later. Within a run it "
        "carries the value the retry carries, so it changes nothing; a killed run's last writes "
        "could only overtake a rerun on different input started within the same seconds, which "
        "the scenarios (and a cron schedule) leave well apart.",
        "",
    ]
    return "\n".join(out)


def render_json(data: dict[str, Any]) -> str:
    """The page again from docs/reliability.json: the two files must always agree."""
    pytest_data = data.get("pytest")
    tests = None
    if pytest_data is not None:
        tests = Tests(**{k: v for k, v in pytest_data.items() if k != "passed"})
    env = {k: data[k] for k in ("date", "commit", "machine", "os", "versions")}
    return render(data["rows"], env, tests, data.get("exit_code"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=Path, help="JSON lines written by the record fixture")
    parser.add_argument("--junit", type=Path, default=None, help="pytest --junitxml output")
    parser.add_argument("--exit-code", type=int, default=None, help="pytest's exit status")
    parser.add_argument("--fuzz-examples", default=os.environ.get("EDGESHELF_FUZZ_EXAMPLES"))
    parser.add_argument("--commit", default=None, help="the commit tested (default: HEAD now)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "reliability.json")
    args = parser.parse_args(argv)
    if not args.rows.exists():
        parser.error(f"{args.rows} does not exist: no scenario recorded anything")
    rows = read_rows(args.rows)
    if not rows:
        parser.error(f"{args.rows} holds no scenario rows")
    tests = read_junit(args.junit, args.fuzz_examples)
    env = environment(args.commit)
    args.out.write_text(render(rows, env, tests, args.exit_code))
    data = {
        **env,
        "command": COMMAND,
        "summary": summary(rows),
        "pytest": None if tests is None else {**tests.__dict__, "passed": tests.passed},
        "exit_code": args.exit_code,
        "rows": rows,
    }
    args.json.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    s = data["summary"]
    print(
        f"{args.out}: {s['five_xx']} 5xx and {s['keys_lost']} keys lost across "
        f"{s['scenarios']} scenarios"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
