"""Shared fixtures: the local stack (the real Worker in workerd) and per-test key isolation."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from localstack import LocalStack, StackError

REQUIRE_RUNTIME = os.environ.get("EDGESHELF_REQUIRE_RUNTIME") == "1"


def start_stack(tmp_path_factory: pytest.TempPathFactory, name: str, **kw: object) -> LocalStack:
    log_path = tmp_path_factory.mktemp(name) / "stack.log"
    try:
        return LocalStack.start(log_path, **kw)  # type: ignore[arg-type]
    except StackError as exc:
        # Never a skip: a runtime test that cannot reach workerd is a failure (see .ci/run).
        pytest.fail(f"could not start the local stack: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The local stack with wrangler.toml's configuration, shared by the whole session."""
    s = start_stack(tmp_path_factory, "stack")
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/runtime/" in str(Path(str(item.fspath)).as_posix()):
            item.add_marker(pytest.mark.runtime)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With EDGESHELF_REQUIRE_RUNTIME=1, a run whose runtime tests did not all run fails."""
    if not REQUIRE_RUNTIME or exitstatus != 0:
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
            f"EDGESHELF_REQUIRE_RUNTIME: {ran} runtime tests ran, {skipped} skipped: failing the run",
            red=True,
        )
        session.exitstatus = 1
