"""The shell copy publish-shell stores: headers checked as the Worker keeps them, the origin's
page fetched as the Worker fetches it (httpx.MockTransport), the copy read back by the Worker's
own decoder."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
import pytest

from builder.errors import ConfigError, InputError, PayloadError
from builder.shellcopy import (
    fetch_origin_page,
    merge_headers,
    operator_headers,
    origin_client,
    parse_header,
    shell_copy,
)
from edgeshelf.schema import MAX_SHELL_BYTES, ShellCopy, decode_shell_copy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

PAGE = b"<!doctype html><main><div data-edgeshelf-slot></div></main>"
CSP = "default-src 'self'"
ORIGIN_HEADERS = [
    ("content-type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", CSP),
    ("strict-transport-security", "max-age=63072000"),
    ("link", "</a.css>; rel=preload"),
    ("link", "</b.js>; rel=preload"),
    ("set-cookie", "session=1"),
    ("etag", '"abc"'),
    ("cache-control", "max-age=60"),
    ("connection", "keep-alive, x-private"),
    ("x-private", "hop"),
]


def origin(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return origin_client(httpx.MockTransport(handler))


def test_parse_header_splits_at_the_first_colon() -> None:
    """``'Name: value'`` splits at the first colon, so values may contain colons."""
    assert parse_header("Link: <https://x.test/a>; rel=preload") == (
        "Link",
        "<https://x.test/a>; rel=preload",
    )
    for bad in ("no colon here", ": value"):
        with pytest.raises(ConfigError, match="expected 'Name: value'"):
            parse_header(bad)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("Set-Cookie", "a=1", "edgeshelf sets it"),
        ("Cache-Control", "no-store", "edgeshelf sets it"),
        ("ETag", '"x"', "belongs to one response"),
        ("bad name", "x", "not a well-formed header"),
        ("X-Evil", "a\r\nSet-Cookie: b=1", "not a well-formed header"),
        ("X-Long", "x" * 8193, "not a well-formed header"),
    ],
)
def test_operator_headers_the_worker_would_drop_are_refused(
    name: str, value: str, reason: str
) -> None:
    """A header the Worker would not serve with the page is refused by name, never dropped."""
    with pytest.raises(ConfigError, match=reason) as info:
        operator_headers([("Content-Security-Policy", CSP), (name, value)])
    assert repr(name) in str(info.value)


def test_operator_headers_are_kept_as_the_worker_serves_them() -> None:
    """Names are lower-cased, values trimmed, repeated names (Link) kept in order."""
    given = [("Content-Security-Policy", f" {CSP} "), ("Link", "</a>"), ("LINK", "</b>")]
    assert operator_headers(given) == (
        ("content-security-policy", CSP),
        ("link", "</a>"),
        ("link", "</b>"),
    )


def test_more_headers_than_a_shell_keeps_are_refused() -> None:
    """Past the Worker's count limit the operator hears so instead of losing the rest."""
    with pytest.raises(ConfigError, match="a shell keeps at most 64"):
        operator_headers([(f"x-h{i}", "v") for i in range(65)])


def test_merge_lets_the_operator_replace_every_origin_header_of_a_name() -> None:
    """An operator's header replaces all the origin's headers of that name; the rest stay."""
    from_origin = (("link", "</a>"), ("link", "</b>"), ("x-frame-options", "DENY"))
    merged = merge_headers(from_origin, (("link", "</c>"),))
    assert merged == (("x-frame-options", "DENY"), ("link", "</c>"))


def test_fetch_keeps_the_sites_headers_and_names_what_it_left_out() -> None:
    """The origin's page comes with the headers the Worker keeps; the rest are named."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers=ORIGIN_HEADERS, content=PAGE)

    with origin(handler) as client:
        page = fetch_origin_page(client, "https://origin.test/")
    assert page.html == PAGE
    assert page.headers == (
        ("content-security-policy", CSP),
        ("strict-transport-security", "max-age=63072000"),
        ("link", "</a.css>; rel=preload"),
        ("link", "</b.js>; rel=preload"),
    )
    assert page.dropped == (
        "cache-control", "connection", "content-length", "content-type", "etag", "set-cookie",
        "x-private",
    )  # fmt: skip
    assert page.url == "https://origin.test/"
    assert "authorization" not in seen[0].headers
    assert seen[0].headers["accept"] == "text/html"


def test_fetch_follows_redirects_as_the_worker_does() -> None:
    """A redirect is followed and the page's final URL reported."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(301, headers={"location": "https://origin.test/home"})
        return httpx.Response(200, headers={"content-type": "text/html"}, content=PAGE)

    with origin(handler) as client:
        page = fetch_origin_page(client, "https://origin.test/")
    assert (page.url, page.html) == ("https://origin.test/home", PAGE)


def _chunks(size: int) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        sent += 65536
        yield b"x" * 65536


@pytest.mark.parametrize(
    ("response", "error", "match"),
    [
        (httpx.Response(503, headers={"content-type": "text/html"}, content=b"busy"),
         InputError, "the origin answered 503"),
        (httpx.Response(200, headers={"content-type": "application/json"}, content=b"{}"),
         InputError, "not text/html"),
        (httpx.Response(200, headers={"content-type": "text/html",
                                      "content-length": str(MAX_SHELL_BYTES + 1)}),
         PayloadError, "is over"),
        (httpx.Response(200, headers={"content-type": "text/html"},
                        content=_chunks(MAX_SHELL_BYTES + 65536)),
         PayloadError, "the page is over"),
    ],
)  # fmt: skip
def test_fetch_refuses_what_the_worker_would_not_serve(
    response: httpx.Response, error: type[Exception], match: str
) -> None:
    """Not a 200, not HTML, or over the shell limit (declared or streamed): refused."""
    with origin(lambda _req: response) as client, pytest.raises(error, match=match):
        fetch_origin_page(client, "https://origin.test/")


def test_fetch_refuses_an_unreachable_origin_naming_it() -> None:
    """A connection error is an input refused, naming the URL."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    named = re.escape("https://origin.test/: cannot fetch the page (ConnectError")
    with origin(handler) as client, pytest.raises(InputError, match=named):
        fetch_origin_page(client, "https://origin.test/")


def test_the_copy_is_what_the_worker_reads_back() -> None:
    """The stored value decodes, with the Worker's decoder, to the page and its headers."""
    warnings: list[str] = []
    headers = (("content-security-policy", CSP),)
    value = shell_copy(PAGE, headers, "shell:home:v1", warnings.append)
    assert decode_shell_copy(value) == ShellCopy(PAGE.decode(), headers)
    assert warnings == []


def test_a_page_starting_with_a_brace_is_still_a_page() -> None:
    """A page that happens to start with ``{`` is wrapped, so it is never misread as JSON."""
    page = b"{{ not rendered }}<div data-edgeshelf-slot></div>"
    value = shell_copy(page, (), "shell:home:v1", lambda _m: None)
    assert decode_shell_copy(value) == ShellCopy(page.decode(), ())


def test_no_headers_and_no_slot_are_warned_about() -> None:
    """A copy without headers, and a page without a slot, still publish, with a warning each."""
    warnings: list[str] = []
    shell_copy(b"<p>plain</p>", (), "shell:home:v1", warnings.append)
    assert len(warnings) == 2
    assert "data-edgeshelf-slot" in warnings[0]
    assert "no headers kept with the copy" in warnings[1]


@pytest.mark.parametrize(
    "page",
    [
        b'<div data-edgeshelf-slot><script type="application/json" id="edgeshelf-shelf">'
        b'{"ids":[]}</script></div>',
        b"<div data-edgeshelf-slot><SCRIPT ID='edgeshelf-shelf'></SCRIPT></div>",
    ],
)
def test_a_page_that_came_through_the_worker_is_refused(page: bytes) -> None:
    """A page already carrying the injected shelf is the Worker's answer, not the origin's."""
    with pytest.raises(PayloadError, match="came through the edgeshelf Worker"):
        shell_copy(page, (), "shell:home:v1", lambda _m: None)


def test_an_empty_page_is_refused() -> None:
    """An empty page is no shell."""
    with pytest.raises(PayloadError, match="shell:home:v1"):
        shell_copy(b"", (), "shell:home:v1", lambda _m: None)
