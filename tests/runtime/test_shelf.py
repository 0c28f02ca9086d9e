"""Behaviours 2, 3 and 5: profile -> segment fallback chain -> an escaped, injected shelf."""

from __future__ import annotations

import json

import httpx
import pytest

from edgeshelf import schema
from tests.runtime.helpers import (
    debug,
    fresh_audience,
    put_profile,
    put_raw,
    put_segment,
    shelf,
    video_ids,
    visit,
)

# Worker behaviour: scripts/test runs these on every runtime, Pyodide 0.28 and 314 included.
pytestmark = pytest.mark.every_runtime


def test_known_user_gets_their_exact_segment(stack, uid):
    """A stored profile selects seg:<country>-<lang>-<bucket>:v3; its IDs are injected in order."""
    aud = fresh_audience()
    ids = video_ids("exact", 12)
    put_profile(stack, uid, aud)
    put_segment(stack, aud.exact, ids)
    r = visit(stack, uid=uid)
    assert r.status_code == 200
    got = shelf(r)
    assert got == {
        "ids": ids,
        "segment": aud.exact,
        "fallback": 0,
        "schema": "v3",
        "exp": None,
        "arm": None,
    }
    assert debug(r)["fallback"] == "exact"


def test_missing_exact_segment_falls_back_to_language_default(stack, uid):
    """Without the exact segment the country+language default is served, marked as fallback 1."""
    aud = fresh_audience()
    put_profile(stack, uid, aud)
    put_segment(stack, aud.lang_default, ["langdef01", "langdef02"])
    got = shelf(visit(stack, uid=uid))
    assert got["ids"] == ["langdef01", "langdef02"]
    assert (got["segment"], got["fallback"]) == (aud.lang_default, 1)


def test_corrupt_exact_segment_falls_back(stack, uid):
    """A segment that is not valid JSON is skipped like a missing one."""
    aud = fresh_audience()
    put_profile(stack, uid, aud)
    put_raw(stack, schema.segment_key(aud.exact, "v3"), b"{not json")
    put_segment(stack, aud.lang_default, ["langdef03"])
    assert shelf(visit(stack, uid=uid))["ids"] == ["langdef03"]


@pytest.mark.parametrize(
    "payload",
    [
        '{"ids": "abc", "built_at": 1, "version": 3}',
        '{"ids": ["a"], "built_at": "yesterday", "version": 3}',
        '{"ids": ["a"], "built_at": 1, "version": 2}',
        '{"ids": [], "built_at": 1, "version": 3}',
        '{"ids": [1, 2, null, {"x": 1}], "built_at": 1, "version": 3}',
        "[" * 5000 + "]" * 5000,
        '{"ids": ["' + "a" * 20000 + '"], "built_at": 1, "version": 3}',
        "\x00\x01\x02\xff",
        "null",
    ],
)
def test_unusable_segments_fall_back(stack, uid, payload):
    """Wrong types or version, empty, deeply nested, oversized or binary segments fall back."""
    aud = fresh_audience()
    put_profile(stack, uid, aud)
    put_raw(stack, schema.segment_key(aud.exact, "v3"), payload)
    put_segment(stack, aud.lang_default, ["fallback01"])
    r = visit(stack, uid=uid)
    assert r.status_code == 200
    assert shelf(r)["ids"] == ["fallback01"]


def test_hostile_ids_are_dropped_and_nothing_is_injected_raw(stack, uid):
    """Script-closing and markup IDs never reach the page; valid IDs beside them survive."""
    aud = fresh_audience()
    put_profile(stack, uid, aud)
    hostile = [
        "</script><script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "<!--",
        "ok01",
        "\u2028",
        "ok02",
    ]
    put_raw(
        stack,
        schema.segment_key(aud.exact, "v3"),
        json.dumps({"ids": hostile, "built_at": 1, "version": 3}),
    )
    r = visit(stack, uid=uid)
    assert shelf(r)["ids"] == ["ok01", "ok02"]
    assert "alert(1)" not in r.text
    origin_shell = httpx.get(stack.origin + "/").text
    assert r.text.count("<script") == origin_shell.count("<script") + 1  # only the payload


def test_shelf_is_capped_at_fifty_ids(stack, uid):
    """A segment with more than 50 IDs is served as its first 50."""
    aud = fresh_audience()
    put_profile(stack, uid, aud)
    ids = video_ids("cap", 80)
    put_raw(
        stack,
        schema.segment_key(aud.exact, "v3"),
        json.dumps({"ids": ids, "built_at": 1, "version": 3}),
    )
    assert shelf(visit(stack, uid=uid))["ids"] == ids[:50]


def test_cards_are_server_rendered_when_the_shell_asks(stack, uid):
    """The demo shell's slot asks for cards: they replace the default content, escaped."""
    aud = fresh_audience()
    put_profile(stack, uid, aud)
    put_segment(stack, aud.exact, ["card01", "card02"])
    r = visit(stack, uid=uid)
    assert 'id="edgeshelf-cards"' in r.text
    assert '<a href="/watch/card01">' in r.text
    assert "Editor's picks" not in r.text


def test_empty_shelf_keeps_the_shells_default_content(fresh_stack):
    """With no segment at all (not even global), the default content stays and fallback is 3."""
    fresh_stack.kv_delete(schema.segment_key(schema.GLOBAL_SEGMENT, "v7"))
    r = visit(fresh_stack, country="QQ")
    assert r.status_code == 200
    got = shelf(r)
    assert (got["ids"], got["fallback"]) == ([], 3)
    assert "Editor's picks" in r.text
    assert 'id="edgeshelf-cards"' not in r.text


def test_global_default_serves_unknown_audiences(fresh_stack):
    """A visitor whose country+language default is missing gets the global default (level 2)."""
    put_segment(fresh_stack, schema.GLOBAL_SEGMENT, ["global01"], seg_schema="v7")
    try:
        got = shelf(visit(fresh_stack, country="ZQ", headers={"accept-language": "de"}))
    finally:
        fresh_stack.kv_delete(schema.segment_key(schema.GLOBAL_SEGMENT, "v7"))
    assert got == {
        "ids": ["global01"],
        "segment": "global",
        "fallback": 2,
        "schema": "v7",
        "exp": None,
        "arm": None,
    }


# --- profile ------------------------------------------------------------------------------


def test_missing_profile_uses_country_and_accept_language(stack, uid):
    """No profile: cf.country and the highest-q Accept-Language pick <country>-<lang>-default."""
    aud = fresh_audience()
    put_segment(stack, f"{aud.country}-{aud.lang}-default", ["reqsig01"])
    r = visit(
        stack,
        uid=uid,
        country=aud.country,
        headers={"accept-language": f"en;q=0.5, {aud.lang};q=0.9, *;q=0.1"},
    )
    got = shelf(r)
    assert got["ids"] == ["reqsig01"]
    assert got["fallback"] == 0


@pytest.mark.parametrize(
    "payload",
    [
        "{broken",
        '{"fv": 99, "country": "us", "lang": "en", "affinity_bucket": "x",'
        ' "recent_categories": [], "last_seen": 1}',
        '{"fv": "1", "country": "us", "lang": "en", "affinity_bucket": "x"}',
        '{"fv": 1, "country": "us", "lang": "en", "affinity_bucket": "x",'
        ' "recent_categories": [], "last_seen": 1, "pad": "' + "x" * 5000 + '"}',
        "\xff\xfe binary",
        '["us", "en", "x"]',
    ],
)
def test_bad_profiles_fall_back_to_request_signals(stack, uid, payload):
    """Corrupt, other-format, oversized or non-object profiles are ignored as a whole."""
    aud = fresh_audience()
    put_raw(stack, schema.profile_key(uid), payload)
    put_segment(stack, f"{aud.country}-{aud.lang}-default", ["badprof01"])
    r = visit(stack, uid=uid, country=aud.country, headers={"accept-language": aud.lang})
    assert r.status_code == 200
    assert shelf(r)["ids"] == ["badprof01"]


def test_profiles_other_systems_write_are_read(stack, uid):
    """The original design's shape (no fv, upper case, region subtags) chooses the shelf."""
    aud = fresh_audience()
    put_raw(
        stack,
        schema.profile_key(uid),
        json.dumps(
            {
                "country": aud.country.upper(),
                "lang": f"{aud.lang}-{aud.country.upper()}",
                "affinity_bucket": aud.bucket.upper(),
                "recent_categories": "not a list",
                "last_seen": "yesterday",
            }
        ),
    )
    put_segment(stack, aud.exact, ["foreign01"])
    r = visit(stack, uid=uid, country="JP", headers={"accept-language": "ja"})
    got = shelf(r)
    assert (got["segment"], got["ids"], got["fallback"]) == (aud.exact, ["foreign01"], 0)


def test_an_unusable_profile_field_falls_back_on_its_own(stack, uid):
    """A profile whose country is unusable keeps its language and bucket; the request's country
    stands in for the country alone."""
    aud = fresh_audience()
    put_raw(
        stack,
        schema.profile_key(uid),
        json.dumps({"fv": 1, "country": 7, "lang": aud.lang, "affinity_bucket": aud.bucket}),
    )
    put_segment(stack, aud.exact, ["fieldwise1"])
    r = visit(stack, uid=uid, country=aud.country, headers={"accept-language": "fr"})
    got = shelf(r)
    assert (got["segment"], got["ids"]) == (aud.exact, ["fieldwise1"])
    record = stack.wait_worker_logs(lambda logs: any(x["segment"] == aud.exact for x in logs))
    assert [x for x in record if x["segment"] == aud.exact][-1]["profile"] == "kv"
