"""How the builder cuts a stream into requests: one rule, used to count and to send.

:class:`BatchCounter` is the rule (at most ``max_pairs`` items, and at most ``max_bytes`` by an
item's estimated size); :func:`batches` applies it to a stream. The plan counts the write
requests with the counter, the publisher sends bulk writes and deletes in :func:`batches`, and
``gc`` and ``remote_diff`` cut their key lists with it, so what ``plan`` predicts is what is
sent and no request ever exceeds the API's limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, overload

import numpy as np

from builder.cloudflare import MAX_BULK_BYTES, MAX_BULK_PAIRS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = ["BatchCounter", "batches", "pair_size"]

T = TypeVar("T")


class BatchCounter:
    """Counts the bulk requests a sequence of pairs needs (the publisher's batching rule)."""

    def __init__(self, max_pairs: int = MAX_BULK_PAIRS, max_bytes: int = MAX_BULK_BYTES) -> None:
        self.max_pairs, self.max_bytes = max_pairs, max_bytes
        self.batches = 0
        self._pairs = 0
        self._bytes = 0

    @staticmethod
    def pair_bytes(key: str, value: str) -> int:
        """An upper bound of a pair's size in the JSON body (escaping at most doubles it...)."""
        return BatchCounter.pair_size(len(key.encode()), len(value.encode()))

    @overload
    @staticmethod
    def pair_size(key_bytes: int, value_bytes: int) -> int: ...
    @overload
    @staticmethod
    def pair_size(key_bytes: np.ndarray, value_bytes: np.ndarray) -> np.ndarray: ...
    @staticmethod
    def pair_size(key_bytes: int | np.ndarray, value_bytes: int | np.ndarray) -> int | np.ndarray:
        """:meth:`pair_bytes` of a key and a value of these UTF-8 sizes (or arrays of them)."""
        return key_bytes + value_bytes * 2 + 64

    def add(self, size: int) -> bool:
        """Account one pair of ``size`` bytes; True if it starts a new batch."""
        before = self.batches
        self.add_all((size,))
        return self.batches != before

    def add_all(self, sizes: Iterable[int] | np.ndarray) -> None:
        """Account each pair in turn: the rule itself, without a call per pair.

        For an array of sizes whose largest fills no batch to the byte cap, only the pair cap
        can cut: the batches are then counted, not walked.
        """
        if isinstance(sizes, np.ndarray) and len(sizes):
            if self._bytes + self.max_pairs * int(sizes.max()) <= self.max_bytes:
                self._add_counted(sizes)
                return
            sizes = sizes.tolist()
        max_pairs, max_bytes = self.max_pairs, self.max_bytes
        pairs, total, batches = self._pairs, self._bytes, self.batches
        for size in sizes:
            if pairs and (pairs >= max_pairs or total + size > max_bytes):
                pairs = total = 0
            if pairs == 0:
                batches += 1
            pairs += 1
            total += size
        self._pairs, self._bytes, self.batches = pairs, total, batches

    def _add_counted(self, sizes: np.ndarray) -> None:
        n, max_pairs = len(sizes), self.max_pairs
        # The open batch (if any) takes what it has room for; the rest fill new batches.
        room = max_pairs - self._pairs if self._pairs else 0
        rest = n - min(room, n)
        if rest == 0:
            self._pairs += n
            self._bytes += int(sizes.sum())
            return
        new = -(-rest // max_pairs)
        in_last = rest - (new - 1) * max_pairs
        self.batches += new
        self._pairs = in_last
        self._bytes = int(sizes[n - in_last :].sum())


def pair_size(row: tuple[str, str, *tuple[object, ...]]) -> int:
    """The size :class:`BatchCounter` counts for a ``(key, value, ...)`` row."""
    return BatchCounter.pair_bytes(row[0], row[1])


def _sizeless(_item: object) -> int:
    return 0


def batches(
    items: Iterable[T],
    max_items: int,
    max_bytes: int = MAX_BULK_BYTES,
    *,
    size: Callable[[T], int] = _sizeless,
) -> Iterator[list[T]]:
    """Group ``items`` in order by :class:`BatchCounter`'s rule (without ``size``: by count)."""
    counter = BatchCounter(max_pairs=max_items, max_bytes=max_bytes)
    batch: list[T] = []
    for item in items:
        if counter.add(size(item)) and batch:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch
