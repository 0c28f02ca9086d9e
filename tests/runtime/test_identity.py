"""Behaviour 1: the visitor ID cookie is read strictly, minted once, and never written to KV."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import pytest

from edgeshelf import schema
from edgeshelf.audience_cookie import uid_tag
from tests.runtime.helpers import (
    fresh_audience,
    issued,
    put_profile,
    put_segment,
    shelf,
    visit,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

# Worker behaviour: scripts/test runs these on every runtime, Pyodide 0.28 and 314 included.
pytestmark = pytest.mark.every_runtime


def test_cold_visitor_gets_a_minted_id_with_all_cookie_flags(stack):
    """A first visit mints a UUIDv4 ID set for 400 days with HttpOnly, Secure and SameSite=Lax,
    followed by the audience cookie bound to it (a new visitor's audience: request signals)."""
    r = visit(stack)
    assert r.status_code == 200
    uid, aud = issued(r)
    assert aud.endswith(f".r.{uid_tag(uid)}")


def test_two_cold_visitors_get_different_ids(stack):
    """Minting draws a new random ID each time."""
    ids = {issued(visit(stack))[0] for _ in range(5)}
    assert len(ids) == 5


def test_returning_visitor_keeps_their_id(stack, uid):
    """A valid ID cookie is honoured: re-set with the same value (rolling), never a new one."""
    r = visit(stack, uid=uid)
    assert r.status_code == 200
    assert issued(r)[0] == uid


def test_minting_never_writes_kv(stack):
    """The minted visitor has no profile key in KV afterwards: minting is edge-only."""
    minted, _ = issued(visit(stack))
    assert stack.kv_get(schema.profile_key(minted)) is None


@pytest.mark.parametrize(
    "cookie",
    [
        "es_uid=not-a-uuid",
        pytest.param("es_uid=" + str(uuid.uuid4()).upper(), id="uppercase"),
        pytest.param("es_uid={" + str(uuid.uuid4()) + "}", id="braces"),
        pytest.param("es_uid=" + str(uuid.uuid1()), id="uuid1"),
        pytest.param("es_uid=" + str(uuid.uuid4())[:-1], id="one-short"),
        pytest.param("es_uid=" + str(uuid.uuid4()) + "x", id="one-extra"),
        "es_uid=../../u:admin",
        "es_uid=" + "a" * 5000,
        pytest.param("xes_uid=" + str(uuid.uuid4()), id="other-name"),
        "es_uid=<script>alert(1)</script>",
        ";;;=;=",
        "es_uid=%00%0d%0a",
    ],
)
def test_malformed_cookie_is_treated_as_absent(stack, cookie):
    """Anything but the exact minted format is ignored: a fresh ID is minted, nothing reflected."""
    r = visit(stack, headers={"cookie": cookie})
    assert r.status_code == 200
    issued(r)
    value = cookie.split("=", 1)[-1]
    assert all(value not in c for c in r.headers.get_list("set-cookie"))


def test_valid_id_among_duplicates_and_junk_is_found(stack, uid):
    """The first well-formed ID among several same-named cookies is used."""
    r = visit(stack, headers={"cookie": f"es_uid=junk; other=1; es_uid={uid}; es_uid=more"})
    assert issued(r)[0] == uid


def test_gpc_with_an_existing_id_clears_it_and_reads_no_profile(stack, uid):
    """Sec-GPC: 1 ignores the stored profile (it is not even read), serves the request's country,
    and clears the ID cookie the browser still sends, with the attributes it was set with."""
    aud = fresh_audience()
    served = f"{aud.country}-fr-default"
    put_profile(stack, uid, aud)
    put_segment(stack, aud.exact, ["profiled01"])
    put_segment(stack, served, ["gpcshelf01"])
    # Countries repeat across tests' audiences: this request's line is the next one served from
    # its segment, not any earlier line of the same country.
    before = sum(x["segment"] == served for x in stack.worker_logs())
    r = visit(
        stack,
        uid=uid,
        country=aud.country,
        headers={"sec-gpc": "1", "accept-language": "fr-CA,fr;q=0.9"},
    )
    assert r.status_code == 200
    assert r.headers.get_list("set-cookie") == [
        "es_uid=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax"
    ]
    assert shelf(r)["ids"] == ["gpcshelf01"]
    logs = stack.wait_worker_logs(lambda logs: sum(x["segment"] == served for x in logs) > before)
    record = [x for x in logs if x["segment"] == served][-1]
    assert record["visitor"] == "gpc"
    assert record["profile_read"] == "skipped"


def test_gpc_cold_visitor_gets_no_cookie(stack):
    """A cold visitor with Sec-GPC: 1 is served without any Set-Cookie."""
    r = visit(stack, headers={"sec-gpc": "1"})
    assert r.status_code == 200
    assert "set-cookie" not in r.headers


# --- crawlers (issue 13) ----------------------------------------------------------------------

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture
def global_shelf(fresh_stack) -> Iterator[list[str]]:
    """The fresh stack's global segment, removed afterwards (other tests expect none)."""
    ids = ["crawl01", "crawl02"]
    put_segment(fresh_stack, schema.GLOBAL_SEGMENT, ids, seg_schema="v7")
    yield ids
    fresh_stack.kv_delete(schema.segment_key(schema.GLOBAL_SEGMENT, "v7"))


def test_crawlers_get_no_id_and_always_the_global_shelf(fresh_stack, uid, global_shelf):
    """A search crawler, even one sending an ID with a profile, gets no cookie and the global
    shelf; its log line says bot, and its data point stays out of the rates."""
    aud = fresh_audience()
    put_profile(fresh_stack, uid, aud)
    put_segment(fresh_stack, aud.exact, ["personal01"], seg_schema="v7")
    before = len(fresh_stack.analytics_points())
    r = visit(fresh_stack, uid=uid, headers={"user-agent": GOOGLEBOT})
    assert r.status_code == 200
    assert "set-cookie" not in r.headers
    got = shelf(r)
    assert (got["segment"], got["ids"]) == ("global", global_shelf)
    rec = fresh_stack.wait_worker_logs(lambda logs: bool(logs) and logs[-1]["bot"])[-1]
    assert rec["bot"] is True
    assert rec["visitor"] == "bot"
    assert rec["profile_read"] == "skipped"
    point = fresh_stack.wait_analytics_points(before + 1)[-1]
    assert point["doubles"][1:4] == [0, 0, 0]
    assert point["doubles"][5] == 1


def test_a_crawler_without_a_cookie_gets_none_on_every_hit(fresh_stack, global_shelf):
    """Crawling the homepage again and again mints nothing."""
    for _ in range(3):
        r = visit(fresh_stack, headers={"user-agent": GOOGLEBOT})
        assert "set-cookie" not in r.headers
        assert shelf(r)["segment"] == "global"


def test_cloudflare_verified_bots_are_crawlers(fresh_stack, global_shelf):
    """request.cf.botManagement.verifiedBot marks a crawler whatever its User-Agent."""
    blob = json.dumps({"country": "US", "botManagement": {"verifiedBot": True, "score": 1}})
    r = visit(fresh_stack, headers={"MF-CF-Blob": blob})
    assert "set-cookie" not in r.headers
    assert shelf(r)["segment"] == "global"
