"""The audience cookie: the audience a visitor was last served, carried by the browser (pure).

A returning visitor's page would otherwise wait on one KV read, its profile ``u:<uid>``: in
production a cold, per-user read and the slowest thing the Worker does (README, "The audience
cookie"). Once the Worker has read the profile (or found none) it sets ``es_aud`` holding the
audience it chose, and for ``AUDIENCE_TTL`` seconds the visitor's pages read no profile.

The value is ``a1.<country>.<lang>.<bucket>.<k|r>.<tag>``: the parts obey the segment-key rules
of :mod:`edgeshelf.schema` (so the cookie can only name what a segment key can name), ``k`` or
``r`` says whether the audience came from a stored profile or from request signals, and the
tag is FNV-1a 32 of the ``es_uid`` value it belongs to (a binding check, not a secret: a forged
value can only choose among the published, k-anonymous shelves anyone may see).
"""

from __future__ import annotations

import re
from typing import Final

from . import schema
from .identity import cookie_header, cookie_values
from .profile import Audience

__all__ = [
    "AUDIENCE_FORMAT",
    "MAX_AUDIENCE_TTL",
    "encode_audience",
    "read_audience",
    "set_audience_header",
    "uid_tag",
]

AUDIENCE_FORMAT: Final = "a1"
# Four hundred days, like the ID cookie it is bound to: no browser keeps a cookie longer.
MAX_AUDIENCE_TTL: Final = 400 * 24 * 60 * 60
_FNV_OFFSET: Final = 0x811C9DC5
_FNV_PRIME: Final = 0x01000193
_VALUE_RE: Final = re.compile(
    r"a1\.([a-z]{2})\.([a-z]{2,3})\.([a-z0-9_]{1,32})\.([kr])\.([0-9a-f]{8})"
)
_SOURCES: Final = {"k": "kv", "r": "request"}


def uid_tag(uid: str) -> str:
    """FNV-1a 32 of the ID's ASCII bytes, as 8 lower-case hex digits."""
    h = _FNV_OFFSET
    for byte in uid.encode("ascii"):
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return f"{h:08x}"


def encode_audience(audience: Audience, uid: str) -> str:
    """The cookie value for ``audience`` served to ``uid``; ValueError for parts no key allows."""
    source = "k" if audience.source == "kv" else "r"
    value = ".".join(
        (AUDIENCE_FORMAT, audience.country, audience.lang, audience.bucket, source, uid_tag(uid))
    )
    if not schema.valid_uid(uid) or not _VALUE_RE.fullmatch(value):
        raise ValueError("refusing to encode an audience no segment key could name")
    return value


def set_audience_header(name: str, audience: Audience, uid: str, ttl: int) -> str:
    """The ``Set-Cookie`` value carrying ``audience`` for ``ttl`` seconds."""
    return cookie_header(name, encode_audience(audience, uid), ttl)


def read_audience(cookie_header_value: str | None, name: str, uid: str) -> Audience | None:
    """The audience the request's cookie carries for ``uid``; None unless it is exactly valid.

    Exactly one ``name`` cookie, of exactly the ``a1`` form, with each part valid by the
    segment-key rules and the tag of ``uid``. Anything else (missing, duplicated, oversized,
    malformed, another ID's) is None, and the Worker reads the profile as it would without it.
    """
    values = cookie_values(cookie_header_value, name)
    if len(values) != 1:
        return None
    match = _VALUE_RE.fullmatch(values[0])
    if match is None or match[5] != uid_tag(uid):
        return None
    country, lang, bucket, source = match[1], match[2], match[3], match[4]
    if (
        schema.normalize_country(country) != country
        or schema.normalize_lang(lang) != lang
        or schema.normalize_bucket(bucket) != bucket
    ):
        return None
    return Audience(country, lang, bucket, _SOURCES[source])
