"""The lift report: per arm, what visitors watched during the experiment, and the differences.

Inputs are the builder's own (watch events and catalog, read and validated by
:mod:`builder.sources`) and the experiment document. No log needs a visitor ID: every user who
watched during the window is placed in an arm by recomputing :func:`edgeshelf.experiment.assign`
from their ID, as the Worker did.

**What each arm showed.** The shelves are rebuilt by the builder's own computation
(:func:`builder.jobs.load_build`) on the events **before** the window: the profiles and segments
published when the experiment started. That is reproducible from the input alone and is not
influenced by what the arms did during the window (a build on the window's events would be).
It is an approximation: a builder that keeps running during the experiment moves shelves, and
a later report cannot see which version a visitor got. Users with no event before the window
are placed as the Worker places a visitor without a profile (country and language of their
first event, the ``default`` bucket). ``schema:vN`` arms read their segments from what is
published under ``vN`` (the caller passes them: the CLI reads them from KV).

**Metrics per arm** (users are the unit): users with a watch in the window; watches per user;
watch seconds per user (each watch capped like the ranking's ``WATCH_CAP``, so one stuck player
cannot dominate); the share of watches that went to a video the arm's shelf showed the user.
Each with a 95% interval, and its difference with the baseline arm (:mod:`builder.stats`).
**Sample-ratio mismatch**: users per arm (and exposures per arm, when logs are given) against
the weights; p < 0.001 is a warning that the arms are not comparable.
"""

# ruff: noqa: S608  # SQL is assembled from constants and quoted temporary paths; input values
# only reach DuckDB as table data.

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from builder import jobs
from builder.engines import DuckDBEngine
from builder.errors import ConfigError
from builder.ranking import WATCH_CAP, RankingOptions
from builder.reporting import Silent
from builder.shelves import SegmentShelves, Shelf, audience_from_event, shown_shelf
from builder.sources import load_inputs, named_events
from builder.stats import (
    Comparison,
    Estimate,
    mean_difference,
    mean_estimate,
    ratio_difference,
    ratio_estimate,
    sample_ratio_p,
)
from edgeshelf.experiment import Experiment, assign, treatment_schema

if TYPE_CHECKING:
    import duckdb
    from numpy.typing import NDArray

    from builder.exposures import ExposureCounts

__all__ = [
    "METRICS",
    "SRM_THRESHOLD",
    "ArmResult",
    "Report",
    "ReportSettings",
    "baseline_arm",
    "compute_report",
]

SRM_THRESHOLD: Final = 0.001
# (key, label, unit) of each metric, in the order they are shown.
METRICS: Final = (
    ("watches_per_user", "watches per user", ""),
    ("watch_seconds_per_user", "watch seconds per user", "s"),
    ("shelf_share", "share of watches from the shelf", "%"),
)


@dataclass(frozen=True)
class ReportSettings:
    """What to report on."""

    events: Path
    catalog: Path
    experiment: Experiment
    since: int | None = None
    baseline: str | None = None
    schema: str = "v3"
    ranking: RankingOptions = field(default_factory=RankingOptions)
    # Segments of schemas other than ``schema`` that ``schema:vN`` arms read.
    schema_shelves: SegmentShelves = field(default_factory=dict)
    now: int | None = None


@dataclass
class ArmResult:
    """One arm's figures."""

    name: str
    treatment: str
    weight: int
    expected_share: float
    users: int
    watches: int
    metrics: dict[str, Estimate]
    versus: dict[str, Comparison] | None  # None for the baseline
    exposures: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "treatment": self.treatment,
            "weight": self.weight,
            "expected_share": self.expected_share,
            "users": self.users,
            "watches": self.watches,
            "exposures": self.exposures,
        }
        for key, _, _ in METRICS:
            out[key] = self.metrics[key].as_dict()
        out["vs_baseline"] = (
            None if self.versus is None else {k: c.as_dict() for k, c in self.versus.items()}
        )
        return out


@dataclass
class Report:
    """The whole report; ``as_dict`` is the ``--json`` output."""

    experiment: Experiment
    since: int
    until: int | None
    baseline: str
    arms: list[ArmResult]
    srm_users_p: float | None
    srm_exposures_p: float | None
    exposures: ExposureCounts | None
    inputs: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    @property
    def srm_p(self) -> float | None:
        """The smaller of the two sample-ratio p-values (the one that decides)."""
        ps = [p for p in (self.srm_users_p, self.srm_exposures_p) if p is not None]
        return min(ps) if ps else None

    @property
    def srm(self) -> bool:
        return self.srm_p is not None and self.srm_p < SRM_THRESHOLD

    def arm(self, name: str) -> ArmResult:
        return next(a for a in self.arms if a.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": dict(self.experiment),
            "window": {"since": self.since, "until": self.until},
            "baseline": self.baseline,
            "arms": [a.as_dict() for a in self.arms],
            "srm_p": self.srm_p,
            "srm_users_p": self.srm_users_p,
            "srm_exposures_p": self.srm_exposures_p,
            "srm": self.srm,
            "srm_threshold": SRM_THRESHOLD,
            "exposures": None if self.exposures is None else self.exposures.as_dict(),
            "inputs": dict(self.inputs),
            "warnings": list(self.warnings),
        }


def baseline_arm(experiment: Experiment, requested: str | None = None) -> str:
    """``requested``, else the first ``control`` treatment, else an arm named control, else
    the first arm."""
    names = [arm["name"] for arm in experiment["arms"]]
    if requested is not None:
        if requested not in names:
            raise ConfigError(f"--baseline {requested!r} is not an arm ({', '.join(names)})")
        return requested
    for arm in experiment["arms"]:
        if arm["treatment"] == "control":
            return arm["name"]
    return "control" if "control" in names else names[0]


def _shelves(build_segments: dict[str, list[str]], settings: ReportSettings) -> SegmentShelves:
    shelves: SegmentShelves = dict(settings.schema_shelves)
    shelves[settings.schema] = build_segments
    for arm in settings.experiment["arms"]:
        wanted = treatment_schema(arm["treatment"])
        if wanted is not None and wanted not in shelves:
            raise ConfigError(
                f"arm {arm['name']} serves {arm['treatment']}: the report needs the segments "
                f"published under {wanted} (read from KV: configure the Cloudflare target)"
            )
    return shelves


def _window_start(settings: ReportSettings) -> int:
    if settings.since is not None:
        return settings.since
    started = settings.experiment.get("started_at")
    if started is None:
        raise ConfigError(
            f"experiment {settings.experiment['name']} records no started_at: give --since"
        )
    return started


def _pre_window_build(
    con: duckdb.DuckDBPyConnection, settings: ReportSettings, since: int, tmp: Path
) -> tuple[dict[str, list[str]], dict[str, tuple[str, str, str]], set[str]]:
    """Segments and the window users' profiles, built on the events before ``since``."""
    pre = tmp / "events-before-window.parquet"
    con.execute(
        "COPY (SELECT user_id, video_id, ts, country, lang, watch_seconds FROM events "
        f"WHERE ts < {int(since)}) TO '{str(pre).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)"
    )
    run = jobs.RunSettings(
        events=pre, catalog=settings.catalog, schema=settings.schema, ranking=settings.ranking
    )
    build = jobs.load_build(run, since, Silent())
    try:
        window_users = {
            str(r[0])
            for r in con.execute(
                f"SELECT DISTINCT user_id FROM events WHERE ts >= {int(since)}"
            ).fetchall()
        }
        profiles = {
            uid: (country, lang, bucket)
            for uid, country, lang, bucket, *_ in build.profiles()
            if uid in window_users
        }
        return build.segments, profiles, window_users
    finally:
        build.close()


def _assign_users(
    con: duckdb.DuckDBPyConnection,
    settings: ReportSettings,
    since: int,
    shelves: SegmentShelves,
    profiles: dict[str, tuple[str, str, str]],
) -> None:
    """Table ``user_arm(user_id, arm, shelf)`` and ``shelf_videos(shelf, video_id)``."""
    exp = settings.experiment
    index = {arm["name"]: i for i, arm in enumerate(exp["arms"])}
    first = con.execute(
        "SELECT user_id, arg_min(country, ts), arg_min(lang, ts) FROM events "
        f"WHERE ts >= {int(since)} GROUP BY user_id"
    ).fetchall()
    uids: list[str] = []
    arms: list[int] = []
    keys: list[str] = []
    used: dict[str, Shelf] = {}
    for uid, country, lang in first:
        arm = assign(exp, uid)
        audience = profiles.get(uid) or audience_from_event(country, lang)
        shelf = shown_shelf(arm["treatment"], audience, shelves, settings.schema)
        key = "" if shelf is None else f"{shelf.schema}:{shelf.segment}"
        if shelf is not None:
            used[key] = shelf
        uids.append(uid)
        arms.append(index[arm["name"]])
        keys.append(key)
    arm_rows = {
        "user_id": np.array(uids, dtype=object),
        "arm": np.array(arms, dtype=np.int16),
        "shelf": np.array(keys, dtype=object),
    }
    con.register("arm_rows", arm_rows)
    con.execute("CREATE OR REPLACE TABLE user_arm AS SELECT * FROM arm_rows")
    con.unregister("arm_rows")
    pairs = [(key, vid) for key, s in used.items() for vid in shelves[s.schema][s.segment]]
    shelf_rows = {
        "shelf": np.array([p[0] for p in pairs], dtype=object),
        "video_id": np.array([p[1] for p in pairs], dtype=object),
    }
    con.execute("CREATE OR REPLACE TABLE shelf_videos (shelf VARCHAR, video_id VARCHAR)")
    if pairs:
        con.register("shelf_rows", shelf_rows)
        con.execute("INSERT INTO shelf_videos SELECT DISTINCT shelf, video_id FROM shelf_rows")
        con.unregister("shelf_rows")


def _per_user(con: duckdb.DuckDBPyConnection, since: int) -> dict[str, NDArray[Any]]:
    return con.execute(
        f"""
        SELECT a.arm, count(*)::DOUBLE AS watches,
               sum(least(e.watch_seconds, {float(WATCH_CAP)}))::DOUBLE AS seconds,
               count(s.video_id)::DOUBLE AS on_shelf
        FROM events e
        JOIN user_arm a USING (user_id)
        LEFT JOIN shelf_videos s ON s.shelf = a.shelf AND s.video_id = e.video_id
        WHERE e.ts >= {int(since)}
        GROUP BY e.user_id, a.arm
        ORDER BY e.user_id  -- a fixed order: the bootstrap's seeded resamples index into it
        """
    ).fetchnumpy()


def _arm_metrics(
    rows: dict[str, NDArray[Any]], i: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    mask = rows["arm"] == i
    return (
        np.asarray(rows["watches"][mask], dtype=np.float64),
        np.asarray(rows["seconds"][mask], dtype=np.float64),
        np.asarray(rows["on_shelf"][mask], dtype=np.float64),
    )


def _estimates(
    w: NDArray[np.float64], s: NDArray[np.float64], on: NDArray[np.float64]
) -> dict[str, Estimate]:
    return {
        "watches_per_user": mean_estimate(w),
        "watch_seconds_per_user": mean_estimate(s),
        "shelf_share": ratio_estimate(on, w),
    }


def _versus(
    arm: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
    base: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
) -> dict[str, Comparison]:
    return {
        "watches_per_user": mean_difference(arm[0], base[0]),
        "watch_seconds_per_user": mean_difference(arm[1], base[1]),
        "shelf_share": ratio_difference(arm[2], arm[0], base[2], base[0]),
    }


def compute_report(settings: ReportSettings, exposures: ExposureCounts | None = None) -> Report:
    """Read the inputs, rebuild the shelves, place every window user in an arm, and compare."""
    exp = settings.experiment
    since = _window_start(settings)
    baseline = baseline_arm(exp, settings.baseline)
    now = settings.now if settings.now is not None else int(time.time())
    engine = DuckDBEngine()
    con = engine.con
    try:
        # The same input rules as run and plan; the validated events become one local table.
        inputs = load_inputs(engine, events=settings.events, catalog=settings.catalog, now=now)
        con.execute(f"CREATE TEMP TABLE events AS {engine.compile(named_events(inputs))}")
        with tempfile.TemporaryDirectory(prefix="edgeshelf-report-") as tmp:
            segments, profiles, window_users = _pre_window_build(con, settings, since, Path(tmp))
        shelves = _shelves(segments, settings)
        _assign_users(con, settings, since, shelves, profiles)
        rows = _per_user(con, since)
        counts = con.execute(
            f"SELECT count(*) FILTER (WHERE ts < {int(since)}), "
            f"count(*) FILTER (WHERE ts >= {int(since)}), max(ts) FROM events"
        ).fetchone()
    finally:
        engine.close()
    assert counts is not None
    total_weight = sum(arm["weight"] for arm in exp["arms"])
    per_arm = [_arm_metrics(rows, i) for i in range(len(exp["arms"]))]
    base_index = next(i for i, arm in enumerate(exp["arms"]) if arm["name"] == baseline)
    results = []
    for i, arm in enumerate(exp["arms"]):
        w, s, on = per_arm[i]
        results.append(
            ArmResult(
                name=arm["name"],
                treatment=arm["treatment"],
                weight=arm["weight"],
                expected_share=arm["weight"] / total_weight,
                users=len(w),
                watches=int(w.sum()),
                metrics=_estimates(w, s, on),
                versus=None if i == base_index else _versus(per_arm[i], per_arm[base_index]),
                exposures=None if exposures is None else exposures.arms.get(arm["name"], 0),
            )
        )
    weights = [arm["weight"] for arm in exp["arms"]]
    report = Report(
        experiment=exp,
        since=since,
        until=None if counts[2] is None or counts[1] == 0 else int(counts[2]),
        baseline=baseline,
        arms=results,
        srm_users_p=sample_ratio_p([r.users for r in results], weights),
        srm_exposures_p=None
        if exposures is None
        else sample_ratio_p([r.exposures or 0 for r in results], weights),
        exposures=exposures,
        inputs={
            "events": int(counts[0]) + int(counts[1]),
            "events_before_window": int(counts[0]),
            "events_in_window": int(counts[1]),
            "window_users": len(window_users),
            "window_users_without_profile": len(window_users) - len(profiles),
        },
    )
    report.warnings.extend(_warnings(report))
    return report


def _warnings(report: Report) -> list[str]:
    out: list[str] = []
    if report.srm:
        which = []
        if report.srm_users_p is not None and report.srm_users_p < SRM_THRESHOLD:
            which.append(f"users per arm p = {report.srm_users_p:.2g}")
        if report.srm_exposures_p is not None and report.srm_exposures_p < SRM_THRESHOLD:
            which.append(f"exposures per arm p = {report.srm_exposures_p:.2g}")
        out.append(
            "SAMPLE-RATIO MISMATCH (" + "; ".join(which) + "): the arms do not hold the shares "
            "their weights say, so their users are not comparable and the differences below "
            "cannot be trusted. Look for what drops or duplicates visitors in one arm."
        )
    if report.inputs["events_in_window"] == 0:
        out.append("no watch events in the window: nothing to compare")
    for arm in report.arms:
        if arm.weight == 0 and (arm.users or arm.exposures):
            out.append(
                f"arm {arm.name} has weight 0 but {arm.users} users and "
                f"{arm.exposures or 0} exposures (was the document changed during the window?)"
            )
        elif 0 < arm.users < 2:
            out.append(f"arm {arm.name} has {arm.users} user: no interval")
    exp = report.exposures
    if exp is not None:
        if exp.skipped:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(exp.skipped_by_reason.items()))
            out.append(f"{exp.skipped} log lines skipped ({reasons})")
        if exp.unknown_arm:
            out.append(f"{exp.unknown_arm} exposures name an arm this experiment does not have")
        if exp.total == 0:
            out.append(f"no exposures of {report.experiment['name']} in the logs")
    return out
