"""Profiles, segment membership and the documented score, on small hand-made inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from builder.engines import DuckDBEngine
from builder.ranking import (
    _PLACES_PER_COUNTRY,
    HALF_LIFE,
    Build,
    RankingOptions,
    _letters_no,
    compute,
)
from builder.sources import load_inputs
from edgeshelf.schema import GLOBAL_SEGMENT, MAX_SEGMENT_IDS
from tests.builder.helpers import CATALOG_HEADER, EVENT_HEADER, T0, UID, UID2, UID3, write_csv

if TYPE_CHECKING:
    from pathlib import Path

    from builder.sample import SampleFiles

AS_OF = T0


def _uid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-000000000000"


def _build(
    tmp_path: Path,
    events: list[list[object]],
    catalog: list[list[object]],
    **options: float,
) -> Build:
    ev = write_csv(tmp_path / "events.csv", EVENT_HEADER, events)
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog)
    engine = DuckDBEngine()
    inputs = load_inputs(engine, events=ev, catalog=cat, now=AS_OF + 10)
    assert inputs.stats.max_ts is not None
    as_of = min(inputs.stats.max_ts, AS_OF)
    return compute(engine, inputs, as_of=as_of, options=RankingOptions(**options))  # type: ignore[arg-type]


CATALOG = [
    ["m1", "Music", "en", T0 - 100, ""],
    ["m2", "music", "de", T0 - 200, ""],
    ["g1", "gaming", "en", T0 - 300, ""],
    ["n1", "news", "en", T0 - 400, ""],
    ["s1", "shorts", "en", T0 - 500, ""],
]


def _profiles(build: Build) -> dict[str, tuple[object, ...]]:
    return {row[0]: row[1:] for row in build.profiles()}


def test_profile_takes_latest_country_and_top_category(tmp_path: Path) -> None:
    """Country/lang come from the newest event; the bucket from the most decayed watch time."""
    events = [
        [UID, "g1", T0 - 5 * 86_400, "DE", "de-DE", 3000],
        [UID, "m1", T0 - 100, "us", "en-US", 400],
        [UID, "n1", T0 - 50, "us", "en", 100],
    ]
    build = _build(tmp_path, events, CATALOG, min_segment_size=1)
    country, lang, bucket, recent, last_seen = _profiles(build)[UID]
    assert (country, lang, last_seen) == ("us", "en", T0 - 50)
    # 3000 s five days ago decays to ~1830 s, still more than 400 s of music today.
    assert bucket == "gaming"
    assert recent == ["news", "music", "gaming"]


def test_recency_decay_can_overturn_raw_watch_time(tmp_path: Path) -> None:
    """Watch time four half-lives old weighs a sixteenth: 1000 s of old gaming < 200 s of news."""
    events = [
        [UID, "g1", T0 - 4 * HALF_LIFE, "us", "en", 1000],
        [UID, "n1", T0 - 10, "us", "en", 200],
        [UID, "n1", T0, "us", "en", 200],
    ]
    build = _build(tmp_path, events, CATALOG, min_segment_size=1)
    assert _profiles(build)[UID][2] == "news"


def test_thin_evidence_gives_the_default_bucket(tmp_path: Path) -> None:
    """Fewer than three events, or under 300 decayed seconds, leaves the user in ``default``."""
    events = [
        [UID, "g1", T0, "us", "en", 5000],
        [UID, "g1", T0 - 1, "us", "en", 5000],
        [UID2, "g1", T0, "us", "en", 50],
        [UID2, "g1", T0 - 1, "us", "en", 50],
        [UID2, "g1", T0 - 2, "us", "en", 50],
    ]
    build = _build(tmp_path, events, CATALOG, min_segment_size=1)
    profiles = _profiles(build)
    assert profiles[UID][2] == "default"
    assert profiles[UID2][2] == "default"


def test_small_groups_fold_into_defaults(tmp_path: Path) -> None:
    """With K=3, a 3-user bucket is a segment, a 1-user bucket is not; both langs get defaults."""
    events = []
    for i in range(3):
        events += [[_uid(i), "g1", T0 - j, "us", "en", 400] for j in range(3)]
    events += [[_uid(9), "n1", T0 - j, "us", "en", 400] for j in range(3)]
    events += [[_uid(20), "m2", T0 - j, "de", "de", 400] for j in range(3)]
    build = _build(tmp_path, events, CATALOG, min_segment_size=3)
    assert set(build.segments) == {"us-en-gaming", "us-en-default", "de-de-default", "global"}
    assert build.segment_sizes["us-en-gaming"] == 3
    assert build.segment_sizes["us-en-default"] == 4
    # The user folded out of us-en-news still has their own bucket in the profile: the
    # Worker's fallback chain reads us-en-default for them.
    assert _profiles(build)[_uid(9)][2] == "news"


def test_small_language_group_default_comes_from_global_scores(tmp_path: Path) -> None:
    """A language default below K never reflects its own members' watches, only global ones."""
    events = []
    for i in range(4):
        events += [[_uid(i), "n1", T0 - j, "us", "en", 900] for j in range(3)]
    # One German user who watched only g1: their group is below K=4.
    events += [[_uid(30), "g1", T0 - j, "de", "de", 50] for j in range(3)]
    build = _build(tmp_path, events, CATALOG, min_segment_size=4, min_video_users=1)
    global_ids = build.segments[GLOBAL_SEGMENT]
    assert global_ids[0] == "n1"
    # m2 is German but unwatched; the German default ranks by global scores, so n1 leads
    # (g1's small score is from the lone member but also global), never anything private.
    assert build.segments["de-de-default"][:2] == ["n1", "g1"]


def test_language_match_boosts_score(tmp_path: Path) -> None:
    """In a German segment a German video beats an English one scoring under twice as much."""
    users = [_uid(i) for i in range(3)]
    events = []
    for u in users:
        events += [[u, "m1", T0 - 1, "de", "de", 300], [u, "m2", T0 - 2, "de", "de", 200]]
        events += [[u, "m1", T0 - 3, "de", "de", 10]]
    build = _build(tmp_path, events, CATALOG, min_segment_size=3, min_video_users=1)
    assert build.segments["de-de-music"][:2] == ["m2", "m1"]
    assert build.segments[GLOBAL_SEGMENT][:2] == ["m1", "m2"]


def test_top_n_caps_and_orders_without_duplicates(tmp_path: Path) -> None:
    """A segment lists at most N distinct videos, best first, ties by id."""
    catalog = [[f"v{i:03d}", "music", "en", T0 - i, ""] for i in range(80)]
    events = [[UID3, f"v{i:03d}", T0 - i, "us", "en", 100 + i] for i in range(80)]
    events += [[UID3, "v079", T0 - 5, "us", "en", 1]]
    build = _build(tmp_path, events, catalog, min_segment_size=1, min_video_users=1)
    ids = build.segments["us-en-music"]
    assert len(ids) == MAX_SEGMENT_IDS == len(set(ids))
    assert ids[0] == "v079"


def test_global_is_padded_with_newest_videos_when_watches_are_few(tmp_path: Path) -> None:
    """The global shelf is always full when the catalog allows: newest videos fill it."""
    events = [[UID, "s1", T0, "us", "en", 30]]
    build = _build(tmp_path, events, CATALOG, min_segment_size=1, top_n=4, min_video_users=1)
    assert build.segments[GLOBAL_SEGMENT] == ["s1", "m1", "m2", "g1"]


def _k_anonymity_events() -> list[list[object]]:
    """Six German music fans who all watch m1 and m2; one of them also binges n1 for hours."""
    events: list[list[object]] = []
    for i in range(6):
        events += [[_uid(i), "m1", T0 - 10 - i, "de", "de", 300]]
        events += [[_uid(i), "m2", T0 - 20 - i, "de", "de", 250]]
        events += [[_uid(i), "m1", T0 - 30 - i, "de", "de", 100]]
    events += [[_uid(0), "n1", T0 - j, "de", "de", 4 * 3600] for j in range(5)]
    return events


def test_a_video_one_person_watched_stays_off_every_shelf(tmp_path: Path) -> None:
    """A niche video with one (heavy) viewer reaches no shelf: exact, language default or global."""
    events = _k_anonymity_events()
    # top_n=3 keeps the padding with the newest catalog videos from reaching n1 by its date.
    build = _build(tmp_path, events, CATALOG, min_segment_size=5, top_n=3, min_video_users=5)
    assert build.segment_sizes["de-de-music"] == 5  # the binger's own bucket is news
    for seg in ("de-de-music", "de-de-default", GLOBAL_SEGMENT):
        assert "n1" not in build.segments[seg], seg
    # With the threshold at one viewer the binge leads every shelf it can reach.
    loose = _build(tmp_path, events, CATALOG, min_segment_size=5, top_n=3, min_video_users=1)
    assert loose.segments["de-de-default"][0] == "n1"
    assert loose.segments[GLOBAL_SEGMENT][0] == "n1"


def test_min_video_users_counts_distinct_viewers_not_events(tmp_path: Path) -> None:
    """Five watches by one user are one viewer: a video needs that many different users."""
    events = _k_anonymity_events()
    # n1 has five events but one viewer: a threshold of two keeps it out.
    build = _build(tmp_path, events, CATALOG, min_segment_size=5, top_n=3, min_video_users=2)
    assert build.segments[GLOBAL_SEGMENT] == ["m1", "m2", "g1"]


def test_shelves_stay_full_from_their_fallback(tmp_path: Path) -> None:
    """A shelf short of qualifying videos is topped up: exact from default, default from global."""
    build = _build(tmp_path, _k_anonymity_events(), CATALOG, min_segment_size=5, top_n=4)
    # Global: the two qualifying videos, then the newest catalog videos (n1 by its date alone).
    assert build.segments[GLOBAL_SEGMENT] == ["m1", "m2", "g1", "n1"]
    # German shelves: m2 is German, so boosted; then what global adds.
    assert build.segments["de-de-default"] == ["m2", "m1", "g1", "n1"]
    assert build.segments["de-de-music"] == ["m2", "m1", "g1", "n1"]


@pytest.mark.parametrize(
    "bad", [{"top_n": 0}, {"top_n": 51}, {"min_segment_size": 0}, {"min_video_users": 0}]
)
def test_options_are_checked(bad: dict[str, int]) -> None:
    """Out-of-range knobs are refused up front."""
    with pytest.raises(ValueError, match=r"must be|required"):
        RankingOptions(**bad)


def test_sample_build_has_exact_and_default_segments(small_sample: SampleFiles) -> None:
    """The sample gives exact segments, language defaults for every group, and the global one."""
    engine = DuckDBEngine()
    inputs = load_inputs(
        engine, events=small_sample.events, catalog=small_sample.catalog, now=2**31
    )
    assert inputs.stats.max_ts is not None
    options = RankingOptions(min_segment_size=10)
    build = compute(engine, inputs, as_of=inputs.stats.max_ts, options=options)
    exact = [s for s in build.segments if s != GLOBAL_SEGMENT and not s.endswith("-default")]
    assert len(exact) >= 5
    groups = {r[0:2] for r in ((p[1], p[2]) for p in build.profiles())}
    assert {f"{c}-{lang}-default" for c, lang in groups} <= set(build.segments)
    assert all(build.segment_sizes[s] >= 10 for s in exact)


def test_no_events_still_produces_a_global_shelf(tmp_path: Path) -> None:
    """With an empty events file, only ``global`` is produced, from the newest videos."""
    ev = write_csv(tmp_path / "events.csv", EVENT_HEADER, [])
    cat = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, CATALOG)
    engine = DuckDBEngine()
    inputs = load_inputs(engine, events=ev, catalog=cat, now=AS_OF)
    assert inputs.stats.max_ts is None
    build = compute(engine, inputs, as_of=AS_OF, options=RankingOptions(top_n=3))
    assert build.segments == {GLOBAL_SEGMENT: ["m1", "m2", "g1"]}
    assert build.users == 0


def test_ties_between_categories_go_by_name_and_an_empty_category_is_the_default(
    tmp_path: Path,
) -> None:
    """Equal weights pick the greater category name, and equal times list names in order."""
    catalog = [
        ["a1", "zz-top", "en", T0 - 100, ""],
        ["b1", "Alpha", "en", T0 - 100, ""],
        ["c1", "", "en", T0 - 100, ""],  # no category: the ``default`` bucket
        ["d1", "misc", "en", T0 - 100, ""],
    ]
    events = [
        # Same time, same watch time: the same weight for each of the three categories.
        [UID, "a1", T0 - 10, "us", "en", 600],
        [UID, "b1", T0 - 10, "us", "en", 600],
        [UID, "c1", T0 - 10, "us", "en", 600],
        # The default category alone, with enough evidence, is still the default bucket.
        [UID2, "c1", T0 - 10, "us", "en", 600],
        [UID2, "c1", T0 - 20, "us", "en", 600],
        [UID2, "c1", T0 - 30, "us", "en", 600],
        [UID2, "d1", T0 - 40, "us", "en", 60],
    ]
    build = _build(tmp_path, events, catalog, min_segment_size=1)
    profiles = _profiles(build)
    _, _, bucket, recent, _ = profiles[UID]
    assert bucket == "zz_top"
    assert recent == ["alpha", "default", "zz_top"]
    _, _, bucket2, recent2, _ = profiles[UID2]
    assert (bucket2, recent2) == ("default", ["default", "misc"])
    assert "us-en-default" in build.segments
    assert "us-en-zz_top" in build.segments


def test_every_country_and_language_code_has_its_own_place_number() -> None:
    """Distinct normalised codes (2-3 letters) get distinct numbers, so places never collide."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    codes = [a + b for a in letters for b in letters]
    codes += [a + b + c for a in letters for b in letters for c in letters]
    numbers = [_letters_no(code) for code in codes]
    assert len(set(numbers)) == len(codes)
    assert min(numbers) > 0
    assert max(numbers) < _PLACES_PER_COUNTRY
    # The largest place still fits the int32 the engines group by.
    assert _letters_no("zz") * _PLACES_PER_COUNTRY + _letters_no("zzz") < 2**31


@pytest.mark.parametrize("code", ["", "a", "abcd", "a1", "é1", "a-b", "AB"])
def test_a_code_that_normalisation_never_makes_is_refused(code: str) -> None:
    """A value outside the normalised form is an error, never a number shared with another."""
    with pytest.raises(ValueError, match="not a normalised"):
        _letters_no(code)
