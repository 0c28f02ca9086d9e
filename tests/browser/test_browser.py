"""A real browser against the local stack: identity cookie, rendered shelf, known visitors."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from edgeshelf import schema
from tests.conftest import start_stack
from tests.runtime.helpers import fresh_audience, put_profile, put_segment, video_ids

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from localstack import LocalStack

    from tests.browser.conftest import Context, Page

pytestmark = pytest.mark.browser

COOKIE = "es_uid"
# Its own segment schema, so the segments written here never meet other tests' on a shared stack.
SCHEMA = "v5"
LANG_DEFAULT_IDS = video_ids("brUsEn", 12)
GLOBAL_IDS = video_ids("brGlobal", 12)

# What the page shows: the shelf payload and the cards the Worker rendered (and the client
# script decorated) inside the slot.
PAGE_STATE = """(() => {
  const shelf = JSON.parse(document.getElementById("edgeshelf-shelf").textContent);
  const cards = [...document.querySelectorAll("[data-edgeshelf-slot] #edgeshelf-cards .card")];
  return {
    shelf,
    cards: cards.map((c) => c.querySelector(".thumb").textContent),
    painted: cards.filter((c) => c.querySelector(".thumb").dataset.len).length,
    defaultShown: !!document.getElementById("shelf-default"),
    segment: document.documentElement.dataset.edgeshelfSegment,
    fallback: document.documentElement.dataset.edgeshelfFallback,
    why: (document.querySelector("[data-edgeshelf-slot] .why") || {}).textContent || null,
  };
})()"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of the browser tests' own, with the language default and global segments."""
    s = start_stack(tmp_path_factory, "browser-stack", vars={"SEGMENT_SCHEMA": SCHEMA})
    put_segment(s, schema.segment_id("us", "en", schema.DEFAULT_BUCKET), LANG_DEFAULT_IDS, SCHEMA)
    put_segment(s, schema.GLOBAL_SEGMENT, GLOBAL_IDS, SCHEMA)
    yield s
    s.stop()


def uid_cookie(ctx: Context, site: LocalStack) -> dict[str, Any] | None:
    found = [c for c in ctx.cookies(site.worker) if c["name"] == COOKIE]
    assert len(found) <= 1
    return found[0] if found else None


def page_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(PAGE_STATE)
    return state


def test_first_visit_mints_a_secure_cookie_and_the_shelf_renders(
    site: LocalStack, context: Context
) -> None:
    """A first visit sets an HttpOnly, Secure, SameSite=Lax ID cookie and renders the shelf."""
    page = context.new_page()
    nav = page.goto(site.worker + "/")
    assert nav.status == 200
    assert f"{COOKIE}=" in nav.headers.get("set-cookie", "")
    cookie = uid_cookie(context, site)
    assert cookie is not None, "Chromium did not keep the ID cookie"
    assert schema.valid_uid(cookie["value"])
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Lax")
    assert cookie["expires"] > time.time() + 399 * 86400
    state = page_state(page)
    assert state["shelf"]["segment"] == "us-en-default"
    assert state["cards"] == LANG_DEFAULT_IDS
    assert state["painted"] == len(LANG_DEFAULT_IDS), "the client script did not run"
    assert not state["defaultShown"]
    assert state["why"] == "Popular in United States · English"


def test_reload_sends_the_cookie_back_and_keeps_the_id(site: LocalStack, context: Context) -> None:
    """On reload Chromium sends the Secure cookie over http://127.0.0.1 and gets no new ID."""
    page = context.new_page()
    page.goto(site.worker + "/")
    first = uid_cookie(context, site)
    assert first is not None
    nav = page.reload()
    # 127.0.0.1 is a potentially trustworthy origin, so Secure cookies travel over plain HTTP.
    assert f"{COOKIE}={first['value']}" in nav.request_headers.get("cookie", "")
    assert "set-cookie" not in nav.headers
    again = uid_cookie(context, site)
    assert again is not None
    assert again["value"] == first["value"]
    assert page_state(page)["cards"] == LANG_DEFAULT_IDS


def test_a_second_context_is_a_different_visitor(site: LocalStack, browser: Any) -> None:
    """Two browser contexts (two cookie jars) are given two different IDs."""
    a, b = browser.new_context(), browser.new_context()
    try:
        a.new_page().goto(site.worker + "/")
        b.new_page().goto(site.worker + "/")
        ca, cb = uid_cookie(a, site), uid_cookie(b, site)
        assert ca is not None
        assert cb is not None
        assert ca["value"] != cb["value"]
    finally:
        a.close()
        b.close()


def test_a_known_visitor_sees_their_segments_shelf(
    site: LocalStack, context: Context, tmp_path: Path
) -> None:
    """A visitor whose profile is in KV sees that segment's shelf, rendered, with no new ID; the
    browser keeps the audience cookie, so the next page sets no cookie at all."""
    uid = str(uuid.uuid4())
    aud = fresh_audience()
    ids = video_ids("brKnown", 20)
    put_profile(site, uid, aud)
    put_segment(site, aud.exact, ids, SCHEMA)
    context.add_cookies(
        [
            {
                "name": COOKIE,
                "value": uid,
                "url": site.worker + "/",
                "httpOnly": True,
                "secure": True,
                "sameSite": "Lax",
            }
        ]
    )
    page = context.new_page()
    nav = page.goto(site.worker + "/")
    # The profile was read: the audience cookie is issued and the same ID rolled forward.
    issued = nav.headers["set-cookie"]
    assert f"{COOKIE}={uid};" in issued
    assert "es_aud=a1." in issued
    # The browser sends both back: the next page reads no profile and sets nothing.
    again = page.goto(site.worker + "/")
    assert "set-cookie" not in again.headers
    state = page_state(page)
    assert state["shelf"] == {
        "ids": ids,
        "segment": aud.exact,
        "fallback": 0,
        "schema": SCHEMA,
        "exp": None,
        "arm": None,
    }
    assert state["cards"] == ids
    assert (state["segment"], state["fallback"]) == (aud.exact, "exact")
    assert state["why"] is not None
    assert state["why"].startswith(f"Because you watch {aud.bucket}")
    shot = page.screenshot(tmp_path / "known-visitor.png")
    assert shot.stat().st_size > 10_000


def test_a_visitor_from_elsewhere_gets_the_global_shelf(
    site: LocalStack, browser: Any, tmp_path: Path
) -> None:
    """A visitor whose language has no segment sees the global default, still rendered."""
    ctx = browser.call("newContext", locale="is-IS")
    page_id = browser.call("newPage", context=ctx)
    try:
        browser.call("goto", page=page_id, url=site.worker + "/")
        state = browser.call("evaluate", page=page_id, expression=PAGE_STATE)
        assert (state["segment"], state["fallback"]) == ("global", "global")
        assert state["cards"] == GLOBAL_IDS
        assert state["why"] == "Popular everywhere"
        browser.call("screenshot", page=page_id, path=str(tmp_path / "global.png"))
    finally:
        browser.call("closeContext", context=ctx)
