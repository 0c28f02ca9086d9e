"""Visitor identity: the long-lived ID cookie, read strictly and minted once (pure)."""

from __future__ import annotations

import uuid
from typing import Final

from .schema import valid_uid

__all__ = ["COOKIE_MAX_AGE", "mint_uid", "read_uid", "set_cookie_header", "wants_no_tracking"]

# 400 days: the longest lifetime browsers honour for a cookie (RFC 6265bis).
COOKIE_MAX_AGE: Final = 400 * 24 * 60 * 60
# Enough for any honest Cookie header; beyond it we stop looking rather than scan megabytes.
_MAX_COOKIE_SCAN: Final = 16384


def read_uid(cookie_header: str | None, name: str) -> str | None:
    """The visitor ID from a Cookie header, only if it has exactly the minted format."""
    if not cookie_header:
        return None
    for part in cookie_header[:_MAX_COOKIE_SCAN].split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            value = value.strip().strip('"')
            if valid_uid(value):
                return value
    return None


def mint_uid() -> str:
    """A new visitor ID: a version-4 UUID, 122 bits from the platform's CSPRNG."""
    return str(uuid.uuid4())


def set_cookie_header(name: str, uid: str) -> str:
    if not valid_uid(uid):
        raise ValueError("refusing to set a visitor ID of the wrong format")
    return f"{name}={uid}; Max-Age={COOKIE_MAX_AGE}; Path=/; HttpOnly; Secure; SameSite=Lax"


def wants_no_tracking(sec_gpc: str | None) -> bool:
    """Global Privacy Control: ``Sec-GPC: 1`` means no persistent identifier."""
    return sec_gpc is not None and sec_gpc.strip() == "1"
