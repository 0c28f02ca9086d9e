"""Shell rules: Cache API keys, which shells are usable, and the isolate's pointer memo."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf import schema
from edgeshelf.shellrules import (
    CACHE_CONTROL_SHELL,
    NO_POINTER_VERSION,
    ShellPointerMemo,
    cache_control_for,
    cache_key_url,
    usable_shell,
)
from tests.unit.strategies import FAST, hostile_text

FALLBACK_ORIGIN = "https://edgeshelf.invalid"
# Names and versions reach cache_key_url validated (config paths, decoded pointers), so lone
# surrogates, which no URL can carry, are replaced rather than fed in.
_encodable = hostile_text.map(lambda s: s.encode("utf-8", "replace").decode("utf-8"))


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://www.example.com", "https://www.example.com"),
        ("http://127.0.0.1:8787", "http://127.0.0.1:8787"),
        ("https://example.com/", FALLBACK_ORIGIN),
        ("https://example.com/x", FALLBACK_ORIGIN),
        ("https://user@example.com", FALLBACK_ORIGIN),
        ("https://exa mple.com", FALLBACK_ORIGIN),
        ("javascript:alert(1)", FALLBACK_ORIGIN),
        ("ftp://example.com", FALLBACK_ORIGIN),
        ("https://example.com:123456", FALLBACK_ORIGIN),
        ("", FALLBACK_ORIGIN),
    ],
)
def test_cache_key_url_uses_only_a_plain_origin(origin: str, expected: str) -> None:
    """The key uses the request's origin if it is a bare scheme://host[:port], else a fixed one."""
    assert cache_key_url(origin, "home", "v1") == f"{expected}/__edgeshelf/shell/home/v1"


def test_cache_key_url_quotes_its_parts() -> None:
    """Names and versions cannot add path segments, queries or fragments to the key."""
    url = cache_key_url("https://example.com", "a/b", "1?x#y")
    assert url == "https://example.com/__edgeshelf/shell/a%2Fb/1%3Fx%23y"


@FAST
@given(hostile_text.map(lambda s: s[:300]), _encodable, _encodable)
def test_cache_key_url_is_always_a_well_formed_key(origin: str, name: str, version: str) -> None:
    """For any input the key is an ASCII http(s) URL ending in the quoted name and version."""
    url = cache_key_url(origin, name, version)
    assert url.isascii()
    assert not re.search(r"[\s\x00-\x1f\x7f]", url)
    parts = urlsplit(url)
    assert parts.scheme in {"http", "https"}
    assert parts.query == ""
    assert parts.fragment == ""
    segments = parts.path.split("/")
    assert segments[:3] == ["", "__edgeshelf", "shell"]
    assert len(segments) == 5
    assert unquote(segments[3]) == name
    assert unquote(segments[4]) == version


@pytest.mark.parametrize(
    ("value", "usable"),
    [
        ("<html></html>", True),
        ("x", True),
        ("", False),
        (None, False),
        (b"<html></html>", False),
        (0, False),
        ("x" * schema.MAX_SHELL_BYTES, True),
        ("x" * (schema.MAX_SHELL_BYTES + 1), False),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_usable_shell(value: object, usable: bool) -> None:
    """Only a non-empty string up to MAX_SHELL_BYTES can be served as a shell."""
    assert usable_shell(value) is usable


def test_cache_control_lets_the_edge_keep_shells_and_browsers_not() -> None:
    """Versioned shells stay a year in the shared cache and are never reused by browsers."""
    assert "s-maxage=31536000" in CACHE_CONTROL_SHELL
    assert "max-age=0" in CACHE_CONTROL_SHELL
    assert "public" in CACHE_CONTROL_SHELL


def test_memo_without_an_entry() -> None:
    """An unknown route is not fresh and serves the origin's current page at its own path."""
    memo = ShellPointerMemo(10.0)
    assert not memo.fresh("home", 0.0)
    assert memo.get("home", "/") == (NO_POINTER_VERSION, "/")


def test_memo_keeps_a_pointer_for_its_ttl() -> None:
    """A stored pointer is fresh until exactly ``now + ttl`` and is returned as stored."""
    memo = ShellPointerMemo(10.0)
    memo.store("home", {"version": "v7", "path": "/shell"}, 100.0)
    assert memo.fresh("home", 109.999)
    assert not memo.fresh("home", 110.0)
    assert memo.get("home", "/") == ("v7", "/shell")
    assert not memo.fresh("shorts", 100.0)
    assert memo.get("shorts", "/shorts") == (NO_POINTER_VERSION, "/shorts")


def test_memo_remembers_a_missing_pointer_too() -> None:
    """No pointer in KV is cached as the no-pointer version, saving the read for the TTL."""
    memo = ShellPointerMemo(10.0)
    memo.store("home", {"version": "v7", "path": "/x"}, 0.0)
    memo.store("home", None, 20.0)
    assert memo.fresh("home", 25.0)
    assert memo.get("home", "/") == (NO_POINTER_VERSION, "/")


def test_memo_with_an_empty_path_uses_the_route() -> None:
    """A pointer without a path serves the route's own path."""
    memo = ShellPointerMemo(10.0)
    memo.store("home", {"version": "v7", "path": ""}, 0.0)
    assert memo.get("home", "/") == ("v7", "/")


def test_memo_with_zero_ttl_is_never_fresh() -> None:
    """``SHELL_POINTER_TTL=0`` means the pointer is read from KV on every request."""
    memo = ShellPointerMemo(0.0)
    memo.store("home", {"version": "v7", "path": "/"}, 50.0)
    assert not memo.fresh("home", 50.0)
    assert memo.get("home", "/") == ("v7", "/")


@FAST
@given(
    st.floats(min_value=0, max_value=300),
    st.floats(min_value=0, max_value=1e9),
    st.floats(min_value=0, max_value=1e3),
)
def test_memo_freshness_is_the_ttl(ttl: float, stored_at: float, elapsed: float) -> None:
    """An entry is fresh exactly while less than ``ttl`` seconds have passed since it was stored."""
    memo = ShellPointerMemo(ttl)
    memo.store("home", None, stored_at)
    assert memo.fresh("home", stored_at + elapsed) == (stored_at + ttl > stored_at + elapsed)


def test_memo_keeps_the_last_good_pointer_when_a_read_fails() -> None:
    """A failed read keeps the known version (for another TTL); only a missing key drops it."""
    memo = ShellPointerMemo(10.0)
    memo.store("home", {"version": "v7", "path": "/"}, 0.0)
    assert memo.failed("home", 30.0) == "v7"
    assert memo.fresh("home", 35.0)
    assert memo.get("home", "/") == ("v7", "/")
    memo.store("home", None, 50.0)
    assert memo.get("home", "/") == (NO_POINTER_VERSION, "/")


def test_a_failed_first_read_knows_no_version() -> None:
    """Without an earlier pointer a failed read leaves the no-pointer version, reported as None."""
    memo = ShellPointerMemo(10.0)
    assert memo.failed("home", 0.0) is None
    assert memo.get("home", "/") == (NO_POINTER_VERSION, "/")


def test_the_origins_current_page_is_cached_briefly() -> None:
    """What the origin serves now is kept for its own short TTL; a version's copy a year."""
    assert cache_control_for(False, 60) == "public, s-maxage=60, max-age=0"
    assert cache_control_for(True, 60) == CACHE_CONTROL_SHELL
