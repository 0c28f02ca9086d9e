"""docs/reliability.md is rendered from the recorded rows: figures computed, never typed."""

from __future__ import annotations

import json
from pathlib import Path

import reliability_report as report

DOCS = Path(__file__).resolve().parents[2] / "docs"
ENV = {
    "date": "2026-01-01 00:00 UTC",
    "commit": "abc1234",
    "machine": "test machine",
    "os": "test os",
    "versions": {"python": "3.11"},
}


def _row(area: str, five_xx: int, keys_lost: int | str, scenario: str = "s") -> dict[str, object]:
    return {"area": area, "scenario": scenario, "load": "1 request", "faults": "f",
            "five_xx": five_xx, "keys_lost": keys_lost, "notes": "", "test": "t"}  # fmt: skip


def test_summary_line_is_computed_from_the_rows():
    """5xx and keys lost are summed over the rows; n/a rows count as scenarios, not keys."""
    rows = [_row("worker", 2, "n/a"), _row("builder", 0, 3), _row("security", 0, "n/a")]
    page = report.render(rows, ENV, None, None)
    assert "**2 5xx and 3 keys lost across 3 scenarios**" in page
    assert report.summary(rows) == {
        "scenarios": 3, "five_xx": 2, "keys_lost": 3, "scenarios_with_keys": 1,
    }  # fmt: skip


def test_cells_cannot_break_the_table():
    """A pipe or newline inside a recorded value is escaped, so every row keeps six cells."""
    page = report.render([_row("builder", 0, 0, scenario="a | b\nc")], ENV, None, None)
    line = next(ln for ln in page.splitlines() if ln.startswith("| a"))
    assert line.startswith("| a \\| b c |")
    assert line.replace("\\|", "").count("|") == 7


def test_failed_run_says_so():
    """A run whose pytest failed is marked as such on the page."""
    tests = report.Tests(total=3, failures=1, errors=0, skipped=0, seconds=60, fuzz_examples=None)
    page = report.render([_row("worker", 0, "n/a")], ENV, tests, 1)
    assert "**FAILURES**" in page
    assert "The run exited 1" in page


def test_committed_page_matches_its_json():
    """docs/reliability.md is exactly what its docs/reliability.json renders to (no hand edits)."""
    data = json.loads((DOCS / "reliability.json").read_text())
    assert (DOCS / "reliability.md").read_text() == report.render_json(data)
    assert data["exit_code"] == 0
    assert data["summary"]["scenarios"] == len(data["rows"]) > 30
