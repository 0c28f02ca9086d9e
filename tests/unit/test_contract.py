"""The contract between the builder and the Worker: what one writes, the other reads unchanged.

The first half states it at the level of the shared schema module (anything encodable is
decodable, to the same content, within the Worker's caps, and lands where the Worker's fallback
chain looks). The second half runs the builder itself on a small sample and feeds every key and
value it plans to publish through the Worker's own read path.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf import schema
from edgeshelf.profile import Audience, audience_for
from edgeshelf.segments import EMPTY_LEVEL, chain_for, ids_from
from edgeshelf.shellrules import ShellPointerMemo, usable_shell
from tests.unit.strategies import (
    FAST,
    PROFILE_KEY_RE,
    SEGMENT_KEY_RE,
    assert_valid_profile,
    hostile_text,
    video_ids,
)

if TYPE_CHECKING:
    from pathlib import Path

    from builder.cloudflare import BulkPair, BulkResult

SCHEMA = "v3"
NOW = 1_748_736_000 + 3_600  # an hour after the sample's newest event (builder.sample's default)
K = 10  # segment size threshold small enough for a 600-user sample to have exact segments


def _first_shelf(audience: Audience, kv: dict[str, str], seg_schema: str) -> tuple[int, str]:
    """The Worker's fallback walk (handler._shelf) over an in-memory KV: (level, segment)."""
    for step in chain_for(audience, seg_schema):
        if ids_from(kv.get(step.key), seg_schema) is not None:
            return step.level, step.segment
    return EMPTY_LEVEL, ""


# --- schema level --------------------------------------------------------------------------


@FAST
@given(
    hostile_text,
    hostile_text,
    hostile_text,
    st.lists(hostile_text, max_size=12),
    st.integers(min_value=0, max_value=2**53 - 1),
)
def test_any_encodable_profile_is_served_from_kv(
    country: str, lang: str, bucket: str, cats: list[str], last_seen: int
) -> None:
    """A profile the builder can encode is used by the Worker as-is, never replaced by defaults."""
    text = schema.encode_profile(
        country=country,
        lang=lang,
        affinity_bucket=bucket,
        recent_categories=cats,
        last_seen=last_seen,
    )
    assert len(text.encode()) <= schema.MAX_PROFILE_BYTES
    audience = audience_for(text, "zz", "qq")
    assert audience == Audience(
        schema.normalize_country(country),
        schema.normalize_lang(lang),
        schema.normalize_bucket(bucket),
        "kv",
    )
    builder_key = schema.segment_key(schema.segment_id(country, lang, bucket), SCHEMA)
    assert chain_for(audience, SCHEMA)[0].key == builder_key


@FAST
@given(
    st.lists(video_ids, min_size=1, max_size=60),
    st.integers(min_value=0, max_value=2**53 - 1),
    st.from_regex(r"v[0-9]{1,4}", fullmatch=True),
)
def test_any_encodable_segment_is_served(ids: list[str], built_at: int, seg_schema: str) -> None:
    """A non-empty segment the builder can encode is a shelf of the same IDs for the Worker."""
    text = schema.encode_segment(ids, built_at=built_at, schema=seg_schema)
    assert len(text.encode()) <= schema.MAX_SEGMENT_BYTES
    assert ids_from(text, seg_schema) == list(dict.fromkeys(ids))[: schema.MAX_SEGMENT_IDS]


def test_language_default_and_global_are_where_the_worker_falls_back() -> None:
    """The builder's always-written segments are exactly the Worker's fallback steps."""
    kv = {
        schema.segment_key(schema.segment_id("de", "de", "default"), SCHEMA): (
            schema.encode_segment(["d1"], built_at=1, schema=SCHEMA)
        ),
        schema.segment_key(schema.GLOBAL_SEGMENT, SCHEMA): (
            schema.encode_segment(["g1"], built_at=1, schema=SCHEMA)
        ),
    }
    assert _first_shelf(Audience("de", "de", "gaming", "kv"), kv, SCHEMA) == (1, "de-de-default")
    assert _first_shelf(Audience("fr", "fr", "default", "kv"), kv, SCHEMA) == (2, "global")
    assert _first_shelf(Audience("fr", "fr", "x", "kv"), {}, SCHEMA) == (EMPTY_LEVEL, "")


@FAST
@given(
    st.from_regex(r"[a-z0-9_]{1,32}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
    st.sampled_from(["/", "/shorts", "/shell/home.html", "/\u00e9t\u00e9"]),
)
def test_any_encodable_shell_pointer_is_followed(name: str, version: str, path: str) -> None:
    """A pointer the builder writes names a backup key the Worker can read."""
    pointer = schema.decode_shell_pointer(schema.encode_shell_pointer(version, path))
    assert pointer == {"version": version, "path": path}
    memo = ShellPointerMemo(10.0)
    memo.store(name, pointer, 0.0)
    assert memo.get(name, "/") == (version, path)
    assert schema.shell_backup_key(name, version) == f"shell:{name}:{version}"


# --- the builder itself ----------------------------------------------------------------------


def _builder_plan(tmp_path: Path) -> tuple[dict[str, str], dict[str, int], dict[str, list[str]]]:
    """Run the builder's sample, ranking and planning code; return what it would publish."""
    # The builder's dependencies (duckdb, ibis) are only needed here.
    from builder.engines import DuckDBEngine  # noqa: PLC0415
    from builder.plan import PHASES, build_plan, computed_items  # noqa: PLC0415
    from builder.ranking import RankingOptions, compute  # noqa: PLC0415
    from builder.sample import write_sample  # noqa: PLC0415
    from builder.sources import load_inputs  # noqa: PLC0415
    from builder.state import State  # noqa: PLC0415

    files = write_sample(tmp_path / "sample", users=600, videos=250, events=12_000, seed=3)
    engine = DuckDBEngine()
    try:
        inputs = load_inputs(engine, events=files.events, catalog=files.catalog, now=NOW)
        stats = inputs.stats
        as_of = min(stats.max_ts if stats.max_ts is not None else NOW, NOW)
        options = RankingOptions(min_segment_size=K)
        build = compute(engine, inputs, as_of=as_of, options=options)
        with State(tmp_path / "state.sqlite") as state:
            plan = build_plan(state, computed_items(build, SCHEMA), schema=SCHEMA, now=NOW)
            values: dict[str, str] = {}
            ttls: dict[str, int] = {}
            for phase in PHASES:
                for key, value, ttl, _digest in plan.puts(phase):
                    values[key] = value
                    ttls[key] = ttl
        return values, ttls, build.segments
    finally:
        engine.close()


@pytest.mark.cpython_only
def test_builder_output_is_accepted_by_worker(tmp_path: Path) -> None:
    """Every planned key and value is read by the Worker as the builder meant it."""
    # Segment keys are the keys the Worker's chain asks for, every segment decodes to the
    # builder's shelf, every profile decodes and is used as stored, and no visitor with a
    # published profile falls further than the language default the builder always writes.
    kv, ttls, shelves = _builder_plan(tmp_path)
    segment_keys = [k for k in kv if k.startswith(schema.SEGMENT_PREFIX)]
    profile_keys = [k for k in kv if k.startswith(schema.USER_PREFIX)]
    assert len(segment_keys) == len(shelves) > 2
    assert len(profile_keys) == 600
    assert set(kv) == set(segment_keys) | set(profile_keys)
    assert schema.segment_key(schema.GLOBAL_SEGMENT, SCHEMA) in kv

    for key, value in kv.items():
        assert len(key.encode()) <= 512
        assert value.isascii()

    exact_segments = 0
    for seg_id, ids in shelves.items():
        key = schema.segment_key(seg_id, SCHEMA)
        assert SEGMENT_KEY_RE.fullmatch(key)
        assert ttls[key] == schema.SEGMENT_TTL
        assert len(kv[key].encode()) <= schema.MAX_SEGMENT_BYTES
        assert ids_from(kv[key], SCHEMA) == ids
        if seg_id != schema.GLOBAL_SEGMENT:
            country, lang, bucket = seg_id.split("-")
            audience = Audience(country, lang, bucket, "kv")
            assert chain_for(audience, SCHEMA)[0].key == key
            assert _first_shelf(audience, kv, SCHEMA) == (0, seg_id)
            exact_segments += bucket != schema.DEFAULT_BUCKET
    assert exact_segments > 0

    levels: set[int] = set()
    for key in profile_keys:
        assert PROFILE_KEY_RE.fullmatch(key)
        assert ttls[key] == schema.USER_TTL
        assert_valid_profile(json.loads(kv[key]))
        audience = audience_for(kv[key], None, None)
        assert audience.source == "kv"
        level, segment = _first_shelf(audience, kv, SCHEMA)
        levels.add(level)
        lang_default = schema.segment_id(audience.country, audience.lang, schema.DEFAULT_BUCKET)
        if audience.bucket != schema.DEFAULT_BUCKET and level == 0:
            assert segment == schema.segment_id(audience.country, audience.lang, audience.bucket)
        else:
            assert segment == lang_default
    assert 0 in levels
    assert levels <= {0, 1}


@pytest.mark.cpython_only
def test_builder_shell_publication_is_followed_by_worker() -> None:
    """The builder's shell copy (page, headers) and pointer are what the Worker reads."""
    from builder.cloudflare import BulkResult  # noqa: PLC0415
    from builder.jobs import publish_shell  # noqa: PLC0415

    written: dict[str, str] = {}

    class RecordingKV:
        """Just enough of KVClient for publish_shell: bulk writes that all succeed."""

        def bulk_put(self, pairs: list[BulkPair]) -> BulkResult:
            for pair in pairs:
                written[pair["key"]] = pair["value"]
            return BulkResult(successful_key_count=len(pairs), unsuccessful_keys=[])

    html = '<!doctype html><div data-edgeshelf-slot data-edgeshelf-render="cards"></div>'
    backup_key, pointer_key = publish_shell(
        RecordingKV(),  # type: ignore[arg-type]
        name="home",
        html=html.encode(),
        version="2025-06-01.1",
        path="/",
        headers=[("Content-Security-Policy", "default-src 'self'")],
    )
    assert pointer_key == schema.shell_pointer_key("home")
    pointer = schema.decode_shell_pointer(written[pointer_key])
    assert pointer == {"version": "2025-06-01.1", "path": "/"}
    assert backup_key == schema.shell_backup_key("home", pointer["version"])
    copy = schema.decode_shell_copy(written[backup_key])
    assert copy is not None
    assert usable_shell(copy.html)
    assert copy == schema.ShellCopy(html, (("content-security-policy", "default-src 'self'"),))
