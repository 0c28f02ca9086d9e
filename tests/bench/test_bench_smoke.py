"""The edge benchmark still runs end to end: `scripts/bench edge --smoke` (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# It starts workerd like the runtime tests do, so it counts as one of them.
pytestmark = pytest.mark.runtime


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "edge", "--smoke", "--out-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, f"scripts/bench edge --smoke failed:\n{proc.stderr[-6000:]}"
    return out


def test_every_worker_was_measured(smoke: Path) -> None:
    """Floors, both JavaScript peers and edgeshelf each served both visitor kinds without errors."""
    data = json.loads((smoke / "bench-edge.json").read_text())
    cells = {(r["target"], r["visitor"], r["conns"]) for r in data["runs"]}
    expected = {
        (target, visitor, conns)
        for target, visitor in [
            ("py-floor", "any"),
            ("js-floor", "any"),
            ("js-peer", "known"),
            ("js-peer", "cold"),
            ("js-naive", "known"),
            ("js-naive", "cold"),
            ("edgeshelf", "known"),
            ("edgeshelf", "cold"),
        ]
        for conns in (1, 8)
    }
    assert cells == expected
    for run in data["runs"]:
        assert run["requests"] > 0, run
        assert run["errors"] == 0, run
        assert run["non2xx"] == 0, run
        assert run["workerd_cpu_ms_per_req"] is not None, run


def test_peer_answers_like_edgeshelf(smoke: Path) -> None:
    """The same-algorithm JavaScript peer's responses match edgeshelf's byte for byte (headers
    normalised, the origin's security headers among them), and the naive peer's bodies do too,
    so the comparison holds."""
    data = json.loads((smoke / "bench-edge.json").read_text())
    assert data["parity"], "no parity checks ran"
    assert all(p["ok"] for p in data["parity"]), data["parity"]
    visitors = {p["visitor"] for p in data["parity"]}
    assert {"known", "cold", "returning", "aud-other-id", "aud-malformed"} <= visitors
    # Crawlers, GPC and the lenient profile read are checked whether or not the audience
    # cookie is on.
    assert {"gpc", "crawler", "crawler-gpc", "verified-bot", "profile-lenient"} <= visitors
    assert {"profile-fv-float", "profile-unknown"} <= visitors
    assert data["parity_naive"], "the naive peer's bodies were not checked"
    assert all(p["ok"] and p["body_only"] for p in data["parity_naive"]), data["parity_naive"]


def _session_runs(data: dict[str, Any], mode: str) -> dict[str, dict[str, Any]]:
    return {run["target"]: run for run in data["sessions"]["modes"][mode]["runs"]}


def test_sessions_measured_with_and_without_the_latency_model(smoke: Path) -> None:
    """Every Worker served visitor sessions without errors, without injected latency and under
    the model, and the wrapper's waits were the model's: none without it, some with it."""
    data = json.loads((smoke / "bench-edge.json").read_text())
    sessions = data["sessions"]
    for mode in ("none", "model"):
        phase = sessions["modes"][mode]
        assert all(p["ok"] for p in phase["parity"]), phase["parity"]
        runs = _session_runs(data, mode)
        assert set(runs) == {"py-floor", "js-floor", "js-peer", "js-naive", "edgeshelf"}
        for run in runs.values():
            assert run["views"] == sessions["params"]["visitors"] * sessions["params"]["views"]
            assert run["errors"] == 0, run
            assert run["non200"] == 0, run
            assert run["kv_other_mode"] == 0, run
            assert run["p95_us"] is not None, run
    none = sessions["modes"]["none"]["applied"]
    model = sessions["modes"]["model"]["applied"]
    assert none["cold"]["reads"] > 0
    assert none["cold"]["p95_ms"] == 0
    assert model["cold"]["reads"] > 0
    assert model["cold"]["p50_ms"] > 0


def test_kv_reads_counted_per_worker_and_page_view(smoke: Path) -> None:
    """The wrapper counts each Worker's KV reads by page view: the floors read none, the naive
    peer reads a profile on every view of a visitor with an ID, and with the audience cookie on,
    the same-algorithm peer reads no profile on a returning visitor's later views."""
    data = json.loads((smoke / "bench-edge.json").read_text())
    runs = _session_runs(data, "model")
    for floor in ("py-floor", "js-floor"):
        assert runs[floor]["kv"] == {"cold": 0, "hot": 0}
    naive = runs["js-naive"]["segments"]
    assert naive["new-first"]["kv"]["cold"] == 0
    for seg in ("returning-first", "new-later", "returning-later"):
        assert naive[seg]["kv"]["cold"] == naive[seg]["views"] > 0, naive[seg]
        assert naive[seg]["kv"]["hot"] >= naive[seg]["views"], naive[seg]
    peer = runs["js-peer"]["segments"]
    assert peer["returning-first"]["kv"]["cold"] == peer["returning-first"]["views"]
    if data["meta"]["audience"]["ttl"] > 0:
        later = peer["returning-later"]
        assert later["with_aud"] == later["views"] > 0, later
        assert later["kv"]["cold"] == 0, later


def test_cold_start_and_imports_measured(smoke: Path) -> None:
    """Cold starts of all five Workers and the import cost of the SDK and our package are kept."""
    cold = json.loads((smoke / "bench-edge.json").read_text())["cold_start"]
    assert {row["target"] for row in cold["process"]} == {
        "py-floor",
        "js-floor",
        "js-peer",
        "js-naive",
        "edgeshelf",
    }
    modules = {row.get("module") for row in cold["imports"]}
    assert {"workers", "edgeshelf.handler"} <= modules
    assert cold["versions"]["python"].startswith("3.")


def test_report_and_plots_written(smoke: Path) -> None:
    """The report names machine, versions and every target's status, and links plots that exist."""
    md = (smoke / "benchmarks.md").read_text()
    for needle in (
        "## Targets (issue 6)",
        "## Targets (issue 14)",
        "## Visitor sessions, with production's KV latency",
        "### The KV latency model",
        "### Page views by kind (under the model)",
        "blog.cloudflare.com/faster-workers-kv",
        "workerd 1.2",
        "Pyodide",
        "CPUs",
        "## Cold start",
    ):
        assert needle in md
    assert "met**" in md
    # Ratio targets against both JavaScript peers, each status computed.
    assert "measured vs the same-algorithm JS peer" in md
    assert "measured vs the naive JS peer" in md
    assert "JavaScript read path, naive" in md
    targets = md.split("## Targets (issue 6)")[1].split("\n\n")[1].splitlines()[2:]
    ratio_rows = [row for row in targets if "the JS Worker" in row]
    assert ratio_rows
    for row in ratio_rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3] in ("**met**", "**not met**"), row
        assert cells[5] in ("**met**", "**not met**"), row
    targets_14 = md.split("## Targets (issue 14)")[1].split("\n\n")[2].splitlines()[2:]
    assert len(targets_14) >= 5
    for row in targets_14:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[4] in ("**met**", "**not met**", "n/a"), row
    linked = [line.split("(img/")[1].rstrip(")") for line in md.splitlines() if "](img/" in line]
    assert "bench-sessions.png" in linked
    assert linked
    for name in linked:
        assert (smoke / "img" / name).stat().st_size > 1000, name
