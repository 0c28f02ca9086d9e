"""The lift report's numbers on a small hand-computed data set, its sample-ratio checks, and
its pages."""

from __future__ import annotations

import json
import math
import random
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console
from scipy import stats as sp

from builder.cli import main
from builder.errors import ConfigError
from builder.exposures import ExposureCounts
from builder.ranking import WATCH_CAP, RankingOptions
from builder.report import ReportSettings, baseline_arm, compute_report
from builder.report_render import print_report, write_page
from builder.stats import mean_difference, mean_estimate, ratio_estimate, sample_ratio_p
from edgeshelf.experiment import Experiment, assign
from tests.builder.helpers import CATALOG_HEADER, EVENT_HEADER, T0, write_csv

if TYPE_CHECKING:
    from pathlib import Path

SINCE = T0 + 86_400
EXP: Experiment = {
    "name": "hand",
    "salt": "h1",
    "started_at": SINCE,
    "arms": [
        {"name": "ctl", "weight": 60, "treatment": "control"},
        {"name": "off", "weight": 40, "treatment": "none"},
    ],
}


def uids_in(experiment: Experiment, counts: dict[str, int], seed: int = 5) -> dict[str, list[str]]:
    """Visitor IDs (version-4 UUIDs) that the experiment assigns to each arm, ``counts`` each."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {name: [] for name in counts}
    while any(len(out[n]) < k for n, k in counts.items()):
        uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        arm = assign(experiment, uid)["name"]
        if arm in out and len(out[arm]) < counts[arm]:
            out[arm].append(uid)
    return out


def catalog(tmp_path: Path) -> Path:
    rows = [[f"v{i}", "music", "en", T0 - 86_400 * i, f"Video {i}"] for i in range(6)]
    return write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, rows)


@pytest.fixture
def hand(tmp_path: Path) -> dict[str, Any]:
    """Five users in two arms; before the window one user makes v0, v1 the global top-2."""
    users = uids_in(EXP, {"ctl": 3, "off": 2})
    a1, a2, a3 = users["ctl"]
    b1, b2 = users["off"]
    before = SINCE - 3_600
    rows = [
        [a1, "v0", before, "us", "en", 1000],
        [a1, "v1", before, "us", "en", 500],
        # The window: (user, video, seconds); the global shelf shows v0 and v1.
        [a1, "v0", SINCE + 10, "us", "en", 100],
        [a1, "v2", SINCE + 20, "us", "en", 50],
        [a2, "v1", SINCE + 30, "gb", "en", 30],
        [a3, "v2", SINCE + 40, "us", "en", 10],
        [a3, "v3", SINCE + 50, "us", "en", 20_000],  # capped at WATCH_CAP
        [a3, "v0", SINCE + 60, "us", "en", 40],
        [b1, "v0", SINCE + 70, "de", "de", 60],
        [b1, "v1", SINCE + 80, "de", "de", 60],
        [b2, "v2", SINCE + 90, "fr", "fr", 5],
    ]
    events = write_csv(tmp_path / "events.csv", EVENT_HEADER, rows)
    return {"events": events, "catalog": catalog(tmp_path)}


def settings(data: dict[str, Any], **kw: Any) -> ReportSettings:
    return ReportSettings(
        events=data["events"],
        catalog=data["catalog"],
        experiment=kw.pop("experiment", EXP),
        ranking=RankingOptions(top_n=2, min_segment_size=100),
        now=SINCE + 86_400,
        **kw,
    )


def test_the_report_matches_the_hand_computation(hand: dict[str, Any]):
    """Users, watches, capped seconds and shelf shares per arm are what the data says by hand."""
    report = compute_report(settings(hand))
    ctl, off = report.arm("ctl"), report.arm("off")
    assert (ctl.users, ctl.watches, off.users, off.watches) == (3, 6, 2, 3)
    assert report.baseline == "ctl"
    assert ctl.versus is None
    # watches per user: ctl [2, 1, 3], off [2, 1]
    w = ctl.metrics["watches_per_user"]
    half = sp.t.ppf(0.975, 2) * 1 / math.sqrt(3)  # sd([2, 1, 3]) = 1
    assert w.value == pytest.approx(2.0)
    assert w.low == pytest.approx(2 - half)
    assert w.high == pytest.approx(2 + half)
    assert off.metrics["watches_per_user"].value == pytest.approx(1.5)
    # seconds per user: ctl [150, 30, 10 + cap + 40], off [120, 5]
    assert ctl.metrics["watch_seconds_per_user"].value == pytest.approx(
        (150 + 30 + 50 + WATCH_CAP) / 3
    )
    assert off.metrics["watch_seconds_per_user"].value == pytest.approx(62.5)
    # shelf share: ctl saw {v0, v1} -> 3 of 6 watches; off saw nothing
    assert ctl.metrics["shelf_share"].value == pytest.approx(0.5)
    s = off.metrics["shelf_share"]
    assert (s.value, s.low, s.high) == (0.0, 0.0, 0.0)
    # off - ctl, Welch: diff -0.5, se^2 = 0.5/2 + 1/3
    d = off.versus["watches_per_user"] if off.versus else None
    assert d is not None
    se2 = 0.5 / 2 + 1 / 3
    df = se2**2 / ((0.5 / 2) ** 2 / 1 + (1 / 3) ** 2 / 2)
    half = sp.t.ppf(0.975, df) * math.sqrt(se2)
    assert d.diff == pytest.approx(-0.5)
    assert d.low == pytest.approx(-0.5 - half)
    assert d.high == pytest.approx(-0.5 + half)
    assert d.p_value == pytest.approx(2 * sp.t.sf(0.5 / math.sqrt(se2), df))
    assert d.relative == pytest.approx(-0.25)
    share = off.versus["shelf_share"] if off.versus else None
    assert share is not None
    assert share.diff == pytest.approx(-0.5)
    assert share.low is not None
    assert share.high is not None
    assert share.low <= -0.5 <= share.high
    # 3 and 2 users against 60/40 is exactly the expected split
    assert report.srm_users_p == pytest.approx(1.0)
    assert not report.srm
    assert report.inputs == {
        "events": 11,
        "events_before_window": 2,
        "events_in_window": 9,
        "window_users": 5,
        "window_users_without_profile": 4,
    }
    assert report.until == SINCE + 90


# c2 puts two users in "pers" and a gb and a de user in "canary"; c5 two us users in "canary".
@pytest.mark.parametrize("salt", ["c2", "c5"])
def test_personalized_and_schema_arms_read_the_fallback_chain(hand: dict[str, Any], salt: str):
    """A personalized arm shows the chain's first non-empty segment; a schema arm that schema's."""
    exp: Experiment = {
        "name": "chain",
        "salt": salt,
        "started_at": SINCE,
        "arms": [
            {"name": "ctl", "weight": 1, "treatment": "control"},
            {"name": "pers", "weight": 1, "treatment": "personalized"},
            {"name": "canary", "weight": 1, "treatment": "schema:v9"},
        ],
    }
    # v9 shows v2 and v3 to everyone in us-en (their exact segment does not exist in v9, their
    # language default does); the others fall back to v9's global, which shows v5 only.
    v9 = {"us-en-default": ["v2", "v3"], "global": ["v5"]}
    report = compute_report(settings(hand, experiment=exp, schema_shelves={"v9": v9}))
    by_user: dict[str, tuple[str, float]] = {}
    for uid, video, *_ in _window_rows(hand["events"]):
        by_user.setdefault(uid, (assign(exp, uid)["name"], 0.0))
        arm, on = by_user[uid]
        country = _first_country(hand["events"], uid)
        shown = {
            "ctl": {"v0", "v1"},
            "pers": {"v0", "v1"},  # the language default: global scores, so v0 and v1 too
            "canary": {"v2", "v3"} if country == "us" else {"v5"},
        }[arm]
        by_user[uid] = (arm, on + (video in shown))
    assert sum(a.users for a in report.arms) == 5
    for name in ("ctl", "pers", "canary"):
        result = report.arm(name)
        on = sum(v for a, v in by_user.values() if a == name)
        assert result.users == sum(1 for a, _ in by_user.values() if a == name)
        if result.watches:
            assert result.metrics["shelf_share"].value == pytest.approx(on / result.watches)


def _window_rows(path: Path) -> list[list[str]]:
    import csv  # noqa: PLC0415

    with path.open() as fh:
        rows = list(csv.reader(fh))[1:]
    return [r for r in rows if int(r[2]) >= SINCE]


def _first_country(path: Path, uid: str) -> str:
    return min((int(r[2]), r[3]) for r in _window_rows(path) if r[0] == uid)[1]


def test_a_schema_arm_without_its_segments_is_a_clear_error(hand: dict[str, Any]):
    """A schema:vN arm needs vN's published segments; without them the report says so."""
    exp: Experiment = {**EXP, "arms": [*EXP["arms"], {"name": "c", "weight": 1,
                       "treatment": "schema:v9"}]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"schema:v9.*segments published under v9"):
        compute_report(settings(hand, experiment=exp))


def test_the_window_needs_a_start(hand: dict[str, Any]):
    """Without --since and without a recorded started_at there is no window: refused."""
    exp: Experiment = {"name": "x", "salt": "s", "arms": EXP["arms"]}
    with pytest.raises(ConfigError, match="started_at"):
        compute_report(settings(hand, experiment=exp))
    assert compute_report(settings(hand, experiment=exp, since=SINCE)).since == SINCE


def test_the_baseline_is_control_else_the_first_arm():
    """The baseline is the control treatment's arm, else an arm named control, else the first."""
    assert baseline_arm(EXP) == "ctl"
    two: Experiment = {"name": "x", "salt": "s", "arms": [
        {"name": "a", "weight": 1, "treatment": "none"},
        {"name": "control", "weight": 1, "treatment": "personalized"},
    ]}  # fmt: skip
    assert baseline_arm(two) == "control"
    assert baseline_arm({**two, "arms": two["arms"][:1]}) == "a"
    with pytest.raises(ConfigError, match="not an arm"):
        baseline_arm(two, "zzz")


# --- sample-ratio mismatch -----------------------------------------------------------------


def population(tmp_path: Path, keep_off: float) -> dict[str, Any]:
    """400 users split 50/50; ``keep_off`` of the second arm's users have watch events."""
    exp: Experiment = {**EXP, "arms": [{**EXP["arms"][0], "weight": 50},
                                       {**EXP["arms"][1], "weight": 50}]}  # fmt: skip
    users = uids_in(exp, {"ctl": 200, "off": 200}, seed=11)
    kept = users["ctl"] + users["off"][: int(200 * keep_off)]
    rows = [[uid, f"v{i % 6}", SINCE + i, "us", "en", 60] for i, uid in enumerate(kept)]
    events = write_csv(tmp_path / f"events-{keep_off}.csv", EVENT_HEADER, rows)
    return {"events": events, "catalog": catalog(tmp_path), "experiment": exp}


def test_srm_is_detected_on_a_skewed_input_and_warned_first(tmp_path: Path):
    """Half of one arm's users missing from the events is a mismatch: srm true, warning first."""
    data = population(tmp_path, keep_off=0.5)
    report = compute_report(settings(data, experiment=data["experiment"]))
    assert report.srm_users_p is not None
    assert report.srm_users_p < 0.001
    assert report.srm
    assert report.as_dict()["srm"] is True
    assert report.warnings[0].startswith("SAMPLE-RATIO MISMATCH")
    console = Console(record=True, width=120)
    print_report(report, console)
    assert console.export_text().lstrip().startswith("warning: SAMPLE-RATIO MISMATCH")


def test_no_srm_on_a_fair_input(tmp_path: Path):
    """Every user of both arms present: the split matches the weights, no warning."""
    data = population(tmp_path, keep_off=1.0)
    report = compute_report(settings(data, experiment=data["experiment"]))
    assert report.srm_users_p == pytest.approx(1.0)
    assert not report.srm
    assert not any(w.startswith("SAMPLE-RATIO") for w in report.warnings)


def test_srm_in_exposures_alone_is_detected(tmp_path: Path):
    """Fair users but exposures skewed 70/30 against 50/50 weights: srm true from the logs."""
    data = population(tmp_path, keep_off=1.0)
    exp = data["experiment"]
    exposures = ExposureCounts(exp["name"], {"ctl": 700, "off": 300})
    report = compute_report(settings(data, experiment=exp), exposures)
    assert report.srm_users_p == pytest.approx(1.0)
    assert report.srm_exposures_p is not None
    assert report.srm_exposures_p < 0.001
    assert report.srm
    assert report.srm_p == report.srm_exposures_p
    assert report.arm("ctl").exposures == 700


def test_sample_ratio_p_against_scipy_and_edge_cases():
    """The chi-square p-value is scipy's; zero-weight arms and empty counts are left out."""
    skewed = sample_ratio_p([900, 100], [50, 50])
    assert skewed is not None
    assert skewed < 1e-100
    assert sample_ratio_p([505, 495], [50, 50]) == pytest.approx(
        sp.chisquare([505, 495], [500, 500]).pvalue
    )
    assert sample_ratio_p([0, 0], [1, 1]) is None
    assert sample_ratio_p([10, 0], [1, 0]) is None
    assert sample_ratio_p([90, 10, 0], [9, 1, 0]) == pytest.approx(1.0)


def test_statistics_are_undefined_rather_than_invented():
    """No interval is invented for empty or one-user arms; constant data has an exact one."""
    empty = np.array([], dtype=np.float64)
    one = np.array([3.0])
    assert mean_estimate(empty).value is None
    assert (mean_estimate(one).value, mean_estimate(one).low) == (3.0, None)
    const = mean_estimate(np.array([2.0, 2.0, 2.0]))
    assert (const.low, const.high) == (2.0, 2.0)
    same = mean_difference(np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    assert (same.diff, same.p_value) == (0.0, 1.0)
    assert ratio_estimate(empty, empty).value is None
    assert json.dumps(mean_difference(one, empty).as_dict())  # no NaN in the JSON


# --- output ------------------------------------------------------------------------------------


def test_pages_hold_a_plot_per_metric(hand: dict[str, Any], tmp_path: Path):
    """The HTML page embeds three plots; the Markdown page links three PNG files beside it."""
    report = compute_report(settings(hand))
    (html_path,) = write_page(report, tmp_path / "out" / "report.html")
    text = html_path.read_text()
    assert text.count('src="data:image/png;base64,') == 3
    assert "watches per user" in text
    assert "hand" in text
    written = write_page(report, tmp_path / "out" / "report.md")
    md = written[0].read_text()
    assert len(written) == 4
    for png in written[1:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png.name})" in md
    with pytest.raises(ValueError, match=r"html or \.md"):
        write_page(report, tmp_path / "report.pdf")


def test_cli_report_json_and_table(hand: dict[str, Any], tmp_path: Path):
    """`report --json` carries experiment, arms, srm_p and srm; the table names every arm."""
    doc = tmp_path / "exp.json"
    doc.write_text(json.dumps(EXP))
    args = ["report", "--events", str(hand["events"]), "--catalog", str(hand["catalog"]),
            "--experiment", str(doc), "--top-n", "2", "--min-segment-size", "100"]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--json", "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["experiment"]["name"] == "hand"
    assert [a["name"] for a in data["arms"]] == ["ctl", "off"]
    assert data["arms"][0]["users"] == 3
    assert data["srm"] is False
    assert data["srm_p"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "r.json").read_text()) == data
    table = CliRunner().invoke(main, [*args, "--since", "2025-05-24T11:33:20Z"])
    assert table.exit_code == 0, table.output
    assert "ctl" in table.stdout
    assert "off" in table.stdout
    assert "95% CI" in table.stdout
    bad = CliRunner().invoke(main, [*args, "--since", "last tuesday"])
    assert bad.exit_code == 2
    assert "--since" in bad.stderr
