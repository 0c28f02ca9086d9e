"""How the builder cuts a stream into requests: one rule, used to count and to send.

:class:`BatchCounter` is the rule (at most ``max_pairs`` items, and at most ``max_bytes`` by an
item's estimated size); :func:`batches` applies it to a stream. The plan counts the write
requests with the counter, the publisher sends bulk writes and deletes in :func:`batches`, and
``gc`` and ``remote_diff`` cut their key lists with it, so what ``plan`` predicts is what is
sent and no request ever exceeds the API's limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

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

    @staticmethod
    def pair_size(key_bytes: int, value_bytes: int) -> int:
        """:meth:`pair_bytes` of a key and a value of these UTF-8 sizes."""
        return key_bytes + value_bytes * 2 + 64

    def add(self, size: int) -> bool:
        """Account one pair of ``size`` bytes; True if it starts a new batch."""
        before = self.batches
        self.add_all((size,))
        return self.batches != before

    def add_all(self, sizes: Iterable[int]) -> None:
        """Account each pair in turn: the rule itself, without a call per pair."""
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
