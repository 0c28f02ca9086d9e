"""scripts/demo --once, end to end: sample data, builder, local stack, visitors, metrics, and the
experiment: set, exposures, the lift report against the simulated lift, stop."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from localstack import ROOT, free_port

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.runtime


def test_demo_once_shows_every_visitor_case_and_all_checks_hold(tmp_path: Path) -> None:
    """`demo.py --once` exits 0, having shown each visitor case, the metrics and the lift report."""
    ports = [str(free_port()) for _ in range(3)]
    cmd = [sys.executable, str(ROOT / "scripts" / "local" / "demo.py"), "--once"]
    cmd += ["--port", ports[0], "--api-port", ports[1], "--origin-port", ports[2]]
    cmd += ["--workdir", str(tmp_path), "--users", "3000", "--events", "60000"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=540, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for shown in (
        "new visitor · US · en",
        "same visitor, returning",
        "known user ·",
        "Sec-GPC: 1",
        "lang-default",
        "global",
        "KV miss rate",
        "fallback rate",
        "SIMULATED",
        "lift report",
        "95% CI",
        "inside the interval",
        "the simulated lift",
        "experiment stop removes exp:active",
        "checks held",
    ):
        assert shown in out, f"{shown!r} missing from the demo's output:\n{out}"
    assert "✗" not in out
