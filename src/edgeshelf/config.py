"""The Worker's configuration, read once from ``[vars]`` and validated (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from . import schema
from .audience_cookie import MAX_AUDIENCE_TTL

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MIN_KV_CACHE_TTL", "Config", "load_config", "shell_name_for_path"]

_COOKIE_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PATH_RE: Final = re.compile(r"/[a-z0-9_/-]{0,64}")
MIN_KV_CACHE_TTL: Final = 30


def shell_name_for_path(path: str) -> str:
    """``/`` -> ``home``, ``/shorts`` -> ``shorts``: the shell (and its KV keys) for a route."""
    name = path.strip("/").replace("/", "_").replace("-", "_")
    return name[:32] if name else "home"


@dataclass(frozen=True, slots=True)
class Config:
    cookie_name: str = "es_uid"
    schema: str = schema.DEFAULT_SCHEMA
    origin_url: str = ""
    paths: dict[str, str] = field(default_factory=lambda: {"/": "home"})
    kv_cache_ttl: int = 60
    origin_timeout_ms: int = 1500
    debug_headers: bool = False
    pointer_ttl_s: float = 10.0
    segment_memo_ttl_s: float = 10.0
    no_pointer_shell_ttl_s: int = 60
    audience_cookie: str = "es_aud"
    audience_ttl: int = 3600  # 0: no audience cookie, the profile is read on every request
    problems: tuple[str, ...] = ()


def _int(raw: object, default: int, lo: int, hi: int, name: str, problems: list[str]) -> int:
    if raw is None:
        return default
    try:
        value = int(str(raw))
    except ValueError:
        problems.append(f"{name}={raw!r} is not an integer; using {default}")
        return default
    clamped = min(max(value, lo), hi)
    if clamped != value:
        problems.append(f"{name}={value} out of range {lo}..{hi}; using {clamped}")
    return clamped


def _cookie_name(raw: object, name: str, default: str, problems: list[str]) -> str:
    if raw is None:
        return default
    if not isinstance(raw, str) or not _COOKIE_NAME_RE.fullmatch(raw):
        problems.append(f"{name}={raw!r} is not a cookie token; using {default}")
        return default
    return raw


def load_config(get: Callable[[str], object]) -> Config:
    """Build the configuration from a variable getter; bad values fall back and are reported."""
    problems: list[str] = []
    default = Config()

    cookie_name = _cookie_name(get("COOKIE_NAME"), "COOKIE_NAME", default.cookie_name, problems)

    seg_schema = get("SEGMENT_SCHEMA")
    if seg_schema is None:
        seg_schema = default.schema
    elif not schema.valid_schema(seg_schema):
        problems.append(f"SEGMENT_SCHEMA={seg_schema!r} must look like v3; using v3")
        seg_schema = default.schema

    origin = get("ORIGIN_URL")
    origin_url = str(origin).rstrip("/") if isinstance(origin, str) else ""
    if not origin_url.startswith(("https://", "http://")):
        problems.append("ORIGIN_URL is not an http(s) URL; shells come only from cache and KV")
        origin_url = ""

    paths: dict[str, str] = {}
    raw_paths = get("PERSONALIZED_PATHS")
    for raw_item in (str(raw_paths) if raw_paths is not None else "/").split(","):
        item = raw_item.strip()
        if not item:
            continue
        if _PATH_RE.fullmatch(item) and "//" not in item:
            paths[item] = shell_name_for_path(item)
        else:
            problems.append(f"PERSONALIZED_PATHS entry {item!r} ignored")
    if not paths:
        paths = dict(default.paths)

    audience_cookie = _cookie_name(
        get("AUDIENCE_COOKIE"), "AUDIENCE_COOKIE", default.audience_cookie, problems
    )
    if audience_cookie == cookie_name:
        problems.append(f"AUDIENCE_COOKIE and COOKIE_NAME are both {cookie_name}; es_aud is off")

    debug = get("DEBUG_HEADERS")
    return Config(
        cookie_name=str(cookie_name),
        schema=str(seg_schema),
        origin_url=origin_url,
        paths=paths,
        kv_cache_ttl=_int(
            get("KV_CACHE_TTL"), default.kv_cache_ttl, MIN_KV_CACHE_TTL, 86400,
            "KV_CACHE_TTL", problems,
        ),
        origin_timeout_ms=_int(
            get("ORIGIN_TIMEOUT_MS"), default.origin_timeout_ms, 50, 30000,
            "ORIGIN_TIMEOUT_MS", problems,
        ),
        debug_headers=str(debug) in ("1", "true", "yes"),
        pointer_ttl_s=float(
            _int(get("SHELL_POINTER_TTL"), 10, 0, 300, "SHELL_POINTER_TTL", problems)
        ),
        segment_memo_ttl_s=float(
            _int(get("SEGMENT_MEMO_TTL"), 10, 0, 300, "SEGMENT_MEMO_TTL", problems)
        ),
        no_pointer_shell_ttl_s=_int(
            get("NO_POINTER_SHELL_TTL"), default.no_pointer_shell_ttl_s, 0, 86400,
            "NO_POINTER_SHELL_TTL", problems,
        ),
        audience_cookie=str(audience_cookie),
        # One name for both cookies would make each overwrite the other: the cookie is off.
        audience_ttl=0 if audience_cookie == cookie_name else _int(
            get("AUDIENCE_TTL"), default.audience_ttl, 0, MAX_AUDIENCE_TTL,
            "AUDIENCE_TTL", problems,
        ),
        problems=tuple(problems),
    )  # fmt: skip
