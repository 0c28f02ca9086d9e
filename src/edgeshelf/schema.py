"""The one definition of edgeshelf's KV keys and payloads, shared by the Worker and the builder.

Pure standard-library Python: it runs unchanged under CPython (builder, unit tests) and Pyodide
(the Worker). Anything that becomes part of a KV key passes through a ``normalize_*`` or
``valid_*`` function here first, so no request or input content can shape a key, and every key
this module makes is far below Workers KV's 512-byte key limit.

Key schema (``<schema>`` is e.g. ``v3``)::

    u:<uid>                                   profile JSON          TTL 30 days
    seg:<country>-<lang>-<bucket>:<schema>    segment JSON          TTL 6 hours
    seg:<country>-<lang>-default:<schema>     language default      TTL 6 hours
    seg:global:<schema>                       global default        TTL 6 hours
    shell:<name>                              shell pointer JSON    no TTL
    shell:<name>:<version>                    the version's copy    no TTL
                                              (page + origin headers)
    exp:active                                the running experiment (edgeshelf.experiment)
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypedDict, cast

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "DEFAULT_BUCKET",
    "DEFAULT_SCHEMA",
    "DROPPED_SHELL_HEADERS",
    "EXPERIMENT_KEY",
    "GLOBAL_SEGMENT",
    "MAX_CATEGORIES",
    "MAX_PROFILE_BYTES",
    "MAX_SEGMENT_BYTES",
    "MAX_SEGMENT_IDS",
    "MAX_SHELL_BYTES",
    "PROFILE_FORMAT",
    "SEGMENT_PREFIX",
    "SEGMENT_TTL",
    "SHELL_COPY_FORMAT",
    "SHELL_PREFIX",
    "UNKNOWN_COUNTRY",
    "UNKNOWN_LANG",
    "USER_PREFIX",
    "USER_TTL",
    "Profile",
    "Segment",
    "ShellCopy",
    "ShellPointer",
    "StoredAudience",
    "decode_segment",
    "decode_shell_copy",
    "decode_shell_pointer",
    "encode_profile",
    "encode_segment",
    "encode_shell_copy",
    "encode_shell_pointer",
    "kept_headers",
    "normalize_bucket",
    "normalize_country",
    "normalize_lang",
    "profile_key",
    "read_profile",
    "schema_version",
    "segment_id",
    "segment_key",
    "segment_key_schema",
    "shell_backup_key",
    "shell_pointer_key",
    "valid_schema",
    "valid_shell_name",
    "valid_shell_version",
    "valid_uid",
    "valid_video_id",
]

USER_PREFIX: Final = "u:"
SEGMENT_PREFIX: Final = "seg:"
SHELL_PREFIX: Final = "shell:"
# The running experiment's document (format and assignment: edgeshelf.experiment).
EXPERIMENT_KEY: Final = "exp:active"

SEGMENT_TTL: Final = 60 * 60 * 6
USER_TTL: Final = 60 * 60 * 24 * 30

DEFAULT_SCHEMA: Final = "v3"
DEFAULT_BUCKET: Final = "default"
GLOBAL_SEGMENT: Final = "global"
UNKNOWN_COUNTRY: Final = "xx"
UNKNOWN_LANG: Final = "xx"
PROFILE_FORMAT: Final = 1

MAX_SEGMENT_IDS: Final = 50
MAX_CATEGORIES: Final = 8
# Caps the Worker enforces on what it reads; the builder refuses to write anything larger, so a
# value that passes the builder is always accepted by the Worker (tests/unit/test_contract.py).
MAX_PROFILE_BYTES: Final = 2048
MAX_SEGMENT_BYTES: Final = 8192
MAX_SHELL_BYTES: Final = 5 * 1024 * 1024
# The largest pointer encode_shell_pointer can write: a 64-character version and a 256-character
# path whose every code point JSON escapes as up to 12 ASCII characters (a surrogate pair).
_MAX_POINTER_BYTES: Final = 4096

# The minted visitor ID: a version-4 UUID as crypto.randomUUID() prints it (122 random bits).
_UID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_VIDEO_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COUNTRY_RE: Final = re.compile(r"[a-z]{2}")
_LANG_RE: Final = re.compile(r"[a-z]{2,3}")
_BUCKET_RE: Final = re.compile(r"[a-z0-9_]{1,32}")
_SCHEMA_RE: Final = re.compile(r"v[0-9]{1,4}")
_SHELL_NAME_RE: Final = re.compile(r"[a-z0-9_]{1,32}")
_SHELL_VERSION_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_BUCKET_JUNK_RE: Final = re.compile(r"[^a-z0-9]+")
_SEGMENT_ID_RE: Final = re.compile(r"[a-z]{2}-[a-z]{2,3}-[a-z0-9_]{1,32}")


class Profile(TypedDict):
    """A visitor's profile as stored under ``u:<uid>``."""

    fv: int
    country: str
    lang: str
    affinity_bucket: str
    recent_categories: list[str]
    last_seen: int


class Segment(TypedDict):
    """A segment's shelf as stored under ``seg:...``: ``version`` is the schema's number."""

    ids: list[str]
    built_at: int
    version: int


class ShellPointer(TypedDict):
    """The current version of a page shell, stored under ``shell:<name>``."""

    version: str
    path: str


# --- validation of anything that becomes part of a key -------------------------------------


def _full(regex: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and regex.fullmatch(value) is not None


def valid_uid(value: object) -> bool:
    """True for exactly the visitor-ID format the Worker mints."""
    return _full(_UID_RE, value)


def valid_video_id(value: object) -> bool:
    return _full(_VIDEO_ID_RE, value)


def valid_schema(value: object) -> bool:
    return _full(_SCHEMA_RE, value)


def valid_shell_name(value: object) -> bool:
    return _full(_SHELL_NAME_RE, value)


def valid_shell_version(value: object) -> bool:
    return _full(_SHELL_VERSION_RE, value)


def schema_version(schema: str) -> int:
    """``"v3"`` -> ``3``; raises ``ValueError`` for anything that is not ``v<digits>``."""
    if not valid_schema(schema):
        raise ValueError(f"segment schema must look like v3, got {schema!r}")
    return int(schema[1:])


def normalize_country(value: object) -> str:
    """ISO 3166 alpha-2, lower-case; anything else is the unknown country ``xx``."""
    if isinstance(value, str):
        value = value.strip().lower()
        if _COUNTRY_RE.fullmatch(value):
            return value
    return UNKNOWN_COUNTRY


def normalize_lang(value: object) -> str:
    """Primary language subtag, lower-case (``en-US`` -> ``en``); otherwise ``xx``."""
    if isinstance(value, str):
        value = value.strip().lower().replace("_", "-").split("-", 1)[0]
        if _LANG_RE.fullmatch(value):
            return value
    return UNKNOWN_LANG


def normalize_bucket(value: object) -> str:
    """A category or bucket name as a key part: ``[a-z0-9_]``, at most 32 characters."""
    if isinstance(value, str):
        value = _BUCKET_JUNK_RE.sub("_", value.strip().lower()).strip("_")[:32].rstrip("_")
        if value:
            return value
    return DEFAULT_BUCKET


# --- keys ----------------------------------------------------------------------------------


def profile_key(uid: str) -> str:
    if not valid_uid(uid):
        raise ValueError("not a visitor ID of the minted format")
    return USER_PREFIX + uid


def segment_id(country: str, lang: str, bucket: str) -> str:
    """``us-en-shorts`` from already-normalised parts (normalised again: cheap and safe)."""
    return f"{normalize_country(country)}-{normalize_lang(lang)}-{normalize_bucket(bucket)}"


def segment_key_schema(key: str) -> str | None:
    """The ``<schema>`` of a segment key (``seg:us-en-x:v3`` -> ``v3``); ``None`` if not one."""
    if not key.startswith(SEGMENT_PREFIX):
        return None
    schema = key.rsplit(":", 1)[-1]
    return schema if valid_schema(schema) and key.count(":") == 2 else None


def segment_key(seg_id: str, schema: str) -> str:
    """``seg:<id>:<schema>`` for a :func:`segment_id` result or ``global``; else ValueError."""
    if seg_id != GLOBAL_SEGMENT and not _full(_SEGMENT_ID_RE, seg_id):
        raise ValueError(f"segment id must look like us-en-shorts or be global, got {seg_id!r}")
    if not valid_schema(schema):
        raise ValueError(f"segment schema must look like v3, got {schema!r}")
    return f"{SEGMENT_PREFIX}{seg_id}:{schema}"


def shell_pointer_key(name: str) -> str:
    if not valid_shell_name(name):
        raise ValueError(f"shell name must match [a-z0-9_]{{1,32}}, got {name!r}")
    return SHELL_PREFIX + name


def shell_backup_key(name: str, version: str) -> str:
    if not valid_shell_version(version):
        raise ValueError(f"shell version must match [A-Za-z0-9._-]{{1,64}}, got {version!r}")
    return f"{shell_pointer_key(name)}:{version}"


# --- payloads ------------------------------------------------------------------------------


def _dumps(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True, sort_keys=True)


def _loads_object(text: object, limit: int) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text or len(text) > limit:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def encode_profile(
    *,
    country: str,
    lang: str,
    affinity_bucket: str,
    recent_categories: list[str],
    last_seen: int,
) -> str:
    """Serialise a profile; parts are normalised, so the result always decodes."""
    cats: list[str] = []
    for cat in recent_categories:
        norm = normalize_bucket(cat)
        if norm not in cats:
            cats.append(norm)
    profile: Profile = {
        "fv": PROFILE_FORMAT,
        "country": normalize_country(country),
        "lang": normalize_lang(lang),
        "affinity_bucket": normalize_bucket(affinity_bucket),
        "recent_categories": cats[:MAX_CATEGORIES],
        "last_seen": int(last_seen),
    }
    if not _is_int(profile["last_seen"]):
        raise ValueError(f"last_seen must be epoch seconds, got {last_seen!r}")
    return _dumps(profile)


class StoredAudience(NamedTuple):
    """What the Worker takes from a stored profile: the parts that choose a shelf, normalised.

    ``country`` and ``lang`` are None when the profile lacks a usable value (the request's
    signals stand in for them); a missing or unusable bucket is ``default``.
    """

    country: str | None
    lang: str | None
    bucket: str


def _stored_part(raw: object, normalise: Callable[[object], str], unknown: str) -> str | None:
    """A stored country or language, normalised; None when it is missing or not one at all.

    An explicit unknown (``"xx"``, what the builder writes for users without one) is kept, so the
    Worker asks for the segment the builder computed for that user.
    """
    part = normalise(raw)
    if part == unknown and not (isinstance(raw, str) and raw.strip().lower() == unknown):
        return None
    return part


def read_profile(text: object) -> StoredAudience | None:
    """A stored profile as the Worker reads it: strict on write (``encode_profile``), lenient here.

    Any JSON object within ``MAX_PROFILE_BYTES`` whose ``fv`` is 1 or absent is a profile, in
    this format or in another system's (the original design wrote no ``fv``). ``country``,
    ``lang`` and ``affinity_bucket`` pass through the builder's normalisers (``"JP"`` -> ``jp``,
    ``"ja-JP"`` -> ``ja``, ``"Anime"`` -> ``anime``), so nothing reaches a key unnormalised; a
    field that is missing or unusable falls back on its own. ``recent_categories`` and
    ``last_seen`` do not choose a shelf and are not read. None for anything else: not text,
    corrupt, oversized, not an object, or another format version.
    """
    obj = _loads_object(text, MAX_PROFILE_BYTES)
    if obj is None:
        return None
    # _is_int first: in Python True == 1 and 1.0 == 1, neither of which is format 1.
    fv = obj.get("fv", PROFILE_FORMAT)
    if not _is_int(fv) or fv != PROFILE_FORMAT:
        return None
    return StoredAudience(
        _stored_part(obj.get("country"), normalize_country, UNKNOWN_COUNTRY),
        _stored_part(obj.get("lang"), normalize_lang, UNKNOWN_LANG),
        normalize_bucket(obj.get("affinity_bucket")),
    )


def encode_segment(ids: list[str], *, built_at: int, schema: str) -> str:
    """Serialise a segment's top-N; refuses IDs the Worker would reject, dedups, caps at 50."""
    unique: list[str] = []
    for vid in ids:
        if not valid_video_id(vid):
            raise ValueError(f"invalid video id {vid!r}: must match [A-Za-z0-9_-]{{1,64}}")
        if vid not in unique:
            unique.append(vid)
    segment: Segment = {
        "ids": unique[:MAX_SEGMENT_IDS],
        "built_at": int(built_at),
        "version": schema_version(schema),
    }
    if not _is_int(segment["built_at"]):
        raise ValueError(f"built_at must be epoch seconds, got {built_at!r}")
    return _dumps(segment)


def decode_segment(text: object, schema: str) -> Segment | None:
    """Parse a stored segment; ``None`` when corrupt, oversized or of another schema version.

    Invalid video IDs inside an otherwise good segment are dropped rather than failing the
    whole shelf: one bad row upstream should not empty a shelf seen by millions.
    """
    obj = _loads_object(text, MAX_SEGMENT_BYTES)
    if obj is None:
        return None
    ids, built_at, version = obj.get("ids"), obj.get("built_at"), obj.get("version")
    if not (isinstance(ids, list) and _is_int(built_at) and _is_int(version)):
        return None
    if not valid_schema(schema) or version != int(schema[1:]):
        return None
    seen: list[str] = []
    for vid in ids:
        if valid_video_id(vid) and vid not in seen:
            seen.append(vid)
            if len(seen) == MAX_SEGMENT_IDS:
                break
    return cast("Segment", {"ids": seen, "built_at": built_at, "version": version})


def encode_shell_pointer(version: str, path: str = "/") -> str:
    if not valid_shell_version(version):
        raise ValueError(f"shell version must match [A-Za-z0-9._-]{{1,64}}, got {version!r}")
    if not (path.startswith("/") and len(path) <= 256 and "\\" not in path and "//" not in path):
        raise ValueError(f"shell path must be an absolute path, got {path!r}")
    pointer: ShellPointer = {"version": version, "path": path}
    return _dumps(pointer)


def decode_shell_pointer(text: object) -> ShellPointer | None:
    obj = _loads_object(text, _MAX_POINTER_BYTES)
    if obj is None:
        return None
    version, path = obj.get("version"), obj.get("path")
    if not (valid_shell_version(version) and isinstance(path, str)):
        return None
    try:
        encode_shell_pointer(cast("str", version), path)
    except ValueError:
        return None
    return cast("ShellPointer", {"version": version, "path": path})


# --- the shell copy: the page and the origin's headers that travel with it ------------------

SHELL_COPY_FORMAT: Final = "edgeshelf.shell/1"
# The copy's JSON escapes at most double the HTML; headers add little.
_MAX_SHELL_COPY_BYTES: Final = 2 * MAX_SHELL_BYTES + 65536
_MAX_SHELL_HEADERS: Final = 64
_MAX_HEADER_VALUE: Final = 8192
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,64}")
# Response headers of the origin's page that do not travel with the shell: edgeshelf sets
# these itself for the personalized page, they describe the origin's bytes or connection
# rather than the page served (hop-by-hop headers, RFC 9110 7.6.1), or the edge sets them per
# response. Everything else (Content-Security-Policy, Strict-Transport-Security,
# X-Frame-Options, Referrer-Policy, Permissions-Policy, Link, ...) is the site's and is kept.
DROPPED_SHELL_HEADERS: Final = frozenset(
    {
        "cache-control", "vary", "set-cookie", "set-cookie2", "server-timing", "content-type",
        "content-length", "content-encoding", "content-range", "accept-ranges", "etag",
        "last-modified", "age", "expires", "date", "content-md5", "digest", "content-digest",
        "repr-digest", "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "alt-svc",
        "server", "cf-cache-status", "cf-ray", "x-edgeshelf-debug",
    }
)  # fmt: skip


class ShellCopy(NamedTuple):
    """A shell version's page and the origin headers kept with it."""

    html: str
    headers: tuple[tuple[str, str], ...]


def kept_headers(pairs: Iterable[tuple[object, object]]) -> tuple[tuple[str, str], ...]:
    """The origin's response headers that travel with its page (names lower-cased).

    Drops ``DROPPED_SHELL_HEADERS``, whatever a ``Connection`` header names, anything that is
    not a well-formed header, and everything past 64 headers: the rules the Worker applies to
    the origin, the Cache API and the copy in KV alike, and the builder when it publishes one.
    """
    items = [(str(n).strip().lower(), v) for n, v in pairs if isinstance(n, str)]
    dropped = set(DROPPED_SHELL_HEADERS)
    for name, value in items:
        if name == "connection" and isinstance(value, str):
            dropped.update(token.strip().lower() for token in value.split(","))
    kept: list[tuple[str, str]] = []
    for name, value in items:
        if (
            name in dropped
            or not _HEADER_NAME_RE.fullmatch(name)
            or not isinstance(value, str)
            or len(value) > _MAX_HEADER_VALUE
            or any(c in value for c in "\r\n\x00")
        ):
            continue
        kept.append((name, value.strip()))
        if len(kept) == _MAX_SHELL_HEADERS:
            break
    return tuple(kept)


def encode_shell_copy(html: str, headers: Iterable[tuple[str, str]] = ()) -> str:
    """The value of ``shell:<name>:<version>``: the page and the headers it is served with."""
    if not 0 < len(html) <= MAX_SHELL_BYTES:
        raise ValueError(f"a shell must be 1 to {MAX_SHELL_BYTES} characters")
    copy = {
        "format": SHELL_COPY_FORMAT,
        "headers": [list(pair) for pair in kept_headers(headers)],
        "html": html,
    }
    return json.dumps(copy, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def decode_shell_copy(text: object) -> ShellCopy | None:
    """A stored copy; a plain-HTML value (written before headers were kept) is the page alone.

    None when it is missing, empty, oversized or not a copy at all.
    """
    if not isinstance(text, str) or not text:
        return None
    if not text.lstrip().startswith("{"):  # an HTML page never starts with "{"
        return ShellCopy(text, ()) if len(text) <= MAX_SHELL_BYTES else None
    obj = _loads_object(text, _MAX_SHELL_COPY_BYTES)
    if obj is None or obj.get("format") != SHELL_COPY_FORMAT:
        return None
    html, headers = obj.get("html"), obj.get("headers")
    if not (isinstance(html, str) and 0 < len(html) <= MAX_SHELL_BYTES):
        return None
    pairs = [
        (pair[0], pair[1])
        for pair in (headers if isinstance(headers, list) else [])
        if isinstance(pair, list) and len(pair) == 2
    ]
    return ShellCopy(html, kept_headers(pairs))
