"""SIMULATED visitors in an experiment, whose watches respond to the shelf their arm shows.

For demos and tests of the lift report only: the effect is put in by construction, so the
report can be checked against a lift that is known. Nothing here describes real visitors.

After a sample's events (:mod:`builder.sample`) the experiment runs for ``days``, from its
``started_at`` or one second after the last event. Every user
of the sample is placed in an arm with :func:`edgeshelf.experiment.assign` and shown the shelf
their arm shows (:func:`builder.shelves.shown_shelf`, over the build of the events before the
window: the same reconstruction the report makes). With ``o`` the user's usual number of
watches over that many days (their sample events scaled from the sample's 30 days):

- **organic watches**: ``1 + Poisson(o)``, each a copy of one of the user's own sample watches
  (video and seconds): everyone comes back at least once, so every user is in the report;
- **shelf watches**: ``Poisson((1 + o) * r)`` videos from the shown shelf (top-heavy: position
  ``floor(len * u**2)``), with the seconds of one of the user's own watches. The response rate
  ``r`` is ``control_rate`` for ``control``, ``(1 + lift) * (1 + control_rate) - 1`` for
  ``personalized`` and ``schema:vN``, and 0 for ``none`` (or when no shelf is shown).

So a user's expected watches are ``(1 + o) * (1 + r)``: a personalized user watches
``1 + lift`` times what the same user would under ``control``, and the expected difference of
watches per user is ``mean(1 + o) * (r_arm - r_baseline)`` over all users (``true_difference``).
Which users land in which arm is itself a draw (a few heavy users more in one arm move its
mean), so ``simulation.json`` also records the expected difference **given the arms' actual
users**, ``mean over the arm of (1 + o) * (1 + r)`` minus the baseline's: what the report's
difference estimates for this very sample, up to the Poisson noise of the watches. A report
whose 95% interval misses it has placed users, windows or watches wrongly.
"""

# ruff: noqa: S608  # SQL over file paths this module writes, quoted by _quote()

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

import duckdb
import numpy as np

from builder import jobs
from builder.errors import ConfigError
from builder.ranking import RankingOptions
from builder.report import baseline_arm
from builder.reporting import Silent
from builder.sample import DEFAULT_END, WINDOW_DAYS
from builder.shelves import shown_shelf
from edgeshelf.experiment import Experiment, assign, parse_experiment

if TYPE_CHECKING:
    from pathlib import Path

    from numpy.typing import NDArray

    from builder.sample import SampleFiles

__all__ = ["CONTROL_RATE", "Simulation", "simulate_experiment"]

CONTROL_RATE: Final = 0.25
SIMULATION_FILE: Final = "simulation.json"


@dataclass(frozen=True)
class Simulation:
    """What was simulated, and the true effects the report should find."""

    experiment: str
    started_at: int
    days: int
    lift: float
    control_rate: float
    baseline: str
    response_rates: dict[str, float]
    expected_watches_per_user: dict[str, float]
    true_difference: dict[str, float]  # watches per user, arm minus baseline
    true_relative: dict[str, float]
    expected_difference_given_arms: dict[str, float]
    users: int
    window_events: int
    simulated: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "note": "SIMULATED visitors with a lift put in by construction; not real data",
            **asdict(self),
        }


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _rate(treatment: str, lift: float, control_rate: float) -> float:
    if treatment == "none":
        return 0.0
    if treatment == "control":
        return control_rate
    return (1.0 + lift) * (1.0 + control_rate) - 1.0


def _read_base(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, NDArray[Any]]:
    reader = (
        f"read_parquet({_quote(path)})"
        if path.name.endswith(".parquet")
        else f"read_csv({_quote(path)}, header = true)"
    )
    return con.execute(
        f"SELECT user_id::VARCHAR AS user_id, video_id::VARCHAR AS video_id, epoch(ts) AS ts, "
        f"watch_seconds::DOUBLE AS watch_seconds, country::VARCHAR AS country, "
        f"lang::VARCHAR AS lang FROM {reader} ORDER BY user_id, ts, video_id"
    ).fetchnumpy()


def simulate_experiment(
    files: SampleFiles,
    experiment: Experiment,
    *,
    lift: float,
    days: int = 7,
    seed: int = 1,
    control_rate: float = CONTROL_RATE,
    end: int = DEFAULT_END,
    schema: str = "v3",
    ranking: RankingOptions | None = None,
) -> Simulation:
    """Append ``days`` of simulated watches to ``files.events``; see the module.

    The window starts at the experiment's ``started_at``, or one second after the sample's last
    event; ``end`` only stands in for that event when the sample has none.
    """
    experiment = parse_experiment(experiment)
    if not (days >= 1 and lift > -1 and control_rate >= 0):
        raise ConfigError("days >= 1, lift > -1 and control_rate >= 0 required")
    con = duckdb.connect()
    try:
        base = _read_base(con, files.events)
        last = int(base["ts"].max()) if len(base["ts"]) else end
        start = experiment.get("started_at", last + 1)
        if start <= last:
            raise ConfigError(f"started_at {start} is not after the sample's last event ({last})")
        run = jobs.RunSettings(
            events=files.events,
            catalog=files.catalog,
            schema=schema,
            ranking=ranking or RankingOptions(),
        )
        build = jobs.load_build(run, start, Silent())
        try:
            profiles = [(uid, (c, lang, b)) for uid, c, lang, b, *_ in build.profiles()]
            segments = {schema: build.segments}
        finally:
            build.close()
        rng = np.random.default_rng([seed, 16])
        window, sim = _draw(base, profiles, segments, experiment, schema, rng, start, days, lift,
                            control_rate)  # fmt: skip
        _append(con, files.events, window)
    finally:
        con.close()
    (files.events.parent / SIMULATION_FILE).write_text(json.dumps(sim.as_dict(), indent=2) + "\n")
    return sim


def _draw(
    base: dict[str, NDArray[Any]],
    profiles: list[tuple[str, tuple[str, str, str]]],
    segments: dict[str, dict[str, list[str]]],
    experiment: Experiment,
    schema: str,
    rng: np.random.Generator,
    start: int,
    days: int,
    lift: float,
    control_rate: float,
) -> tuple[dict[str, NDArray[Any]], Simulation]:
    uids, first, counts = np.unique(base["user_id"], return_index=True, return_counts=True)
    position = {str(u): i for i, u in enumerate(uids)}
    rates = {a["name"]: _rate(a["treatment"], lift, control_rate) for a in experiment["arms"]}
    shelves: list[list[str]] = []
    shelf_index: dict[tuple[str, str], int] = {}
    users, rate, shelf_of, arm_of = [], [], [], []
    for uid, audience in profiles:
        arm = assign(experiment, uid)
        shelf = shown_shelf(arm["treatment"], audience, segments, schema)
        if shelf is None:
            shelf_of.append(-1)
        else:
            if shelf not in shelf_index:
                shelf_index[shelf] = len(shelves)
                shelves.append(segments[shelf.schema][shelf.segment])
            shelf_of.append(shelf_index[shelf])
        users.append(position[uid])
        rate.append(rates[arm["name"]] if shelf is not None else 0.0)
        arm_of.append(arm["name"])
    idx = np.array(users, dtype=np.int64)
    organic_rate = counts[idx] * days / WINDOW_DAYS
    n_org = 1 + rng.poisson(organic_rate)
    shelf_arr = np.array(shelf_of, dtype=np.int64)
    n_shelf = rng.poisson((1 + organic_rate) * np.array(rate))

    def own_watch(who: NDArray[np.int64]) -> NDArray[np.int64]:
        offset: NDArray[np.int64] = (rng.random(len(who)) * counts[who]).astype(np.int64)
        return first[who] + offset

    org_user = np.repeat(idx, n_org)
    org_pick = own_watch(org_user)
    sh_slot = np.repeat(np.arange(len(idx)), n_shelf)
    sh_user = idx[sh_slot]
    flat = np.array([v for s in shelves for v in s], dtype=object)
    offsets = np.cumsum([0] + [len(s) for s in shelves])[:-1].astype(np.int64)
    lengths = np.array([len(s) for s in shelves], dtype=np.int64)
    which = shelf_arr[sh_slot]
    pos = (lengths[which] * rng.random(len(which)) ** 2).astype(np.int64) if len(which) else which
    sh_video = flat[offsets[which] + pos] if len(which) else np.array([], dtype=object)
    all_users = np.concatenate([org_user, sh_user])
    last = first[all_users] + counts[all_users] - 1  # the user's latest country and language
    window = {
        "user_id": uids[all_users].astype(object),
        "video_id": np.concatenate([base["video_id"][org_pick], sh_video]).astype(object),
        "ts": start + np.floor(rng.random(len(all_users)) * days * 86_400).astype(np.int64),
        "country": base["country"][last].astype(object),
        "lang": base["lang"][last].astype(object),
        "watch_seconds": np.concatenate(
            [base["watch_seconds"][org_pick], base["watch_seconds"][own_watch(sh_user)]]
        ).astype(np.int64),
    }
    baseline = baseline_arm(experiment)
    mean_o = float(np.mean(1 + organic_rate)) if len(idx) else 0.0
    expected = {name: mean_o * (1 + r) for name, r in rates.items()}
    per_user = (1 + organic_rate) * (1 + np.array(rate))
    arm_names = np.array(arm_of, dtype=object)
    given = {
        name: float(np.mean(per_user[arm_names == name])) if np.any(arm_names == name) else 0.0
        for name in rates
    }
    sim = Simulation(
        experiment=experiment["name"],
        started_at=start,
        days=days,
        lift=lift,
        control_rate=control_rate,
        baseline=baseline,
        response_rates=rates,
        expected_watches_per_user=expected,
        true_difference={n: expected[n] - expected[baseline] for n in rates if n != baseline},
        true_relative={
            n: (1 + rates[n]) / (1 + rates[baseline]) - 1 for n in rates if n != baseline
        },
        expected_difference_given_arms={
            n: given[n] - given[baseline] for n in rates if n != baseline
        },
        users=len(idx),
        window_events=len(all_users),
    )
    return window, sim


def _append(con: duckdb.DuckDBPyConnection, events: Path, window: dict[str, NDArray[Any]]) -> None:
    """Add the window's rows to ``events`` in its own format (written whole, then renamed)."""
    if events.name.endswith(".parquet"):
        con.register("window_rows", window)
        tmp = events.with_name(events.name + ".tmp")
        con.execute(
            f"COPY (SELECT user_id, video_id, ts, country, lang, watch_seconds "
            f"FROM read_parquet({_quote(events)}) UNION ALL "
            f"SELECT user_id, video_id, make_timestamp(ts * 1000000) AS ts, country, lang, "
            f"watch_seconds::INTEGER FROM window_rows ORDER BY ts) "
            f"TO {_quote(tmp)} (FORMAT parquet, COMPRESSION zstd)"
        )
        con.unregister("window_rows")
        os.replace(tmp, events)
        return
    with events.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")  # as DuckDB wrote the rest
        for i in np.argsort(window["ts"], kind="stable"):
            when = np.datetime64(int(window["ts"][i]), "s").astype(str) + "Z"
            writer.writerow(
                [window["user_id"][i], window["video_id"][i], when, window["country"][i],
                 window["lang"][i], int(window["watch_seconds"][i])]
            )  # fmt: skip
