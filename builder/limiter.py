"""A client-side sliding-window rate limiter, shared by all publishing threads.

Cloudflare allows 1,200 API requests per 5 minutes per token and answers anything over it with
429 for the next five minutes. The builder therefore budgets itself below that (1,100 by
default, leaving room for a human with the dashboard open or a concurrent ``wrangler``): before
each request, retries included, :meth:`SlidingWindowLimiter.acquire` blocks until fewer than
``limit`` requests were made in the last ``window`` seconds.

When a 429 comes anyway (another client shares the token), the block applies to the token, not
to the request that got it: :meth:`SlidingWindowLimiter.pause` holds every thread's next
request until the block is over, so the run does not keep knocking (each refused request would
only be another 429).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["API_BLOCK", "API_LIMIT", "API_WINDOW", "DEFAULT_LIMIT", "SlidingWindowLimiter"]

API_LIMIT: Final = 1200
API_WINDOW: Final = 300.0
# How long Cloudflare refuses a token's requests once it went over the limit, when a 429 does
# not say: "all API calls for the next five minutes will be blocked"
# (developers.cloudflare.com/fundamentals/api/reference/limits).
API_BLOCK: Final = 300.0
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
        self._paused_until = float("-inf")
        self.acquired = 0
        self.waited = 0.0

    def delay(self) -> float:
        """Seconds until a request would be allowed now (0 if it would)."""
        with self._lock:
            return self._delay(self._clock())

    def _delay(self, now: float) -> float:
        while self._stamps and self._stamps[0] <= now - self.window:
            self._stamps.popleft()
        paused = max(0.0, self._paused_until - now)
        if len(self._stamps) < self.limit:
            return paused
        return max(paused, self._stamps[0] + self.window - now)

    def pause(self, seconds: float) -> bool:
        """Hold every request for ``seconds`` from now (a 429's block).

        Returns True when this moves the end of the pause in force by over a second: news to
        report. Requests in flight together tend to get 429s together, with one block.
        """
        with self._lock:
            until = self._clock() + seconds
            news = until > self._paused_until + 1.0
            self._paused_until = max(self._paused_until, until)
            return news

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
                self.waited += wait
            # Sleep outside the lock so other threads can see the window move too.
            self._sleep(wait)
