"""The audience cookie's codec (edgeshelf.audience_cookie) and the cookies an answer sets."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf import identity, schema
from edgeshelf.audience_cookie import (
    encode_audience,
    read_audience,
    set_audience_header,
    uid_tag,
)
from edgeshelf.profile import Audience
from tests.unit.strategies import FAST, hostile_text

UID = "6d2406e4-5abc-49fb-b536-29a5b5a890b0"
ATTRS = "Path=/; HttpOnly; Secure; SameSite=Lax"


@pytest.mark.parametrize(
    ("text", "tag"),
    # Published FNV-1a 32 test vectors (Fowler, Noll, Vo; draft-eastlake-fnv).
    [("", "811c9dc5"), ("a", "e40c292c"), ("foobar", "bf9cf968")],
)
def test_uid_tag_is_fnv1a_32(text: str, tag: str) -> None:
    """The tag is FNV-1a 32 over the ASCII bytes, as 8 lower-case hex digits."""
    assert uid_tag(text) == tag


def test_encode_and_read_round_trip() -> None:
    """A value encoded for an ID reads back as the same audience for that ID only."""
    aud = Audience("jp", "ja", "anime", "kv")
    value = encode_audience(aud, UID)
    assert value == f"a1.jp.ja.anime.k.{uid_tag(UID)}"
    assert read_audience(f"x=1; es_aud={value}; y=2", "es_aud", UID) == aud
    assert read_audience(f"es_aud={value}", "es_aud", str(uuid.uuid4())) is None
    request = Audience("xx", "xx", "default", "request")
    assert read_audience(f"es_aud={encode_audience(request, UID)}", "es_aud", UID) == request


def test_set_audience_header_has_every_flag() -> None:
    """The Set-Cookie value carries Max-Age and edgeshelf's attributes."""
    header = set_audience_header("es_aud", Audience("us", "en", "music", "kv"), UID, 3600)
    assert header == f"es_aud=a1.us.en.music.k.{uid_tag(UID)}; Max-Age=3600; {ATTRS}"


@pytest.mark.parametrize(
    "aud",
    [
        Audience("usa", "en", "b", "kv"),
        Audience("us", "english", "b", "kv"),
        Audience("us", "en", "x:v3", "kv"),
        Audience("us", "en", "", "kv"),
        Audience("us", "en", "b" * 33, "kv"),
    ],
)
def test_encode_refuses_parts_no_key_allows(aud: Audience) -> None:
    """Only parts a segment key could name are ever put in the cookie."""
    with pytest.raises(ValueError, match="audience"):
        encode_audience(aud, UID)


def test_duplicated_audience_cookies_are_ignored() -> None:
    """Two es_aud values, even identical ones, are ignored."""
    value = encode_audience(Audience("us", "en", "b", "kv"), UID)
    assert read_audience(f"es_aud={value}; es_aud={value}", "es_aud", UID) is None


@FAST
@given(st.one_of(hostile_text, st.text(alphabet="a1.usenbkr0123456789abcdef:_/-", max_size=64)))
def test_read_audience_never_raises_and_only_returns_valid_parts(value: str) -> None:
    """Any Cookie text reads as None or as an audience whose parts are valid key parts."""
    got = read_audience(f"es_aud={value}", "es_aud", UID)
    if got is not None:
        assert schema.normalize_country(got.country) == got.country
        assert schema.normalize_lang(got.lang) == got.lang
        assert schema.normalize_bucket(got.bucket) == got.bucket
        assert got.source in ("kv", "request")


def test_issue_cookies_rolls_the_id_before_the_audience() -> None:
    """When es_aud is issued the ID is re-set first for 400 days; otherwise identity's own."""
    who = identity.Identity("cookie", UID, ())
    aud = set_audience_header("es_aud", Audience("us", "en", "b", "kv"), UID, 60)
    assert identity.issue_cookies(who, "es_uid", aud) == (
        f"es_uid={UID}; Max-Age=34560000; {ATTRS}",
        aud,
    )
    assert identity.issue_cookies(who, "es_uid", None) == ()
    gpc = identity.Identity("gpc", None, ("es_uid=; Max-Age=0; " + ATTRS,))
    assert identity.issue_cookies(gpc, "es_uid", aud) == gpc.set_cookies


def test_gpc_clears_the_audience_cookie_too() -> None:
    """Sec-GPC: 1 clears whichever of the two cookies the browser sent, and only those."""
    both = identity.identify(f"es_uid={UID}; es_aud=x", "1", None, False, "es_uid", "es_aud")
    assert both.set_cookies == (f"es_uid=; Max-Age=0; {ATTRS}", f"es_aud=; Max-Age=0; {ATTRS}")
    only = identity.identify("es_aud=x", "1", None, False, "es_uid", "es_aud")
    assert only.set_cookies == (f"es_aud=; Max-Age=0; {ATTRS}",)
