"""Choosing the audience: the stored profile when it is valid, else request signals."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf import schema
from edgeshelf.profile import Audience, audience_for, best_language
from tests.unit.strategies import FAST, hostile_text, json_texts


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "xx"),
        ("", "xx"),
        ("en", "en"),
        ("en-US,fr;q=0.9", "en"),
        ("fr;q=0.5, de;q=0.9", "de"),
        ("fr;q=0.8,de;q=0.8", "fr"),
        ("fr;q=0.8,de;q=0.800", "fr"),
        ("*", "xx"),
        ("*, de;q=0.5", "de"),
        ("de;q=abc, fr;q=0.1", "fr"),
        ("de;q=, fr;q=0.1", "fr"),
        ("de;q=2, fr;q=0.3", "fr"),
        ("de;q=1.001, fr;q=0.3", "fr"),
        ("de;q=-0.5, fr;q=0.3", "fr"),
        ("de;q=nan, fr;q=0.2", "fr"),
        ("de;q=NaN, fr;q=0.2", "fr"),
        ("de;q=inf, fr;q=0.2", "fr"),
        ("de;q=0", "xx"),
        ("de;q=0, fr;q=0.001", "fr"),
        ("EN-gb", "en"),
        ("zh-Hant-TW;q=0.9, en;q=0.8", "zh"),
        ("pt_BR", "pt"),
        ("en;Q=0.5, fr;q=0.4", "en"),
        ("en; q = 0.5 , fr;q=0.4", "en"),
        ("x-klingon, fr;q=0.1", "fr"),
        ("english, fil;q=0.5", "fil"),
        (" , ,,;q=1", "xx"),
        ("de;level=1, fr;q=0.1", "fr"),
    ],
)
def test_best_language_examples(header: str | None, expected: str) -> None:
    """Highest q wins, first on ties; ``*``, malformed, out-of-range and NaN q are skipped."""
    assert best_language(header) == expected


_TAGS = {
    "en": "en",
    "fr": "fr",
    "de-DE": "de",
    "PT-br": "pt",
    "zh-Hant": "zh",
    "*": None,
    "x-klingon": None,
    "english": None,
    "": None,
}
_BAD_Q = ["abc", "2", "-1", "nan", "inf", "", "1.5", "0x1"]


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(_TAGS)),
            st.one_of(
                st.none(),
                st.integers(min_value=0, max_value=1000),
                st.sampled_from(_BAD_Q),
            ),
        ),
        max_size=30,
    )
)
def test_best_language_matches_a_model(entries: list[tuple[str, int | str | None]]) -> None:
    """For headers of up to 30 entries, the answer is the first language with the highest q > 0."""
    parts: list[str] = []
    best, best_q = "xx", 0
    for tag, q in entries:
        if q is None:
            parts.append(tag)
            weight = 1000
        elif isinstance(q, int):
            parts.append(f"{tag};q={q / 1000:.3f}")
            weight = q
        else:
            parts.append(f"{tag};q={q}")
            continue
        lang = _TAGS[tag]
        if lang is not None and weight > best_q:
            best, best_q = lang, weight
    assert best_language(", ".join(parts)) == best


def test_best_language_with_a_thousand_entries() -> None:
    """A 1,000-entry header is answered quickly, looking only at its leading entries."""
    header = ", ".join(["fr;q=0.5"] + ["de;q=0.4"] * 998 + ["es"])
    started = time.perf_counter()
    assert best_language(header) == "fr"
    assert best_language("*, " * 1000 + "en") == "xx"
    assert best_language("en;q=0.1" + ", x;q=abc" * 100_000) == "en"
    assert time.perf_counter() - started < 0.5


@FAST
@given(hostile_text)
def test_best_language_never_raises(header: str) -> None:
    """Any header yields a two- or three-letter primary subtag or ``xx``."""
    assert re.fullmatch(r"[a-z]{2,3}", best_language(header))


def _profile_text(**overrides: Any) -> str:
    fields: dict[str, Any] = {
        "fv": 1,
        "country": "de",
        "lang": "de",
        "affinity_bucket": "gaming",
        "recent_categories": ["gaming"],
        "last_seen": 1_750_000_000,
    }
    fields.update(overrides)
    return json.dumps(fields)


def test_audience_from_a_valid_profile() -> None:
    """A stored profile that validates decides the audience, whatever the request says."""
    assert audience_for(_profile_text(), "US", "en-US") == Audience("de", "de", "gaming", "kv")


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "{",
        "[]",
        "null",
        _profile_text(fv=2),
        _profile_text(fv="1"),
        _profile_text() + " " * schema.MAX_PROFILE_BYTES,
        '{"fv":1,' + '"pad":"' + "x" * 5000 + '"}',
    ],
    ids=lambda v: repr(v)[:40],
)
def test_audience_falls_back_to_request_signals(stored: str | None) -> None:
    """Missing, corrupt, oversized or other-format profiles give the request's own audience."""
    assert audience_for(stored, "US", "fr-CA;q=0.7, en;q=0.9") == Audience(
        "us", "en", "default", "request"
    )


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (_profile_text(last_seen="yesterday"), ("de", "de", "gaming")),
        (_profile_text(recent_categories=["x"] * 9), ("de", "de", "gaming")),
        (_profile_text(country=["de"]), ("us", "de", "gaming")),
        (
            _profile_text(country="DE", lang="de-AT", affinity_bucket="Gaming"),
            ("de", "de", "gaming"),
        ),
        (_profile_text(lang=None), ("de", "en", "gaming")),
        (_profile_text(affinity_bucket="a:b"), ("de", "de", "a_b")),
        (_profile_text(affinity_bucket=7), ("de", "de", "default")),
        ('{"country":"jp","lang":"ja","affinity_bucket":"anime"}', ("jp", "ja", "anime")),
        ("{}", ("us", "en", "default")),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_a_stored_profile_falls_back_field_by_field(
    stored: str, expected: tuple[str, str, str]
) -> None:
    """A usable stored field wins; a missing or unusable one takes the request's signal."""
    assert audience_for(stored, "US", "fr-CA;q=0.7, en;q=0.9") == Audience(*expected, "kv")


@pytest.mark.parametrize(
    ("country", "accept", "expected"),
    [
        (None, None, ("xx", "xx")),
        ("T1", "", ("xx", "xx")),
        ("XX", "*", ("xx", "xx")),
        ("gb", "en-GB", ("gb", "en")),
        ("  jp ", "ja;q=0.9", ("jp", "ja")),
    ],
)
def test_request_audience_is_normalised(
    country: str | None, accept: str | None, expected: tuple[str, str]
) -> None:
    """Request signals are normalised like stored ones; unknown country and language are ``xx``."""
    audience = audience_for(None, country, accept)
    assert (audience.country, audience.lang) == expected
    assert audience.bucket == schema.DEFAULT_BUCKET
    assert audience.source == "request"


@FAST
@given(st.one_of(st.none(), json_texts), st.one_of(st.none(), hostile_text), hostile_text)
def test_audience_is_always_well_formed(
    stored: str | None, country: str | None, accept: str
) -> None:
    """Any stored text and request signals give an audience whose parts can form a segment key."""
    audience = audience_for(stored, country, accept)
    assert re.fullmatch(r"[a-z]{2}", audience.country)
    assert re.fullmatch(r"[a-z]{2,3}", audience.lang)
    assert re.fullmatch(r"[a-z0-9_]{1,32}", audience.bucket)
    assert audience.source in {"kv", "request"}
    assert (audience.source == "kv") == (
        stored is not None and schema.read_profile(stored) is not None
    )
