"""The builder benchmark still runs end to end: `scripts/bench builder --smoke` (no timings)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# It starts workerd (the local v4 API) like the runtime tests do, so it counts as one of them.
# The whole benchmark (DuckDB, the local API, Spark, the large step) runs in the first test's
# setup: about 140 s alone, several minutes beside the rest of scripts/test.
pytestmark = [pytest.mark.runtime, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-builder")
    proc = subprocess.run(
        [
            str(ROOT / "scripts" / "bench"),
            "builder",
            "--smoke",
            "--out-dir",
            str(out / "docs"),
            "--work-dir",
            str(out / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert proc.returncode == 0, f"scripts/bench builder --smoke failed:\n{proc.stderr[-6000:]}"
    return out / "docs"


def _raw(smoke: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((smoke / "bench-builder.json").read_text())
    return data


def test_phases_timed_and_memory_measured(smoke: Path) -> None:
    """Each plan phase has a wall and CPU time, and every step has a peak RSS of its own."""
    data = _raw(smoke)
    assert data["params"]["smoke"] is True
    for key in ("plan_first", "plan_rerun"):
        median = data[key]["median"]
        assert set(median["phases_wall_s"]) == {"read_validate", "compute", "encode_plan"}
        assert median["total_s"] > 0
        assert median["rss_peak_mb"] > 0
    for step in (data["sample"], data["run"]["process"], *(r["process"] for r in data["reruns"])):
        assert step["exit_code"] == 0
        assert step["rss_peak_mb"] > 0
    assert data["profile"]["top"], "the cProfile step reported no functions"


def test_first_run_requests_counted_by_the_api(smoke: Path) -> None:
    """The local API counted the run's requests and stored every planned key."""
    run = _raw(smoke)["run"]
    written = run["summary"]["plan"]["write"]["total"]
    assert written == run["keys_computed"] > 0
    assert run["api"]["pairs_written"] == written
    assert run["requests_builder"] == run["requests_planned"] + run["retries"]
    assert 0 < run["api"]["requests"] <= run["requests_builder"]
    assert run["requests_literal"] >= 1
    assert run["timeline"], "the API's counters were never sampled during the run"


def test_rerun_writes_nothing(smoke: Path) -> None:
    """A rerun on unchanged input writes no pair and makes no write request."""
    reruns = _raw(smoke)["reruns"]
    assert reruns
    for rerun in reruns:
        assert rerun["api"]["pairs_written"] == 0
        assert rerun["api"]["writes"] == 0
        assert rerun["api"]["pairs_deleted"] == 0
        assert rerun["summary"]["plan"]["write"]["total"] == 0


def test_targets_stated(smoke: Path) -> None:
    """The JSON states each issue-6 and issue-15 builder target with a figure and met or not."""
    targets = {t["id"]: t for t in _raw(smoke)["targets"]}
    assert set(targets) == {
        "compute_plan", "requests", "rerun",
        "large_compute_plan", "large_rss", "large_requests", "large_rerun",
    }  # fmt: skip
    for target in targets.values():
        assert isinstance(target["met"], bool)
        assert target["measured"]
    assert targets["rerun"]["met"] is True
    assert targets["large_rerun"]["met"] is True
    assert targets["large_requests"]["met"] is True


def test_spark_beside_duckdb(smoke: Path) -> None:
    """The same phases ran on local Spark, planned what DuckDB planned, and were profiled."""
    data = _raw(smoke)
    spark, duck = data["spark"], data["plan_first"]["reps"][0]
    assert spark["engine"] == "spark"
    assert spark["plan"] == duck["plan"]
    assert spark["jvm_rss_peak_mb"] > 0
    assert any(call["what"].startswith("table ") for call in spark["engine_calls"])


def test_report_and_plots_written(smoke: Path) -> None:
    """The report names machine, versions, commit and targets, and links plots that exist."""
    md = (smoke / "benchmarks-builder.md").read_text()
    needles = (
        "## Targets (issues 6 and 15)", "CPUs", "DuckDB", "Python", "commit", "## Peak memory",
        "## Spark beside DuckDB", "What would change on a cluster", "users on DuckDB",
    )  # fmt: skip
    for needle in needles:
        assert needle in md, needle
    for name in ("phases", "requests", "timeline", "memory"):
        path = smoke / "img" / f"bench-builder-{name}.png"
        assert f"img/{path.name}" in md
        assert path.read_bytes().startswith(b"\x89PNG")
