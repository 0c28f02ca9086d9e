"""The Worker's configuration from ``[vars]``: defaults, clamping, and every problem reported."""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf import schema
from edgeshelf.config import MIN_KV_CACHE_TTL, Config, load_config, shell_name_for_path
from tests.unit.strategies import FAST, hostile_text

if TYPE_CHECKING:
    from collections.abc import Callable

_NAMES = (
    "COOKIE_NAME",
    "SEGMENT_SCHEMA",
    "ORIGIN_URL",
    "PERSONALIZED_PATHS",
    "KV_CACHE_TTL",
    "ORIGIN_TIMEOUT_MS",
    "DEBUG_HEADERS",
    "SHELL_POINTER_TTL",
    "SEGMENT_MEMO_TTL",
    "NO_POINTER_SHELL_TTL",
    "AUDIENCE_COOKIE",
    "AUDIENCE_TTL",
)
GOOD = {"ORIGIN_URL": "https://origin.example"}


def vars_(**values: object) -> Callable[[str], object]:
    """A ``[vars]`` getter: the given values on top of a valid origin, None for the rest."""
    merged = {**GOOD, **values}
    return merged.get


def test_defaults() -> None:
    """With only an origin set, everything else takes its documented default, silently."""
    cfg = load_config(vars_())
    assert cfg == Config(origin_url="https://origin.example")
    assert cfg.cookie_name == "es_uid"
    assert cfg.schema == "v3"
    assert cfg.paths == {"/": "home"}
    assert cfg.kv_cache_ttl == 60
    assert cfg.origin_timeout_ms == 1500
    assert cfg.debug_headers is False
    assert cfg.pointer_ttl_s == 10.0
    assert cfg.no_pointer_shell_ttl_s == 60
    assert cfg.problems == ()


def test_missing_origin_is_reported() -> None:
    """Without ORIGIN_URL shells come only from cache and KV, and the config says so."""
    cfg = load_config(lambda _name: None)
    assert cfg.origin_url == ""
    assert len(cfg.problems) == 1
    assert "ORIGIN_URL" in cfg.problems[0]


def test_every_variable_is_read() -> None:
    """Each documented variable, when valid, is used as given with no problem reported."""
    cfg = load_config(
        vars_(
            COOKIE_NAME="vid",
            SEGMENT_SCHEMA="v12",
            ORIGIN_URL="http://127.0.0.1:8789/",
            PERSONALIZED_PATHS="/,/shorts",
            KV_CACHE_TTL="300",
            ORIGIN_TIMEOUT_MS=2500,
            DEBUG_HEADERS="true",
            SHELL_POINTER_TTL="0",
            SEGMENT_MEMO_TTL="30",
            NO_POINTER_SHELL_TTL="5",
            AUDIENCE_COOKIE="vaud",
            AUDIENCE_TTL="0",
        )
    )
    assert cfg == Config(
        cookie_name="vid",
        schema="v12",
        origin_url="http://127.0.0.1:8789",
        paths={"/": "home", "/shorts": "shorts"},
        kv_cache_ttl=300,
        origin_timeout_ms=2500,
        debug_headers=True,
        pointer_ttl_s=0.0,
        segment_memo_ttl_s=30.0,
        no_pointer_shell_ttl_s=5,
        audience_cookie="vaud",
        audience_ttl=0,
    )


@pytest.mark.parametrize(
    ("name", "raw", "field", "expected"),
    [
        ("KV_CACHE_TTL", "5", "kv_cache_ttl", 30),
        ("KV_CACHE_TTL", "0", "kv_cache_ttl", 30),
        ("KV_CACHE_TTL", "-60", "kv_cache_ttl", 30),
        ("KV_CACHE_TTL", "999999", "kv_cache_ttl", 86400),
        ("KV_CACHE_TTL", "abc", "kv_cache_ttl", 60),
        ("KV_CACHE_TTL", "60.5", "kv_cache_ttl", 60),
        ("KV_CACHE_TTL", "9" * 5000, "kv_cache_ttl", 60),
        ("ORIGIN_TIMEOUT_MS", "1", "origin_timeout_ms", 50),
        ("ORIGIN_TIMEOUT_MS", "60000", "origin_timeout_ms", 30000),
        ("ORIGIN_TIMEOUT_MS", "", "origin_timeout_ms", 1500),
        ("SHELL_POINTER_TTL", "-1", "pointer_ttl_s", 0.0),
        ("SHELL_POINTER_TTL", "301", "pointer_ttl_s", 300.0),
        ("SHELL_POINTER_TTL", "soon", "pointer_ttl_s", 10.0),
        ("SEGMENT_MEMO_TTL", "-5", "segment_memo_ttl_s", 0.0),
        ("SEGMENT_MEMO_TTL", "3600", "segment_memo_ttl_s", 300.0),
        ("SEGMENT_MEMO_TTL", "1.5", "segment_memo_ttl_s", 10.0),
        ("NO_POINTER_SHELL_TTL", "-1", "no_pointer_shell_ttl_s", 0),
        ("NO_POINTER_SHELL_TTL", "100000", "no_pointer_shell_ttl_s", 86400),
        ("NO_POINTER_SHELL_TTL", "x", "no_pointer_shell_ttl_s", 60),
        ("AUDIENCE_TTL", "-1", "audience_ttl", 0),
        ("AUDIENCE_TTL", "99999999", "audience_ttl", 34560000),
        ("AUDIENCE_TTL", "1h", "audience_ttl", 3600),
        ("AUDIENCE_COOKIE", "a b", "audience_cookie", "es_aud"),
        ("AUDIENCE_COOKIE", "es_aud;x", "audience_cookie", "es_aud"),
        ("COOKIE_NAME", "bad name", "cookie_name", "es_uid"),
        ("COOKIE_NAME", "a;b", "cookie_name", "es_uid"),
        ("COOKIE_NAME", "a=b", "cookie_name", "es_uid"),
        ("COOKIE_NAME", "", "cookie_name", "es_uid"),
        ("COOKIE_NAME", "x" * 65, "cookie_name", "es_uid"),
        ("COOKIE_NAME", "caf\u00e9", "cookie_name", "es_uid"),
        ("COOKIE_NAME", "uid\n", "cookie_name", "es_uid"),
        ("COOKIE_NAME", 42, "cookie_name", "es_uid"),
        ("SEGMENT_SCHEMA", "V3", "schema", "v3"),
        ("SEGMENT_SCHEMA", "3", "schema", "v3"),
        ("SEGMENT_SCHEMA", "v3:x", "schema", "v3"),
        ("SEGMENT_SCHEMA", 3, "schema", "v3"),
        ("ORIGIN_URL", "ftp://origin.example", "origin_url", ""),
        ("ORIGIN_URL", "javascript:alert(1)", "origin_url", ""),
        ("ORIGIN_URL", "https://", "origin_url", ""),
        ("ORIGIN_URL", 8789, "origin_url", ""),
    ],
)
def test_bad_values_are_clamped_or_defaulted_and_reported(
    name: str, raw: object, field: str, expected: object
) -> None:
    """A bad value falls back to a default or the nearest bound, and names itself in problems."""
    cfg = load_config(vars_(**{name: raw}))
    assert getattr(cfg, field) == expected
    assert len(cfg.problems) == 1
    assert name in cfg.problems[0]


def test_kv_cache_ttl_never_goes_below_the_minimum() -> None:
    """``cacheTtl`` below 30 s is refused by KV, so it is clamped up to exactly that."""
    assert MIN_KV_CACHE_TTL == 30
    assert load_config(vars_(KV_CACHE_TTL="29")).kv_cache_ttl == 30
    assert load_config(vars_(KV_CACHE_TTL="30")).problems == ()
    assert load_config(vars_(KV_CACHE_TTL=" 45 ")).kv_cache_ttl == 45


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", {"/": "home"}),
        (" / ,, /music/live", {"/": "home", "/music/live": "music_live"}),
        ("/a-b/", {"/a-b/": "a_b"}),
        ("/" + "x" * 64, {"/" + "x" * 64: "x" * 32}),
        ("", {"/": "home"}),
        (" , ", {"/": "home"}),
    ],
)  # fmt: skip
def test_personalized_paths(raw: str, expected: dict[str, str]) -> None:
    """Comma-separated absolute paths map to shell names; an empty list means just ``/``."""
    cfg = load_config(vars_(PERSONALIZED_PATHS=raw))
    assert cfg.paths == expected
    assert cfg.problems == ()


@pytest.mark.parametrize(
    "bad", ["shorts", "/Shorts", "//x", "/a//b", "/a?b", "/a b", "/" + "x" * 65, "/\u00e9", "*"]
)
def test_bad_personalized_paths_are_ignored_and_reported(bad: str) -> None:
    """Entries that are not plain lower-case absolute paths are dropped, each with a problem."""
    cfg = load_config(vars_(PERSONALIZED_PATHS=f"/shorts,{bad}"))
    assert cfg.paths == {"/shorts": "shorts"}
    assert len(cfg.problems) == 1
    assert repr(bad) in cfg.problems[0]


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("true", True), ("yes", True), ("0", False),
                          ("no", False), ("", False), (None, False)]
)  # fmt: skip
def test_debug_headers(raw: str | None, expected: bool) -> None:
    """Debug headers are on only when explicitly enabled."""
    assert load_config(vars_(DEBUG_HEADERS=raw)).debug_headers is expected


def test_config_is_immutable() -> None:
    """The configuration is read once per isolate and cannot be changed afterwards."""
    cfg = load_config(vars_())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.kv_cache_ttl = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("path", "name"), [("/", "home"), ("/shorts", "shorts"), ("/a/b-c/", "a_b_c"), ("", "home")]
)
def test_shell_name_for_path(path: str, name: str) -> None:
    """A route's shell name is its path with separators turned into underscores."""
    assert shell_name_for_path(path) == name


_values = st.one_of(st.none(), hostile_text, st.integers(), st.floats(), st.booleans())


@FAST
@given(st.fixed_dictionaries({}, optional=dict.fromkeys(_NAMES, _values)))
def test_any_vars_give_a_usable_config(raw: dict[str, object]) -> None:
    """Whatever ``[vars]`` holds, loading never raises and every field is within its range."""
    cfg = load_config(raw.get)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cfg.cookie_name)
    assert schema.valid_schema(cfg.schema)
    assert cfg.origin_url == "" or cfg.origin_url.startswith(("https://", "http://"))
    assert MIN_KV_CACHE_TTL <= cfg.kv_cache_ttl <= 86400
    assert 50 <= cfg.origin_timeout_ms <= 30000
    assert 0.0 <= cfg.pointer_ttl_s <= 300.0
    assert cfg.paths
    for path, name in cfg.paths.items():
        assert path.startswith("/")
        assert schema.shell_pointer_key(name) == "shell:" + name
    assert all(isinstance(p, str) for p in cfg.problems)


def test_one_name_for_both_cookies_turns_the_audience_cookie_off() -> None:
    """AUDIENCE_COOKIE equal to COOKIE_NAME would overwrite the ID: the audience cookie is off."""
    cfg = load_config(vars_(COOKIE_NAME="vid", AUDIENCE_COOKIE="vid", AUDIENCE_TTL="600"))
    assert (cfg.cookie_name, cfg.audience_ttl) == ("vid", 0)
    assert len(cfg.problems) == 1
    assert "AUDIENCE_COOKIE" in cfg.problems[0]
