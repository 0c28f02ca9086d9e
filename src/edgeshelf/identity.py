"""Visitor identity: the long-lived ID cookie, read strictly and minted once (pure)."""

from __future__ import annotations

import re
import uuid
from typing import Final, NamedTuple

from .crawlers import is_crawler
from .schema import valid_uid

__all__ = [
    "COOKIE_MAX_AGE",
    "Identity",
    "clear_cookie_header",
    "cookie_header",
    "cookie_values",
    "identify",
    "issue_cookies",
    "mint_uid",
    "read_uid",
    "set_cookie_header",
    "wants_no_tracking",
]

# 400 days: the longest lifetime browsers honour for a cookie (RFC 6265bis).
COOKIE_MAX_AGE: Final = 400 * 24 * 60 * 60
# Enough for any honest Cookie header; beyond it we stop looking rather than scan megabytes.
_MAX_COOKIE_SCAN: Final = 16384
# Every cookie edgeshelf sets has these attributes, also when it clears one.
_ATTRIBUTES: Final = "Path=/; HttpOnly; Secure; SameSite=Lax"
# What edgeshelf ever puts in a cookie value: IDs and audience codes.
_VALUE_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")


def cookie_values(cookie_header: str | None, name: str) -> list[str]:
    """Every value the Cookie header gives ``name``, in order (quotes and spaces stripped)."""
    if not cookie_header:
        return []
    values = []
    for part in cookie_header[:_MAX_COOKIE_SCAN].split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            values.append(value.strip().strip('"'))
    return values


def read_uid(cookie_header: str | None, name: str) -> str | None:
    """The visitor ID from a Cookie header: the first value of exactly the minted format."""
    return next((v for v in cookie_values(cookie_header, name) if valid_uid(v)), None)


def mint_uid() -> str:
    """A new visitor ID: a version-4 UUID, 122 bits from the platform's CSPRNG."""
    return str(uuid.uuid4())


def cookie_header(name: str, value: str, max_age: int) -> str:
    """A ``Set-Cookie`` value with edgeshelf's attributes; refuses any value it never sets."""
    if not _VALUE_RE.fullmatch(value) or max_age < 0:
        raise ValueError("refusing to set a cookie value of the wrong format")
    return f"{name}={value}; Max-Age={max_age}; {_ATTRIBUTES}"


def set_cookie_header(name: str, uid: str) -> str:
    """The visitor ID cookie, for 400 days from now (re-set, it rolls forward)."""
    if not valid_uid(uid):
        raise ValueError("refusing to set a visitor ID of the wrong format")
    return cookie_header(name, uid, COOKIE_MAX_AGE)


def clear_cookie_header(name: str) -> str:
    """A ``Set-Cookie`` value that deletes the cookie (same name, path and attributes)."""
    return f"{name}=; Max-Age=0; {_ATTRIBUTES}"


def wants_no_tracking(sec_gpc: str | None) -> bool:
    """Global Privacy Control: ``Sec-GPC: 1`` means no persistent identifier."""
    return sec_gpc is not None and sec_gpc.strip() == "1"


class Identity(NamedTuple):
    """Who is asking, and the cookies the answer sets (in order)."""

    kind: str  # "cookie" (a valid ID came back) | "minted" | "gpc" | "bot"
    uid: str | None  # the visitor ID; None under GPC and for crawlers
    set_cookies: tuple[str, ...]


def identify(
    cookie_header: str | None, sec_gpc: str | None, user_agent: str | None,
    verified_bot: bool, cookie_name: str, audience_cookie: str | None = None,
) -> Identity:  # fmt: skip
    """The visitor's identity from the request, and what to set about it.

    A known crawler gets no ID and no cookie (it would get a fresh ID on every hit). ``Sec-GPC:
    1`` means no persistent identifier: none is minted or read, and the ID cookie (and the
    audience cookie bound to it) the browser still sends is cleared. Otherwise the ID cookie is
    read strictly, or a new ID is minted and set.
    """
    if is_crawler(user_agent, verified_bot):
        return Identity("bot", None, ())
    if wants_no_tracking(sec_gpc):
        names = (cookie_name,) if audience_cookie is None else (cookie_name, audience_cookie)
        held = tuple(clear_cookie_header(n) for n in names if cookie_values(cookie_header, n))
        return Identity("gpc", None, held)
    uid = read_uid(cookie_header, cookie_name)
    if uid is None:
        uid = mint_uid()
        return Identity("minted", uid, (set_cookie_header(cookie_name, uid),))
    return Identity("cookie", uid, ())


def issue_cookies(who: Identity, cookie_name: str, audience_cookie: str | None) -> tuple[str, ...]:
    """The ``Set-Cookie`` values of the answer, in order.

    When the audience cookie is (re)issued the ID cookie is re-set first, for a fresh 400 days
    (an active visitor's ID rolls forward instead of expiring); otherwise what identification
    decided (a new ID, a GPC clear, or nothing).
    """
    if audience_cookie is None or who.uid is None:
        return who.set_cookies
    return (set_cookie_header(cookie_name, who.uid), audience_cookie)
