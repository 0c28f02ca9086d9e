"""A client-side sliding-window rate limiter, shared by all publishing threads.

Cloudflare allows 1,200 API requests per 5 minutes per token and answers anything over it with
429 for the next five minutes. The builder therefore budgets itself below that (1,100 by
default, leaving room for a human with the dashboard open or a concurrent ``wrangler``): before
each request, retries included, :meth:`SlidingWindowLimiter.acquire` blocks until fewer than
``limit`` requests were made in the last ``window`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["API_LIMIT", "API_WINDOW", "DEFAULT_LIMIT", "SlidingWindowLimiter"]

API_LIMIT: Final = 1200
API_WINDOW: Final = 300.0
DEFAULT_LIMIT: Final = 1100


class SlidingWindowLimiter:
    """At most ``limit`` acquisitions in any ``window`` seconds (thread-safe)."""

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window: float = API_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()
        self.acquired = 0
        self.waited = 0.0

    def delay(self) -> float:
        """Seconds until a request would be allowed now (0 if it would)."""
        with self._lock:
            return self._delay(self._clock())

    def _delay(self, now: float) -> float:
        while self._stamps and self._stamps[0] <= now - self.window:
            self._stamps.popleft()
        if len(self._stamps) < self.limit:
            return 0.0
        return self._stamps[0] + self.window - now

    def acquire(self) -> None:
        """Block until a request is allowed, then count it."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._delay(now)
                if wait <= 0:
                    self._stamps.append(now)
                    self.acquired += 1
                    return
            # Sleep outside the lock so other threads can see the window move too.
            self.waited += wait
            self._sleep(wait)
