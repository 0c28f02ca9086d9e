"""Publishing: batches, bounded concurrency, retries, partial failures, crash safety."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest
import stamina

from builder.batching import batches, pair_size
from builder.cloudflare import KVClient
from builder.errors import APIError, RateLimitedError, RetryableAPIError
from builder.limiter import API_BLOCK, SlidingWindowLimiter
from builder.plan import build_plan
from builder.publish import (
    MAX_RETRY_AFTER,
    Publisher,
    PublishOptions,
    Retrier,
    backoff_hook,
    rate_limit_pause,
)
from builder.state import State
from tests.builder.fakekv import ACCOUNT, BASE, NAMESPACE, TOKEN
from tests.builder.test_plan import NOW, seg, user

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from builder.plan import Item
    from tests.builder.fakekv import FakeKV


def _publisher(kv: KVClient, state: State, **options: int) -> Publisher:
    return Publisher(kv, state, options=PublishOptions(**options), clock=lambda: float(NOW))


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after it runs, not even ``except Exception``."""


def test_batches_hold_at_most_max_pairs_and_max_bytes() -> None:
    """Rows are grouped in order, by pair count and by estimated JSON size."""
    rows = [(f"k{i}", "v" * 10, 60, b"") for i in range(25)]
    assert [len(b) for b in batches(rows, 10, 10**9, size=pair_size)] == [10, 10, 5]
    assert [len(b) for b in batches(rows, 10_000, 3 * 90, size=pair_size)] == [3] * 8 + [1]


def test_batches_by_count_alone_keep_order_and_never_yield_empty() -> None:
    """Without a size, keys are cut by count only, in order, and no input yields no batch."""
    keys = [f"k{i}" for i in range(7)]
    assert list(batches(keys, 3)) == [keys[0:3], keys[3:6], keys[6:]]
    assert list(batches([], 3)) == []


def test_large_plan_is_sent_in_bulk_requests_of_10000(
    state_path: Path, kv: KVClient, fake: FakeKV
) -> None:
    """25,000 profiles take three PUT /bulk requests, none over 10,000 pairs."""
    items = [user(i) for i in range(25_000)]
    with State(state_path) as state:
        report = _publisher(kv, state).publish(build_plan(state, items, schema="v3", now=NOW))
    assert report.written["profiles"] == 25_000
    assert report.requests == fake.count("PUT bulk") == 3
    assert len(fake.store) == 25_000


def test_transient_failures_are_retried(state_path: Path, kv: KVClient, fake: FakeKV) -> None:
    """A 503 and a timeout before success cost two retries and lose nothing."""
    fake.fault("PUT bulk", 503)
    fake.raise_on("PUT bulk", httpx.ConnectTimeout("slow"))
    with State(state_path) as state:
        report = _publisher(kv, state).publish(
            build_plan(state, [seg("a"), user(1)], schema="v3", now=NOW)
        )
    assert (report.failed, report.retries, report.requests) == (0, 2, 3)  # one shared batch
    assert len(fake.store) == 2


def test_partial_success_retries_only_unsuccessful_keys(
    state_path: Path, kv: KVClient, fake: FakeKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a partial bulk success, the retry carries only the keys that failed."""
    items = [user(i) for i in range(5)]
    failing = items[3].key
    original = fake._bulk_put
    calls: list[list[str]] = []

    def flaky(request: httpx.Request, rest: str) -> httpx.Response:
        keys = [p["key"] for p in json.loads(request.content)]
        calls.append(keys)
        fake.refuse_keys = {failing} if len(calls) == 1 else set()
        return original(request, rest)

    monkeypatch.setattr(fake, "_bulk_put", flaky)
    with State(state_path) as state:
        report = _publisher(kv, state).publish(build_plan(state, items, schema="v3", now=NOW))
        assert state.counts().get("unconfirmed", 0) == 0
    assert calls[1] == [failing]
    assert (report.failed, report.retries, report.written["profiles"]) == (0, 1, 5)


def test_keys_failing_every_attempt_stay_unconfirmed_and_defer_deletes(
    state_path: Path, kv: KVClient, fake: FakeKV
) -> None:
    """A key never accepted is counted failed, left unconfirmed, and deletions wait."""
    with State(state_path) as state:
        _publisher(kv, state).publish(build_plan(state, [user(1), user(2)], schema="v3", now=NOW))
        fake.refuse_keys = {user(3).key}
        plan = build_plan(state, [user(1), user(3)], schema="v3", now=NOW)
        report = _publisher(kv, state).publish(plan)
        assert (report.failed, report.deferred_deletes, report.deleted) == (1, 1, 0)
        assert state.counts()["unconfirmed"] == 1
        assert user(2).key in fake.store  # not deleted while a write is outstanding
        fake.refuse_keys = set()
        rerun = build_plan(state, [user(1), user(3)], schema="v3", now=NOW)
        assert (rerun.counts.writes, rerun.counts.deleted) == (1, 1)
        _publisher(kv, state).publish(rerun)
    assert set(fake.store) == {user(1).key, user(3).key}


def test_non_retryable_error_stops_the_run_but_keeps_what_was_confirmed(
    state_path: Path, kv: KVClient, fake: FakeKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 403 on a profile batch raises; the segment batch confirmed before stays recorded."""
    items = [seg("a"), *(user(i) for i in range(3))]
    original = fake._bulk_put

    def forbid_profiles(request: httpx.Request, rest: str) -> httpx.Response:
        if b'"u:' in request.content:
            return httpx.Response(403, json={"success": False, "errors": [{"code": 9109}]})
        return original(request, rest)

    monkeypatch.setattr(fake, "_bulk_put", forbid_profiles)
    with State(state_path) as state:
        # One pair per batch, so the segment does not share the first batch with profiles.
        plan = build_plan(state, items, schema="v3", now=NOW, max_pairs=1)
        with pytest.raises(APIError) as info:
            _publisher(kv, state, max_pairs=1).publish(plan)
        assert info.value.status == 403
        assert state.counts() == {"seg:v3": 1, "u": 3, "unconfirmed": 3}
    assert set(fake.store) == {"seg:a:v3"}


def test_concurrency_is_bounded(state_path: Path, kv: KVClient, fake: FakeKV) -> None:
    """No more than ``concurrency`` bulk requests are in flight at once, and they do overlap."""
    fake.delay = 0.02
    items = [user(i) for i in range(40)]
    with State(state_path) as state:
        plan = build_plan(state, items, schema="v3", now=NOW, max_pairs=2)
        report = _publisher(kv, state, concurrency=3, max_pairs=2).publish(plan)
    assert report.requests == 20
    assert 1 < fake.peak <= 3


def test_crash_mid_run_then_rerun_converges_on_the_plan(
    state_path: Path, kv: KVClient, fake: FakeKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after some batches were applied, a rerun leaves KV equal to the plan."""
    old = [seg("gone"), *(user(i) for i in range(0, 30))]
    new = [seg("a"), *(user(i, '{"v":2}') for i in range(10, 50))]
    with State(state_path) as state:
        _publisher(kv, state).publish(build_plan(state, old, schema="v3", now=NOW))
    original = fake._bulk_put
    seen = 0

    def dies_after_third(request: httpx.Request, rest: str) -> httpx.Response:
        nonlocal seen
        seen += 1
        response = original(request, rest)  # applied in KV...
        if seen == 3:
            raise Crash  # ...but the answer never reaches the builder
        return response

    monkeypatch.setattr(fake, "_bulk_put", dies_after_third)
    with State(state_path) as state:
        plan = build_plan(state, new, schema="v3", now=NOW + 60, max_pairs=7)
        with pytest.raises(Crash):
            _publisher(kv, state, concurrency=1, max_pairs=7).publish(plan)
    monkeypatch.setattr(fake, "_bulk_put", original)
    with State(state_path) as state:
        plan = build_plan(state, new, schema="v3", now=NOW + 120)
        assert plan.counts.unconfirmed["profiles"] == 7  # the batch whose answer was lost
        report = _publisher(kv, state).publish(plan)
        assert report.failed == 0
        again = build_plan(state, new, schema="v3", now=NOW + 180).counts
    assert fake.store == {i.key: i.value for i in new}
    assert (again.writes, again.deleted) == (0, 0)


def test_a_429_pauses_for_its_retry_after_or_cloudflares_block() -> None:
    """A 429 pauses for retry-after (capped), else 5 minutes; its retry waits on that pause only."""
    assert rate_limit_pause(RateLimitedError("x", retry_after=7.0)) == 7.0
    assert rate_limit_pause(RateLimitedError("x", retry_after=10_000)) == MAX_RETRY_AFTER
    assert rate_limit_pause(RateLimitedError("x", retry_after=None)) == API_BLOCK == 300.0
    # stamina adds no backoff of its own to a 429: the limiter's pause holds the retry.
    assert backoff_hook(RateLimitedError("x", retry_after=7.0)) == 0.0
    assert backoff_hook(RateLimitedError("x", retry_after=None)) == 0.0
    assert backoff_hook(RetryableAPIError("x")) is True
    assert backoff_hook(APIError("x")) is False
    assert backoff_hook(ValueError("x")) is False


class VirtualClock:
    """Time that passes only when a thread sleeps, up to the latest wake-up asked for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()
        self.local = threading.local()

    def __call__(self) -> float:
        with self.lock:
            self.local.read = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now = max(self.now, self.local.read + seconds)


@pytest.mark.parametrize(("headers", "pause"), [({}, 300.0), ({"retry-after": "7"}, 7.0)])
def test_a_429_holds_every_thread_until_the_block_ends(
    state_path: Path, fake: FakeKV, headers: dict[str, str], pause: float
) -> None:
    """After a 429 no thread sends anything before retry-after (or 5 minutes) has passed."""
    clock = VirtualClock()
    sent: list[tuple[float, int]] = []  # (virtual time, status) of each bulk write

    def handle(request: httpx.Request) -> httpx.Response:
        with clock.lock:
            arrived = clock.now
        response = fake.handle(request)
        with clock.lock:
            sent.append((arrived, response.status_code))
        return response

    fake.delay = 0.01  # so that the threads' requests overlap
    fake.fault("PUT bulk", 429, headers=headers)
    limiter = SlidingWindowLimiter(clock=clock, sleep=clock.sleep)
    progress = _Recorder()
    transport = httpx.MockTransport(handle)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        httpx.Client(base_url=BASE + "/", transport=transport, headers=auth) as http,
        State(state_path) as state,
    ):
        kv = KVClient(http, account_id=ACCOUNT, namespace_id=NAMESPACE)
        plan = build_plan(state, [user(i) for i in range(60)], schema="v3", now=NOW)
        options = PublishOptions(max_pairs=5, concurrency=3)
        publisher = Publisher(kv, state, limiter=limiter, options=options, progress=progress)
        started = time.time()
        report = publisher.publish(plan)
    assert (report.failed, report.written["profiles"], report.retries) == (0, 60, 1)
    [(blocked_at, _)] = [(t, status) for t, status in sent if status == 429]
    before = [t for t, status in sent if status != 429 and t < blocked_at + pause]
    after = [t for t, status in sent if t >= blocked_at + pause]
    assert all(t == blocked_at for t in before)
    assert len(before) <= 2  # only what other threads had sent before the 429 came back
    assert len(sent) == 13  # 12 batches and the retry
    assert len(after) == 12 - len(before)  # the retry and every later batch waited
    assert limiter.waited >= pause
    [(_, _, until)] = [e for e in progress.events if e[0] == "waiting"]
    assert started + pause - 1 <= until <= time.time() + pause


def test_retry_after_is_honoured_for_real(kv: KVClient, fake: FakeKV) -> None:
    """Outside stamina's test mode a 429 with retry-after: 0.3 delays the retry by 0.3 s."""
    fake.fault("PUT bulk", 429, headers={"retry-after": "0.3"})
    retrier = Retrier(SlidingWindowLimiter(), PublishOptions(attempts=2))
    with stamina.set_testing(False):
        started = time.monotonic()
        done, failed, _ = retrier.bulk(
            ["k"], lambda ks: kv.bulk_put([{"key": k, "value": "v"} for k in ks]).unsuccessful_keys
        )
        elapsed = time.monotonic() - started
    assert (done, failed) == (["k"], [])
    assert 0.3 <= elapsed < 2.0


def test_every_request_passes_the_limiter(kv: KVClient, fake: FakeKV) -> None:
    """Retries are requests too: the limiter counts each attempt."""
    fake.fault("POST bulk/delete", 500, times=2)
    limiter = SlidingWindowLimiter()
    retrier = Retrier(limiter, PublishOptions())
    retrier.bulk(["k"], lambda ks: kv.bulk_delete(ks).unsuccessful_keys)
    assert limiter.acquired == retrier.requests == 3
    assert retrier.retries == 2


# --- segments and profiles share batches (issue #6: requests = ceil(changed keys / 10,000)) ---


def _mixed(n_segments: int, n_profiles: int) -> list[Item]:
    return [*(seg(f"s{i:03d}") for i in range(n_segments)), *(user(i) for i in range(n_profiles))]


class _Wire:
    """A transport in front of the fake that logs when each bulk write starts and ends."""

    def __init__(self, fake: FakeKV) -> None:
        self.fake = fake
        self.lock = threading.Lock()
        self.clock = 0
        self.puts: list[tuple[list[str], int, int]] = []  # (keys, started, answered)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "PUT":
            return self.fake.handle(request)
        with self.lock:
            self.clock += 1
            started = self.clock
        response = self.fake.handle(request)
        with self.lock:
            self.clock += 1
            keys = [pair["key"] for pair in json.loads(request.content)]
            self.puts.append((keys, started, self.clock))
        return response

    @contextlib.contextmanager
    def kv(self) -> Iterator[KVClient]:
        transport = httpx.MockTransport(self.handle)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=BASE + "/", transport=transport, headers=auth) as http:
            yield KVClient(http, account_id=ACCOUNT, namespace_id=NAMESPACE)


@pytest.mark.parametrize("n_segments", [3, 7])
def test_segments_and_profiles_share_batches_segments_first(
    state_path: Path, fake: FakeKV, n_segments: int
) -> None:
    """20 writes in batches of 5 take 4 requests, not 5; segments lead and profiles wait on them."""
    # The segments fill the first request(s), ahead of the profiles sharing the last of them,
    # and no request of profiles alone starts before every request carrying segments answered.
    fake.delay = 0.02  # so that requests sent together are in flight together
    wire = _Wire(fake)
    items = _mixed(n_segments, 20 - n_segments)
    with State(state_path) as state:
        plan = build_plan(state, items, schema="v3", now=NOW, max_pairs=5)
        with wire.kv() as kv:
            report = _publisher(kv, state, max_pairs=5, concurrency=4).publish(plan)
    segments = {i.key for i in items if i.phase == "segments"}
    assert report.requests == len(wire.puts) == plan.counts.write_requests == 4
    assert report.written == {"segments": n_segments, "profiles": 20 - n_segments}
    carrying = [p for p in wire.puts if segments & set(p[0])]
    alone = [p for p in wire.puts if not segments & set(p[0])]
    assert len(carrying) == -(-n_segments // 5)  # segments are packed into the first batches
    for keys, _, _ in carrying:
        phases = ["segments" if k in segments else "profiles" for k in keys]
        assert phases == sorted(phases, key=("segments", "profiles").index)
    assert sum(len(keys) for keys, _, _ in carrying) == 5 * len(carrying)  # the last topped up
    assert min(start for _, start, _ in alone) > max(end for _, _, end in carrying)
    assert fake.store == {i.key: i.value for i in items}


@pytest.mark.parametrize(
    ("n_profiles", "max_pairs", "max_bytes", "expected"),
    [
        (97, 10, 10**9, 10),  # 3 + 97 writes, 10 a batch: 10 requests, not 1 + 10
        # By BatchCounter.pair_bytes a segment here counts 95 bytes and a profile 106: five
        # profiles fill a 530-byte batch, so do three segments and two profiles (497 bytes),
        # and 3 + 117 writes take 1 + 23 requests, not 1 + 24.
        (117, 10_000, 530, 24),
    ],
)
def test_predicted_write_requests_are_the_requests_sent(
    state_path: Path,
    kv: KVClient,
    fake: FakeKV,
    n_profiles: int,
    max_pairs: int,
    max_bytes: int,
    expected: int,
) -> None:
    """The plan's write_requests (what ``plan`` and the dry run print) is what is sent."""
    items = _mixed(3, n_profiles)
    with State(state_path) as state:
        plan = build_plan(
            state, items, schema="v3", now=NOW, max_pairs=max_pairs, max_bytes=max_bytes
        )
        report = _publisher(kv, state, max_pairs=max_pairs, max_bytes=max_bytes).publish(plan)
    assert plan.counts.write_requests == report.requests == fake.count("PUT bulk") == expected
    assert report.failed == 0


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def start(self, phase: str, total: int) -> None:
        self.events.append(("start", phase, total))

    def advance(self, phase: str, n: int) -> None:
        self.events.append(("advance", phase, n))

    def waiting(self, until: float) -> None:
        self.events.append(("waiting", "", int(until)))


def test_progress_and_written_counts_per_phase_in_shared_batches(
    state_path: Path, kv: KVClient
) -> None:
    """Both write phases start up front; a shared batch advances each by its own keys."""
    progress = _Recorder()
    items = _mixed(3, 12)
    with State(state_path) as state:
        plan = build_plan(state, items, schema="v3", now=NOW, max_pairs=5)
        options = PublishOptions(max_pairs=5, concurrency=1)
        report = Publisher(
            kv, state, options=options, progress=progress, clock=lambda: float(NOW)
        ).publish(plan)
        assert state.counts() == {"seg:v3": 3, "u": 12}
    assert report.written == {"segments": 3, "profiles": 12}
    assert progress.events[:4] == [
        ("start", "segments", 3),
        ("start", "profiles", 12),
        ("advance", "segments", 3),
        ("advance", "profiles", 2),
    ]
    assert progress.events[4:] == [
        ("advance", "profiles", 5),
        ("advance", "profiles", 5),
        ("start", "deletes", 0),
    ]


@pytest.mark.parametrize(
    ("refused", "written"),
    [
        ("seg:s001:v3", {"segments": 2, "profiles": 2}),
        (user(1).key, {"segments": 3, "profiles": 1}),
    ],
)
def test_a_failed_key_in_the_shared_batch_stops_the_run_and_defers_deletes(
    state_path: Path, kv: KVClient, fake: FakeKV, refused: str, written: dict[str, int]
) -> None:
    """A key refused in the batch of segments and profiles: nothing more is sent or deleted."""
    with State(state_path) as state:
        _publisher(kv, state).publish(build_plan(state, [user(900)], schema="v3", now=NOW))
        fake.requests.clear()
        fake.refuse_keys = {refused}
        plan = build_plan(state, _mixed(3, 17), schema="v3", now=NOW, max_pairs=5)
        report = _publisher(kv, state, max_pairs=5).publish(plan)
        assert state.counts() == {"seg:v3": 3, "u": 3, "unconfirmed": 1}
    assert report.written == written
    assert (report.failed, report.deferred_deletes, report.deleted) == (1, 1, 0)
    assert fake.count("PUT bulk") == 3  # the shared batch and two retries of the refused key
    assert fake.count("POST bulk/delete") == 0
    assert user(900).key in fake.store
    assert not {user(i).key for i in range(2, 17)} & set(fake.store)
