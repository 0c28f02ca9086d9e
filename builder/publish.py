"""Sending a plan to Workers KV: batching, bounded concurrency, rate limiting, retries.

- Batches hold at most 10,000 pairs and stay under 100 MB of JSON.
- At most ``concurrency`` batches are in flight; a :class:`~builder.limiter.SlidingWindowLimiter`
  paces every request, retries included.
- Retries come from stamina (exponential backoff with jitter; ``stamina.set_testing`` turns the
  waits off in tests). A 429 instead pauses the limiter, so every request of the run, in every
  thread, waits what ``retry-after`` says (Cloudflare's 5-minute block when it says nothing),
  and the progress is told until when. After a partial success only ``unsuccessful_keys`` are
  sent again.
- The state is touched only from the calling thread: keys are marked unconfirmed before their
  batch is sent and confirmed only after Cloudflare's answer, batch by batch.
- Writes go out as one stream, segments first, cut into batches across the phase boundary
  (the last segment batch is topped up with profiles): ``ceil(writes / max_pairs)`` write
  requests unless the byte cap cuts earlier, the count ``PlanCounts.write_requests`` predicts
  with the same :class:`~builder.batching.BatchCounter`. No profile travels in a request before
  the requests carrying the segments: those are all answered before the first batch of profiles
  alone is sent, and if a key of theirs failed, no such batch is sent. (A profile sharing a
  batch with a segment whose write failed only makes its readers fall back a step, which the
  Worker handles.)
- Deletions only after every write was confirmed (a failed write leaves old keys in place
  rather than deleting what readers fall back to).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

import stamina

from builder.batching import batches, pair_size
from builder.cloudflare import MAX_BULK_BYTES, MAX_BULK_PAIRS, BulkPair, KVClient
from builder.errors import APIError, PartialWriteError, RateLimitedError, RetryableAPIError
from builder.limiter import API_BLOCK, DEFAULT_LIMIT, SlidingWindowLimiter
from builder.plan import PHASES, Plan
from builder.reporting import Silent

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from builder.reporting import Progress
    from builder.state import State

__all__ = [
    "MAX_RETRY_AFTER",
    "PublishOptions",
    "PublishReport",
    "Publisher",
    "Retrier",
    "backoff_hook",
    "rate_limit_pause",
]

T = TypeVar("T")
_Put = tuple[str, str, int, bytes, str]  # key, value, ttl, hash, phase: Plan.writes()
MAX_RETRY_AFTER: Final = 330.0


@dataclass(frozen=True)
class PublishOptions:
    """Knobs of the publisher (the defaults suit the real API)."""

    concurrency: int = 4
    attempts: int = 8
    timeout: float = 900.0
    wait_initial: float = 0.5
    wait_max: float = 30.0
    max_pairs: int = MAX_BULK_PAIRS
    max_bytes: int = MAX_BULK_BYTES
    max_failed_batches: int = 3


@dataclass
class PublishReport:
    """What happened: keys written/deleted/failed, requests sent, retries among them."""

    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    deleted: int = 0
    failed: int = 0
    deferred_deletes: int = 0
    requests: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "written": {**self.written, "total": sum(self.written.values())},
            "deleted": self.deleted,
            "failed": self.failed,
            "deferred_deletes": self.deferred_deletes,
            "requests": self.requests,
            "retries": self.retries,
            "errors": self.errors[:10],
        }


def rate_limit_pause(exc: RateLimitedError) -> float:
    """Seconds every request must wait after ``exc``: its ``retry-after`` (capped against a
    nonsensical header), or Cloudflare's documented block when it has none."""
    if exc.retry_after is None:
        return API_BLOCK
    return min(exc.retry_after, MAX_RETRY_AFTER)


def backoff_hook(exc: Exception) -> bool | float:
    """stamina's ``on=``: retry what is retryable; a 429 at once, because the limiter's pause
    (:meth:`Retrier.call`) already holds the retry, with every other request, until the block
    is over."""
    if isinstance(exc, RateLimitedError):
        return 0.0
    return isinstance(exc, RetryableAPIError)


class Retrier:
    """Runs one-request callables under the limiter with stamina retries, counting requests.

    ``on_wait`` is told when a 429 pauses the limiter, with the epoch time the pause ends.
    """

    def __init__(
        self,
        limiter: SlidingWindowLimiter,
        options: PublishOptions,
        *,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.limiter = limiter
        self.options = options
        self.on_wait = on_wait
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0

    @classmethod
    def with_limit(
        cls,
        rate_limit: int = DEFAULT_LIMIT,
        options: PublishOptions | None = None,
        *,
        on_wait: Callable[[float], None] | None = None,
    ) -> Retrier:
        """A retrier with a limiter of its own, ``rate_limit`` requests per window."""
        return cls(SlidingWindowLimiter(rate_limit), options or PublishOptions(), on_wait=on_wait)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` with retries; raises the last error when attempts or time run out."""
        opt = self.options
        for attempt in stamina.retry_context(
            on=backoff_hook,
            attempts=opt.attempts,
            timeout=opt.timeout,
            wait_initial=opt.wait_initial,
            wait_max=opt.wait_max,
        ):
            with attempt:
                self.limiter.acquire()
                with self._lock:
                    self.requests += 1
                    if attempt.num > 1:
                        self.retries += 1
                try:
                    return fn()
                except RateLimitedError as exc:
                    self._rate_limited(exc)
                    raise
        raise AssertionError("stamina stopped without raising")  # pragma: no cover

    def _rate_limited(self, exc: RateLimitedError) -> None:
        seconds = rate_limit_pause(exc)
        if self.limiter.pause(seconds) and self.on_wait is not None:
            self.on_wait(time.time() + seconds)

    def bulk(
        self, keys: Sequence[str], send: Callable[[list[str]], list[str]]
    ) -> tuple[list[str], list[str], str | None]:
        """Send ``keys`` with ``send`` (which returns the unsuccessful ones), retrying only those.

        Returns ``(confirmed, given_up, last_error)``; a non-retryable error propagates.
        """
        remaining = list(keys)
        confirmed: list[str] = []

        def once() -> None:
            nonlocal remaining
            bad = set(send(remaining))
            confirmed.extend(k for k in remaining if k not in bad)
            remaining = [k for k in remaining if k in bad]
            if remaining:
                raise PartialWriteError(remaining)

        try:
            self.call(once)
        except RetryableAPIError as exc:
            return confirmed, remaining, str(exc)
        return confirmed, [], None

    def put_one(self, kv: KVClient, key: str, value: str) -> None:
        """Write one key with retries; APIError if Cloudflare never confirms it."""
        pair = BulkPair(key=key, value=value)
        _, failed, error = self.bulk([key], lambda _keys: kv.bulk_put([pair]).unsuccessful_keys)
        if failed:
            raise APIError(f"{key} was not written: {error}")


@dataclass
class _Outcome:
    confirmed: list[str]
    failed: list[str]
    sent_at: float
    error: str | None = None


class Publisher:
    """Executes a :class:`~builder.plan.Plan` against one namespace and the state."""

    def __init__(
        self,
        kv: KVClient,
        state: State,
        *,
        limiter: SlidingWindowLimiter | None = None,
        options: PublishOptions | None = None,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.state = state
        self.options = options or PublishOptions()
        self.progress: Progress = progress or Silent()
        self.retrier = Retrier(
            limiter or SlidingWindowLimiter(), self.options, on_wait=self.progress.waiting
        )
        self.clock = clock

    # --- one batch, in a worker thread -----------------------------------------------------

    def _put(self, batch: list[_Put]) -> _Outcome:
        pairs = {k: BulkPair(key=k, value=v, expiration_ttl=ttl) for k, v, ttl, _, _ in batch}
        sent_at = self.clock()
        done, failed, error = self.retrier.bulk(
            list(pairs), lambda keys: self.kv.bulk_put([pairs[k] for k in keys]).unsuccessful_keys
        )
        return _Outcome(done, failed, sent_at, error)

    def _delete(self, keys: list[str]) -> _Outcome:
        sent_at = self.clock()
        done, failed, error = self.retrier.bulk(
            keys, lambda ks: self.kv.bulk_delete(ks).unsuccessful_keys
        )
        return _Outcome(done, failed, sent_at, error)

    # --- the dispatcher, in the calling thread ---------------------------------------------

    def _dispatch(
        self,
        jobs: Iterator[T],
        keys_of: Callable[[T], list[str]],
        send: Callable[[T], _Outcome],
        record: Callable[[T, _Outcome], None],
        report: PublishReport,
    ) -> None:
        failed_batches = 0
        fatal: BaseException | None = None
        inflight: dict[Future[_Outcome], T] = {}

        def settle(done: Iterable[Future[_Outcome]]) -> None:
            nonlocal failed_batches, fatal
            for fut in done:
                job = inflight.pop(fut)
                try:
                    outcome = fut.result()
                except Exception as exc:  # a non-retryable API error: stop sending
                    fatal = fatal or exc
                    report.failed += len(keys_of(job))
                    continue
                record(job, outcome)
                if outcome.failed:
                    failed_batches += 1
                    report.failed += len(outcome.failed)
                    if outcome.error:
                        report.errors.append(outcome.error)

        with ThreadPoolExecutor(max_workers=max(1, self.options.concurrency)) as pool:
            for job in jobs:
                if fatal is not None or failed_batches >= self.options.max_failed_batches:
                    break
                self.state.mark_unconfirmed(keys_of(job))
                inflight[pool.submit(send, job)] = job
                if len(inflight) >= self.options.concurrency:
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    settle(done)
            while inflight:
                done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                settle(done)
        if fatal is not None:
            raise fatal

    def publish(self, plan: Plan, report: PublishReport | None = None) -> PublishReport:
        """Write the puts (segments first, in shared batches), then, if all succeeded, delete.

        ``report`` (a new one by default) is filled in as Cloudflare answers, so when a fatal
        error propagates, the caller's report still says what was written before it.
        """
        report = PublishReport() if report is None else report
        opt = self.options
        try:
            for phase in PHASES:
                self.progress.start(phase, plan.counts.writes_in(phase))

            def record(job: list[_Put], outcome: _Outcome) -> None:
                ok = set(outcome.confirmed)
                self.state.confirm_written(
                    (k, h, int(outcome.sent_at) + ttl) for k, _, ttl, h, _ in job if k in ok
                )
                for phase, n in Counter(row[4] for row in job if row[0] in ok).items():
                    report.written[phase] += n
                for phase, n in Counter(row[4] for row in job).items():
                    self.progress.advance(phase, n)

            stream = batches(plan.writes(), opt.max_pairs, opt.max_bytes, size=pair_size)
            held: list[list[_Put]] = []

            def with_segments() -> Iterator[list[_Put]]:
                # Segments come first in the stream, so these are its leading batches; the
                # first batch of profiles alone is held back for the second dispatch.
                for batch in stream:
                    if not any(row[4] == "segments" for row in batch):
                        held.append(batch)
                        return
                    yield batch

            def keys_of(job: list[_Put]) -> list[str]:
                return [row[0] for row in job]

            # Every batch carrying a segment is answered before a profile-only batch is sent,
            # and none is sent if a key failed (as between the phases' batches before).
            self._dispatch(with_segments(), keys_of, self._put, record, report)
            if not report.failed:
                self._dispatch(itertools.chain(held, stream), keys_of, self._put, record, report)
            if report.failed:
                report.deferred_deletes = plan.counts.deleted
                return report
            self.progress.start("deletes", plan.counts.deleted)

            def record_delete(job: list[str], outcome: _Outcome) -> None:
                self.state.confirm_deleted(outcome.confirmed)
                report.deleted += len(outcome.confirmed)
                self.progress.advance("deletes", len(job))

            self._dispatch(
                batches(plan.deletes(), opt.max_pairs),
                list,
                self._delete,
                record_delete,
                report,
            )
            return report
        finally:
            report.requests = self.retrier.requests
            report.retries = self.retrier.retries
