"""The client-side limiter keeps any window of ``window`` seconds under ``limit`` requests."""

from __future__ import annotations

import threading
import time

import pytest

from builder.limiter import API_LIMIT, API_WINDOW, DEFAULT_LIMIT, SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_default_budget_is_below_cloudflares_limit() -> None:
    """The default leaves headroom under 1,200 requests per 5 minutes."""
    assert DEFAULT_LIMIT < API_LIMIT
    assert API_WINDOW == 300


def test_requests_over_the_limit_wait_for_the_window_to_slide() -> None:
    """The fourth request in a 3-per-10s window waits until the first one is 10 s old."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 10.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.acquire()
        clock.now += 1
    assert limiter.delay() == pytest.approx(7.0)
    limiter.acquire()
    assert clock.slept == [pytest.approx(7.0)]
    assert limiter.acquired == 4


def test_no_window_ever_holds_more_than_the_limit() -> None:
    """Over 1,000 paced requests, every 300 s window holds at most ``limit`` of them."""
    clock = FakeClock()
    stamps: list[float] = []
    limiter = SlidingWindowLimiter(100, 300.0, clock=clock, sleep=clock.sleep)
    for _ in range(1_000):
        limiter.acquire()
        stamps.append(clock.now)
        clock.now += 0.05
    for i, start in enumerate(stamps):
        inside = [t for t in stamps[i:] if t < start + 300.0]
        assert len(inside) <= 100


def test_limiter_is_shared_safely_between_threads() -> None:
    """Concurrent acquirers never exceed the limit (real clock, tiny window)."""
    limiter = SlidingWindowLimiter(5, 0.2)
    lock = threading.Lock()
    stamps: list[float] = []

    def worker() -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                stamps.append(limiter._clock())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    for i, start in enumerate(stamps):
        assert len([t for t in stamps[i:] if t < start + 0.2 - 1e-3]) <= 5


def test_bad_settings_are_refused() -> None:
    """A zero limit or window makes no sense."""
    with pytest.raises(ValueError, match="limit"):
        SlidingWindowLimiter(0)


def test_a_pause_holds_every_acquirer_until_it_ends() -> None:
    """pause(300) makes each acquire wait out the rest of it; a shorter pause does not cut it."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(100, 300.0, clock=clock, sleep=clock.sleep)
    assert limiter.pause(300.0) is True
    clock.now += 100
    assert limiter.pause(5.0) is False  # ends earlier than the pause in force: no news
    assert limiter.pause(200.5) is False  # half a second later: the same block, not news
    assert limiter.delay() == pytest.approx(200.5)
    limiter.acquire()
    assert clock.slept == [pytest.approx(200.5)]
    assert limiter.waited == pytest.approx(200.5)
    limiter.acquire()  # the pause is over: no more waiting
    assert len(clock.slept) == 1


def test_waits_of_concurrent_threads_are_all_counted() -> None:
    """Threads waiting on one pause at once each add exactly the time they slept to ``waited``."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)  # list.append is atomic: the reference sum
        time.sleep(seconds)

    limiter = SlidingWindowLimiter(100, 300.0, sleep=sleep)
    limiter.pause(0.5)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limiter.acquired == 8
    assert len(slept) == 8  # each thread slept once, all at the same time
    assert limiter.waited == pytest.approx(sum(slept))
