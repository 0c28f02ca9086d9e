"""Shared fixtures: the local stack (the real Worker in workerd) and per-test key isolation."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from localstack import LocalStack, StackError

if TYPE_CHECKING:
    from collections.abc import Iterator

REQUIRE_RUNTIME = os.environ.get("EDGESHELF_REQUIRE_RUNTIME") == "1"
# Tests that need the real `js` and `pyodide` modules: scripts/local/pyodide/pytest.mjs runs them
# inside Pyodide 0.28 and 314 (without this conftest); CPython has neither.
collect_ignore = ["pyodide"]


# Test fixtures are written through the local API, hundreds per session: more than the real
# 1,200 requests per 5 minutes. The fixture stacks raise that limit (and keep every other real
# limit); tests of rate limiting set it explicitly with stack.faults(rate_limit=...).
TEST_API_DEFAULTS = {"rate_limit": {"requests": 1_000_000, "window_s": 300}}


def start_stack(tmp_path_factory: pytest.TempPathFactory, name: str, **kw: object) -> LocalStack:
    log_path = tmp_path_factory.mktemp(name) / "stack.log"
    kw.setdefault("api_defaults", TEST_API_DEFAULTS)
    try:
        return LocalStack.start(log_path, **kw)
    except StackError as exc:
        # Never a skip: a runtime test that cannot reach workerd is a failure (see .ci/run).
        pytest.fail(f"could not start the local stack: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The local stack with wrangler.toml's configuration, shared by the whole session."""
    s = start_stack(tmp_path_factory, "stack")
    yield s
    s.stop()


# Settings of the second stack: its own segment schema (so global/default segments written by
# its tests never meet the main stack's), no pointer, shell or segment memo (tests rev shells and
# segments and expect the next request to see it), a short origin timeout (slow-origin tests),
# Analytics Engine bound, and the Worker's KV reads open to injected faults.
FRESH_VARS = {
    "SEGMENT_SCHEMA": "v7",
    "SHELL_POINTER_TTL": "0",
    "SEGMENT_MEMO_TTL": "0",
    "ORIGIN_TIMEOUT_MS": "400",
    # The origin's page without a pointer is cached this long (tests wait it out).
    "NO_POINTER_SHELL_TTL": "2",
    # Not the default, so tests see the audience cookie's lifetime follow the variable.
    "AUDIENCE_TTL": "120",
}


@pytest.fixture(scope="session")
def fresh_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A second stack for tests that change shared state: shells, origin faults, defaults."""
    s = start_stack(
        tmp_path_factory, "fresh-stack", vars=FRESH_VARS, analytics=True, kv_faults=True
    )
    yield s
    s.stop()


@pytest.fixture
def key_prefix() -> str:
    """A unique key prefix so tests sharing the session's KV never see each other's keys."""
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def uid() -> str:
    """A fresh visitor ID of the minted format, unique to the test."""
    return str(uuid.uuid4())


# The longest modules (by scripts/test's --durations), first. scripts/test runs the suite on
# three xdist workers a whole module at a time, in collection order, and each worker takes its
# next module before it needs it: the three longest start at once, each beside one of the
# shorter ones (not the next longest), and none of them starts when the others are nearly done.
# Only the order changes.
LONGEST_FIRST = (
    "tests/builder/test_integration_run.py",
    "tests/reliability/test_builder_faults.py",
    "tests/bench/test_bench_builder_smoke.py",
    "tests/demo/test_demo.py",
    "tests/bench/test_bench_smoke.py",
    "tests/reliability/test_security.py",
    "tests/builder/test_engine_parity.py",
)


def _module_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A stable sort by module: every module's tests stay together and in their own order.
    items.sort(key=_module_rank)
    for item in items:
        if "tests/runtime/" in str(Path(str(item.fspath)).as_posix()):
            item.add_marker(pytest.mark.runtime)
    # `slow` scenarios run with EDGESHELF_FULL=1 only; deselected, not skipped, so that a
    # normal run does not count them as runtime tests that failed to run.
    if os.environ.get("EDGESHELF_FULL") != "1":
        slow = [item for item in items if item.get_closest_marker("slow") is not None]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if item.get_closest_marker("slow") is None]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With EDGESHELF_REQUIRE_RUNTIME=1, a run whose runtime tests did not all run fails."""
    if not REQUIRE_RUNTIME or exitstatus != 0:
        return
    # Under xdist each worker runs a share of the tests; the controller receives every worker's
    # reports (with their keywords) and makes the check once, over the whole run.
    if hasattr(session.config, "workerinput"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    ran = skipped = 0
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in reporter.stats.get(outcome, []):
            if getattr(report, "when", "call") not in ("call", "setup"):
                continue
            if "runtime" not in getattr(report, "keywords", {}):
                continue
            if outcome == "skipped":
                skipped += 1
            elif report.when == "call":
                ran += 1
    if skipped or ran == 0:
        reporter.write_line(
            f"EDGESHELF_REQUIRE_RUNTIME: {ran} runtime tests ran, {skipped} skipped: failing",
            red=True,
        )
        session.exitstatus = 1
