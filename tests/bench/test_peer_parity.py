"""The JavaScript peers answer like edgeshelf's Worker from every shell source:
`node bench/peerparity.mjs` (the copy in KV, the origin, the Cache API, isolate memory, KV
errors reading the pointer)."""

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
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("peer-parity") / "parity.json"
    proc = subprocess.run(
        ["node", str(ROOT / "bench" / "peerparity.mjs"), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.exists(), f"bench/peerparity.mjs failed:\n{proc.stderr[-6000:]}"
    data: list[dict[str, Any]] = json.loads(out.read_text())["results"]
    return data


def test_every_shell_source_answered_alike(results: list[dict[str, Any]]) -> None:
    """For every configuration, scenario and request, edgeshelf showed what the scenario names and
    both peers answered (and cached) alike."""
    bad = [r for r in results if not r["ok"]]
    assert not bad, json.dumps(bad, indent=1)[:6000]


def test_every_source_and_configuration_was_walked(results: list[dict[str, Any]]) -> None:
    """The scenarios reached every shell source under each configuration, so parity covers them."""
    configs = {r["config"] for r in results}
    assert configs == {"memo", "no-memo", "no-memo-no-cache"}
    scenarios = {r["scenario"] for r in results}
    assert scenarios == {"copy", "plain", "nocopy", "nopointer", "badcopy", "kvfail", "kvfirst"}
    assert len(results) == len(configs) * len(scenarios) * 3
    sources = {(r["config"], r["source"]) for r in results}
    assert {("memo", "memory"), ("no-memo", "cache")} <= sources
    for config in configs:
        assert {(config, "kv-copy"), (config, "origin")} <= sources
