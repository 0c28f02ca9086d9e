"""Profiles, segments and each segment's top-N: one definition, in Ibis, for every engine.

Every watch event gets a weight, its **recency-decayed watch time**::

    w = min(watch_seconds, WATCH_CAP) * 0.5 ** ((as_of - ts) / half_life)

counted in whole microseconds (rounded per event), so that sums are exact integers: the same on
DuckDB and on Spark and whatever order an engine adds them in. ``as_of`` is the newest event's
time (never later than now), so the same input always gives the same bytes and a rerun on
unchanged input writes nothing.

Per user (the ``u:<uid>`` profile): ``country`` and ``lang`` of the most recent event (ties: the
greater value); ``affinity_bucket`` is the category with the largest summed ``w`` (ties: the
greater name), or ``default`` when the user has fewer than ``min_events`` events or less than
``min_evidence`` decayed seconds in total; ``recent_categories`` are the categories of the
latest watches, newest first (ties: by name), at most 8; ``last_seen`` the newest event time.

Segments: ``<country>-<lang>-<bucket>`` exists when at least ``min_segment_size`` (K) users
share it. ``<country>-<lang>-default`` is always produced: from the watches of all the group's
users when the group has K users or more, otherwise from everyone's watches (global scores) so
that no segment describes a handful of people. ``global`` is always produced.

A segment's **score** for a video is the sum of ``w`` over the segment's users' watches of it,
multiplied by ``lang_boost`` when the video's catalog language equals the segment's language
(``global`` has no language). A video is a candidate for a shelf only when at least
``min_video_users`` distinct users of that segment watched it (for a language default below K
and for ``global``: of everyone), so a shelf never shows what one person watches. The top
``top_n`` candidates by score (ties: smaller video id) form the shelf. A shelf with fewer
candidates is topped up from the shelf the Worker would fall back to (an exact segment from its
language default, a language default from ``global``, ``global`` from the newest catalog
videos), so shelves stay full where the catalog allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import ibis
import pyarrow as pa

from builder.digests import digest_expr
from builder.payloads import profile_json
from builder.sources import repeated_rows
from edgeshelf.schema import (
    DEFAULT_BUCKET,
    GLOBAL_SEGMENT,
    MAX_CATEGORIES,
    MAX_SEGMENT_IDS,
    normalize_bucket,
    normalize_country,
    normalize_lang,
    segment_id,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator

    import ibis.expr.types as ir

    from builder.engines import Engine
    from builder.sources import Inputs, InputStats

__all__ = [
    "HALF_LIFE",
    "LANG_BOOST",
    "MIN_EVENTS",
    "MIN_EVIDENCE",
    "MIN_SEGMENT_SIZE",
    "MIN_VIDEO_USERS",
    "WATCH_CAP",
    "WEIGHT_SCALE",
    "Build",
    "ProfileRow",
    "RankingOptions",
    "compute",
]

HALF_LIFE: Final = 7 * 86_400
WATCH_CAP: Final = 4 * 3_600
MIN_EVENTS: Final = 3
MIN_EVIDENCE: Final = 300.0
MIN_SEGMENT_SIZE: Final = 50
MIN_VIDEO_USERS: Final = 5
LANG_BOOST: Final = 2.0
WEIGHT_SCALE: Final = 1_000_000
"""Weights are integers of this many units per decayed second (microseconds)."""

ProfileRow = tuple[str, str, str, str, list[str], int]
"""``(user_id, country, lang, affinity_bucket, recent_categories, last_seen)``."""

_SEGMENT_KEYS: Final = ("country", "lang", "bucket")
_GLOBAL_NO: Final = -1
"""The bucket number of the ``global`` shelf's rows (categories are numbered from 0)."""
_CODE_LETTERS: Final = 3
_PLACES_PER_COUNTRY: Final = 27**_CODE_LETTERS
"""``place = country number * this + language number``: one int32 per (country, language)."""
_GLOBAL_PLACE: Final = 0
"""The ``global`` shelf's place: no pair's (codes have two letters or more), and its language
number (0, whatever an engine's modulo does with it) is no video's."""


@dataclass(frozen=True)
class RankingOptions:
    """The documented knobs of the score and the thresholds (defaults in docs/builder.md)."""

    half_life: float = HALF_LIFE
    watch_cap: float = WATCH_CAP
    min_events: int = MIN_EVENTS
    min_evidence: float = MIN_EVIDENCE
    min_segment_size: int = MIN_SEGMENT_SIZE
    lang_boost: float = LANG_BOOST
    top_n: int = MAX_SEGMENT_IDS
    min_video_users: int = MIN_VIDEO_USERS

    def __post_init__(self) -> None:
        if not 1 <= self.top_n <= MAX_SEGMENT_IDS:
            raise ValueError(f"top_n must be between 1 and {MAX_SEGMENT_IDS}")
        if self.min_segment_size < 1 or self.half_life <= 0 or self.lang_boost < 1:
            raise ValueError("min_segment_size >= 1, half_life > 0 and lang_boost >= 1 required")
        if self.min_video_users < 1:
            raise ValueError("min_video_users must be >= 1")


@dataclass(frozen=True)
class Build:
    """The computed output: segment shelves in memory, profiles left in the engine to stream."""

    engine: Engine
    as_of: int
    segments: dict[str, list[str]]
    users: int
    segment_sizes: dict[str, int]
    profile_table: ir.Table = field(repr=False)
    input_stats: InputStats
    """The inputs' counts, final: repeated rows the compute found are counted as such."""

    def profile_batches(
        self, chunk: int = 50_000, *, digest_ttl: int | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Profiles in ``user_id`` order (the order of their keys), as bounded Arrow batches.

        Columns: ``user_id, country, lang, bucket, recent, last_seen``, then the engine's own
        ``uid`` (the ID in the form it sorts and joins by) and ``value``, the profile's payload
        (:mod:`builder.payloads`); with ``digest_ttl``, also ``digest``, the value's state
        digest for that TTL (:func:`builder.digests.digest_expr`), made by the engine.
        """
        table = self.profile_table
        if digest_ttl is not None:  # a projection: the rows keep their order
            table = table.mutate(digest=digest_expr(table.value, digest_ttl))
        return self.engine.batches(table, chunk)

    def profiles(self, chunk: int = 50_000) -> Iterator[ProfileRow]:
        """Profiles in ``user_id`` order, row by row, fetched chunk by chunk."""
        for batch in self.profile_batches(chunk):
            cols = [batch.column(i).to_pylist() for i in range(6)]
            yield from zip(*cols, strict=True)

    def close(self) -> None:
        """Release the engine the build lives in."""
        self.engine.close()


def _letters_no(code: str) -> int:
    """The number of a normalised country or language code (``[a-z]{2,3}``), in base 27.

    The same code has the same number in every part of the users, with no table shared
    between them; distinct codes have distinct numbers (``a`` is 1, so ``ab`` is not ``aab``).
    """
    if not (
        2 <= len(code) <= _CODE_LETTERS and code.isascii() and code.isalpha() and code.islower()
    ):
        raise ValueError(f"not a normalised country or language code: {code!r}")
    number = 0
    for letter in code:
        number = number * 27 + ord(letter) - ord("a") + 1
    return number


def _lookups(
    engine: Engine,
    prefix: str,
    columns: dict[str, tuple[ir.Column, Callable[[object], str]]],
    numbered: Collection[str] = (),
) -> dict[str, ir.Table]:
    """A ``raw -> norm`` table per column, built with the schema module's own normalisers.

    Only distinct values cross into Python (all columns in one query), so the one definition of
    normalisation (shared with the Worker) is used without a Python call per event. The kinds in
    ``numbered`` (countries, languages) get ``no``, the normalised code's :func:`_letters_no`.
    """
    parts = [
        col.name("raw").as_table().distinct().mutate(kind=ibis.literal(kind))
        for kind, (col, _) in columns.items()
    ]
    found: dict[str, list[str]] = {kind: [] for kind in columns}
    for row in engine.rows(ibis.union(*parts)):
        found[row["kind"]].append(row["raw"])
    out = {}
    for kind, (_, fn) in columns.items():
        raws = found[kind]
        norms = [fn(r) for r in raws]
        data = pa.table({"raw": pa.array(raws, pa.string()), "norm": pa.array(norms, pa.string())})
        if kind in numbered:
            data = data.append_column("no", pa.array([_letters_no(n) for n in norms], pa.int32()))
        out[kind] = engine.small_table(f"edgeshelf_{prefix}_{kind}_map", data)
    return out


def compute(
    engine: Engine, inputs: Inputs, *, as_of: int, options: RankingOptions | None = None
) -> Build:
    """Compute profiles and segments from the validated ``inputs`` on ``engine``.

    ``inputs.events`` is released once it is aggregated: compute each ``inputs`` once.
    """
    opt = options or RankingOptions()
    catalog, events = inputs.catalog, inputs.events
    cat = catalog.mutate(category=catalog.category.fill_null(""), lang=catalog.lang.fill_null(""))
    maps = _lookups(
        engine,
        "video",
        {"category": (cat.category, normalize_bucket), "lang": (cat.lang, normalize_lang)},
        numbered={"lang"},
    )
    cat_map, vlang_map = maps["category"], maps["lang"]
    # Categories are numbered in name order (the default bucket among them): the per-user
    # stages group, compare and collect numbers, which is cheaper than text and orders the same;
    # names come back only in the profiles and the shelves.
    found = {str(row["norm"]) for row in engine.rows(cat_map.select("norm").distinct())}
    names = sorted(found | {DEFAULT_BUCKET})
    numbers = engine.small_table(
        "edgeshelf_video_category_no",
        pa.table({"name": names, "cno": pa.array(range(len(names)), pa.int32())}),
    )
    cat_map = cat_map.join(numbers, cat_map.norm == numbers.name).select("raw", "cno")
    videos = cat.join(cat_map, cat.category == cat_map.raw).select(
        "video_id", "vno", "lang", "published_at", "cno"
    )
    # ``vno``, the video's number (builder.sources), stands for the video from the events to
    # the shelves.
    videos = engine.cache(
        videos.join(vlang_map, videos.lang == vlang_map.raw).select(
            "video_id", "vno", "cno", "published_at", vlang_no=vlang_map.no
        ),
        "videos",
    )
    default_no = names.index(DEFAULT_BUCKET)
    label = ibis.literal(names, type="array<string>")

    # Everything up to the segment scores is per user: it runs part by part when the engine
    # split the events by user (DuckDB on a large input), and on all events at once otherwise.
    # A user's rows are all in one part, so the parts' users are disjoint and their segment
    # scores (sums of weights, counts of viewers) add up.
    parts = inputs.event_parts or (events,)
    per_user = []
    repeated = 0
    for i, part in enumerate(parts):
        u, part_scores, repeats = _per_user(
            engine, part, videos, as_of, opt, default_no, i, inputs.repeats_unchecked
        )
        per_user.append((u, part_scores))
        repeated += repeats
    if len(parts) == 1:
        engine.release(parts[0])  # the one cached table of all events
    stats = inputs.stats
    if inputs.repeats_unchecked:  # the repeated rows the parts held are now counted
        stats = replace(
            stats,
            events=stats.events - repeated,
            duplicate_events=stats.duplicate_events + repeated,
        )
    # The profiles stay narrow (numbers, no text) until they are streamed: sorting ten million
    # users by ID costs about a second with their few small columns, ten with the ID's text,
    # the category names and the payload carried through the sort (DuckDB, 10M users). So the
    # rows are put in key order first, in a subquery of their own (``view``: the text is not
    # made inside it), and the text is made on the way out; a projection keeps its input's
    # order, and the plan refuses keys out of order, whatever the engine did.
    users = _union([u for u, _ in per_user])
    scores = _union([f for _, f in per_user])
    ordered = users.order_by("uid").view()
    profiles = ordered.select(
        user_id=ordered.uid.cast("string"),
        country="country",
        lang="lang",
        bucket=label[ordered.bucket],
        recent=ordered.recent.map(lambda c: label[c]),
        last_seen=ordered.last_seen.cast("int64"),
        uid="uid",
    )
    profiles = profiles.mutate(
        value=profile_json(
            profiles.country, profiles.lang, profiles.bucket, profiles.recent, profiles.last_seen
        )
    )
    # (The bucket's number and name go together: grouping by either is grouping by both.)
    members = users.group_by(["country", "lang", "place", "bucket"]).aggregate(
        members=users.count().cast("int64")
    )
    groups = members.select(
        "country", "lang", "place", "members", bucket=label[members.bucket], bno="bucket"
    )
    scores = scores.select("place", "vno", "score", "viewers", bno="bucket")
    return _segments(
        engine, as_of, opt, videos, scores, [f for _, f in per_user], groups, profiles, names, stats
    )


def _union(tables: list[ir.Table]) -> ir.Table:
    return tables[0] if len(tables) == 1 else ibis.union(*tables)


def _per_user(
    engine: Engine,
    events: ir.Table,
    videos: ir.Table,
    as_of: int,
    opt: RankingOptions,
    default_no: int,
    part: int,
    repeats_unchecked: bool,
) -> tuple[ir.Table, ir.Table, int]:
    """Per user of ``events``: the profile's fields, and the segment scores of its watches.

    Returns ``users`` (``uid``, the normalised ``country`` and ``lang`` of the most recent event,
    ``bucket``, ``recent``, ``last_seen``; the bucket and the recent categories as category
    numbers, and ``place``, the number of the country and language), ``scores``: per
    (place, bucket, video) the summed weight and the number of users who watched it, and how
    many rows of ``events`` repeated another (``repeats_unchecked``; otherwise 0).
    """
    ev, uv = _user_video(engine, events, videos, as_of, opt)
    repeats = repeated_rows(engine, events, uv) if repeats_unchecked else 0
    if repeats:
        # A row repeated verbatim counts once (builder.sources): the part is aggregated again
        # from its distinct rows. Rare, and only the pairs seen more than once were compared.
        engine.release(uv)
        events = engine.cache(events.distinct(), "distinct_events")
        ev, uv = _user_video(engine, events, videos, as_of, opt)
    uc = uv.group_by(["uid", "cno"]).aggregate(
        w=uv.w.sum().cast("int64"),
        n=uv.n.sum().cast("int64"),
        latest=uv.latest.max(),
    )
    # A watch's time as of the build (a later one counts as then): the latest of those is the
    # build time if the latest watch is later, so it is taken from ``latest``, not kept apart.
    # Each of a user's categories is ranked newest first (ties: by name, which is the number's
    # order); the first MAX_CATEGORIES are picked out by rank, one plain aggregate each, which
    # is cheaper than collecting and sorting a list per user.
    ranked = uc.mutate(
        rank=ibis.row_number().over(
            group_by="uid", order_by=[ibis.least(uc.latest, as_of).desc(), uc.cno]
        )
    )
    users = ranked.group_by("uid").aggregate(
        # The largest (weight, category number) pair, by value (numbers order as names do):
        # the same as an argmax, without the ordered aggregate DuckDB compiles an argmax to.
        top=ibis.struct({"w": ranked.w, "cno": ranked.cno}).max().cno,
        evidence=ranked.w.sum().cast("int64"),
        n_events=ranked.n.sum().cast("int64"),
        latest=ranked.latest.max(),
        **{f"recent_{i}": ranked.cno.max(where=ranked["rank"] == i) for i in range(MAX_CATEGORIES)},
    )
    recent = ibis.array([users[f"recent_{i}"] for i in range(MAX_CATEGORIES)])
    users = engine.cache(
        users.select(
            "uid",
            "top",
            "evidence",
            "n_events",
            "latest",
            last_seen=ibis.least(users.latest, as_of),
            recent=recent.filter(lambda c: c.notnull()),
        ),
        "users",
    )
    # Country and language of each user's most recent event (ties: the greater value).
    # (Every event's video is in the catalog, so the events need no join with it here.)
    at_latest = ev.join(users, (ev.uid == users.uid) & (ev.ts == users.latest))
    where = engine.cache(
        at_latest.group_by("uid").aggregate(
            raw_country=at_latest.country.fill_null("").max(),
            raw_lang=at_latest.lang.fill_null("").max(),
        ),
        "user_place",
    )
    # Normalised here, part by part: the few distinct values go through the schema module's
    # normalisers (the function of a value is the same in every part), so the segment scores
    # are added up across the parts by normalised country and language, with no join per row.
    # Each (country, language) pair also gets a number, the same in every part (computed from
    # the codes): the segment scores are grouped and joined by numbers, not by text.
    maps = _lookups(
        engine,
        f"user{part}",
        {
            "country": (where.raw_country, normalize_country),
            "lang": (where.raw_lang, normalize_lang),
        },
        numbered={"country", "lang"},
    )
    country_map, lang_map = maps["country"], maps["lang"]
    u = users.join(where, "uid")
    u = u.join(country_map, u.raw_country == country_map.raw).select(
        u, country=country_map.norm, country_no=country_map.no
    )
    u = u.join(lang_map, u.raw_lang == lang_map.raw).select(
        u,
        lang=lang_map.norm,
        place=(u.country_no * _PLACES_PER_COUNTRY + lang_map.no).cast("int32"),
    )
    enough = (u.n_events >= int(opt.min_events)) & (
        u.evidence >= float(opt.min_evidence) * WEIGHT_SCALE
    )
    u = engine.cache(
        u.select(
            "uid",
            "country",
            "lang",
            "place",
            bucket=ibis.ifelse(enough, u.top, default_no),
            recent="recent",
            last_seen="last_seen",
        ),
        "user_rows",
    )
    engine.release(users)
    engine.release(where)
    # One row per (user, video) in uv, so counting rows counts distinct viewers.
    joined = uv.join(u.select("uid", "place", "bucket"), "uid")
    scores = engine.cache(
        joined.group_by(["place", "bucket", "vno"]).aggregate(
            score=joined.w.sum().cast("int64"), viewers=joined.count().cast("int64")
        ),
        "user_scores",
    )
    engine.release(uv)
    if repeats:
        engine.release(events)
    return u, scores, repeats


def _user_video(
    engine: Engine, events: ir.Table, videos: ir.Table, as_of: int, opt: RankingOptions
) -> tuple[ir.Table, ir.Table]:
    """The events with their weight ``w``, and their one row per (user, video), kept.

    The row per (user, video) has the category ``cno``, the summed weight ``w``, the number of
    events ``n`` and the ``latest`` event time.
    """
    clamped = ibis.least(events.ts, as_of)
    decay = ibis.literal(0.5).pow((as_of - clamped) / float(opt.half_life))
    weight = ibis.least(events.watch_seconds, float(opt.watch_cap)) * decay
    # The user is a UUID (builder.sources): 16 bytes where its text is 36, so grouping and
    # joining by user is much cheaper (on engines without a UUID type this is text, and the
    # order is the text order either way).
    ev = events.mutate(w=(weight * WEIGHT_SCALE + 0.5).floor().cast("int64"))
    e = ev.join(videos.select("vno", "cno"), "vno")
    # One pass over the events: everything later is per (user, video) or coarser. A video has
    # one category, so grouping by the video alone gives the same rows for less work.
    uv = engine.cache(
        e.group_by(["uid", "vno"]).aggregate(
            cno=e.cno.arbitrary(),
            w=e.w.sum().cast("int64"),
            n=e.count().cast("int64"),
            latest=e.ts.max(),
        ),
        "user_video",
    )
    return ev, uv


def _rank(scores: ir.Table, opt: RankingOptions, keys: list[str]) -> ir.Table:
    """The top-N rows of ``scores`` per ``keys`` by boosted score (ties: smaller video id).

    ``scores`` has ``place`` (its language number is the segment's), ``vlang_no`` (the video's
    language number) and ``vno`` (the video's number, in video id order).
    """
    lang_no = scores.place % _PLACES_PER_COUNTRY
    boosted = scores.score.cast("float64") * ibis.ifelse(
        scores.vlang_no == lang_no, float(opt.lang_boost), 1.0
    )
    ranked = scores.mutate(
        rn=ibis.row_number().over(group_by=keys, order_by=[boosted.desc(), scores.vno])
    )
    return ranked.filter(ranked.rn < int(opt.top_n))


def _shelves(engine: Engine, ranked: ir.Table, names: list[str]) -> dict[str, list[str]]:
    """Each segment's videos in rank order, from rows whose ``bucket`` is a category number."""
    shelves: dict[str, list[str]] = {}
    for row in engine.rows(ranked.order_by([*_SEGMENT_KEYS, "rn"])):
        if row["bucket"] == _GLOBAL_NO:
            seg = GLOBAL_SEGMENT
        else:
            # Segment IDs pass through the schema module, like every other key part.
            seg = segment_id(row["country"], row["lang"], names[row["bucket"]])
        shelves.setdefault(seg, []).append(row["video_id"])
    return shelves


def _segments(
    engine: Engine,
    as_of: int,
    opt: RankingOptions,
    videos: ir.Table,
    scores: ir.Table,
    score_parts: list[ir.Table],
    groups: ir.Table,
    profiles: ir.Table,
    names: list[str],
    stats: InputStats,
) -> Build:
    k, n, v = int(opt.min_segment_size), int(opt.top_n), int(opt.min_video_users)
    default_no = names.index(DEFAULT_BUCKET)
    # ``place`` numbers the (country, language) pairs: the segment scores are added up and
    # ranked by numbers, and the pair's names joined back only to the shelves' rows.
    groups = engine.cache(
        groups.mutate(
            lang_members=groups.members.sum().over(group_by="place").cast("int64"),
        ),
        "groups",
    )
    # Which exact segment (if any) and which language group each user's watches count towards.
    exact_bucket = ibis.ifelse(
        (groups.bno != default_no) & (groups.members >= k),
        groups.bno,
        ibis.null("int32"),
    )
    seg = groups.select("place", "bno", exact=exact_bucket, big_lang=groups.lang_members >= k)
    joined = scores.join(seg, ["place", "bno"])
    # Users are in one (country, lang, bucket) group each, so viewers add up like scores. When
    # the users came in parts, their scores are added up a slice of the videos at a time (about
    # two parts' worth of rows each), so that no aggregation outgrows the engine's memory; every
    # later step is per video or finer, so it runs slice by slice too.
    slices = max(1, len(score_parts) // 2)
    by_slice = [
        engine.cache(
            part.group_by(["place", "exact", "big_lang", "vno"]).aggregate(
                score=part.score.sum().cast("int64"), viewers=part.viewers.sum().cast("int64")
            ),
            "group_scores",
        )
        for part in (
            [joined.filter(joined.vno % slices == i) for i in range(slices)]
            if slices > 1
            else [joined]
        )
    ]
    for part in score_parts:
        engine.release(part)
    everyone = engine.cache(
        _union(
            [
                b.group_by("vno").aggregate(
                    score=b.score.sum().cast("int64"), viewers=b.viewers.sum().cast("int64")
                )
                for b in by_slice
            ]
        ),
        "global_scores",
    )
    # A candidate has at least min_video_users viewers, in its segment or (global) in all.
    watched = everyone.filter(everyone.viewers >= v)
    # Buckets stay numbers up to the shelves; ``global`` is the number no category has, in
    # the place no (country, language) has.
    glob = watched.mutate(
        place=ibis.literal(_GLOBAL_PLACE, "int32"), bucket=ibis.literal(_GLOBAL_NO, "int32")
    )
    cols = ["place", "bucket", "vno", "score", "viewers"]
    candidates_by_slice = []
    for b in by_slice:
        exact = b.filter(b.exact.notnull()).select(
            "place", "vno", "score", "viewers", bucket="exact"
        )
        lang = (
            b.filter(b.big_lang)
            .group_by(["place", "vno"])
            .aggregate(score=b.score.sum().cast("int64"), viewers=b.viewers.sum().cast("int64"))
            .mutate(bucket=ibis.literal(default_no, "int32"))
        )
        candidates_by_slice += [exact.select(cols), lang.select(cols)]
    found = ibis.union(*candidates_by_slice)
    found = found.filter(found.viewers >= v)
    scores = ibis.union(found.select(cols), glob.select(cols))
    vlangs = videos.select("vno", "vlang_no")
    ranked = _rank(scores.join(vlangs, "vno"), opt, ["place", "bucket"])

    # Language groups below K: the global scores, boosted for their language. The candidates
    # are the global top-N plus the top-N of each video language, which must contain the answer.
    g = watched.join(vlangs, "vno")
    order = [g.score.desc(), g.vno]
    g = g.mutate(
        r_all=ibis.row_number().over(order_by=order),
        r_lang=ibis.row_number().over(group_by="vlang_no", order_by=order),
    )
    candidates = g.filter((g.r_all < n) | (g.r_lang < n)).select("vno", "score", "vlang_no")
    small = groups.filter(groups.lang_members < k).select("place").distinct()
    small_scores = small.cross_join(candidates).mutate(bucket=ibis.literal(default_no, "int32"))
    small_ranked = _rank(small_scores, opt, ["place", "bucket"])
    out = ["place", "bucket", "vno", "rn"]
    top = ibis.union(ranked.select(out), small_ranked.select(out))
    places = groups.select("place", "country", "lang").distinct()
    named = top.left_join(places, "place").join(videos.select("vno", "video_id"), "vno")
    shelves = _shelves(
        engine,
        named.select(
            country=named.country.fill_null(""),
            lang=named.lang.fill_null(""),
            bucket="bucket",
            video_id="video_id",
            rn="rn",
        ),
        names,
    )
    for table in by_slice:
        engine.release(table)
    engine.release(everyone)

    sizes = _sizes(engine, groups, k)
    # Every segment with K members and every language default exists, even if no video reached
    # min_video_users in it: it is topped up from its fallback like any short shelf.
    for seg in sizes:
        shelves.setdefault(seg, [])
    newest = videos.order_by([videos.published_at.desc(), videos.video_id]).limit(2 * n)
    _top_up(shelves, [row["video_id"] for row in engine.rows(newest.select("video_id"))], n)
    return Build(
        engine=engine,
        as_of=as_of,
        segments=dict(sorted(shelves.items())),
        users=sizes[GLOBAL_SEGMENT],
        segment_sizes=sizes,
        profile_table=profiles,
        input_stats=stats,
    )


def _fill(shelf: list[str], extra: list[str], n: int) -> None:
    for vid in extra:
        if len(shelf) >= n:
            return
        if vid not in shelf:
            shelf.append(vid)


def _top_up(shelves: dict[str, list[str]], newest: list[str], n: int) -> None:
    """Fill short shelves from their fallback: exact -> language default -> global -> newest."""
    glob = shelves.setdefault(GLOBAL_SEGMENT, [])
    _fill(glob, newest, n)
    defaults = {seg for seg in shelves if seg.endswith("-" + DEFAULT_BUCKET)}
    for seg in sorted(defaults):
        _fill(shelves[seg], glob, n)
    for seg, shelf in shelves.items():
        if seg == GLOBAL_SEGMENT or seg in defaults:
            continue
        country, lang, _ = seg.split("-", 2)
        _fill(shelf, shelves.get(segment_id(country, lang, DEFAULT_BUCKET), glob), n)


def _sizes(engine: Engine, groups: ir.Table, k: int) -> dict[str, int]:
    """Members per produced segment (language defaults count the whole language group)."""
    sizes: dict[str, int] = {}
    total = 0
    row: dict[str, Any]
    for row in engine.rows(groups):
        members = int(row["members"])
        total += members
        sizes[segment_id(row["country"], row["lang"], DEFAULT_BUCKET)] = int(row["lang_members"])
        if row["bucket"] != DEFAULT_BUCKET and members >= k:
            sizes[segment_id(row["country"], row["lang"], row["bucket"])] = members
    sizes[GLOBAL_SEGMENT] = total
    return dict(sorted(sizes.items()))
