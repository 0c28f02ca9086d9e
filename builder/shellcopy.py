"""The copy ``publish-shell`` stores: a page shell and the site's headers that go with it.

The Worker fills its cache for a shell version from the copy ``shell:<name>:<version>`` and
asks the origin only when a version has none, so the headers kept with the copy are the
headers every page of that version carries: the site's ``Content-Security-Policy``,
``Strict-Transport-Security``, ``X-Frame-Options``, ``Link`` and the like. The value is
``schema.encode_shell_copy(html, headers)``, the envelope the Worker reads, and what may travel
with a shell is ``schema.kept_headers``, the rule the Worker applies to every shell source.

Headers come from the operator (``--header 'Name: value'``), from the origin along with the
page (``--from-origin URL``, fetched as the Worker fetches a shell), or both, the operator's
replacing the origin's of the same name. An operator's header the Worker would not keep is
refused, naming it; the origin's are filtered as the Worker filters them, and the names left
out are reported.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, NamedTuple

import httpx

from builder.errors import ConfigError, InputError, PayloadError
from edgeshelf.inject import SCRIPT_ID, SLOT_ATTR
from edgeshelf.schema import (
    DROPPED_SHELL_HEADERS,
    MAX_SHELL_BYTES,
    decode_shell_copy,
    encode_shell_copy,
    kept_headers,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "ORIGIN_TIMEOUT",
    "Headers",
    "OriginPage",
    "fetch_origin_page",
    "merge_headers",
    "operator_headers",
    "origin_client",
    "parse_header",
    "shell_copy",
]

Headers = tuple[tuple[str, str], ...]

ORIGIN_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
# The shelf the Worker injects: a page carrying it was saved or fetched through the Worker
# (the personalized page), not from the origin, and would be served with a stale shelf inside.
_INJECTED_RE: Final = re.compile(
    r"<script\b[^>]*\bid\s*=\s*[\"']?" + re.escape(SCRIPT_ID) + r"\b", re.IGNORECASE
)


class OriginPage(NamedTuple):
    """A page as the origin served it: its bytes, the headers kept with it, the names left
    out (lower case), and the URL it came from after redirects."""

    html: bytes
    headers: Headers
    dropped: tuple[str, ...]
    url: str


def parse_header(text: str) -> tuple[str, str]:
    """``'Name: value'`` as given to ``--header``, split at the first colon."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise ConfigError(f"--header {text!r}: expected 'Name: value'")
    return name.strip(), value.strip()


def _refusal(name: str) -> str:
    if name.strip().lower() in DROPPED_SHELL_HEADERS:
        return (
            "not kept with a shell: edgeshelf sets it for the personalized page, or it belongs "
            "to one response rather than the page (schema.DROPPED_SHELL_HEADERS)"
        )
    return (
        "not a well-formed header (a token name; a value of at most 8,192 characters without "
        "CR, LF or NUL)"
    )


def operator_headers(pairs: Iterable[tuple[str, str]]) -> Headers:
    """Headers the operator gave, as the Worker will serve them (names lower case).

    Refuses (``ConfigError``) any header the Worker would not keep, rather than publish a copy
    that silently lacks it.
    """
    given = list(pairs)
    for name, value in given:
        if not kept_headers([(name, value)]):
            raise ConfigError(f"header {name!r}: {_refusal(name)}")
    kept = kept_headers(given)
    if len(kept) < len(given):
        raise ConfigError(f"{len(given)} headers: a shell keeps at most {len(kept)}")
    return kept


def merge_headers(origin: Headers, operator: Headers) -> Headers:
    """The origin's headers with the operator's replacing every one of the same name."""
    replaced = {name for name, _ in operator}
    return tuple(pair for pair in origin if pair[0] not in replaced) + operator


def origin_client(transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A client for the origin alone: never the API's, which carries the Cloudflare token."""
    return httpx.Client(
        headers={"accept": "text/html", "user-agent": "edgeshelf-builder"},
        timeout=ORIGIN_TIMEOUT,
        follow_redirects=True,  # as the Worker's shell fetch does
        transport=transport,
    )


def fetch_origin_page(client: httpx.Client, url: str) -> OriginPage:
    """The page at ``url`` and the headers the Worker would keep from the answer.

    As the Worker takes a shell from its origin: a 200 with ``text/html``, redirects followed,
    read no further than ``MAX_SHELL_BYTES`` whether or not a length is declared. Anything
    else is refused (``InputError``, or ``PayloadError`` for a page that is too large) before
    anything is written.
    """
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise InputError(
                    f"the origin answered {resp.status_code}; a shell needs a 200", file=url
                )
            ctype = resp.headers.get("content-type", "")
            if "text/html" not in ctype.lower():
                raise InputError(f"not text/html ({ctype or 'no content-type'})", file=url)
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_SHELL_BYTES:
                raise PayloadError(f"{url}: {declared} bytes is over {MAX_SHELL_BYTES}")
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > MAX_SHELL_BYTES:
                    raise PayloadError(f"{url}: the page is over {MAX_SHELL_BYTES} bytes")
            pairs = resp.headers.multi_items()
            final = str(resp.url)
    except httpx.HTTPError as exc:
        raise InputError(f"cannot fetch the page ({type(exc).__name__}: {exc})", file=url) from exc
    headers = kept_headers(pairs)
    kept = {name for name, _ in headers}
    dropped = tuple(sorted({name.lower() for name, _ in pairs} - kept))
    return OriginPage(bytes(body), headers, dropped, final)


def shell_copy(html: bytes, headers: Headers, where: str, warn: Callable[[str], None]) -> str:
    """The value of ``shell:<name>:<version>`` for ``html`` and ``headers``, checked.

    Refuses a page that is not UTF-8, empty or too large, one that already carries an injected
    shelf (the Worker's page, not the origin's), and a copy the Worker's own decoder would not
    read back as this page with these headers. Warns when the page has no slot (it will be
    served without a shelf) or the copy carries no headers (its pages will carry none).
    """
    try:
        text = html.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            f"the shell must be UTF-8 HTML ({exc.reason} at byte {exc.start})"
        ) from exc
    if _INJECTED_RE.search(text):
        raise PayloadError(
            f'{where}: the page already carries a shelf (<script id="{SCRIPT_ID}">): it came '
            "through the edgeshelf Worker; publish the origin's page (ORIGIN_URL) instead"
        )
    try:
        value = encode_shell_copy(text, headers)
    except ValueError as exc:
        raise PayloadError(f"{where}: {exc}") from exc
    copy = decode_shell_copy(value)
    if copy is None or copy.html != text or copy.headers != headers:
        raise PayloadError(f"{where}: the Worker would not read this copy back whole")
    if SLOT_ATTR not in text:
        warn(f"{where}: no {SLOT_ATTR} element: the Worker will serve it without a shelf")
    if not headers:
        warn(
            f"{where}: no headers kept with the copy: the Worker serves this version from it, "
            "so its pages will carry none of the site's headers (Content-Security-Policy, "
            "Strict-Transport-Security, ...); pass --from-origin URL or --header 'Name: value'"
        )
    return value
