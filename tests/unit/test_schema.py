"""The shared key and payload rules: key shapes and sizes, normalisation, decoding hostile text."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf import schema
from edgeshelf.profile import Audience
from edgeshelf.segments import chain_for
from tests.unit.strategies import (
    FAST,
    PROFILE_KEY_RE,
    SEGMENT_ID_RE,
    SEGMENT_KEY_RE,
    assert_valid_segment,
    assert_valid_stored_audience,
    hostile_text,
    json_texts,
    json_values,
    video_ids,
)

KV_KEY_LIMIT = 512
SHELL_POINTER_KEY_RE = re.compile(r"shell:[a-z0-9_]{1,32}")
SHELL_BACKUP_KEY_RE = re.compile(r"shell:[a-z0-9_]{1,32}:[A-Za-z0-9._-]{1,64}")

schemas = st.from_regex(r"v[0-9]{1,4}", fullmatch=True)
shell_names = st.from_regex(r"[a-z0-9_]{1,32}", fullmatch=True)
shell_versions = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
anything = st.one_of(hostile_text, json_values, st.binary(max_size=8))


def good_profile(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "fv": 1,
        "country": "us",
        "lang": "en",
        "affinity_bucket": "shorts",
        "recent_categories": ["shorts", "music"],
        "last_seen": 1_750_000_000,
    }
    fields.update(overrides)
    return fields


def good_segment(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"ids": ["a1", "b2"], "built_at": 1_750_000_000, "version": 3}
    fields.update(overrides)
    return fields


def fits(key: str) -> bool:
    return len(key.encode("utf-8")) <= KV_KEY_LIMIT


# --- normalisation and keys ------------------------------------------------------------------


@FAST
@given(anything)
def test_normalisers_always_yield_their_documented_shape(value: object) -> None:
    """Whatever the input, country, language and bucket come out as plain ASCII key parts."""
    assert re.fullmatch(r"[a-z]{2}", schema.normalize_country(value))
    assert re.fullmatch(r"[a-z]{2,3}", schema.normalize_lang(value))
    assert re.fullmatch(r"[a-z0-9_]{1,32}", schema.normalize_bucket(value))


@FAST
@given(hostile_text)
def test_normalisers_are_idempotent(value: str) -> None:
    """Normalising a normalised part changes nothing, so the builder and Worker cannot drift."""
    for fn in (schema.normalize_country, schema.normalize_lang, schema.normalize_bucket):
        once = fn(value)
        assert fn(once) == once


@pytest.mark.parametrize(
    ("fn", "raw", "expected"),
    [
        (schema.normalize_country, " US ", "us"),
        (schema.normalize_country, "usa", "xx"),
        (schema.normalize_country, "u:", "xx"),
        (schema.normalize_country, "", "xx"),
        (schema.normalize_country, None, "xx"),
        (schema.normalize_country, b"us", "xx"),
        (schema.normalize_lang, "en-US", "en"),
        (schema.normalize_lang, "PT_br", "pt"),
        (schema.normalize_lang, "fil", "fil"),
        (schema.normalize_lang, "english", "xx"),
        (schema.normalize_lang, "-en", "xx"),
        (schema.normalize_lang, 7, "xx"),
        (schema.normalize_bucket, "Shorts & Clips", "shorts_clips"),
        (schema.normalize_bucket, "__a--b::c__", "a_b_c"),
        (schema.normalize_bucket, "a" * 31 + "-b", "a" * 31),
        (schema.normalize_bucket, "!!!", "default"),
        (schema.normalize_bucket, "", "default"),
        (schema.normalize_bucket, ["shorts"], "default"),
    ],
)
def test_normaliser_examples(fn: Any, raw: object, expected: str) -> None:
    """Documented examples: case and region folded away, junk collapsed, the rest defaulted."""
    assert fn(raw) == expected


@FAST
@given(hostile_text, hostile_text, hostile_text, schemas)
def test_segment_keys_have_their_shape_for_any_input(
    country: str, lang: str, bucket: str, seg_schema: str
) -> None:
    """No input can smuggle a ':' or '-' into a segment key part or push it past 512 bytes."""
    seg_id = schema.segment_id(country, lang, bucket)
    assert SEGMENT_ID_RE.fullmatch(seg_id)
    assert len(seg_id.split("-")) == 3
    key = schema.segment_key(seg_id, seg_schema)
    assert SEGMENT_KEY_RE.fullmatch(key)
    assert fits(key)
    assert schema.segment_key_schema(key) == seg_schema
    for step in chain_for(Audience(country, lang, bucket, "request"), seg_schema):
        assert SEGMENT_KEY_RE.fullmatch(step.key)
        assert fits(step.key)


@FAST
@given(hostile_text, st.one_of(schemas, hostile_text))
def test_segment_key_refuses_what_is_not_a_segment_id(seg_id: str, seg_schema: str) -> None:
    """``segment_key`` either raises ValueError or returns a key of the documented shape."""
    try:
        key = schema.segment_key(seg_id, seg_schema)
    except ValueError:
        return
    assert SEGMENT_KEY_RE.fullmatch(key)
    assert fits(key)


@pytest.mark.parametrize(
    "seg_id", ["", "us-en", "us-en-a:b", "us-en-x-y", "US-en-x", "x" * 600, "global:v1"]
)
def test_segment_key_rejects_malformed_ids(seg_id: str) -> None:
    """A segment ID that is not ``<cc>-<lang>-<bucket>`` or ``global`` never becomes a key."""
    with pytest.raises(ValueError, match="segment id"):
        schema.segment_key(seg_id, "v3")


@FAST
@given(hostile_text)
def test_profile_key_accepts_only_minted_ids(uid: str) -> None:
    """``profile_key`` raises for anything but a minted ID, so a cookie cannot shape a key."""
    try:
        key = schema.profile_key(uid)
    except ValueError:
        assert not schema.valid_uid(uid)
        return
    assert PROFILE_KEY_RE.fullmatch(key)
    assert fits(key)


def test_profile_key_of_a_minted_id() -> None:
    """A version-4 UUID as ``crypto.randomUUID()`` prints it is the key ``u:<uid>``."""
    uid = str(uuid.uuid4())
    assert schema.profile_key(uid) == "u:" + uid


@FAST
@given(hostile_text, hostile_text)
def test_shell_keys_have_their_shape_for_any_input(name: str, version: str) -> None:
    """Shell pointer and backup keys either raise ValueError or have the documented shape."""
    try:
        pointer = schema.shell_pointer_key(name)
    except ValueError:
        assert not schema.valid_shell_name(name)
    else:
        assert SHELL_POINTER_KEY_RE.fullmatch(pointer)
    try:
        backup = schema.shell_backup_key(name, version)
    except ValueError:
        assert not (schema.valid_shell_name(name) and schema.valid_shell_version(version))
    else:
        assert SHELL_BACKUP_KEY_RE.fullmatch(backup)
        assert fits(backup)


@FAST
@given(shell_names, shell_versions)
def test_shell_keys_of_valid_parts(name: str, version: str) -> None:
    """Valid names and versions always make keys, the backup key extending the pointer key."""
    assert schema.shell_pointer_key(name) == "shell:" + name
    assert schema.shell_backup_key(name, version) == f"shell:{name}:{version}"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("seg:us-en-shorts:v3", "v3"),
        ("seg:global:v12", "v12"),
        ("seg:us-en-shorts:V3", None),
        ("seg:a:b:v3", None),
        ("u:us-en-shorts:v3", None),
        ("seg:us-en-shorts", None),
        ("", None),
    ],
)
def test_segment_key_schema_examples(key: str, expected: str | None) -> None:
    """Only ``seg:<id>:<schema>`` keys with one ID part yield their schema."""
    assert schema.segment_key_schema(key) == expected


@FAST
@given(hostile_text)
def test_segment_key_schema_never_raises(key: str) -> None:
    """Any string yields either None or a valid schema name."""
    found = schema.segment_key_schema(key)
    assert found is None or schema.valid_schema(found)


@pytest.mark.parametrize(
    ("raw", "expected"), [("v3", 3), ("v0", 0), ("v0042", 42), ("v9999", 9999)]
)
def test_schema_version_of_valid_names(raw: str, expected: int) -> None:
    """``v<digits>`` is the number after the ``v``."""
    assert schema.schema_version(raw) == expected


@pytest.mark.parametrize("raw", ["V3", "3", "v", "v12345", " v3", "v3\n", "v\u0663", "v-1"])
def test_schema_version_rejects_other_names(raw: str) -> None:
    """Anything but ``v`` and one to four ASCII digits is refused with ValueError."""
    with pytest.raises(ValueError, match="v3"):
        schema.schema_version(raw)


# --- decoding never raises and returns only valid payloads ----------------------------------


@FAST
@given(json_texts)
def test_read_profile_never_raises_on_text(text: str) -> None:
    """Arbitrary text reads as None or as key-safe audience parts."""
    stored = schema.read_profile(text)
    if stored is not None:
        assert_valid_stored_audience(stored)


@FAST
@given(json_texts, hostile_text)
def test_decode_segment_never_raises_on_text(text: str, seg_schema: str) -> None:
    """Arbitrary text and schema names decode to None or to a segment whose every field is valid."""
    segment = schema.decode_segment(text, seg_schema)
    if segment is not None:
        assert_valid_segment(segment, schema.schema_version(seg_schema))


@FAST
@given(json_texts)
def test_decode_shell_pointer_never_raises_on_text(text: str) -> None:
    """Arbitrary text decodes to None or to a pointer that the encoder would write."""
    pointer = schema.decode_shell_pointer(text)
    if pointer is not None:
        assert set(pointer) == {"version", "path"}
        assert schema.encode_shell_pointer(pointer["version"], pointer["path"])


@pytest.mark.parametrize("value", [None, 1, b'{"fv":1}', ["{}"], {"fv": 1}, ""])
def test_decoders_return_none_for_non_text(value: object) -> None:
    """A KV read that is not a non-empty string (None, bytes, objects) decodes to None."""
    assert schema.read_profile(value) is None
    assert schema.decode_segment(value, "v3") is None
    assert schema.decode_shell_pointer(value) is None


_PROFILE_FIELDS = ("fv", "country", "lang", "affinity_bucket", "recent_categories", "last_seen")


def _part(value: object, normalise: Any, unknown: str) -> str | None:
    """What read_profile should make of a stored country or language."""
    normalised = normalise(value)
    explicit = isinstance(value, str) and value.strip().lower() == unknown
    return None if normalised == unknown and not explicit else normalised


@FAST
@given(
    st.dictionaries(st.sampled_from(_PROFILE_FIELDS), json_values, max_size=3),
    st.sets(st.sampled_from(_PROFILE_FIELDS), max_size=2),
    st.dictionaries(st.text(max_size=8), json_values, max_size=2),
)
def test_read_profile_of_damaged_profiles(
    replaced: dict[str, Any], dropped: set[str], extra: dict[str, Any]
) -> None:
    """Damaged fields fall back one by one; only another format version or size refuses it."""
    doc = {**extra, **good_profile(), **replaced}
    for name in dropped:
        doc.pop(name)
    text = json.dumps(doc)
    stored = schema.read_profile(text)
    fv = doc.get("fv", 1)
    if type(fv) is not int or fv != 1 or len(text.encode()) > schema.MAX_PROFILE_BYTES:
        assert stored is None
        return
    assert stored == schema.StoredAudience(
        _part(doc.get("country"), schema.normalize_country, "xx"),
        _part(doc.get("lang"), schema.normalize_lang, "xx"),
        schema.normalize_bucket(doc.get("affinity_bucket")),
    )


@pytest.mark.parametrize("fv", [True, 1.0, "1", 2, 0, None, [1]], ids=repr)
def test_read_profile_refuses_another_format_version(fv: object) -> None:
    """A profile that claims a format other than the integer 1 is not read at all."""
    assert schema.read_profile(json.dumps(good_profile(fv=fv))) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The original design's shape: no fv, extra fields.
        (
            '{"country":"jp","lang":"ja","affinity_bucket":"anime",'
            '"recent_categories":["anime"],"last_seen":1732400000}',
            ("jp", "ja", "anime"),
        ),
        ('{"country":"JP","lang":"ja-JP","affinity_bucket":"Anime"}', ("jp", "ja", "anime")),
        ('{"country":"usa","lang":7,"affinity_bucket":"a:b"}', (None, None, "a_b")),
        ('{"affinity_bucket":"../../u:admin"}', (None, None, "u_admin")),
        ('{"country":"de"}', ("de", None, "default")),
        ('{"recent_categories":"x","last_seen":"yesterday"}', (None, None, "default")),
        ("{}", (None, None, "default")),
        ('{"fv":1}', (None, None, "default")),
        # What the builder writes for a user with no known country: kept, not replaced.
        ('{"fv":1,"country":"xx","lang":"XX","affinity_bucket":"music"}', ("xx", "xx", "music")),
    ],
)
def test_read_profile_is_lenient_field_by_field(
    text: str, expected: tuple[str | None, str | None, str]
) -> None:
    """Other systems' profiles are read: normalised where they can be, defaulted where not."""
    assert schema.read_profile(text) == schema.StoredAudience(*expected)


@pytest.mark.parametrize("text", ["{", "[]", "null", "1", '"{}"', "\x00", "NaN", '{"fv":1,"fv":1'])
def test_read_profile_refuses_corrupt_text(text: str) -> None:
    """Corrupt JSON and non-objects are not profiles."""
    assert schema.read_profile(text) is None


def test_read_profile_size_cap_is_exact() -> None:
    """A profile padded to MAX_PROFILE_BYTES is read; one byte more is not."""
    text = json.dumps(good_profile())
    at_cap = text + " " * (schema.MAX_PROFILE_BYTES - len(text))
    assert schema.read_profile(at_cap) == schema.StoredAudience("us", "en", "shorts")
    assert schema.read_profile(at_cap + " ") is None


def test_decode_segment_size_cap_is_exact() -> None:
    """A valid segment padded to MAX_SEGMENT_BYTES decodes; one byte more does not."""
    text = json.dumps(good_segment())
    at_cap = text + " " * (schema.MAX_SEGMENT_BYTES - len(text))
    assert schema.decode_segment(at_cap, "v3") == good_segment()
    assert schema.decode_segment(at_cap + " ", "v3") is None


_SEGMENT_FIELDS = ("ids", "built_at", "version")


@FAST
@given(
    st.dictionaries(st.sampled_from(_SEGMENT_FIELDS), json_values, max_size=2),
    st.sets(st.sampled_from(_SEGMENT_FIELDS), max_size=1),
)
def test_decode_segment_of_damaged_segments(replaced: dict[str, Any], dropped: set[str]) -> None:
    """A segment with fields replaced or dropped decodes to None or a valid segment."""
    doc = {**good_segment(), **replaced}
    for name in dropped:
        doc.pop(name)
    segment = schema.decode_segment(json.dumps(doc), "v3")
    if segment is not None:
        assert_valid_segment(segment, 3)
        assert segment["built_at"] == doc["built_at"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"ids": "a1"},
        {"ids": {"a1": 1}},
        {"ids": None},
        {"built_at": True},
        {"built_at": -1},
        {"built_at": 1.0},
        {"built_at": "1"},
        {"version": True},
        {"version": 3.0},
        {"version": "3"},
        {"version": 4},
    ],
    ids=repr,
)
def test_decode_segment_rejects_wrong_types_and_versions(overrides: dict[str, Any]) -> None:
    """A segment of another schema version or with a field of the wrong type is refused."""
    assert schema.decode_segment(json.dumps(good_segment(**overrides)), "v3") is None


def test_decode_segment_drops_bad_ids_and_duplicates() -> None:
    """Invalid or repeated IDs are dropped and the rest of the shelf kept, in order."""
    ids = ["a1", "</script>", 3, None, "a1", ["b2"], "x" * 65, "", "b2", True, "c-3_"]
    segment = schema.decode_segment(json.dumps(good_segment(ids=ids)), "v3")
    assert segment is not None
    assert segment["ids"] == ["a1", "b2", "c-3_"]


def test_decode_segment_caps_the_shelf_at_fifty() -> None:
    """A stored shelf of more than MAX_SEGMENT_IDS IDs is cut to its first fifty."""
    ids = [f"v{i}" for i in range(80)]
    segment = schema.decode_segment(json.dumps(good_segment(ids=ids)), "v3")
    assert segment is not None
    assert segment["ids"] == ids[: schema.MAX_SEGMENT_IDS]


@pytest.mark.parametrize("seg_schema", ["v4", "3", "V3", "", "v3:"])
def test_decode_segment_needs_the_configured_schema(seg_schema: str) -> None:
    """A v3 segment is refused when read with another (or an invalid) schema name."""
    assert schema.decode_segment(json.dumps(good_segment()), seg_schema) is None


@pytest.mark.parametrize(
    "doc",
    [
        {"version": "", "path": "/"},
        {"version": "a b", "path": "/"},
        {"version": "1", "path": "relative"},
        {"version": "1", "path": "//evil.example/"},
        {"version": "1", "path": "/a\\b"},
        {"version": "1", "path": "/" + "a" * 256},
        {"version": "1", "path": 5},
        {"version": 1, "path": "/"},
        {"path": "/"},
    ],
    ids=repr,
)
def test_decode_shell_pointer_rejects_bad_pointers(doc: dict[str, Any]) -> None:
    """Pointers with an invalid version or a path that is not a plain absolute path are refused."""
    assert schema.decode_shell_pointer(json.dumps(doc)) is None


# --- encoding: what the builder writes, the Worker reads back --------------------------------


@FAST
@given(
    hostile_text,
    hostile_text,
    hostile_text,
    st.lists(hostile_text, max_size=20),
    st.integers(min_value=0, max_value=2**53 - 1),
)
def test_profile_round_trip(
    country: str, lang: str, bucket: str, cats: list[str], last_seen: int
) -> None:
    """Any encodable profile decodes to its normalised content, within MAX_PROFILE_BYTES."""
    text = schema.encode_profile(
        country=country,
        lang=lang,
        affinity_bucket=bucket,
        recent_categories=cats,
        last_seen=last_seen,
    )
    assert text.isascii()
    assert len(text.encode("utf-8")) <= schema.MAX_PROFILE_BYTES
    expected_cats = list(dict.fromkeys(schema.normalize_bucket(c) for c in cats))[:8]
    assert json.loads(text)["recent_categories"] == expected_cats
    # Written normalised (an unknown country is written as "xx"), so read back exactly.
    assert schema.read_profile(text) == schema.StoredAudience(
        schema.normalize_country(country),
        schema.normalize_lang(lang),
        schema.normalize_bucket(bucket),
    )


def test_largest_profile_fits() -> None:
    """Eight distinct 32-character categories and the largest timestamp stay under the cap."""
    cats = [f"{i}" * 32 for i in range(8)]
    text = schema.encode_profile(
        country="us",
        lang="fil",
        affinity_bucket="z" * 32,
        recent_categories=cats,
        last_seen=2**53 - 1,
    )
    assert len(text.encode("utf-8")) <= schema.MAX_PROFILE_BYTES
    assert schema.read_profile(text) == schema.StoredAudience("us", "fil", "z" * 32)
    assert json.loads(text)["recent_categories"] == cats


@pytest.mark.parametrize("last_seen", [-1, 2**53])
def test_encode_profile_refuses_timestamps_the_worker_rejects(last_seen: int) -> None:
    """A ``last_seen`` outside 0..2**53-1 is refused at write time, not dropped at read time."""
    with pytest.raises(ValueError, match="last_seen"):
        schema.encode_profile(
            country="us", lang="en", affinity_bucket="x", recent_categories=[], last_seen=last_seen
        )


@FAST
@given(
    st.lists(video_ids, max_size=70),
    st.integers(min_value=0, max_value=2**53 - 1),
    schemas,
)
def test_segment_round_trip(ids: list[str], built_at: int, seg_schema: str) -> None:
    """Any encodable segment decodes to the same shelf (deduplicated, capped at fifty)."""
    text = schema.encode_segment(ids, built_at=built_at, schema=seg_schema)
    assert text.isascii()
    assert len(text.encode("utf-8")) <= schema.MAX_SEGMENT_BYTES
    assert schema.decode_segment(text, seg_schema) == {
        "ids": list(dict.fromkeys(ids))[:50],
        "built_at": built_at,
        "version": schema.schema_version(seg_schema),
    }


def test_largest_segment_fits() -> None:
    """Fifty distinct 64-character IDs and the largest timestamp stay under the cap."""
    ids = [f"{i:02d}" + "x" * 62 for i in range(50)]
    text = schema.encode_segment(ids, built_at=2**53 - 1, schema="v9999")
    assert len(text.encode("utf-8")) <= schema.MAX_SEGMENT_BYTES
    decoded = schema.decode_segment(text, "v9999")
    assert decoded is not None
    assert decoded["ids"] == ids


@pytest.mark.parametrize("built_at", [-1, 2**53])
def test_encode_segment_refuses_timestamps_the_worker_rejects(built_at: int) -> None:
    """A ``built_at`` the decoder would refuse is an error when writing, like ``last_seen``."""
    with pytest.raises(ValueError, match="built_at"):
        schema.encode_segment(["a"], built_at=built_at, schema="v3")


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "<script>", "a:b", "\u00e9"])
def test_encode_segment_refuses_invalid_ids(bad: str) -> None:
    """The builder cannot write an ID that the Worker would drop."""
    with pytest.raises(ValueError, match="invalid video id"):
        schema.encode_segment(["ok", bad], built_at=0, schema="v3")


def test_encode_segment_refuses_invalid_schema() -> None:
    """The schema name must look like ``v3``."""
    with pytest.raises(ValueError, match="v3"):
        schema.encode_segment(["ok"], built_at=0, schema="3")


@FAST
@given(
    shell_versions,
    st.text(max_size=255).filter(lambda p: "\\" not in p).map(lambda p: "/" + p),
)
def test_shell_pointer_round_trip(version: str, path: str) -> None:
    """Any pointer the encoder accepts decodes to the same version and path."""
    try:
        text = schema.encode_shell_pointer(version, path)
    except ValueError:
        assert "//" in path
        return
    assert schema.decode_shell_pointer(text) == {"version": version, "path": path}


def test_longest_shell_pointer_round_trips() -> None:
    """A 256-character path of characters JSON must escape still round-trips."""
    path = "/" + '\u2603\x00\ud800"' * 63 + "abc"
    assert len(path) == 256
    text = schema.encode_shell_pointer("v" * 64, path)
    assert schema.decode_shell_pointer(text) == {"version": "v" * 64, "path": path}


def test_encode_shell_pointer_defaults_to_root() -> None:
    """Without a path the pointer names the root page."""
    assert schema.decode_shell_pointer(schema.encode_shell_pointer("2025-06-01.1")) == {
        "version": "2025-06-01.1",
        "path": "/",
    }


@pytest.mark.parametrize(
    ("version", "path"),
    [("", "/"), ("a b", "/"), ("1", ""), ("1", "x"), ("1", "/a//b"), ("1", "/\\"), ("1", "/" * 2)],
)
def test_encode_shell_pointer_refuses_bad_parts(version: str, path: str) -> None:
    """Versions outside the key alphabet and paths that are not plain absolute paths raise."""
    with pytest.raises(ValueError, match="shell"):
        schema.encode_shell_pointer(version, path)


def test_encoding_is_canonical() -> None:
    """Encoded payloads are compact, key-sorted ASCII JSON, so equal content gives equal bytes."""
    text = schema.encode_segment(["b", "a"], built_at=5, schema="v3")
    assert text == '{"built_at":5,"ids":["b","a"],"version":3}'


# --- the shell copy and the headers that travel with it -------------------------------------

SITE_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; img-src *"),
    ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Permissions-Policy", "camera=()"),
    ("Link", "</app.css>; rel=preload; as=style"),
    ("Link", "</app.js>; rel=preload; as=script"),
]
ORIGIN_ONLY = [
    ("Set-Cookie", "session=1"),
    ("Content-Length", "123"),
    ("ETag", '"x"'),
    ("Last-Modified", "Mon, 23 Nov 2026 12:00:00 GMT"),
    ("Age", "5"),
    ("Expires", "0"),
    ("Cache-Control", "public, max-age=60"),
    ("Vary", "Accept-Encoding"),
    ("Transfer-Encoding", "chunked"),
    ("Connection", "keep-alive, X-Hop"),
    ("X-Hop", "hop-by-hop because Connection names it"),
    ("Keep-Alive", "timeout=5"),
    ("Content-Type", "text/html"),
    ("Content-Encoding", "gzip"),
]


def test_kept_headers_keep_the_sites_and_drop_the_rest():
    """Security and link headers survive; cookies, validators, lengths and hop-by-hop go."""
    kept = schema.kept_headers([*SITE_HEADERS, *ORIGIN_ONLY])
    assert kept == tuple((n.lower(), v) for n, v in SITE_HEADERS)


@FAST
@given(st.lists(st.tuples(anything, anything), max_size=80))
def test_kept_headers_are_always_well_formed(pairs):
    """Whatever comes in, at most 64 well-formed lower-case headers free of CR, LF and NUL leave."""
    kept = schema.kept_headers(pairs)
    assert len(kept) <= 64
    for name, value in kept:
        assert re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]{1,64}", name)
        assert name not in schema.DROPPED_SHELL_HEADERS
        assert not any(c in value for c in "\r\n\x00")


def test_shell_copy_round_trip_keeps_page_and_site_headers():
    """A copy written with the origin's headers reads back as the page and the kept headers."""
    text = schema.encode_shell_copy("<!doctype html><p>é</p>", [*SITE_HEADERS, *ORIGIN_ONLY])
    copy = schema.decode_shell_copy(text)
    assert copy == schema.ShellCopy(
        "<!doctype html><p>é</p>", tuple((n.lower(), v) for n, v in SITE_HEADERS)
    )


def test_a_plain_html_copy_is_still_read():
    """A copy written before headers were kept (the bare page) is served with no extra headers."""
    assert schema.decode_shell_copy("<html>old</html>") == schema.ShellCopy("<html>old</html>", ())


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "{",
        "{}",
        '{"format":"x","html":"<p>"}',
        '{"format":"edgeshelf.shell/1"}',
        '{"format":"edgeshelf.shell/1","html":""}',
        '{"format":"edgeshelf.shell/1","html":7}',
        "x" * (schema.MAX_SHELL_BYTES + 1),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_broken_copies_are_not_served(text):
    """A corrupt, empty, foreign or oversized copy is no copy at all."""
    assert schema.decode_shell_copy(text) is None


def test_hostile_headers_in_a_stored_copy_are_dropped():
    """Header pairs in KV go through the same rules: no smuggled cookie, CRLF or odd shape."""
    text = json.dumps(
        {
            "format": schema.SHELL_COPY_FORMAT,
            "html": "<p>",
            "headers": [
                ["set-cookie", "a=1"],
                ["x-a", "b\r\nSet-Cookie: c=1"],
                ["x-ok", "1"],
                "nope",
                ["x-three", "1", "2"],
                [1, 2],
            ],
        }
    )
    assert schema.decode_shell_copy(text) == schema.ShellCopy("<p>", (("x-ok", "1"),))
