"""Behaviours 6-8: routing, one log line and data point per request, and no 5xx from input."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.runtime.helpers import fresh_audience, put_profile, put_segment, shelf, visit
from tests.support.rawhttp import send

# Worker behaviour: scripts/test runs these on every runtime, Pyodide 0.28 and 314 included.
pytestmark = pytest.mark.every_runtime


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_pass_through_to_origin(stack, method):
    """Only GET and HEAD are personalized; other methods reach the origin untouched."""
    r = visit(stack, method=method)
    assert r.status_code == 200
    assert r.text == f"origin page {method} /\n"
    assert "set-cookie" not in r.headers


@pytest.mark.parametrize("path", ["/other", "/watch/abc?t=10", "/static/app.js", "/%2e%2e/etc"])
def test_unconfigured_paths_pass_through_to_origin(stack, path):
    """Paths outside PERSONALIZED_PATHS are the origin's, query string included."""
    r = visit(stack, path=path)
    assert r.status_code == 200
    assert r.text.startswith("origin page GET /")
    assert r.headers["x-origin"] == "stand-in"
    assert "set-cookie" not in r.headers


def test_head_is_personalized_without_a_body(stack, uid):
    """HEAD / answers with the personalized headers and an empty body."""
    r = visit(stack, method="HEAD", uid=uid)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["cache-control"] == "private, no-store"


def test_one_json_log_line_per_request(stack, uid):
    """Each personalized request logs one JSON record with segment, fallback, KV and shell facts."""
    aud = fresh_audience()
    put_profile(stack, uid, aud)
    put_segment(stack, aud.exact, ["logged01"])
    visit(stack, uid=uid)
    time.sleep(0.3)  # a second line, were there one, would have arrived by now
    logs = stack.wait_worker_logs(lambda logs: any(r["segment"] == aud.exact for r in logs))
    mine = [r for r in logs if r["segment"] == aud.exact]
    assert len(mine) == 1, "exactly one record for the one request"
    rec = mine[0]
    assert rec["fallback"] == 0
    assert rec["visitor"] == "cookie"
    assert rec["profile"] == "kv"
    assert rec["profile_read"] == "hit"
    assert rec["segment_reads"] == ["hit"]
    assert rec["shell"] in {"memory", "cache", "origin", "kv-copy"}
    assert rec["kv_misses"] <= rec["kv_reads"]
    assert rec["errors"] == []
    assert uid not in json.dumps(logs), "the Worker never logs visitor IDs"


def test_fallbacks_and_misses_are_counted(fresh_stack, uid):
    """A known visitor whose own segment is missing is logged, and counted in the data point,
    as a fallback to the language default with the misses it took to get there."""
    aud = fresh_audience()
    put_profile(fresh_stack, uid, aud, affinity_bucket=aud.bucket)
    put_segment(fresh_stack, aud.lang_default, ["misscount1"], seg_schema="v7")
    before = len(fresh_stack.analytics_points())
    visit(fresh_stack, uid=uid, country=aud.country, headers={"accept-language": aud.lang})
    logs = fresh_stack.wait_worker_logs(
        lambda lg: any(r["segment"] == aud.lang_default for r in lg)
    )
    rec = next(r for r in logs if r["segment"] == aud.lang_default)
    assert rec["fallback"] == 1
    assert rec["segment_reads"] == ["miss", "hit"]
    assert rec["profile_read"] == "hit"
    assert rec["kv_misses"] >= 1
    point = next(
        p
        for p in fresh_stack.wait_analytics_points(before + 1)[before:]
        if p["indexes"] == [aud.lang_default]
    )
    assert point["doubles"][3] == 1.0, "the fallback is counted"
    assert point["doubles"][2] == rec["kv_misses"]


def test_analytics_engine_point_when_bound(fresh_stack, uid):
    """Each request writes one data point; its every blob and double says what the log says."""
    aud = fresh_audience()
    put_profile(fresh_stack, uid, aud)
    put_segment(fresh_stack, aud.exact, ["aepoint01"], seg_schema="v7")
    before = len(fresh_stack.analytics_points())
    visit(fresh_stack, uid=uid)
    points = fresh_stack.wait_analytics_points(before + 1)
    assert len(points) == before + 1
    point = points[-1]
    rec = next(r for r in fresh_stack.worker_logs() if r["segment"] == aud.exact)
    assert point == {
        "dataset": "edgeshelf",
        "indexes": [aud.exact],
        "blobs": [aud.exact, "0", rec["shell"], "kv", "cookie", "kv", "", ""],
        "doubles": [
            1.0,
            float(rec["kv_reads"]),
            float(rec["kv_misses"]),
            0.0,
            pytest.approx(rec["total_ms"], abs=0.001),
            0.0,
            1.0,
        ],
    }


HOSTILE_HEADERS = [
    {"cookie": "es_uid=" + "x" * 20000},
    {"cookie": "; ".join(f"c{i}=v" for i in range(500))},
    {"accept-language": "en;q=" + "9" * 400},
    {"accept-language": ",".join(["zz"] * 3000)},
    {"accept-language": "\u00e9\u00e8;q=nan".encode()},
    {"MF-CF-Blob": '{"country": "<script>"}'},
    {"MF-CF-Blob": '{"country": 42}'},
    {"sec-gpc": "1" * 1000},
    {"user-agent": "\x7f" * 100},
]


@pytest.mark.parametrize("headers", HOSTILE_HEADERS)
def test_hostile_request_headers_never_cause_a_5xx(stack, headers):
    """Oversized, malformed and hostile headers still get a well-formed personalized page."""
    r = httpx.get(stack.worker + "/", headers=headers, timeout=30)
    assert r.status_code == 200
    assert shelf(r) is not None
    assert "<script>" not in r.headers.get("x-edgeshelf-debug", "")


@pytest.mark.parametrize(
    "header",
    [(b"Upgrade", b""), (b"Upgrade", b"websocket"), (b"Keep-Alive", b"timeout=5"),
     (b"Connection", b"x-custom")],
    ids=lambda h: h[0].decode() + "=" + h[1].decode(),
)  # fmt: skip
def test_hop_by_hop_request_headers_still_pass_through(stack, header):
    """A passed-through request carrying a hop-by-hop header still reaches the origin: the
    subrequest does not forward it (found by the fuzz run on the Pyodide host: a bare
    ``Upgrade`` header turned /0 into a 502)."""
    resp = send(stack.worker, b"GET", b"/hop", [header])
    assert resp.status == 200, resp.body[:200]
    assert b"/hop" in resp.body
