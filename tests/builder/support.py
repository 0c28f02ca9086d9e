"""Running the real builder CLI against a local stack and comparing KV with the plan.

Shared by ``tests/builder/test_integration_run.py`` and ``tests/reliability``: the CLI in a
subprocess (``uv run edgeshelf-builder``), the plan recomputed in-process, and KV read back key by
key through the local v4 API.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest
import stamina

from builder.jobs import RunSettings, load_build, remote_diff
from builder.plan import computed_items
from builder.publish import backoff_hook
from builder.ranking import RankingOptions
from builder.reporting import Silent

if TYPE_CHECKING:
    from pathlib import Path

    from localstack import LocalStack

    from builder.cloudflare import KVClient
    from builder.jobs import RemoteDiff
    from builder.ranking import Build
    from builder.sample import SampleFiles

# The clock every run is pinned to (an hour after the samples' newest event), and K.
NOW = 1_748_736_000 + 3_600
K = 10


def wipe(client: KVClient) -> None:
    """Delete every profile and segment key, so a test owns the whole namespace.

    Listing and deleting are idempotent, so what the builder retries (a connection the local
    stack resets, seen once under a machine load of 4) is retried here by the builder's own
    rule, :func:`builder.publish.backoff_hook`, instead of failing a test that merely wanted an
    empty namespace.
    """
    for attempt in stamina.retry_context(on=backoff_hook, attempts=3, wait_initial=0.5):
        with attempt:
            for prefix in ("u:", "seg:"):
                names = [k.name for k in client.list_keys(prefix)]
                for start in range(0, len(names), 10_000):
                    client.bulk_delete(names[start : start + 10_000])


def cli(stack: LocalStack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``edgeshelf-builder`` against ``stack``'s local API; output captured as text."""
    env = {**os.environ, **stack.builder_env()}
    return subprocess.run(
        ["uv", "run", "edgeshelf-builder", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_args(files: SampleFiles, state: Path, *extra: str) -> list[str]:
    return [
        "run", "--events", str(files.events), "--catalog", str(files.catalog),
        "--state", str(state), "--min-segment-size", str(K), "--now", str(NOW), "--json", *extra,
    ]  # fmt: skip


def build_of(files: SampleFiles) -> Build:
    """The build (profiles and segments) of ``files`` computed in-process; close its ``con``."""
    settings = RunSettings(
        events=files.events, catalog=files.catalog, ranking=RankingOptions(min_segment_size=K)
    )
    return load_build(settings, NOW, Silent())


def expected(files: SampleFiles) -> tuple[dict[str, str], Build]:
    """The plan's full output computed in-process: key -> value, and the build."""
    build = build_of(files)
    items = {i.key: i.value for i in computed_items(build, "v3")}
    return items, build


def kv_diff(kv: KVClient, files: SampleFiles) -> RemoteDiff:
    """KV against the plan of ``files``, key by key through the API (extra keys included)."""
    build = build_of(files)
    try:
        return remote_diff(
            kv, computed_items(build, "v3"), schema="v3", extra_prefixes=("u:", "seg:")
        )
    finally:
        build.close()


def assert_kv_equals_plan(kv: KVClient, files: SampleFiles) -> None:
    diff = kv_diff(kv, files)
    assert diff.checked > 0
    assert diff.equal, (diff.missing[:5], diff.different[:5], diff.extra[:5])


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``--json`` summary of a run that must have exited 0."""
    assert proc.returncode == 0, proc.stderr[-2000:]
    value: dict[str, Any] = json.loads(proc.stdout)
    return value


def wait_for_writes(stack: LocalStack, proc: subprocess.Popen[bytes], n: int) -> None:
    """Block until the local API counted ``n`` writes (the run must still be going)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if stack.api_stats()["writes"] >= n:
            return
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.05)
    pytest.fail("the run never reached the point where it should be killed")
