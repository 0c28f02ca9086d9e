"""Issue 14: the audience cookie takes the profile read off a returning visitor's page."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from edgeshelf import schema
from edgeshelf.audience_cookie import uid_tag
from tests.conftest import start_stack
from tests.runtime.helpers import (
    AUDIENCE_SET,
    fresh_audience,
    issued,
    put_profile,
    put_segment,
    shelf,
    visit,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx
    from localstack import LocalStack

# Worker behaviour: scripts/test runs these on every runtime, Pyodide 0.28 and 314 included.
pytestmark = pytest.mark.every_runtime

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def both(uid: str, aud: str, extra: str = "") -> dict[str, str]:
    """Request headers carrying the ID and the audience cookie (and any extra cookies)."""
    return {"cookie": f"es_uid={uid}; es_aud={aud}{extra}"}


def log_for(stack: LocalStack, segment: str, n: int = 1) -> list[dict[str, Any]]:
    """The Worker's log records of requests served ``segment``, once there are ``n`` of them."""
    logs = stack.wait_worker_logs(lambda ls: sum(x["segment"] == segment for x in ls) >= n)
    return [x for x in logs if x["segment"] == segment]


def known_visitor(stack: LocalStack, seg_schema: str = "v3") -> tuple[str, Any, list[str]]:
    """A visitor with a stored profile and a published exact segment."""
    uid, aud = str(uuid.uuid4()), fresh_audience()
    ids = [f"aud{uuid.uuid4().hex[:8]}"]
    put_profile(stack, uid, aud)
    put_segment(stack, aud.exact, ids, seg_schema)
    return uid, aud, ids


def test_profile_read_once_then_carried_by_the_cookie(stack):
    """The first page reads the profile and issues es_aud (source k, bound to the ID); the next
    page, carrying it, reads no profile, sets no cookie and serves the same shelf."""
    uid, aud, ids = known_visitor(stack)
    first = visit(stack, uid=uid)
    rolled, value = issued(first)
    assert rolled == uid
    assert value == f"a1.{aud.country}.{aud.lang}.{aud.bucket}.k.{uid_tag(uid)}"
    assert shelf(first)["ids"] == ids

    again = visit(stack, headers=both(uid, value))
    assert again.status_code == 200
    assert "set-cookie" not in again.headers
    assert shelf(again)["ids"] == ids
    first_log, again_log = log_for(stack, aud.exact, 2)[-2:]
    assert (first_log["audience"], first_log["profile_read"]) == ("kv", "hit")
    assert (again_log["audience"], again_log["profile_read"]) == ("cookie", "skipped")
    assert again_log["profile"] == "kv"
    assert again_log["kv_reads"] < first_log["kv_reads"]


def test_a_changed_profile_is_not_read_while_the_cookie_holds(stack):
    """With a valid es_aud the Worker never reads u:<uid>: a profile moved to another segment
    is not seen until the cookie is gone (at most AUDIENCE_TTL later)."""
    uid, _aud, ids = known_visitor(stack)
    _, value = issued(visit(stack, uid=uid))
    moved = fresh_audience()
    put_profile(stack, uid, moved)
    put_segment(stack, moved.exact, ["movedaway01"])
    assert shelf(visit(stack, headers=both(uid, value)))["ids"] == ids
    # Without the cookie (it expired), the new profile is read and a new es_aud issued.
    fresh = visit(stack, uid=uid)
    assert shelf(fresh)["ids"] == ["movedaway01"]
    assert issued(fresh)[1].startswith(f"a1.{moved.country}.{moved.lang}.{moved.bucket}.k.")


def test_a_new_visitor_gets_a_request_audience_that_serves_the_next_page(stack):
    """A minted visitor's es_aud holds the request's country and language (source r); their
    second page reads no profile and matches the first."""
    aud = fresh_audience()
    put_segment(stack, aud.lang_default, ["newvisit01"])
    headers = {
        "MF-CF-Blob": json.dumps({"country": aud.country.upper()}),
        "accept-language": aud.lang,
    }
    first = visit(stack, headers=headers)
    uid, value = issued(first)
    assert value == f"a1.{aud.country}.{aud.lang}.default.r.{uid_tag(uid)}"
    # The second page carries the cookie; even without any request signals it is the same.
    again = visit(stack, headers=both(uid, value))
    assert "set-cookie" not in again.headers
    assert shelf(again)["ids"] == shelf(first)["ids"] == ["newvisit01"]
    log = log_for(stack, aud.lang_default, 2)[-1]
    assert (log["audience"], log["profile"], log["profile_read"]) == (
        "cookie",
        "request",
        "skipped",
    )


def _bad_values(uid: str, good: str) -> list[tuple[str, str]]:
    """es_aud values that must be ignored, as (label, Cookie header)."""
    other = str(uuid.uuid4())
    body = good.rsplit(".", 1)[0]
    return [
        ("another ID's tag", f"es_uid={uid}; es_aud={body}.{uid_tag(other)}"),
        ("duplicated", f"es_uid={uid}; es_aud={good}; es_aud={good}"),
        ("oversized", f"es_uid={uid}; es_aud={good}{'a' * 4000}"),
        ("upper case", f"es_uid={uid}; es_aud={good.upper()}"),
        ("another format", f"es_uid={uid}; es_aud=a2{good[2:]}"),
        ("a key in the bucket", f"es_uid={uid}; es_aud=a1.us.en.x:v3.k.{uid_tag(uid)}"),
        ("path in the bucket", f"es_uid={uid}; es_aud=a1.us.en.../u:x.k.{uid_tag(uid)}"),
        ("unknown source", f"es_uid={uid}; es_aud={body[:-2]}.z.{uid_tag(uid)}"),
        ("a language no key allows", f"es_uid={uid}; es_aud=a1.us.english.b.k.{uid_tag(uid)}"),
        ("empty", f"es_uid={uid}; es_aud="),
        ("quoted junk", f'es_uid={uid}; es_aud="<script>"'),
    ]


def test_malformed_or_foreign_audience_cookies_are_ignored(stack):
    """Duplicated, oversized, malformed or another ID's es_aud is ignored: the profile is read,
    the right shelf served and a correct es_aud issued; nothing reflected, never a 5xx."""
    uid, aud, ids = known_visitor(stack)
    _, good = issued(visit(stack, uid=uid))
    bad = _bad_values(uid, good)
    for label, cookie in bad:
        r = visit(stack, headers={"cookie": cookie})
        assert r.status_code == 200, label
        assert shelf(r)["ids"] == ids, label
        assert issued(r) == (uid, good), label
    logs = log_for(stack, aud.exact, 1 + len(bad))[-len(bad) :]
    assert {(x["audience"], x["profile_read"]) for x in logs} == {("kv", "hit")}


def test_a_forged_audience_only_chooses_among_published_shelves(stack):
    """A well-formed es_aud naming another audience is honoured for its own ID: it serves that
    audience's published shelf (anyone may see it), or falls back along the usual chain."""
    uid, _aud, _ids = known_visitor(stack)
    other = fresh_audience()
    put_segment(stack, other.exact, ["forged01"])
    forged = f"a1.{other.country}.{other.lang}.{other.bucket}.k.{uid_tag(uid)}"
    assert shelf(visit(stack, headers=both(uid, forged)))["ids"] == ["forged01"]
    nowhere = f"a1.{other.country}.{other.lang}.unpublished_bucket.k.{uid_tag(uid)}"
    got = shelf(visit(stack, headers=both(uid, nowhere)))
    assert got["segment"] != f"{other.country}-{other.lang}-unpublished_bucket"


def test_gpc_clears_both_cookies_and_crawlers_get_none(stack):
    """Sec-GPC: 1 clears es_uid and es_aud (Max-Age=0, same attributes) and issues neither; a
    crawler carrying both gets no cookie at all."""
    uid, _aud, _ids = known_visitor(stack)
    _, value = issued(visit(stack, uid=uid))
    gpc = visit(stack, headers={**both(uid, value), "sec-gpc": "1"})
    assert gpc.headers.get_list("set-cookie") == [
        "es_uid=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax",
        "es_aud=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax",
    ]
    bot = visit(stack, headers={**both(uid, value), "user-agent": GOOGLEBOT})
    assert "set-cookie" not in bot.headers
    assert "set-cookie" not in visit(stack, headers={"user-agent": GOOGLEBOT}).headers


def test_the_cookie_holds_no_schema_and_its_lifetime_is_configured(stack, fresh_stack):
    """An es_aud issued under SEGMENT_SCHEMA v3 still serves (no profile read) where v7 is the
    schema, from v7's segments; and its Max-Age is AUDIENCE_TTL (120 on that stack)."""
    uid, aud, _ids = known_visitor(stack)
    _, value = issued(visit(stack, uid=uid))
    put_segment(fresh_stack, aud.exact, ["schema7ids"], seg_schema="v7")
    r = visit(fresh_stack, headers=both(uid, value))
    assert "set-cookie" not in r.headers
    assert shelf(r)["ids"] == ["schema7ids"]
    assert log_for(fresh_stack, aud.exact)[-1]["audience"] == "cookie"
    minted = visit(fresh_stack)
    cookies = minted.headers.get_list("set-cookie")
    found = AUDIENCE_SET.fullmatch(cookies[1])
    assert found is not None
    assert found.group(2) == "120"


def test_a_failed_profile_read_issues_no_audience(fresh_stack):
    """A KV error reading u:<uid> serves request signals for this page only: no es_aud (which
    would pin the stand-in audience for AUDIENCE_TTL), and the ID is not re-set either."""
    uid, aud, _ids = known_visitor(fresh_stack, seg_schema="v7")
    fresh_stack.kv_faults(keys=[schema.profile_key(uid)])
    try:
        r = visit(fresh_stack, uid=uid)
    finally:
        fresh_stack.clear_kv_faults()
    assert r.status_code == 200
    assert "set-cookie" not in r.headers
    after = visit(fresh_stack, uid=uid)
    assert shelf(after)["segment"] == aud.exact
    assert issued(after, ttl=120)[0] == uid


@pytest.fixture(scope="module")
def cookieless_stack(tmp_path_factory) -> Iterator[LocalStack]:
    """A stack with AUDIENCE_TTL = 0: the audience cookie turned off."""
    s = start_stack(tmp_path_factory, "no-audience-stack", vars={"AUDIENCE_TTL": "0"})
    yield s
    s.stop()


def _profile_reads(stack: LocalStack, segment: str, n: int) -> list[str]:
    return [x["profile_read"] for x in log_for(stack, segment, n)[-n:]]


def test_audience_ttl_zero_restores_a_profile_read_per_page(cookieless_stack):
    """With AUDIENCE_TTL = 0 no es_aud is set, one sent is ignored, and every page reads the
    profile; a new visitor gets only the ID cookie, a returning one nothing."""
    uid, aud, ids = known_visitor(cookieless_stack)
    value = f"a1.{aud.country}.{aud.lang}.other.k.{uid_tag(uid)}"
    pages: list[httpx.Response] = [
        visit(cookieless_stack, uid=uid),
        visit(cookieless_stack, headers=both(uid, value)),
    ]
    for page in pages:
        assert "set-cookie" not in page.headers
        assert shelf(page)["ids"] == ids
    assert _profile_reads(cookieless_stack, aud.exact, 2) == ["hit", "hit"]
    cookies = visit(cookieless_stack).headers.get_list("set-cookie")
    assert len(cookies) == 1
    assert cookies[0].startswith("es_uid=")
