"""Pure rules for page shells: cache keys, what is usable, and the isolate's pointer memo."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote

from . import schema

__all__ = [
    "CACHE_CONTROL_SHELL",
    "NO_POINTER_VERSION",
    "ShellPointerMemo",
    "cache_control_for",
    "cache_key_url",
    "page_headers",
    "usable_shell",
]

# Cache keys are versioned, so a cached shell never needs invalidating: a year at the edge.
CACHE_CONTROL_SHELL: Final = "public, s-maxage=31536000, max-age=0"
# The version used while no pointer has been published: the origin's current page.
NO_POINTER_VERSION: Final = "0"
_ORIGIN_RE: Final = re.compile(r"https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?")


def cache_key_url(request_origin: str, name: str, version: str) -> str:
    """The Cache API key of a shell version, on the request's own (validated) origin."""
    origin = request_origin if _ORIGIN_RE.fullmatch(request_origin) else "https://edgeshelf.invalid"
    return f"{origin}/__edgeshelf/shell/{quote(name, safe='')}/{quote(version, safe='')}"


def page_headers(content_type: str, shell_headers: tuple[tuple[str, str], ...]) -> list[list[str]]:
    """A personalized page's headers: the site's own (``schema.kept_headers``), then the ones
    edgeshelf sets: the shell's content type, no caching anywhere, varying on Cookie."""
    return [
        *([name, value] for name, value in shell_headers),
        ["content-type", content_type],
        ["cache-control", "private, no-store"],
        ["vary", "Cookie"],
    ]


def cache_control_for(pinned: bool, unpinned_ttl_s: int) -> str:
    """How long the Cache API keeps a shell: a year for a published version's copy (its content
    is tied to its label), ``unpinned_ttl_s`` for what the origin serves now (no pointer, or a
    pointer without a copy), so that origin changes show."""
    return CACHE_CONTROL_SHELL if pinned else f"public, s-maxage={unpinned_ttl_s}, max-age=0"


def usable_shell(text: object) -> bool:
    return isinstance(text, str) and 0 < len(text) <= schema.MAX_SHELL_BYTES


class ShellPointerMemo:
    """The shell pointer per route, kept in isolate memory for a few seconds.

    Saves one KV read per request; a new shell version is picked up within the TTL. Only a
    confirmed missing key means "no pointer": a read that fails keeps the last good pointer
    (for another TTL, so a failing KV is not asked on every request), as its version is still
    the best one to serve and has a copy to fall back on.
    """

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._entries: dict[str, tuple[str, str, float]] = {}

    def fresh(self, name: str, now: float) -> bool:
        entry = self._entries.get(name)
        return entry is not None and entry[2] > now

    def store(self, name: str, pointer: schema.ShellPointer | None, now: float) -> None:
        """A read answered: the pointer, or None for a key that is not there."""
        if pointer is None:
            self._entries[name] = (NO_POINTER_VERSION, "", now + self._ttl)
        else:
            self._entries[name] = (pointer["version"], pointer["path"], now + self._ttl)

    def failed(self, name: str, now: float) -> str | None:
        """A read failed: keep what is known for another TTL; the version kept, if any."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        self._entries[name] = (entry[0], entry[1], now + self._ttl)
        return entry[0] if entry[0] != NO_POINTER_VERSION else None

    def get(self, name: str, default_path: str) -> tuple[str, str]:
        entry = self._entries.get(name)
        if entry is None:
            return NO_POINTER_VERSION, default_path
        return entry[0], entry[1] or default_path
