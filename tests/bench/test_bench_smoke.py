"""The edge benchmark still runs end to end: `scripts/bench edge --smoke` (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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
        timeout=240,
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
    normalised), and the naive peer's bodies do too, so the comparison holds."""
    data = json.loads((smoke / "bench-edge.json").read_text())
    assert data["parity"], "no parity checks ran"
    assert all(p["ok"] for p in data["parity"]), data["parity"]
    assert {p["visitor"] for p in data["parity"]} == {"known", "cold"}
    assert data["parity_naive"], "the naive peer's bodies were not checked"
    assert all(p["ok"] and p["body_only"] for p in data["parity_naive"]), data["parity_naive"]


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
    for needle in ("## Targets (issue 6)", "workerd 1.2", "Pyodide", "CPUs", "## Cold start"):
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
    linked = [line.split("(img/")[1].rstrip(")") for line in md.splitlines() if "](img/" in line]
    assert linked
    for name in linked:
        assert (smoke / "img" / name).stat().st_size > 1000, name
