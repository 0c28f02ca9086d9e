"""What the isolate keeps between requests: segment values and the shell, split around its slot.

Two stacks that differ only in their memo settings run side by side: ``kept`` keeps segments and
shells for a second, ``rewritten`` keeps nothing (``SHELL_POINTER_TTL=0``, ``SEGMENT_MEMO_TTL=0``:
HTMLRewriter injects on every request). The same data goes into both, so every page the memo
path builds from its Blobs can be compared byte for byte with what the rewriter makes.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import pytest

from edgeshelf import schema
from tests.conftest import start_stack
from tests.runtime.helpers import (
    debug,
    fresh_audience,
    put_profile,
    put_raw,
    put_segment,
    shelf,
    video_ids,
    visit,
)

# Worker behaviour: scripts/test runs these on every runtime, Pyodide 0.28 and 314 included.
pytestmark = pytest.mark.every_runtime

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx
    from localstack import LocalStack

SCHEMA = "v11"
TTL_S = 1.0
COMMON = {"SEGMENT_SCHEMA": SCHEMA, "DEBUG_HEADERS": "1", "ORIGIN_TIMEOUT_MS": "400"}


def memo_stack(tmp_path_factory: pytest.TempPathFactory, name: str, ttl: str) -> LocalStack:
    """A stack whose isolate keeps shells and segments for ``ttl`` seconds ("0": nothing)."""
    s = start_stack(
        tmp_path_factory, name,
        vars={**COMMON, "SHELL_POINTER_TTL": ttl, "SEGMENT_MEMO_TTL": ttl},
    )  # fmt: skip
    s.origin_config(mode="down")  # shells come from KV's backup copy: any HTML a test wants
    return s


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    s = memo_stack(tmp_path_factory, "memo-kept", str(int(TTL_S)))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    s = memo_stack(tmp_path_factory, "memo-off", "0")
    yield s
    s.stop()


def publish_shell(stacks: list[LocalStack], html: str) -> str:
    """A new version of the home shell with ``html`` as its only copy (the origin is down).

    The version goes into the HTML as a comment, so a page shows which version it was built from.
    """
    version = "m" + uuid.uuid4().hex[:12]
    text = html.replace("<html", f"<!-- {version} -->\n<html", 1)
    for s in stacks:
        put_raw(s, schema.shell_backup_key("home", version), text)
        put_raw(s, schema.shell_pointer_key("home"), schema.encode_shell_pointer(version, "/"))
    return version


def wait_version(stack: LocalStack, version: str, uid: str | None = None) -> httpx.Response:
    """The pointer is kept for up to TTL_S: poll until a page of ``version`` is served."""
    deadline = time.monotonic() + TTL_S + 5
    while True:
        r = visit(stack, uid=uid)
        if f"<!-- {version} -->" in r.text:
            return r
        assert time.monotonic() < deadline, f"version {version} never served:\n{r.text[:300]}"
        time.sleep(0.1)


def page(title: str, slot_html: str, tail: str = "") -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n<body><header>Vidéos ✓ 🎬</header>\n{slot_html}\n"
        f"<footer>{tail}</footer></body></html>\n"
    )


SHELLS = {
    "cards": page("cards", '<section data-edgeshelf-slot data-edgeshelf-render="cards">'
                  "<p>Popular right now</p><ul><li>a</li></ul></section>"),
    "script-only": page("plain", '<div id="shelf" data-edgeshelf-slot><p>default</p></div>'),
    "empty-slot": page("empty", '<div data-edgeshelf-slot data-edgeshelf-render="cards"></div>'),
    "two-slots": page("two", '<div data-edgeshelf-slot data-edgeshelf-render="cards">one</div>'
                      '<div data-edgeshelf-slot data-edgeshelf-render="cards">two</div>'),
    "nested": page("nested", '<div data-edgeshelf-slot data-edgeshelf-render="cards">'
                   "<div data-edgeshelf-slot>inner</div></div>"),
    "implicit-end": page("p", "<p data-edgeshelf-slot data-edgeshelf-render=cards>text<p>next"),
    "void": page("void", '<img data-edgeshelf-slot data-edgeshelf-render="cards" alt="">'),
    "marker-lookalike": page(
        "look", "<!--edgeshelf-split-0000-start--><div data-edgeshelf-slot>x</div>"
        "<!--edgeshelf-split-0000-end-->"
    ),
    "no-slot": page("none", "<div>no slot here</div>"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SHELLS))
@pytest.mark.parametrize("visitor", ["known", "no-segment"])
def test_kept_shell_pages_equal_the_rewriters_byte_for_byte(kept, rewritten, name, visitor):
    """Whatever the shell, the page built from the kept split is the rewriter's page exactly."""
    stacks = [kept, rewritten]
    uid = str(uuid.uuid4())
    aud = fresh_audience()
    for s in stacks:
        put_profile(s, uid, aud)
        if visitor == "known":
            put_segment(s, aud.exact, video_ids("memo", 5), SCHEMA)
    version = publish_shell(stacks, SHELLS[name])
    got = wait_version(kept, version, uid=uid)
    want = wait_version(rewritten, version, uid=uid)
    assert got.status_code == want.status_code == 200
    assert got.text == want.text
    # The second request is answered from the kept split (or, for a split the isolate cannot
    # trust, by the rewriter again): the same page either way.
    again = visit(kept, uid=uid)
    assert again.text == want.text
    assert again.headers["content-type"] == want.headers["content-type"]


def test_the_second_request_takes_the_shell_from_isolate_memory(kept):
    version = publish_shell([kept], SHELLS["cards"])
    first = wait_version(kept, version)
    assert debug(first)["shell"] in {"kv-copy", "memory"}
    second = visit(kept)
    assert debug(second)["shell"] == "memory"
    assert "desc=memory" in second.headers["server-timing"]


def test_a_new_shell_version_is_served_within_the_pointer_ttl(kept):
    old = publish_shell([kept], SHELLS["script-only"].replace("default", "old default"))
    wait_version(kept, old)
    assert debug(visit(kept))["shell"] == "memory"
    new = publish_shell([kept], SHELLS["script-only"].replace("default", "new default"))
    started = time.monotonic()
    r = wait_version(kept, new)
    assert time.monotonic() - started < TTL_S + 2
    assert "new default" in r.text
    assert "old default" not in r.text
    assert debug(r)["shell"] == "kv-copy"  # the first request of a version prepares it
    assert debug(visit(kept))["shell"] == "memory"


def segment_records(stack: LocalStack, segment: str, n: int) -> list[dict[str, object]]:
    logs = stack.wait_worker_logs(
        lambda logs: sum(1 for r in logs if r.get("segment") == segment) >= n
    )
    return [r for r in logs if r.get("segment") == segment]


def test_a_segment_is_read_from_kv_once_per_ttl_and_then_from_memory(kept):
    aud = fresh_audience()
    users = [str(uuid.uuid4()) for _ in range(3)]
    for uid in users:
        put_profile(kept, uid, aud)
    put_segment(kept, aud.exact, video_ids("first", 3), SCHEMA)
    for uid in users:
        assert shelf(visit(kept, uid=uid))["ids"] == video_ids("first", 3)
    recs = segment_records(kept, aud.exact, 3)
    # One KV read of the segment; every other request only reads its own profile.
    assert [r["kv_reads"] for r in recs] == [2, 1, 1]
    assert [r["memo_reads"] for r in recs] == [0, 1, 1]
    assert all(r["segment_reads"] == ["hit"] for r in recs)


def test_a_changed_segment_shows_once_the_memo_expires(kept):
    aud = fresh_audience()
    uid = str(uuid.uuid4())
    put_profile(kept, uid, aud)
    put_segment(kept, aud.exact, video_ids("old", 2), SCHEMA)
    assert shelf(visit(kept, uid=uid))["ids"] == video_ids("old", 2)
    put_segment(kept, aud.exact, video_ids("new", 2), SCHEMA)
    deadline = time.monotonic() + TTL_S + 3
    while shelf(visit(kept, uid=uid))["ids"] != video_ids("new", 2):
        assert time.monotonic() < deadline, "the new segment never showed"
        time.sleep(0.1)


def test_a_missing_segment_is_remembered_too(kept):
    """A visitor whose own segment is missing does not re-read the fallback chain each time."""
    aud = fresh_audience()
    users = [str(uuid.uuid4()) for _ in range(2)]
    for uid in users:
        put_profile(kept, uid, aud)
    lang_default = schema.segment_id(aud.country, aud.lang, schema.DEFAULT_BUCKET)
    put_segment(kept, lang_default, video_ids("lang", 2), SCHEMA)
    for uid in users:
        got = shelf(visit(kept, uid=uid))
        assert (got["segment"], got["fallback"]) == (lang_default, 1)
    recs = [r for r in segment_records(kept, lang_default, 2) if r.get("profile") == "kv"][-2:]
    assert recs[0]["segment_reads"] == recs[1]["segment_reads"] == ["miss", "hit"]
    assert recs[1]["kv_reads"] == 1
    assert recs[1]["memo_reads"] == 2


def test_a_split_it_cannot_trust_is_kept_whole_and_rewritten_per_request(kept, rewritten):
    """lol-html cannot prepend into a void element, so the two passes disagree: the isolate
    keeps the shell whole (no cache read per request) and injects with HTMLRewriter, saying so
    once in the log, not on every request."""
    uid = str(uuid.uuid4())
    aud = fresh_audience()
    for s in (kept, rewritten):
        put_profile(s, uid, aud)
        put_segment(s, aud.exact, video_ids("void", 3), SCHEMA)
    version = publish_shell([kept, rewritten], SHELLS["void"])
    wait_version(kept, version, uid=uid)
    pages = [visit(kept, uid=uid) for _ in range(3)]
    want = wait_version(rewritten, version, uid=uid)
    assert all(p.text == want.text for p in pages)
    assert all(debug(p)["shell"] == "memory" for p in pages)
    time.sleep(0.3)
    logs = kept.wait_worker_logs(
        lambda logs: sum(1 for r in logs if r.get("shell_version") == version) >= 4
    )
    mine = [r for r in logs if r.get("shell_version") == version]
    untrusted = [r for r in mine if any("split not trusted" in e for e in r["errors"])]
    assert len(untrusted) == 1
    assert untrusted[0]["shell"] == "kv-copy"


def test_a_version_its_pointer_names_again_is_kept_without_rereading_it(kept):
    """Past the TTL the pointer is read again; while it names the same version the isolate
    keeps its split copy (a version's HTML never changes) instead of reading and splitting the
    shell again: every request after the first comes from memory."""
    version = publish_shell([kept], SHELLS["cards"])
    wait_version(kept, version)
    sources = []
    deadline = time.monotonic() + 3 * TTL_S + 0.5
    while time.monotonic() < deadline:
        sources.append(debug(visit(kept))["shell"])
        time.sleep(0.05)
    assert len(sources) > 10
    assert set(sources) == {"memory"}


def test_each_segment_keeps_its_own_page(kept):
    """Finished pages are kept per shelf: visitors of different segments, interleaved, each
    get their own shelf, and a visitor's page does not change between requests."""
    version = publish_shell([kept], SHELLS["cards"])
    wait_version(kept, version)
    users = []
    for n in range(3):
        aud = fresh_audience()
        uid = str(uuid.uuid4())
        put_profile(kept, uid, aud)
        put_segment(kept, aud.exact, video_ids(f"own{n}x", 4), SCHEMA)
        users.append((uid, video_ids(f"own{n}x", 4)))
    first = {uid: visit(kept, uid=uid).text for uid, _ in users}
    for _ in range(3):
        for uid, ids in users:
            r = visit(kept, uid=uid)
            assert debug(r)["shell"] == "memory"
            assert shelf(r)["ids"] == ids
            assert r.text == first[uid]
