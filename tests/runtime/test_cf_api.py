"""The local Cloudflare v4 KV API (scripts/local/cf-api.mjs) over real HTTP.

Every endpoint, the error envelope, auth, each documented limit, paging, metadata, expiry,
multipart and key encodings, and the fault-injection control plane the reliability tests use.
"""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.runtime

MIB = 1024 * 1024


# --- helpers --------------------------------------------------------------------------------


def error_of(r: httpx.Response, status: int, code: int) -> str:
    """Assert `r` is the API's error envelope with this status and code; return the message."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["result"] is None
    assert body["messages"] == []
    assert body["errors"][0]["code"] == code, body
    message: str = body["errors"][0]["message"]
    return message


def result_of(r: httpx.Response) -> Any:
    """Assert `r` is a successful envelope and return its result."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert body["errors"] == []
    return body["result"]


def list_all(kv: httpx.Client, prefix: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every key under `prefix`, following cursors."""
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        params: dict[str, Any] = {"prefix": prefix, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = kv.get("keys", params=params)
        out += result_of(r)
        cursor = r.json()["result_info"]["cursor"]
        if not cursor:
            return out


def enc(key: str) -> str:
    """Percent-encode a whole key for the URL path."""
    return quote(key, safe="")


@pytest.fixture(autouse=True)
def _faults_off(stack) -> Iterator[None]:
    """Each test starts and ends with faults off, limits at their defaults and counters zeroed."""
    stack.reset_faults()
    yield
    stack.reset_faults()


# workerd 1.20241106.2 sometimes closes a kept-alive connection right after a long, KV-heavy
# answer (a big bulk write) without `Connection: close`; reusing it races into ECONNRESET.
# These tests are about the API, not that quirk, so they open a connection per request.
NO_REUSE = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture
def kv(stack, key_prefix: str) -> Iterator[httpx.Client]:
    """An authenticated client on the namespace's base URL; the test's keys are deleted after."""
    with httpx.Client(
        base_url=stack.kv_base + "/", headers=stack.auth, timeout=120, limits=NO_REUSE
    ) as client:
        yield client
        stack.reset_faults()
        names = [k["name"] for k in list_all(client, key_prefix)]
        if names:
            result_of(client.post("bulk/delete", json=names))


@pytest.fixture
def api(stack) -> Iterator[httpx.Client]:
    """An authenticated client on the API root (…/client/v4)."""
    with httpx.Client(base_url=stack.api + "/", headers=stack.auth, timeout=60) as client:
        yield client


def control(stack) -> str:
    return str(stack.api).removesuffix("/client/v4") + "/__edgeshelf"


# --- namespaces -----------------------------------------------------------------------------


def test_namespaces_list_and_get(stack, api):
    """The account's namespaces are listed and fetched by id with the binding as title."""
    ns_id = stack.namespaces["EDGESHELF_KV"]
    r = api.get(f"accounts/{stack.account_id}/storage/kv/namespaces")
    listed = result_of(r)
    assert {"id": ns_id, "title": "EDGESHELF_KV", "supports_url_encoding": True} in listed
    assert r.json()["result_info"]["total_count"] == len(listed)
    page2 = api.get(f"accounts/{stack.account_id}/storage/kv/namespaces", params={"page": 2})
    assert result_of(page2) == []
    one = result_of(api.get(f"accounts/{stack.account_id}/storage/kv/namespaces/{ns_id}"))
    assert one["id"] == ns_id
    assert one["title"] == "EDGESHELF_KV"


def test_unknown_namespace_is_404(stack, api):
    """A namespace id the account does not have answers 404 with code 10013."""
    base = f"accounts/{stack.account_id}/storage/kv/namespaces/ffffffffffffffffffffffffffffffff"
    error_of(api.get(base), 404, 10013)
    error_of(api.get(base + "/values/k"), 404, 10013)
    error_of(api.put(base + "/values/k", content=b"v"), 404, 10013)


def test_unknown_route_and_wrong_method(stack, api):
    """Unknown paths answer 404 (code 7000) and known paths with the wrong method 405."""
    error_of(api.get("accounts/x/no/such/thing"), 404, 7000)
    base = f"accounts/{stack.account_id}/storage/kv/namespaces/{stack.kv_namespace_id}"
    error_of(api.post(base + "/keys"), 405, 7001)
    error_of(api.get(base + "/bulk/get"), 405, 7001)


# --- single values ----------------------------------------------------------------------------


def test_raw_put_get_is_byte_exact(kv, key_prefix):
    """A raw-body PUT stores the bytes unchanged and GET returns them with no expiration."""
    value = bytes(range(256)) * 4
    assert result_of(kv.put(f"values/{key_prefix}bin", content=value)) == {}
    r = kv.get(f"values/{key_prefix}bin")
    assert r.status_code == 200
    assert r.content == value
    assert r.headers["content-type"] == "application/octet-stream"
    assert "expiration" not in r.headers


def test_empty_value_is_allowed(kv, key_prefix):
    """An empty value is a value: it is stored and read back as zero bytes."""
    result_of(kv.put(f"values/{key_prefix}empty", content=b""))
    r = kv.get(f"values/{key_prefix}empty")
    assert r.status_code == 200
    assert r.content == b""


def test_missing_key_is_404_envelope(kv, key_prefix):
    """Reading a key that does not exist answers 404 with code 10009 in the envelope."""
    message = error_of(kv.get(f"values/{key_prefix}nope"), 404, 10009)
    assert message == "get: 'key not found'"
    error_of(kv.get(f"metadata/{key_prefix}nope"), 404, 10009)


def test_delete_value(kv, key_prefix):
    """DELETE removes a key, and deleting a missing key still succeeds."""
    result_of(kv.put(f"values/{key_prefix}d", content=b"x"))
    assert result_of(kv.delete(f"values/{key_prefix}d")) == {}
    error_of(kv.get(f"values/{key_prefix}d"), 404, 10009)
    result_of(kv.delete(f"values/{key_prefix}d"))


def test_unencoded_and_encoded_keys_are_the_same_key(stack, kv, key_prefix):
    """A key sent raw (as the SDK sends `:`) and percent-encoded names the same stored key."""
    stack.faults(key_write_rate=False)
    key = f"{key_prefix}seg:us-en-shorts:v3"
    result_of(kv.put(f"values/{key}", content=b"raw"))
    assert kv.get(f"values/{enc(key)}").content == b"raw"
    result_of(kv.put(f"values/{enc(key)}", content=b"encoded"))
    assert kv.get(f"values/{key}").content == b"encoded"
    assert [k["name"] for k in list_all(kv, key_prefix)] == [key]


@pytest.mark.parametrize(
    "suffix",
    ["a/b/c", "sp ace", "100%", "q?x=1#frag", "ümlaut-日本", "plus+amp&eq=", "..x", "%2F"],
)
def test_special_characters_in_keys_round_trip(kv, key_prefix, suffix):
    """Percent-encoded keys with slashes, spaces, %, ?, # and unicode are stored decoded."""
    key = key_prefix + suffix
    result_of(kv.put(f"values/{enc(key)}", content=suffix.encode()))
    assert kv.get(f"values/{enc(key)}").content == suffix.encode()
    assert [k["name"] for k in list_all(kv, key_prefix)] == [key]


def test_undecodable_key_is_400(kv, key_prefix):
    """A key with a broken percent escape is refused, not stored under a guessed name."""
    error_of(kv.put(f"values/{key_prefix}%E0%A4%A", content=b"x"), 400, 10019)


def test_multipart_with_metadata(kv, key_prefix):
    """A multipart PUT with `value` and `metadata` parts stores both."""
    files = {"value": (None, b"shelf-json"), "metadata": (None, json.dumps({"v": 3, "n": "x"}))}
    result_of(kv.put(f"values/{key_prefix}mp", files=files))
    assert kv.get(f"values/{key_prefix}mp").content == b"shelf-json"
    assert result_of(kv.get(f"metadata/{key_prefix}mp")) == {"v": 3, "n": "x"}
    (entry,) = list_all(kv, key_prefix)
    assert entry == {"name": f"{key_prefix}mp", "metadata": {"v": 3, "n": "x"}}


def test_multipart_without_metadata_and_binary_file_part(kv, key_prefix):
    """A multipart PUT with only a binary file `value` part is byte-exact and has no metadata."""
    value = bytes(range(256)) + b"\r\n--not-a-boundary\r\n" + bytes(range(255, -1, -1))
    files = {"value": ("blob.bin", value, "application/octet-stream")}
    result_of(kv.put(f"values/{key_prefix}mpb", files=files))
    assert kv.get(f"values/{key_prefix}mpb").content == value
    assert result_of(kv.get(f"metadata/{key_prefix}mpb")) is None


def test_multipart_put_replaces_metadata(kv, key_prefix, stack):
    """Writing a key again without metadata drops the metadata it had."""
    stack.faults(key_write_rate=False)
    files = {"value": (None, b"1"), "metadata": (None, '{"a": 1}')}
    result_of(kv.put(f"values/{key_prefix}r", files=files))
    result_of(kv.put(f"values/{key_prefix}r", files={"value": (None, b"2")}))
    assert result_of(kv.get(f"metadata/{key_prefix}r")) is None


def test_multipart_errors(kv, key_prefix):
    """Multipart bodies without a value part or with non-JSON metadata are refused with 400."""
    error_of(kv.put(f"values/{key_prefix}m", files={"metadata": (None, "{}")}), 400, 10026)
    bad = {"value": (None, b"v"), "metadata": (None, "{not json")}
    error_of(kv.put(f"values/{key_prefix}m", files=bad), 400, 10028)
    no_boundary = {"content-type": "multipart/form-data"}
    error_of(kv.put(f"values/{key_prefix}m", content=b"x", headers=no_boundary), 400, 10026)
    error_of(kv.get(f"values/{key_prefix}m"), 404, 10009)


# --- expiry -----------------------------------------------------------------------------------


def test_expiration_ttl_sets_expiration(kv, key_prefix):
    """expiration_ttl makes GET carry an `expiration` header and list an `expiration` field."""
    now = time.time()
    result_of(kv.put(f"values/{key_prefix}t", content=b"x", params={"expiration_ttl": 120}))
    exp = int(kv.get(f"values/{key_prefix}t").headers["expiration"])
    assert now + 115 <= exp <= now + 125
    assert list_all(kv, key_prefix) == [{"name": f"{key_prefix}t", "expiration": exp}]


def test_absolute_expiration_and_ttl_precedence(kv, key_prefix):
    """An absolute expiration is kept as given; with both set, expiration_ttl wins."""
    at = int(time.time()) + 3600
    result_of(kv.put(f"values/{key_prefix}a", content=b"x", params={"expiration": at}))
    assert int(kv.get(f"values/{key_prefix}a").headers["expiration"]) == at
    now = time.time()
    params = {"expiration": at, "expiration_ttl": 600}
    result_of(kv.put(f"values/{key_prefix}b", content=b"x", params=params))
    exp = int(kv.get(f"values/{key_prefix}b").headers["expiration"])
    assert now + 595 <= exp <= now + 605


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"expiration_ttl": 59}, "Expiration TTL must be at least 60"),
        ({"expiration_ttl": 0}, "Please specify integer greater than 0"),
        ({"expiration_ttl": "soon"}, "Please specify integer greater than 0"),
        ({"expiration": "past"}, "greater than the current number of seconds"),
        ({"expiration": 1_000_000}, "greater than the current number of seconds"),
        ({"expiration": "+30s"}, "greater than the current number of seconds"),
    ],
)
def test_invalid_expiry_is_400(kv, key_prefix, params, fragment):
    """TTLs under 60 s, non-numbers and past expirations are refused (400); nothing is written."""
    message = error_of(kv.put(f"values/{key_prefix}e", content=b"x", params=params), 400, 10025)
    assert fragment in message
    error_of(kv.get(f"values/{key_prefix}e"), 404, 10009)


def test_expiration_must_be_60s_ahead(kv, key_prefix):
    """An absolute expiration less than 60 s in the future is refused; 120 s is accepted."""
    soon = int(time.time()) + 30
    message = error_of(
        kv.put(f"values/{key_prefix}s", content=b"x", params={"expiration": soon}), 400, 10025
    )
    assert "at least 60 seconds in the future" in message
    later = int(time.time()) + 120
    result_of(kv.put(f"values/{key_prefix}s", content=b"x", params={"expiration": later}))


# --- size limits ------------------------------------------------------------------------------


def test_key_length_limit(kv, key_prefix):
    """A 512-byte key is accepted; 513 bytes (counted in UTF-8) is refused with 414."""
    ok = key_prefix + "k" * (512 - len(key_prefix))
    result_of(kv.put(f"values/{enc(ok)}", content=b"x"))
    message = error_of(kv.put(f"values/{enc(ok + 'k')}", content=b"x"), 414, 10020)
    assert "UTF-8 encoded length of 513 exceeds key length limit of 512" in message
    euros = key_prefix + "€" * ((513 - len(key_prefix)) // 3 + 1)
    error_of(kv.put(f"values/{enc(euros)}", content=b"x"), 414, 10020)
    error_of(kv.get(f"values/{enc(ok + 'k')}"), 414, 10020)


@pytest.mark.parametrize("key", ["", ".", ".."])
def test_empty_and_dot_keys_are_refused(kv, key):
    """Empty, `.` and `..` key names are refused with 400 (sent through bulk, as URLs cannot)."""
    error_of(kv.put("bulk", json=[{"key": key, "value": "x"}]), 400, 10019)
    error_of(kv.post("bulk/delete", json=[key]), 400, 10019)


def test_value_size_limit(kv, key_prefix):
    """A 25 MiB value is accepted; one byte more is refused with 413 and not stored."""
    result_of(kv.put(f"values/{key_prefix}max", content=b"v" * (25 * MIB)))
    assert len(kv.get(f"values/{key_prefix}max").content) == 25 * MIB
    message = error_of(
        kv.put(f"values/{key_prefix}over", content=b"v" * (25 * MIB + 1)), 413, 10033
    )
    assert message == f"Value length of {25 * MIB + 1} exceeds limit of {25 * MIB}."
    files = {"value": ("v", b"v" * (25 * MIB + 1))}
    error_of(kv.put(f"values/{key_prefix}over", files=files), 413, 10033)
    error_of(kv.get(f"values/{key_prefix}over"), 404, 10009)


def test_metadata_size_limit(kv, key_prefix):
    """Metadata of 1024 serialized bytes is accepted; 1025 is refused with 413."""
    fits = json.dumps({"p": "x" * (1024 - len('{"p": ""}'))})
    assert len(fits) == 1024
    result_of(
        kv.put(f"values/{key_prefix}m", files={"value": (None, b"v"), "metadata": (None, fits)})
    )
    over = {"value": (None, b"v"), "metadata": (None, json.dumps({"p": "x" * 1024}))}
    message = error_of(kv.put(f"values/{key_prefix}n", files=over), 413, 10029)
    assert "exceeds limit of 1024" in message
    pairs = [{"key": f"{key_prefix}o", "value": "v", "metadata": {"p": "x" * 1024}}]
    error_of(kv.put("bulk", json=pairs), 413, 10029)


# --- metadata and listing -----------------------------------------------------------------------


def test_metadata_endpoint(kv, key_prefix):
    """GET metadata returns the key's metadata, or null for a key stored without any."""
    kv.put("bulk", json=[{"key": f"{key_prefix}m", "value": "v", "metadata": [1, {"a": None}]}])
    assert result_of(kv.get(f"metadata/{key_prefix}m")) == [1, {"a": None}]
    result_of(kv.put(f"values/{key_prefix}plain", content=b"v"))
    assert result_of(kv.get(f"metadata/{key_prefix}plain")) is None


def test_list_pages_with_cursor(kv, key_prefix):
    """25 keys listed 10 at a time come in sorted pages of 10, 10 and 5, then an empty cursor."""
    names = [f"{key_prefix}{i:02d}" for i in range(25)]
    result_of(kv.put("bulk", json=[{"key": n, "value": "x"} for n in reversed(names)]))
    seen: list[str] = []
    sizes: list[int] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"prefix": key_prefix, "limit": 10}
        if cursor:
            params["cursor"] = cursor
        r = kv.get("keys", params=params)
        page = result_of(r)
        info = r.json()["result_info"]
        assert info["count"] == len(page)
        sizes.append(len(page))
        seen += [k["name"] for k in page]
        cursor = info["cursor"]
        if not cursor:
            break
    assert sizes == [10, 10, 5]
    assert seen == names


def test_list_prefix_filters_and_default_limit(kv, key_prefix):
    """Only keys under the prefix are listed, and without `limit` up to 1000 come at once."""
    pairs = [{"key": f"{key_prefix}a{i}", "value": "x"} for i in range(3)]
    pairs += [{"key": f"{key_prefix}b{i}", "value": "x"} for i in range(2)]
    result_of(kv.put("bulk", json=pairs))
    r = kv.get("keys", params={"prefix": f"{key_prefix}a"})
    assert [k["name"] for k in result_of(r)] == [f"{key_prefix}a{i}" for i in range(3)]
    assert r.json()["result_info"] == {"count": 3, "cursor": ""}


@pytest.mark.parametrize("limit", ["9", "1001", "0", "ten", "10.5"])
def test_list_limit_out_of_range_is_400(kv, limit):
    """`limit` outside 10..1000 or not an integer is refused with 400."""
    error_of(kv.get("keys", params={"limit": limit}), 400, 10037)


def test_list_limit_bounds_accepted(kv, key_prefix):
    """`limit` of exactly 10 and 1000 is accepted."""
    for limit in (10, 1000):
        result_of(kv.get("keys", params={"limit": limit, "prefix": key_prefix}))


def test_list_prefix_too_long_is_414(kv):
    """A list prefix longer than the 512-byte key limit is refused with 414."""
    error_of(kv.get("keys", params={"prefix": "p" * 513}), 414, 10020)


# --- bulk -------------------------------------------------------------------------------------


def test_bulk_put_all_fields(kv, key_prefix):
    """Bulk PUT stores text, base64, metadata, expiration_ttl and expiration, and counts them."""
    at = int(time.time()) + 7200
    pairs = [
        {"key": f"{key_prefix}text", "value": '{"ids": [1, 2]}'},
        {
            "key": f"{key_prefix}b64",
            "value": base64.b64encode(b"\x00\xffbin").decode(),
            "base64": True,
        },
        {"key": f"{key_prefix}meta", "value": "m", "metadata": {"schema": "v3"}},
        {"key": f"{key_prefix}ttl", "value": "t", "expiration_ttl": 300},
        {"key": f"{key_prefix}exp", "value": "e", "expiration": at},
    ]
    result = result_of(kv.put("bulk", json=pairs))
    assert result == {"successful_key_count": 5, "unsuccessful_keys": []}
    assert kv.get(f"values/{key_prefix}text").content == b'{"ids": [1, 2]}'
    assert kv.get(f"values/{key_prefix}b64").content == b"\x00\xffbin"
    assert result_of(kv.get(f"metadata/{key_prefix}meta")) == {"schema": "v3"}
    assert "expiration" in kv.get(f"values/{key_prefix}ttl").headers
    assert int(kv.get(f"values/{key_prefix}exp").headers["expiration"]) == at


def test_bulk_put_10000_pairs(kv, key_prefix):
    """Exactly 10,000 pairs in one bulk PUT are all written."""
    pairs = [{"key": f"{key_prefix}{i:05d}", "value": str(i)} for i in range(10_000)]
    assert result_of(kv.put("bulk", json=pairs)) == {
        "successful_key_count": 10_000,
        "unsuccessful_keys": [],
    }
    assert len(list_all(kv, key_prefix)) == 10_000


@pytest.mark.parametrize("body", [b"[{not json", b'{"key": "k", "value": "v"}', b"", b"null"])
def test_bulk_put_body_not_a_json_array_is_400(kv, body):
    """A bulk body that is not a JSON array is refused with 400."""
    error_of(kv.put("bulk", content=body), 400, 10026)


@pytest.mark.parametrize(
    ("bad", "status", "code"),
    [
        ({"key": "k", "value": 5}, 400, 10026),
        ({"key": "k", "value": "@@@", "base64": True}, 400, 10026),
        ({"key": "k", "value": "v", "base64": "yes"}, 400, 10026),
        ({"key": "k", "value": "v", "expiration_ttl": 30}, 400, 10025),
        ({"key": "k", "value": "v", "expiration": 1}, 400, 10025),
        ({"value": "v"}, 400, 10019),
        ({"key": "k" * 513, "value": "v"}, 414, 10020),
        (1, 400, 10026),
    ],
)
def test_bulk_put_one_bad_pair_refuses_the_whole_request(kv, key_prefix, bad, status, code):
    """A wrong type, bad base64, expiry or key in one pair refuses the request; none is written."""
    good = {"key": f"{key_prefix}good", "value": "v"}
    error_of(kv.put("bulk", json=[good, bad]), status, code)
    error_of(kv.get(f"values/{key_prefix}good"), 404, 10009)


def test_bulk_put_over_10000_pairs_is_413(kv, key_prefix):
    """10,001 pairs are refused with 413 and none is written."""
    pairs = [{"key": f"{key_prefix}{i}", "value": "x"} for i in range(10_001)]
    message = error_of(kv.put("bulk", json=pairs), 413, 10034)
    assert "10000" in message
    assert list_all(kv, key_prefix) == []


def test_bulk_put_over_100mb_is_413(kv):
    """A bulk body over 100 MB is refused with 413 before it is parsed."""
    body = b"[" + b" " * 100_000_000 + b"]"
    error_of(kv.put("bulk", content=body), 413, 10034)


def test_bulk_value_limit(kv, key_prefix):
    """A bulk pair whose value (after base64 decoding) exceeds 25 MiB refuses the request."""
    big = base64.b64encode(b"\0" * (25 * MIB + 1)).decode()
    pairs = [{"key": f"{key_prefix}big", "value": big, "base64": True}]
    error_of(kv.put("bulk", json=pairs), 413, 10033)


def test_bulk_delete(kv, key_prefix):
    """Bulk delete removes the listed keys (missing ones included) and leaves the others."""
    pairs = [{"key": f"{key_prefix}{i}", "value": "x"} for i in range(5)]
    result_of(kv.put("bulk", json=pairs))
    doomed = [f"{key_prefix}{i}" for i in range(3)] + [f"{key_prefix}missing"]
    assert result_of(kv.post("bulk/delete", json=doomed)) == {
        "successful_key_count": 4,
        "unsuccessful_keys": [],
    }
    assert [k["name"] for k in list_all(kv, key_prefix)] == [f"{key_prefix}3", f"{key_prefix}4"]


def test_bulk_delete_limits(kv):
    """Bulk delete refuses more than 10,000 keys (413) and bodies that are not key arrays (400)."""
    error_of(kv.post("bulk/delete", json=[f"k{i}" for i in range(10_001)]), 413, 10034)
    error_of(kv.post("bulk/delete", json={"keys": ["a"]}), 400, 10026)
    error_of(kv.post("bulk/delete", content=b"[oops"), 400, 10026)
    error_of(kv.post("bulk/delete", json=[7]), 400, 10019)


def test_bulk_get_text_and_json(kv, key_prefix):
    """Bulk get returns {"values": {key: value}} as text or parsed JSON, null for missing keys."""
    pairs = [
        {"key": f"{key_prefix}j", "value": '{"a": [1]}'},
        {"key": f"{key_prefix}s", "value": '"str"'},
    ]
    result_of(kv.put("bulk", json=pairs))
    keys = [f"{key_prefix}j", f"{key_prefix}s", f"{key_prefix}none"]
    text = result_of(kv.post("bulk/get", json={"keys": keys}))
    assert text == {"values": {keys[0]: '{"a": [1]}', keys[1]: '"str"', keys[2]: None}}
    parsed = result_of(kv.post("bulk/get", json={"keys": keys, "type": "json"}))
    assert parsed == {"values": {keys[0]: {"a": [1]}, keys[1]: "str", keys[2]: None}}


def test_bulk_get_with_metadata(kv, key_prefix):
    """withMetadata pairs each value with its metadata (null when none) and its expiration."""
    pairs = [
        {"key": f"{key_prefix}m", "value": "1", "metadata": {"k": "v"}, "expiration_ttl": 600},
        {"key": f"{key_prefix}n", "value": "2"},
    ]
    result_of(kv.put("bulk", json=pairs))
    body = {"keys": [f"{key_prefix}m", f"{key_prefix}n", f"{key_prefix}x"], "withMetadata": True}
    values = result_of(kv.post("bulk/get", json=body))["values"]
    assert values[f"{key_prefix}m"]["value"] == "1"
    assert values[f"{key_prefix}m"]["metadata"] == {"k": "v"}
    assert values[f"{key_prefix}m"]["expiration"] > time.time()
    assert values[f"{key_prefix}n"] == {"value": "2", "metadata": None}
    assert values[f"{key_prefix}x"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"keys": [f"k{i}" for i in range(101)]},
        {"keys": []},
        {"keys": ["a"], "type": "arrayBuffer"},
        {"keys": "a"},
        ["a"],
        {"keys": ["a"], "withMetadata": "yes"},
    ],
)
def test_bulk_get_invalid_requests_are_400(kv, body):
    """Bulk get refuses over 100 keys, no keys, unknown types and malformed bodies with 400."""
    error_of(kv.post("bulk/get", json=body), 400, 10026)


def test_bulk_get_non_json_and_binary_values(kv, key_prefix):
    """Bulk get refuses type json on a non-JSON value and any type on a binary value."""
    result_of(kv.put(f"values/{key_prefix}t", content=b"not json"))
    result_of(kv.put(f"values/{key_prefix}b", content=b"\xff\xfe\x00"))
    error_of(kv.post("bulk/get", json={"keys": [f"{key_prefix}t"], "type": "json"}), 400, 10039)
    error_of(kv.post("bulk/get", json={"keys": [f"{key_prefix}b"]}), 400, 10039)


# --- auth -------------------------------------------------------------------------------------


def test_missing_token_is_401(stack):
    """A request without Authorization answers 401 with code 10001."""
    r = httpx.get(f"{stack.kv_base}/keys")
    assert error_of(r, 401, 10001) == "Unable to authenticate request"


def test_wrong_token_is_403(stack):
    """A request with a wrong bearer token answers 403 with code 10000 and writes nothing."""
    wrong = {"Authorization": "Bearer " + "0" * 40}
    r = httpx.put(f"{stack.kv_base}/values/never", content=b"x", headers=wrong)
    assert error_of(r, 403, 10000) == "Authentication error"
    assert stack.kv_get("never") is None


def test_malformed_authorization_is_400(stack):
    """An Authorization header that is not `Bearer <token>` answers 400 with code 6003."""
    r = httpx.get(f"{stack.kv_base}/keys", headers={"Authorization": f"Basic {stack.token}"})
    error_of(r, 400, 6003)
    assert r.json()["errors"][0]["error_chain"][0]["code"] == 6111


def test_wrong_account_is_403(stack, api):
    """The right token on another account's path answers 403 with code 10000."""
    r = api.get(f"accounts/{'f' * 32}/storage/kv/namespaces/{stack.kv_namespace_id}/keys")
    error_of(r, 403, 10000)


def test_control_plane_requires_the_token(stack):
    """The fault, reset and stats endpoints refuse requests without the right token."""
    base = control(stack)
    error_of(httpx.get(base + "/stats"), 401, 10001)
    wrong = {"Authorization": "Bearer nope"}
    error_of(httpx.post(base + "/faults", json={"rate429": 1}, headers=wrong), 403, 10000)
    error_of(httpx.post(base + "/reset", headers=wrong), 403, 10000)
    assert httpx.get(base + "/health").json() == {"ok": True}


def test_log_lines_name_requests_and_never_the_token(stack, kv, key_prefix):
    """Each API request logs one line with method, path, status and ms, and never the token."""
    kv.put(f"values/{key_prefix}logged", content=b"x")
    kv.get(f"values/{key_prefix}missing-one")
    wanted = f"/values/{key_prefix}missing-one 404 "
    deadline = time.monotonic() + 5
    while wanted not in stack.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in stack.log_text().splitlines() if "cf-api " in line]
    assert any(
        "cf-api PUT " in line and f"/values/{key_prefix}logged 200 " in line for line in lines
    )
    assert any(
        line.startswith("cf-api GET ") and wanted in line and line.endswith("ms") for line in lines
    )
    # The launcher's `ready` line hands the token to the fixture; no other line may carry it.
    leaks = [line for line in stack.log_text().splitlines() if stack.token in line]
    assert all(line.startswith("ready {") for line in leaks), leaks


# --- rate limits --------------------------------------------------------------------------------


def test_token_rate_limit_answers_429_with_retry_after(stack, kv, key_prefix):
    """Past the per-token budget the API answers 429 with retry-after until the window ends."""
    stack.faults(rate_limit={"requests": 5, "window_s": 2})
    for _ in range(5):
        r = kv.get(f"values/{key_prefix}x")
        assert r.status_code == 404
        assert r.headers["ratelimit-policy"] == '"default";q=5;w=2'
    r = kv.get(f"values/{key_prefix}x")
    error_of(r, 429, 971)
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= 2
    assert stack.api_stats()["faults"]["rate_limited"] == 1
    time.sleep(retry + 0.1)
    assert kv.get(f"values/{key_prefix}x").status_code == 404


def test_rate_limit_can_be_switched_off(stack, kv, key_prefix):
    """With rate_limit null the API carries no Ratelimit headers and never answers 429 for it."""
    stack.faults(rate_limit=None)
    r = kv.get(f"values/{key_prefix}x")
    assert r.status_code == 404
    assert "ratelimit" not in r.headers


def test_same_key_written_twice_within_a_second_is_429(stack, kv, key_prefix):
    """A second write to a key within a second answers 429 with retry-after; later ones succeed."""
    result_of(kv.put(f"values/{key_prefix}hot", content=b"1"))
    r = kv.put(f"values/{key_prefix}hot", content=b"2")
    error_of(r, 429, 10429)
    assert r.headers["retry-after"] == "1"
    assert kv.get(f"values/{key_prefix}hot").content == b"1"
    time.sleep(1.05)
    result_of(kv.put(f"values/{key_prefix}hot", content=b"3"))
    pairs = [{"key": f"{key_prefix}hot", "value": "4"}, {"key": f"{key_prefix}cold", "value": "c"}]
    assert result_of(kv.put("bulk", json=pairs)) == {
        "successful_key_count": 1,
        "unsuccessful_keys": [f"{key_prefix}hot"],
    }
    assert kv.get(f"values/{key_prefix}hot").content == b"3"
    assert stack.api_stats()["faults"]["key_write_limited"] == 2


def test_key_write_rate_can_be_switched_off(stack, kv, key_prefix):
    """With key_write_rate false, back-to-back writes to one key all succeed."""
    stack.faults(key_write_rate=False)
    for i in range(3):
        result_of(kv.put(f"values/{key_prefix}hot", content=str(i).encode()))
    assert kv.get(f"values/{key_prefix}hot").content == b"2"


# --- fault injection -----------------------------------------------------------------------------


def test_injected_429_carries_retry_after(stack, kv, key_prefix):
    """rate429 answers 429 with code 971 and the configured retry-after, and counts it."""
    stack.faults(rate429=1.0, retry_after=3)
    r = kv.put(f"values/{key_prefix}x", content=b"v")
    error_of(r, 429, 971)
    assert r.headers["retry-after"] == "3"
    stats = stack.api_stats()
    assert stats["faults"]["rate429"] == 1
    assert stats["writes"] == 0
    stack.reset_faults()
    error_of(kv.get(f"values/{key_prefix}x"), 404, 10009)


def test_injected_5xx(stack, kv, key_prefix):
    """rate5xx answers the configured 5xx: the JSON envelope for 500/503, HTML for 502."""
    stack.faults(rate5xx=1.0, status5xx=[503])
    error_of(kv.get(f"values/{key_prefix}x"), 503, 10043)
    stack.faults(rate5xx=1.0, status5xx=[500])
    error_of(kv.get(f"values/{key_prefix}x"), 500, 10002)
    stack.faults(rate5xx=1.0, status5xx=[502])
    r = kv.get(f"values/{key_prefix}x")
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("text/html")
    assert stack.api_stats()["faults"]["rate5xx"] == 3


def test_injected_delay(stack, kv, key_prefix):
    """delay_rate with delay_ms holds the answer back by at least that long."""
    stack.faults(delay_rate=1.0, delay_ms=300)
    started = time.monotonic()
    error_of(kv.get(f"values/{key_prefix}x"), 404, 10009)
    assert time.monotonic() - started >= 0.3
    assert stack.api_stats()["faults"]["delay"] == 1


def test_dropped_connection_before_the_write(stack, kv, key_prefix):
    """drop_phase before closes the connection mid-response and the write is not applied."""
    stack.faults(drop_rate=1.0, drop_phase="before")
    with pytest.raises(httpx.TransportError):
        kv.put(f"values/{key_prefix}x", content=b"v")
    stats = stack.api_stats()
    assert stats["faults"]["drop"] == 1
    assert stats["by_status"] == {"dropped": 1}
    stack.reset_faults()
    error_of(kv.get(f"values/{key_prefix}x"), 404, 10009)


def test_dropped_connection_after_the_write(stack, kv, key_prefix):
    """drop_phase after applies the write and then loses the answer, as a real timeout can."""
    stack.faults(drop_rate=1.0, drop_phase="after")
    with pytest.raises(httpx.TransportError):
        kv.put("bulk", json=[{"key": f"{key_prefix}x", "value": "v"}])
    assert stack.api_stats()["pairs_written"] == 1
    stack.reset_faults()
    assert kv.get(f"values/{key_prefix}x").content == b"v"


def test_partial_bulk_reports_the_unwritten_keys(stack, kv, key_prefix):
    """partial_rate writes some pairs, lists the rest in unsuccessful_keys; a retry completes."""
    stack.faults(partial_rate=1.0, partial_share=0.5, seed=7)
    pairs = [{"key": f"{key_prefix}{i:02d}", "value": str(i)} for i in range(40)]
    result = result_of(kv.put("bulk", json=pairs))
    failed = set(result["unsuccessful_keys"])
    assert 0 < len(failed) < 40
    assert result["successful_key_count"] == 40 - len(failed)
    stored = {k["name"] for k in list_all(kv, key_prefix)}
    assert stored == {p["key"] for p in pairs} - failed
    stats = stack.api_stats()
    assert stats["faults"]["partial"] == 1
    assert stats["faults"]["partial_pairs"] == len(failed)
    stack.faults(key_write_rate=False)
    retry = [p for p in pairs if p["key"] in failed]
    assert result_of(kv.put("bulk", json=retry))["unsuccessful_keys"] == []
    assert len(list_all(kv, key_prefix)) == 40


def test_faults_are_deterministic_for_a_seed(stack, kv, key_prefix):
    """The same seed replays the same sequence of injected faults for the same requests."""

    def run() -> list[int]:
        stack.faults(rate429=0.5, rate5xx=0.4, status5xx=[503], seed=42, rate_limit=None)
        return [kv.get(f"values/{key_prefix}x").status_code for _ in range(30)]

    first = run()
    assert first == run()
    assert {404, 429, 503} <= set(first)
    stack.faults(rate429=0.5, rate5xx=0.4, status5xx=[503], seed=43, rate_limit=None)
    assert [kv.get(f"values/{key_prefix}x").status_code for _ in range(30)] != first


def test_faults_can_target_routes(stack, kv, key_prefix):
    """With `routes`, faults hit only the named routes."""
    stack.faults(rate429=1.0, routes=["bulk_put"])
    error_of(kv.get(f"values/{key_prefix}x"), 404, 10009)
    error_of(kv.put("bulk", json=[{"key": f"{key_prefix}x", "value": "v"}]), 429, 971)


def test_deny_after_refuses_every_request_past_the_first_n(stack, kv, key_prefix):
    """deny_after lets N requests of its routes through, then answers 403 as for a revoked token."""
    stack.faults(deny_after=2, routes=["bulk_put"])
    for i in range(2):
        result_of(kv.put("bulk", json=[{"key": f"{key_prefix}{i}", "value": "v"}]))
    assert kv.get(f"values/{key_prefix}0").content == b"v"  # other routes are not counted
    for i in range(2, 4):
        r = kv.put("bulk", json=[{"key": f"{key_prefix}{i}", "value": "v"}])
        assert error_of(r, 403, 10000) == "Authentication error"
    stats = stack.api_stats()
    assert (stats["faults"]["denied"], stats["pairs_written"]) == (2, 2)
    stack.faults(deny_after=0)  # setting the knobs again starts the count afresh
    error_of(kv.get(f"values/{key_prefix}0"), 403, 10000)


@pytest.mark.parametrize(
    "settings",
    [{"rate429": 1.5}, {"typo_rate": 0.1}, {"drop_phase": "sometimes"}, {"routes": ["nope"]},
     {"deny_after": -1}, [1]],
)  # fmt: skip
def test_bad_fault_settings_are_400(stack, settings):
    """Unknown knobs and out-of-range values are refused rather than silently ignored."""
    r = httpx.post(control(stack) + "/faults", json=settings, headers=stack.auth)
    error_of(r, 400, 10026)


def test_stats_count_writes_and_pairs(stack, kv, key_prefix):
    """Stats count requests by route and status, and writes and pairs actually written."""
    result_of(kv.put(f"values/{key_prefix}a", content=b"1"))
    result_of(kv.put("bulk", json=[{"key": f"{key_prefix}{i}", "value": "x"} for i in range(3)]))
    kv.get(f"values/{key_prefix}a")
    kv.get(f"values/{key_prefix}missing")
    result_of(kv.post("bulk/delete", json=[f"{key_prefix}0"]))
    stats = stack.api_stats()
    assert stats["writes"] == 2
    assert stats["pairs_written"] == 4
    assert stats["deletes"] == 1
    assert stats["pairs_deleted"] == 1
    assert stats["by_route"] == {"values_put": 1, "bulk_put": 1, "values_get": 2, "bulk_delete": 1}
    assert stats["by_status"] == {"200": 4, "404": 1}
    assert stats["requests"] == 5
    stack.reset_faults()
    assert stack.api_stats()["requests"] == 0
