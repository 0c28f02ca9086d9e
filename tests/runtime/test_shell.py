"""Behaviour 4: the shell comes from the Cache API, the origin on a miss, or KV's backup."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from edgeshelf import schema
from tests.conftest import start_stack
from tests.runtime.helpers import debug, put_raw, shelf, visit
from tests.support.pages import shelf_from_html

# Worker behaviour: scripts/test runs these on every runtime, Pyodide 0.28 and 314 included.
pytestmark = pytest.mark.every_runtime

if TYPE_CHECKING:
    from collections.abc import Iterator

    from localstack import LocalStack

LKG_MARKER = "<!-- last-known-good copy -->"


@pytest.fixture
def shell_version(fresh_stack) -> Iterator[str]:
    """Point the home shell at a never-seen version (a cold cache) and restore the origin after."""
    version = "t" + uuid.uuid4().hex[:12]
    put_raw(
        fresh_stack, schema.shell_pointer_key("home"), schema.encode_shell_pointer(version, "/")
    )
    yield version
    fresh_stack.origin_config(mode="ok", delay_ms=0, pad_bytes=0, chunked=False)


def put_backup(stack, version: str) -> None:
    html = httpx.get(stack.origin + "/").text.replace("<main>", "<main>" + LKG_MARKER, 1)
    put_raw(stack, schema.shell_backup_key("home", version), html)


def wait_cached(stack) -> httpx.Response:
    """The cache is filled through waitUntil: poll until a request is served from it."""
    for _ in range(50):
        r = visit(stack)
        if debug(r)["shell"] == "cache":
            return r
        time.sleep(0.05)
    raise AssertionError("shell never reached the cache")


def test_cold_cache_fetches_origin_once_then_serves_from_cache(fresh_stack, shell_version):
    """A miss goes to the origin once; the next requests are served from caches.default."""
    before = fresh_stack.origin_stats()["shell_requests"]
    first = visit(fresh_stack)
    assert first.status_code == 200
    assert debug(first)["shell"] == "origin"
    wait_cached(fresh_stack)
    for _ in range(3):
        assert debug(visit(fresh_stack))["shell"] == "cache"
    assert fresh_stack.origin_stats()["shell_requests"] == before + 1
    # The fill went through ctx.waitUntil with a proxy that outlived the call (ffi.wait_until).
    assert "borrowed proxy" not in fresh_stack.log_text()


def test_plain_first_visit_with_an_origin_that_sends_no_length(fresh_stack, shell_version):
    """No Sec-GPC, no Cookie, a chunked origin answer: a page, a minted ID and a shelf.

    The request that answered every visitor with a 503 on Pyodide 0.28 (JS null read as a
    header value); scripts/test runs it on every interpreter.
    """
    fresh_stack.origin_config(chunked=True)
    before = len(fresh_stack.worker_logs())
    r = httpx.get(fresh_stack.worker + "/", timeout=30)
    assert "cookie" not in r.request.headers
    assert "sec-gpc" not in r.request.headers
    assert r.status_code == 200, r.text[:300]
    assert debug(r)["shell"] == "origin"
    assert r.headers["set-cookie"].startswith("es_uid=")
    assert shelf(r)["fallback"] in (0, 1, 2, 3)
    assert r.text.rstrip().endswith("</html>")
    record = fresh_stack.wait_worker_logs(lambda logs: len(logs) > before)[-1]
    assert record["visitor"] == "minted"
    assert record["errors"] == []


@pytest.mark.parametrize("source", ["origin", "cache"])
def test_personalized_response_headers(fresh_stack, shell_version, source):
    """Origin validators, length and cookies are dropped; the page is private, varies on Cookie."""
    r = visit(fresh_stack) if source == "origin" else wait_cached(fresh_stack)
    assert debug(r)["shell"] == source
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["vary"] == "Cookie"
    assert r.headers["content-type"].startswith("text/html")
    for gone in ("etag", "last-modified", "content-length"):
        assert gone not in r.headers
    assert all("origin_session" not in c for c in r.headers.get_list("set-cookie"))
    timing = r.headers["server-timing"]
    assert "kv;dur=" in timing
    assert "shell;dur=" in timing
    assert f"desc={source}" in timing


def test_warm_cache_survives_origin_down(fresh_stack, shell_version):
    """Once cached, the shell is served while the origin is unreachable."""
    wait_cached(fresh_stack)
    fresh_stack.origin_config(mode="down")
    r = visit(fresh_stack)
    assert r.status_code == 200
    assert debug(r)["shell"] == "cache"


@pytest.mark.parametrize("mode", ["down", "slow", "error", "nohtml"])
def test_cold_cache_and_bad_origin_serve_last_known_good(fresh_stack, shell_version, mode):
    """Origin down, slow past the timeout, failing or not HTML: KV's backup copy is served."""
    put_backup(fresh_stack, shell_version)
    fresh_stack.origin_config(mode=mode)
    started = time.monotonic()
    r = visit(fresh_stack)
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert debug(r)["shell"] == "kv-copy"
    assert LKG_MARKER in r.text
    assert shelf(r) is not None
    assert elapsed < 4.0, "the origin timeout (400 ms here) bounds a slow origin"


def test_last_known_good_is_cached_after_use(fresh_stack, shell_version):
    """A shell served from KV's backup is put in the cache, sparing KV on the next request."""
    put_backup(fresh_stack, shell_version)
    fresh_stack.origin_config(mode="down")
    assert debug(visit(fresh_stack))["shell"] == "kv-copy"
    assert LKG_MARKER in wait_cached(fresh_stack).text


@pytest.mark.parametrize("mode", ["down", "error"])
def test_nothing_available_is_a_clear_503(fresh_stack, shell_version, mode):
    """No cache, no origin and no backup: a small 503 page with Retry-After, never a 500."""
    fresh_stack.origin_config(mode=mode)
    r = visit(fresh_stack)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "30"
    assert r.headers["content-type"].startswith("text/html")
    assert "Traceback" not in r.text
    assert "right back" in r.text


def test_shell_without_slot_is_served_intact(fresh_stack, shell_version):
    """A shell lacking the slot marker is served as it is, with no shelf and no error."""
    fresh_stack.origin_config(mode="noslot")
    r = visit(fresh_stack)
    assert r.status_code == 200
    assert shelf_or_none(r) is None
    assert "Editor's picks" in r.text


def test_large_shell_streams_through(fresh_stack, shell_version):
    """A 1 MB shell is injected and served whole."""
    fresh_stack.origin_config(pad_bytes=1_000_000)
    r = visit(fresh_stack)
    assert r.status_code == 200
    assert len(r.content) > 1_000_000
    assert r.text.rstrip().endswith("</html>")
    assert shelf(r) is not None


def test_new_shell_version_is_picked_up_without_redeploy(fresh_stack, shell_version):
    """Moving the pointer to another version switches the cache key (here: a cold miss)."""
    wait_cached(fresh_stack)
    newer = shell_version + "b"
    put_raw(fresh_stack, schema.shell_pointer_key("home"), schema.encode_shell_pointer(newer))
    assert debug(visit(fresh_stack))["shell"] == "origin"


def shelf_or_none(r: httpx.Response):
    return shelf_from_html(r.text)


# --- the site's own headers, shells tied to their version, pointer errors (issue 13) --------

SITE_HEADERS = (
    "content-security-policy",
    "strict-transport-security",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
    "link",
)


def site_headers(stack) -> dict[str, str]:
    """The security and link headers the origin sends with its homepage."""
    origin = httpx.get(stack.origin + "/", timeout=30).headers
    return {name: origin[name] for name in SITE_HEADERS}


def assert_site_headers(r: httpx.Response, expected: dict[str, str]) -> None:
    """The page carries the site's headers, and edgeshelf's own in place of the origin's."""
    assert {name: r.headers.get(name) for name in SITE_HEADERS} == expected
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["vary"] == "Cookie"
    for gone in ("etag", "last-modified", "age", "expires"):
        assert gone not in r.headers
    assert all(c.startswith(("es_uid=", "es_aud=")) for c in r.headers.get_list("set-cookie"))


@pytest.mark.parametrize("source", ["origin", "cache"])
def test_the_sites_headers_survive_origin_and_cache(fresh_stack, shell_version, source):
    """CSP, HSTS, X-Frame-Options and the rest reach the visitor from the origin and the cache."""
    expected = site_headers(fresh_stack)
    r = visit(fresh_stack) if source == "origin" else wait_cached(fresh_stack)
    assert debug(r)["shell"] == source
    assert_site_headers(r, expected)


def test_the_sites_headers_survive_isolate_memory(stack):
    """A shell kept split in isolate memory is served with the origin's headers too."""
    expected = site_headers(stack)
    for _ in range(20):
        r = visit(stack)
        if debug(r)["shell"] == "memory":
            break
    assert debug(r)["shell"] == "memory"
    assert_site_headers(r, expected)


def test_the_copy_in_kv_carries_its_headers(fresh_stack, shell_version):
    """A version's copy published with the origin's headers serves them, and so does the cache
    entry filled from it."""
    expected = site_headers(fresh_stack)
    html = httpx.get(fresh_stack.origin + "/").text.replace("<main>", "<main>" + LKG_MARKER, 1)
    put_raw(
        fresh_stack,
        schema.shell_backup_key("home", shell_version),
        schema.encode_shell_copy(html, [*expected.items(), ("set-cookie", "x=1")]),
    )
    r = visit(fresh_stack)
    assert debug(r)["shell"] == "kv-copy"
    assert LKG_MARKER in r.text
    assert_site_headers(r, expected)
    cached = wait_cached(fresh_stack)
    assert LKG_MARKER in cached.text
    assert_site_headers(cached, expected)


def test_a_version_with_a_copy_is_filled_from_the_copy_not_the_origin(fresh_stack, shell_version):
    """With a copy of the version the pointer names, the origin is not asked and its current
    page (which may be another version's) never lands in the cache under this label."""
    put_backup(fresh_stack, shell_version)
    before = fresh_stack.origin_stats()["shell_requests"]
    r = visit(fresh_stack)
    assert debug(r)["shell"] == "kv-copy"
    assert LKG_MARKER in r.text
    assert LKG_MARKER in wait_cached(fresh_stack).text
    assert fresh_stack.origin_stats()["shell_requests"] == before


def test_without_a_pointer_the_origins_page_is_cached_briefly(fresh_stack):
    """No pointer published: the origin's page is cached for NO_POINTER_SHELL_TTL (2 s here)
    and then asked for again, so origin changes show."""
    fresh_stack.kv_delete(schema.shell_pointer_key("home"))
    time.sleep(1.1)  # no two cache fills of the no-pointer shell within one test's window
    first = visit(fresh_stack)
    assert debug(first)["shell"] in {"origin", "cache"}
    wait_cached(fresh_stack)
    before = fresh_stack.origin_stats()["shell_requests"]
    time.sleep(2.2)
    assert debug(visit(fresh_stack))["shell"] == "origin"
    assert fresh_stack.origin_stats()["shell_requests"] == before + 1


def test_a_failing_pointer_read_keeps_the_known_version(fresh_stack, shell_version):
    """With the pointer's KV read failing and the origin down, the version read last time is
    still served (from its copy), and the log line says the pointer was kept."""
    put_backup(fresh_stack, shell_version)
    assert debug(visit(fresh_stack))["shell"] == "kv-copy"
    fresh_stack.origin_config(mode="down")
    fresh_stack.kv_faults(keys=[schema.shell_pointer_key("home")])
    try:
        before = len(fresh_stack.worker_logs())
        r = visit(fresh_stack)
        assert r.status_code == 200
        assert LKG_MARKER in r.text
        rec = fresh_stack.wait_worker_logs(lambda logs: len(logs) > before)[-1]
        assert rec["shell_version"] == shell_version
        assert any(f"kept version {shell_version}" in e for e in rec["errors"]), rec["errors"]
    finally:
        fresh_stack.clear_kv_faults()


@pytest.fixture(scope="module")
def patient_stack(tmp_path_factory) -> Iterator[LocalStack]:
    """A stack that waits long for its origin and caches nothing without a pointer."""
    s = start_stack(
        tmp_path_factory,
        "patient-stack",
        vars={"ORIGIN_TIMEOUT_MS": "20000", "NO_POINTER_SHELL_TTL": "0", "SHELL_POINTER_TTL": "0"},
    )
    yield s
    s.stop()


def test_an_origin_answer_without_length_is_read_with_a_bound(patient_stack):
    """An origin page that never ends (chunked, no Content-Length) is abandoned at the shell
    size limit, well before the origin timeout, rather than read until it ends."""
    patient_stack.origin_config(mode="endless")
    try:
        before_logs = len(patient_stack.worker_logs())
        r = visit(patient_stack)
        assert r.status_code == 503  # no pointer, no copy, no cache: nothing else to serve
        rec = patient_stack.wait_worker_logs(lambda logs: len(logs) > before_logs)[-1]
        assert rec["errors"] == ["origin: shell too large or empty"]
        deadline = time.monotonic() + 5
        while patient_stack.origin_stats()["aborted"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert patient_stack.origin_stats()["aborted"] == 1, "the Worker hung up on the origin"
    finally:
        patient_stack.origin_config(mode="ok")
