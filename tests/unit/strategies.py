"""Hypothesis strategies and settings shared by the unit tests: hostile text and JSON-ish data."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "FAST",
    "PROFILE_KEY_RE",
    "SEGMENT_ID_RE",
    "SEGMENT_KEY_RE",
    "assert_valid_profile",
    "assert_valid_segment",
    "assert_valid_stored_audience",
    "hostile_text",
    "json_texts",
    "json_values",
    "video_ids",
]

# Enough examples to find the usual suspects, few enough that tests/unit stays well under 20 s;
# no deadline because huge inputs are part of the point and CI machines stall.
FAST: Final = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# The documented shapes, written out again here rather than imported: the tests state the
# contract, the module implements it.
UID_RE: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
PROFILE_KEY_RE: Final = re.compile(rf"u:{UID_RE}")
SEGMENT_ID_RE: Final = re.compile(r"[a-z]{2}-[a-z]{2,3}-[a-z0-9_]{1,32}|global")
SEGMENT_KEY_RE: Final = re.compile(
    r"seg:(?:[a-z]{2}-[a-z]{2,3}-[a-z0-9_]{1,32}|global):v[0-9]{1,4}"
)
_COUNTRY_RE: Final = re.compile(r"[a-z]{2}")
_LANG_RE: Final = re.compile(r"[a-z]{2,3}")
_BUCKET_RE: Final = re.compile(r"[a-z0-9_]{1,32}")
_VIDEO_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Characters that have broken key and markup builders elsewhere: separators, case-folding
# surprises (Kelvin sign, dotted I, sharp s), a lone surrogate, controls, markup, line breaks.
_NASTY: Final = (
    ":", "-", "_", ".", " ", "\t", "\n", "\r", "\x00", "\x7f", "\u212a", "\u0130", "\u00df",
    "\u00e9", "\ud800", "\u2028", "\ufeff", "/", "\\", "<", ">", "&", '"', "'", ";", "=", ",",
    "*", "A", "Z", "a", "z", "0", "9", "\u0663", "\uff21",
)  # fmt: skip

hostile_text: Final = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(_NASTY)),
    # Huge strings, built by repetition so that generating them stays cheap.
    st.builds(
        lambda chunk, n: chunk * n,
        st.text(alphabet=st.sampled_from(_NASTY), min_size=1, max_size=6),
        st.integers(min_value=100, max_value=6_000),
    ),
)

video_ids: Final = st.from_regex(_VIDEO_ID_RE, fullmatch=True)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**53 - 2, max_value=2**70),
    st.floats(),  # includes nan and +-inf, which json.dumps writes as NaN / Infinity
    st.text(max_size=40),
    video_ids,
)
json_values: Final = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=12), children, max_size=6),
    ),
    max_leaves=15,
)


def _nested(depth: int, kind: str) -> str:
    """Deeply nested JSON, closed or not: the classic way to make a recursive parser blow up."""
    if kind == "[":
        return "[" * depth + "]" * depth
    if kind == "{":
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth


json_texts: Final = st.one_of(
    st.text(),
    json_values.map(json.dumps),
    st.builds(
        _nested, st.integers(min_value=1, max_value=5000), st.sampled_from(["[", "{", "unclosed"])
    ),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=6000).map(lambda n: '{"ids":' + "1" * n + "}"),
)


def assert_valid_stored_audience(stored: Any) -> None:
    """A profile as the Worker reads it: key-safe parts, country and lang possibly unknown."""
    assert stored.country is None or _COUNTRY_RE.fullmatch(stored.country)
    assert stored.lang is None or _LANG_RE.fullmatch(stored.lang)
    assert _BUCKET_RE.fullmatch(stored.bucket)


def assert_valid_profile(profile: Any) -> None:
    """Every field of a profile as the builder writes it has the documented type and shape."""
    assert isinstance(profile, dict)
    assert set(profile) == {
        "fv",
        "country",
        "lang",
        "affinity_bucket",
        "recent_categories",
        "last_seen",
    }
    assert type(profile["fv"]) is int
    assert profile["fv"] == 1
    assert _COUNTRY_RE.fullmatch(profile["country"])
    assert _LANG_RE.fullmatch(profile["lang"])
    assert _BUCKET_RE.fullmatch(profile["affinity_bucket"])
    cats = profile["recent_categories"]
    assert type(cats) is list
    assert len(cats) <= 8
    assert all(isinstance(c, str) and _BUCKET_RE.fullmatch(c) for c in cats)
    assert type(profile["last_seen"]) is int
    assert 0 <= profile["last_seen"] < 2**53


def assert_valid_segment(segment: Any, version: int) -> None:
    """Every field of a decoded segment has the documented type and shape."""
    assert isinstance(segment, dict)
    assert set(segment) == {"ids", "built_at", "version"}
    ids = segment["ids"]
    assert type(ids) is list
    assert len(ids) <= 50
    assert len(set(ids)) == len(ids)
    assert all(isinstance(v, str) and _VIDEO_ID_RE.fullmatch(v) for v in ids)
    assert type(segment["built_at"]) is int
    assert 0 <= segment["built_at"] < 2**53
    assert type(segment["version"]) is int
    assert segment["version"] == version
