"""A small time-bounded memo for isolate memory (pure).

Workers KV already serves reads from the data center's cache for ``cacheTtl`` seconds, so a
value memoised for a few seconds inside the isolate adds little staleness and saves a KV read
(and, in Python, an awaited JS promise: the dearest thing on the hot path, docs/benchmarks.md).
Misses are memoised too, so a visitor whose segment is missing does not re-read the whole
fallback chain on every request.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

__all__ = ["Entry", "TtlMemo"]

_K = TypeVar("_K")
_V = TypeVar("_V")


class Entry(NamedTuple, Generic[_V]):
    value: _V
    expires: float


class TtlMemo(Generic[_K, _V]):
    """Values kept ``ttl_s`` seconds, at most ``max_size`` of them (the oldest stored goes first).

    ``ttl_s == 0`` turns the memo off: nothing is stored and every lookup misses.
    """

    __slots__ = ("_entries", "_max_size", "_ttl")

    def __init__(self, ttl_s: float, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._ttl = max(0.0, ttl_s)
        self._max_size = max_size
        self._entries: dict[_K, Entry[_V]] = {}

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    def get(self, key: _K, now: float) -> Entry[_V] | None:
        """The entry for ``key`` while it is fresh, else None (a stale entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires > now:
            return entry
        del self._entries[key]
        return None

    def renew(self, key: _K, now: float) -> Entry[_V] | None:
        """The entry for ``key``, fresh or not, kept for another TTL from ``now``; None if absent.

        For a value confirmed unchanged by other means (a shell version named again by its
        pointer), so it is not rebuilt.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        self.put(key, entry.value, now)
        return self._entries[key]

    def put(self, key: _K, value: _V, now: float) -> None:
        if not self._ttl:
            return
        entries = self._entries
        if key in entries:
            del entries[key]  # re-inserted below: it is now the newest
        elif len(entries) >= self._max_size:
            del entries[next(iter(entries))]
        entries[key] = Entry(value, now + self._ttl)

    def __len__(self) -> int:
        return len(self._entries)
