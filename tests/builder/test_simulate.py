"""Simulated experiment windows: labelled, appended after the sample, with a lift the report
finds inside its interval."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

import duckdb
import pytest

from builder.errors import ConfigError
from builder.report import ReportSettings, compute_report
from builder.sample import DEFAULT_END, write_sample
from builder.simulate import simulate_experiment
from tests.builder.helpers import EXAMPLE_EXPERIMENT

if TYPE_CHECKING:
    from pathlib import Path

    from edgeshelf.experiment import Experiment

EXP: Experiment = {**EXAMPLE_EXPERIMENT, "name": "sim"}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_simulated_lift_is_inside_the_reports_interval(
    tmp_path: Path, fmt: Literal["parquet", "csv"]
):
    """Window events follow the sample, labelled SIMULATED; the report finds the lift put in."""
    files = write_sample(tmp_path, users=1500, videos=400, events=30_000, seed=4, fmt=fmt)
    sim = simulate_experiment(files, EXP, lift=0.3, days=5, seed=4)
    recorded = json.loads((tmp_path / "simulation.json").read_text())
    assert recorded["simulated"] is True
    assert "SIMULATED" in recorded["note"]
    assert recorded["true_relative"]["personalized"] == pytest.approx(0.3)
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    con = duckdb.connect()
    row = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE epoch(ts) >= {sim.started_at}), "  # noqa: S608
        f"min(epoch(ts)) FILTER (WHERE epoch(ts) >= {sim.started_at}), max(epoch(ts)) "
        f"FROM {reader}('{files.events}')"
    ).fetchone()
    assert row is not None
    total, after, first, last = row
    assert total == 30_000 + sim.window_events
    assert after == sim.window_events
    assert DEFAULT_END < sim.started_at <= first
    assert last < sim.started_at + 5 * 86_400
    report = compute_report(
        ReportSettings(
            events=files.events, catalog=files.catalog, experiment=EXP, since=sim.started_at
        )
    )
    assert report.arm("personalized").users + report.arm("control").users == sim.users
    diff = report.arm("personalized").versus["watches_per_user"]  # type: ignore[index]
    truth = sim.expected_difference_given_arms["personalized"]
    assert diff.low is not None
    assert diff.high is not None
    assert diff.low <= truth <= diff.high
    assert diff.p_value is not None
    assert diff.p_value < 0.05
    assert not report.srm


def test_a_start_before_the_samples_end_is_refused(tmp_path: Path):
    """The window cannot overlap the sample's own events."""
    files = write_sample(tmp_path, users=50, videos=30, events=500)
    with pytest.raises(ConfigError, match="not after the sample's last event"):
        simulate_experiment(files, {**EXP, "started_at": DEFAULT_END - 10 * 86_400}, lift=0.1)
