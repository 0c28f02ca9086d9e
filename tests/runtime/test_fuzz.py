"""Property-based fuzzing of the Worker over HTTP: no request input can produce a 5xx.

`scripts/test` runs a few hundred generated requests; the full run (10,000+) is
`EDGESHELF_FUZZ_EXAMPLES=10000 uv run pytest tests/runtime/test_fuzz.py` (docs/reliability.md).
"""

from __future__ import annotations

import os
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeshelf.audience_cookie import uid_tag
from tests.support.pages import shelf_from_html
from tests.support.rawhttp import RawResponse, send

# Worker behaviour: scripts/test runs these on every runtime, Pyodide 0.28 and 314 included.
pytestmark = pytest.mark.every_runtime

EXAMPLES = int(os.environ.get("EDGESHELF_FUZZ_EXAMPLES", "150"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=os.environ.get("CI") == "true",
)

# A marker that must never come back in a response header: it only ever appears in input.
MARK = "zq7mark"

TOKEN = st.text(
    alphabet="!#$%&'*+-.^_`|~" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789",
    min_size=1,
    max_size=20,
)
ANY_BYTES = st.binary(max_size=300)
HEADER_VALUE = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200).map(
        lambda s: s.encode("latin-1")
    ),
    ANY_BYTES.map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from(
        [b"\r\nX-Injected: yes", b"a\r\n\r\n<html>", b"\x00", b"%0d%0aSet-Cookie: x=1"]
    ),
)
UID = st.builds(lambda: str(uuid.uuid4()))
AUDIENCE_PARTS = st.tuples(
    st.from_regex(r"[a-z]{1,3}", fullmatch=True),
    st.from_regex(r"[a-z]{1,4}", fullmatch=True),
    st.from_regex(r"[a-z0-9_:./-]{0,34}", fullmatch=True),
    st.sampled_from(["k", "r", "x", ""]),
)
# The audience cookie: well-formed and bound to the ID it comes with, or nearly so (a part
# out of its alphabet, another ID's tag, upper case), or anything at all with the marker.
BOUND_AUDIENCE = st.builds(
    lambda u, p, other: f"es_uid={u}; es_aud=a1.{p[0]}.{p[1]}.{p[2]}.{p[3]}.{uid_tag(other or u)}",
    UID,
    AUDIENCE_PARTS,
    st.one_of(st.none(), UID),
)
COOKIE_PART = st.one_of(
    BOUND_AUDIENCE,
    BOUND_AUDIENCE.map(str.upper),
    st.text(max_size=80).map(lambda s: f"es_aud={MARK}{s}"),
    st.just("es_aud"),
    UID.map(lambda u: f"es_uid={u}"),
    UID.map(lambda u: f"es_uid={u.upper()}"),
    st.text(max_size=80).map(lambda s: f"es_uid={MARK}{s}"),
    st.builds(lambda k, v: f"{k}={v}", TOKEN, st.text(max_size=40)),
    st.just("es_uid"),
    st.just(";;"),
    st.text(max_size=60),
)
COOKIE = st.lists(COOKIE_PART, max_size=12).map("; ".join)
LANG_ENTRY = st.one_of(
    st.from_regex(r"[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8}){0,2}", fullmatch=True),
    st.just("*"),
    st.text(max_size=12),
)
ACCEPT_LANGUAGE = st.lists(
    st.builds(
        lambda tag, q: tag + (f";q={q}" if q is not None else ""),
        LANG_ENTRY,
        st.one_of(
            st.none(), st.floats(allow_nan=True, allow_infinity=True).map(str), st.text(max_size=5)
        ),
    ),
    max_size=20,
).map(", ".join)
# workerd's HTTP parser answers methods it does not know (e.g. "WXH") with its own 501 before
# any Worker code runs, as Cloudflare's edge does; the fuzzer sticks to methods that reach us.
METHOD = st.sampled_from(
    ["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND"]
)
PATH = st.one_of(
    st.just("/"),
    st.just("/"),
    st.builds(
        lambda q: "/?" + q,
        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80),
    ),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=120).map(
        lambda s: "/" + s
    ),
    st.sampled_from(["//", "/./", "/%2F", "/..%2f..%2f", "/%00", "/" + "a" * 3000]),
)


# Headers that frame the message or manage the connection are the HTTP server's, never the
# Worker's: a random Transfer-Encoding beside the client's Content-Length makes a request whose
# body cannot be delimited (workerd 1.20241106 answers its own 500, the Node host waits for a
# body that never comes), and Cloudflare's edge refuses such requests before any Worker runs.
# The fuzzer sends the headers a request can carry past the edge.
FRAMING = {
    "connection", "content-length", "expect", "host", "keep-alive", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
}  # fmt: skip
HEADER_NAME = TOKEN.filter(lambda name: name.lower() not in FRAMING)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    headers: list[tuple[bytes, bytes]] = []
    for _ in range(draw(st.integers(0, 3))):
        headers.append((b"Cookie", draw(COOKIE).encode("utf-8", "surrogatepass")))
    if draw(st.booleans()):
        headers.append((b"Accept-Language", draw(ACCEPT_LANGUAGE).encode("utf-8", "surrogatepass")))
    if draw(st.booleans()):
        headers.append((b"Sec-GPC", draw(st.sampled_from([b"1", b"0", b"1 ", b"yes", b""]))))
    for _ in range(draw(st.integers(0, 4))):
        headers.append((draw(HEADER_NAME).encode(), draw(HEADER_VALUE)))
    method = draw(METHOD).encode()
    target = draw(PATH).encode("utf-8", "surrogatepass")
    body = draw(st.one_of(st.just(b""), ANY_BYTES)) if method not in (b"GET", b"HEAD") else b""
    return method, target, headers, body


def check(resp: RawResponse, method: bytes, target: bytes) -> None:
    assert resp.status < 500, f"{resp.status} for {method!r} {target[:80]!r}"
    for name, value in resp.headers:
        assert MARK not in value, f"input reflected in header {name}: {value[:120]}"
        assert "X-Injected" not in name
    personalized = method in (b"GET", b"HEAD") and target.split(b"?")[0] == b"/"
    if personalized and resp.status == 200:
        assert resp.header("content-type")[0].startswith("text/html")
        assert resp.header("cache-control") == ["private, no-store"]
        # A (rolled) ID and the audience bound to it, or clearing both under GPC.
        for cookie in resp.header("set-cookie"):
            assert re.fullmatch(
                r"(es_uid=([0-9a-f-]{36}; Max-Age=34560000|; Max-Age=0)"
                r"|es_aud=(a1\.[a-z]{2}\.[a-z]{2,3}\.[a-z0-9_]{1,32}\.[kr]\.[0-9a-f]{8}"
                r"; Max-Age=3600|; Max-Age=0))"
                r"; Path=/; HttpOnly; Secure; SameSite=Lax",
                cookie,
            )
        if method == b"GET":
            html = resp.body.decode("utf-8")
            assert html.rstrip().endswith("</html>")
            assert shelf_from_html(html) is not None


@FUZZ_SETTINGS
@given(req=requests())
def test_fuzzed_requests_never_get_a_5xx(stack, req):
    """Generated methods, paths, cookies, languages, headers, bodies: no 5xx, nothing reflected."""
    method, target, headers, body = req
    resp = send(stack.worker, method, target, headers, body)
    check(resp, method, target)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Cookie", b"es_uid=" + b"\xff" * 2000)],
        [(b"Cookie", b"es_uid=" + str(uuid.uuid4()).encode() + b"\r\nSet-Cookie: evil=1")],
        [(b"Cookie", b"a=1")] * 200,
        [(b"Accept-Language", b"\xc3\x28" * 500)],
        [(b"X-" + str(i).encode(), b"v") for i in range(90)],
    ],
)
def test_pathological_headers_are_answered(stack, headers):
    """Binary cookies, CRLF attempts, hundreds of cookies and many headers get a page or a 4xx."""
    resp = send(stack.worker, b"GET", b"/", headers)
    assert resp.status < 500
    assert not resp.header("evil")
    assert all("evil" not in c for c in resp.header("set-cookie"))
