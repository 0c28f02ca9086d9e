"""The visitor-ID cookie: read strictly, minted from the CSPRNG, set with the right attributes."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf import identity
from tests.unit.strategies import FAST, hostile_text

NAME = "es_uid"
UID = "3f2b8c1e-9d4a-4e7b-a1c2-0123456789ab"
OTHER = "0d9e8f7a-6b5c-4d3e-8f1a-ba9876543210"
MINTED_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_minted_ids_are_valid_and_distinct() -> None:
    """A thousand minted IDs all have the accepted format, and no two are the same."""
    minted = [identity.mint_uid() for _ in range(1000)]
    assert all(MINTED_RE.fullmatch(uid) for uid in minted)
    assert all(identity.read_uid(f"{NAME}={uid}", NAME) == uid for uid in minted)
    assert len(set(minted)) == 1000


@pytest.mark.parametrize(
    "header",
    [
        f"{NAME}={UID}",
        f" {NAME} = {UID} ",
        f'{NAME}="{UID}"',
        f"theme=dark; {NAME}={UID}; lang=en",
        f"{NAME}={UID};",
        f"xes_uid={OTHER}; {NAME}={UID}",
        f"{NAME}=junk; {NAME}={UID}",
        f"{NAME}={UID}; {NAME}={OTHER}",
    ],
)
def test_read_uid_finds_the_minted_id(header: str) -> None:
    """The first cookie of that name holding a minted ID wins, whatever surrounds it."""
    assert identity.read_uid(header, NAME) == UID


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        ";",
        ";;;;;;",
        "=",
        NAME,
        f"{NAME}=",
        f"{NAME}={UID.upper()}",
        f"{NAME}={{{UID}}}",
        f"{NAME}={UID[:-1]}",
        f"{NAME}={UID}0",
        f"{NAME}={UID.replace('-', '')}",
        f"{NAME}=urn:uuid:{UID}",
        pytest.param(f"{NAME}={uuid.uuid1()}", id="uuid1"),
        f"{NAME}={uuid.uuid3(uuid.NAMESPACE_DNS, 'x')}",
        f"{NAME}={uuid.uuid5(uuid.NAMESPACE_DNS, 'x')}",
        f"{NAME}={UID[:19]}c{UID[20:]}",
        f"xes_uid={UID}",
        f"es_uid_x={UID}",
        f"ES_UID={UID}",
        f"{NAME}:{UID}",
        f"{NAME}={UID} x",
    ],
)
def test_read_uid_rejects_anything_else(header: str | None) -> None:
    """Other UUID versions, case, braces, truncation and look-alike cookie names count as absent."""
    assert identity.read_uid(header, NAME) is None


def test_read_uid_ignores_similar_names_even_with_valid_ids() -> None:
    """Only the configured name counts: ``xes_uid`` and ``es_uid_x`` never supply the ID."""
    header = f"xes_uid={UID}; es_uid_x={UID}; {NAME}x={UID}"
    assert identity.read_uid(header, NAME) is None


def test_read_uid_in_a_giant_header_is_fast_and_bounded() -> None:
    """A megabyte-sized header is answered quickly; an ID buried beyond the scan cap is absent."""
    junk = "a=b; " * 200_000
    started = time.perf_counter()
    assert identity.read_uid(f"{NAME}={UID}; " + junk, NAME) == UID
    assert identity.read_uid(junk + f"{NAME}={UID}", NAME) is None
    assert identity.read_uid(";" * 1_000_000, NAME) is None
    assert time.perf_counter() - started < 1.0


@FAST
@given(hostile_text, st.sampled_from([NAME, "uid", "a-b"]))
def test_read_uid_returns_only_minted_ids_from_the_header(header: str, name: str) -> None:
    """For any header, the result is None or a minted-format ID that occurs in the header."""
    result = identity.read_uid(header, name)
    assert result is None or (MINTED_RE.fullmatch(result) and result in header)


@FAST
@given(hostile_text.filter(lambda s: ";" not in s and NAME not in s))
def test_read_uid_survives_junk_cookies_around_it(junk: str) -> None:
    """A valid cookie is still found after junk that contains no ``;`` or the cookie name."""
    header = f"{junk[:1000]}; {NAME}={UID}; {junk[:1000]}"
    assert identity.read_uid(header, NAME) == UID


def test_set_cookie_header_has_every_attribute() -> None:
    """The cookie lasts 400 days on the whole site, hidden from scripts, HTTPS-only, Lax."""
    header = identity.set_cookie_header(NAME, UID)
    first, *attributes = header.split("; ")
    assert first == f"{NAME}={UID}"
    assert sorted(attributes) == sorted(
        ["Max-Age=34560000", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"]
    )
    assert identity.COOKIE_MAX_AGE == 400 * 24 * 60 * 60 == 34_560_000


def test_set_cookie_header_round_trips_through_read_uid() -> None:
    """The cookie a browser sends back from our Set-Cookie is read as the same ID."""
    uid = identity.mint_uid()
    cookie = identity.set_cookie_header(NAME, uid).split(";", 1)[0]
    assert identity.read_uid(cookie, NAME) == uid


@pytest.mark.parametrize(
    "bad",
    [
        "",
        UID.upper(),
        UID[:-1],
        f"{UID}; Domain=evil.example",
        f"{{{UID}}}",
        pytest.param(str(uuid.uuid1()), id="uuid1"),
    ],
)
def test_set_cookie_header_refuses_bad_ids(bad: str) -> None:
    """An ID that read_uid would not accept is never written into a Set-Cookie header."""
    with pytest.raises(ValueError, match="wrong format"):
        identity.set_cookie_header(NAME, bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), (" 1 ", True), ("1\t", True), (None, False), ("", False), ("0", False),
     ("true", False), ("11", False), ("1, 1", False)],
)  # fmt: skip
def test_wants_no_tracking(value: str | None, expected: bool) -> None:
    """Only ``Sec-GPC: 1`` (whitespace aside) asks for no persistent identifier."""
    assert identity.wants_no_tracking(value) is expected


def test_cookie_values_lists_every_value_of_a_name() -> None:
    """Duplicated cookies are all seen, in order, so a caller can refuse ambiguity."""
    header = f'a=1; {NAME}=x; b=2; {NAME}="y" ; {NAME}x=z'
    assert identity.cookie_values(header, NAME) == ["x", "y"]
    assert identity.cookie_values(None, NAME) == []


def test_clearing_a_cookie_keeps_its_attributes() -> None:
    """A cleared cookie has Max-Age=0 and the same path and flags it was set with."""
    header = identity.clear_cookie_header(NAME)
    first, *attributes = header.split("; ")
    assert first == f"{NAME}="
    assert sorted(attributes) == sorted(
        ["Max-Age=0", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"]
    )


@pytest.mark.parametrize("bad", ["", "a b", "a;b", "a=b", "é", "x" * 129])
def test_cookie_header_refuses_values_edgeshelf_never_sets(bad: str) -> None:
    """Only short token values can be written into a Set-Cookie header."""
    with pytest.raises(ValueError, match="wrong format"):
        identity.cookie_header(NAME, bad, 60)
