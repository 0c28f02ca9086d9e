"""The segment fallback chain: the keys to read, in order, and what a stored segment yields."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf import schema
from edgeshelf.profile import Audience
from edgeshelf.segments import EMPTY_LEVEL, LEVELS, Step, chain_for, ids_from
from tests.unit.strategies import FAST, SEGMENT_KEY_RE, hostile_text, json_texts


def test_levels_are_named_in_order() -> None:
    """Level numbers index LEVELS, and the empty shelf is the last level."""
    assert LEVELS == ("exact", "lang-default", "global", "none")
    assert LEVELS[EMPTY_LEVEL] == "none"


def test_chain_for_a_bucketed_audience() -> None:
    """Exact segment, then its country+language default, then global, all in the schema."""
    assert chain_for(Audience("us", "en", "music", "kv"), "v3") == [
        Step(0, "us-en-music", "seg:us-en-music:v3"),
        Step(1, "us-en-default", "seg:us-en-default:v3"),
        Step(2, "global", "seg:global:v3"),
    ]


def test_chain_for_a_default_audience_skips_the_duplicate() -> None:
    """An audience in the default bucket reads its language default once, as level 0."""
    assert chain_for(Audience("fr", "fr", "default", "request"), "v7") == [
        Step(0, "fr-fr-default", "seg:fr-fr-default:v7"),
        Step(2, "global", "seg:global:v7"),
    ]


def test_chain_for_refuses_an_invalid_schema() -> None:
    """A schema name that is not ``v<digits>`` never produces keys."""
    with pytest.raises(ValueError, match="v3"):
        chain_for(Audience("us", "en", "x", "kv"), "3:x")


@FAST
@given(hostile_text, hostile_text, hostile_text, st.from_regex(r"v[0-9]{1,4}", fullmatch=True))
def test_chain_for_any_audience(country: str, lang: str, bucket: str, seg_schema: str) -> None:
    """For any audience parts the chain ends in global, levels rise and every key is well formed."""
    steps = chain_for(Audience(country, lang, bucket, "request"), seg_schema)
    exact = schema.segment_id(country, lang, bucket)
    lang_default = schema.segment_id(country, lang, schema.DEFAULT_BUCKET)
    expected = [exact] if exact == lang_default else [exact, lang_default]
    assert [s.segment for s in steps] == [*expected, "global"]
    assert steps[-1] == Step(2, "global", f"seg:global:{seg_schema}")
    assert [s.level for s in steps] == sorted({s.level for s in steps})
    assert steps[0].level == 0
    for step in steps:
        assert step.key == schema.segment_key(step.segment, seg_schema)
        assert SEGMENT_KEY_RE.fullmatch(step.key)
        assert len(step.key.encode("utf-8")) <= 512


def test_ids_from_a_stored_segment() -> None:
    """A valid segment of the configured schema yields its IDs."""
    text = schema.encode_segment(["a", "b"], built_at=1, schema="v3")
    assert ids_from(text, "v3") == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "seg_schema"),
    [
        (None, "v3"),
        ("", "v3"),
        ("{not json", "v3"),
        (schema.encode_segment([], built_at=1, schema="v3"), "v3"),
        (json.dumps({"ids": ["<b>", ""], "built_at": 1, "version": 3}), "v3"),
        (schema.encode_segment(["a"], built_at=1, schema="v3"), "v4"),
        (schema.encode_segment(["a"], built_at=1, schema="v3"), "bogus"),
    ],
)
def test_ids_from_treats_unusable_segments_as_missing(text: str | None, seg_schema: str) -> None:
    """Missing, corrupt, empty, all-invalid or other-schema segments yield None (next step)."""
    assert ids_from(text, seg_schema) is None


@FAST
@given(json_texts)
def test_ids_from_never_raises(text: str) -> None:
    """Any stored text yields None or a non-empty list of valid, distinct video IDs."""
    ids = ids_from(text, "v3")
    if ids is not None:
        assert 0 < len(ids) <= schema.MAX_SEGMENT_IDS
        assert len(set(ids)) == len(ids)
        assert all(schema.valid_video_id(v) for v in ids)
