"""The plan: what a run must write and delete so that KV equals the computed output.

The computed keys (segments, then profiles, each in key order) are merge-joined against the
state's confirmed keys (also in key order) in one streaming pass; nothing is held per key in
Python. A key is **written** when it is new, its value (or TTL) changed, it is unconfirmed, or it
expires within ``refresh_fraction`` of its TTL (so an unchanged key is refreshed instead of
expiring); otherwise it is **skipped**. A confirmed key that is no longer computed is
**deleted** -- profile keys, and segment keys of the run's own schema; other schemas are left
for ``gc``. The writes go to a temporary file (Arrow record batches, appended in the order
they will be sent and read back in it), the deletions to a temporary SQLite table, so memory
stays flat whatever the size. Neither is the state: what was confirmed is only ever recorded
there, by the publisher, after KV answered.

Writes are sent as one stream in that order -- segments, then profiles -- and batched by one
:class:`~builder.batching.BatchCounter` across both phases (the publisher uses the same rule),
so the last, partly filled segment batch is topped up with profiles:
:attr:`PlanCounts.write_requests` is ``ceil(writes / max_pairs)`` unless the byte cap cuts a
batch earlier.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.compute as pc

from builder.batching import BatchCounter
from builder.cloudflare import MAX_BULK_BYTES, MAX_BULK_PAIRS, MAX_KEY_BYTES, MAX_VALUE_BYTES
from builder.digests import as_current, value_hashes
from builder.digests import verify as verify_digests
from builder.errors import PayloadError
from builder.payloads import sampled_rows, verify
from builder.sources import UID_PATTERN
from edgeshelf.schema import (
    MAX_PROFILE_BYTES,
    MAX_SEGMENT_BYTES,
    SEGMENT_PREFIX,
    SEGMENT_TTL,
    USER_PREFIX,
    USER_TTL,
    encode_segment,
    profile_key,
    segment_key,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from builder.ranking import Build
    from builder.state import State

__all__ = [
    "HOT_KEY_WARN_BYTES",
    "PHASES",
    "REFRESH_FRACTION",
    "Item",
    "ItemBatch",
    "Plan",
    "PlanCounts",
    "build_plan",
    "check_payload",
    "computed_batches",
    "computed_items",
    "scope",
]

REFRESH_FRACTION: Final = 0.5
HOT_KEY_WARN_BYTES: Final = 100 * 1024
PHASES: Final = ("segments", "profiles")


@dataclass(frozen=True)
class Item:
    """One computed key: its value, TTL and the phase it is written in."""

    key: str
    value: str
    ttl: int
    phase: str


def check_payload(
    key: str, value: str | bytes, limit: int, warn: Callable[[str], None] | None = None
) -> int:
    """Refuse a key or value over the KV (or Worker) limits; warn about hot-key-sized values."""
    size = len(value.encode() if isinstance(value, str) else value)
    if len(key.encode()) > MAX_KEY_BYTES:
        raise PayloadError(f"key {key[:60]!r}... is longer than {MAX_KEY_BYTES} bytes")
    if size > min(limit, MAX_VALUE_BYTES):
        raise PayloadError(
            f"{key}: {size} bytes is over the limit of {min(limit, MAX_VALUE_BYTES)}"
        )
    if size > HOT_KEY_WARN_BYTES and warn is not None:
        warn(
            f"{key}: {size // 1024} KB; values read on every request should stay under 100 KB "
            "(hot-key guidance)"
        )
    return size


@dataclass(frozen=True)
class ItemBatch:
    """Computed keys of one phase and TTL in a run, in key order: what :class:`Item` says, in bulk.

    Arrow arrays, as the engine hands them over: a first run's keys go from the engine to the
    plan's file without a Python object per key. ``sizes`` are the values' UTF-8 lengths,
    ``digests`` their state digests (:mod:`builder.digests`) when the engine made them.
    :func:`build_plan` treats a batch exactly as the same keys one :class:`Item` at a time.
    """

    keys: pa.Array
    values: pa.Array
    sizes: pa.Array
    ttl: int
    phase: str
    digests: pa.Array | None = None

    @classmethod
    def of(cls, keys: Sequence[str], values: Sequence[str], ttl: int, phase: str) -> ItemBatch:
        """A batch of these keys and values (their sizes measured)."""
        text = pa.array(values, pa.string())
        return cls(pa.array(keys, pa.string()), text, pc.binary_length(text), ttl, phase)

    def items(self) -> Iterator[Item]:
        for key, value in zip(self.keys.to_pylist(), self.values.to_pylist(), strict=True):
            yield Item(key, value, self.ttl, self.phase)


def _segment_items(build: Build, schema: str) -> list[Item]:
    return sorted(
        (
            Item(
                segment_key(seg, schema),
                encode_segment(ids, built_at=build.as_of, schema=schema),
                SEGMENT_TTL,
                "segments",
            )
            for seg, ids in build.segments.items()
        ),
        key=lambda item: item.key,
    )


def computed_batches(build: Build, schema: str) -> Iterator[Item | ItemBatch]:
    """What :func:`computed_items` yields, the profiles as one :class:`ItemBatch` per engine batch.

    Keys are made in bulk: every ``user_id`` is checked against the schema module's visitor-ID
    pattern over the whole batch, and sampled rows against :func:`edgeshelf.schema.profile_key`
    itself (as :func:`builder.payloads.verify` does for the values, and
    :func:`builder.digests.verify` for the digests the engine made).
    """
    yield from _segment_items(build, schema)
    for batch in build.profile_batches(digest_ttl=USER_TTL):
        verify(batch)
        yield _profile_batch(batch)


def _profile_batch(batch: pa.RecordBatch) -> ItemBatch:
    uids = batch.column("user_id").cast(pa.string())
    valid = pc.match_substring_regex(uids, f"^(?:{UID_PATTERN})$")
    if not pc.all(valid).as_py():
        bad = uids.filter(pc.invert(valid))[0].as_py()
        profile_key(bad)  # raises the schema module's own error
        raise AssertionError(f"{bad!r} is not a visitor ID")  # pragma: no cover
    keys = pc.binary_join_element_wise(USER_PREFIX, uids, "")
    sample = sampled_rows(len(keys))
    for i in sample:
        if profile_key(uids[i].as_py()) != keys[i].as_py():  # pragma: no cover
            raise AssertionError(f"{keys[i]!r} is not profile_key's key")
    verify_digests(batch, sample, USER_TTL)
    values = batch.column("value").cast(pa.string())
    made = batch.column("digest").cast(pa.binary())
    return ItemBatch(keys, values, pc.binary_length(values), USER_TTL, "profiles", made)


def computed_items(build: Build, schema: str) -> Iterator[Item]:
    """Every key the build produces, in key order: segments, then profiles."""
    yield from _segment_items(build, schema)
    # Profile payloads come from the engine in bounded batches, checked against the schema
    # module's encoder batch by batch (builder/payloads.py).
    for batch in build.profile_batches():
        verify(batch)
        uids = batch.column("user_id").to_pylist()
        values = batch.column("value").to_pylist()
        for uid, value in zip(uids, values, strict=True):
            yield Item(profile_key(uid), value, USER_TTL, "profiles")


@dataclass
class PlanCounts:
    """Per phase: keys computed, written (by reason), skipped; keys deleted; requests."""

    computed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    new: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    changed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    refresh: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    unconfirmed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    deleted: int = 0
    write_bytes: int = 0
    write_requests: int = 0
    delete_requests: int = 0
    mass_delete: str | None = None

    @property
    def writes(self) -> int:
        return sum(
            self.new[p] + self.changed[p] + self.refresh[p] + self.unconfirmed[p] for p in PHASES
        )

    def writes_in(self, phase: str) -> int:
        return self.new[phase] + self.changed[phase] + self.refresh[phase] + self.unconfirmed[phase]

    @property
    def skips(self) -> int:
        return sum(self.skipped.values())

    @property
    def requests(self) -> int:
        return self.write_requests + self.delete_requests

    def as_dict(self) -> dict[str, object]:
        return {
            "computed": dict(self.computed),
            "write": {
                "new": dict(self.new),
                "changed": dict(self.changed),
                "refresh": dict(self.refresh),
                "unconfirmed": dict(self.unconfirmed),
                "total": self.writes,
            },
            "skip": {**self.skipped, "total": self.skips},
            "delete": self.deleted,
            "write_bytes": self.write_bytes,
            "requests": {
                "write": self.write_requests,
                "delete": self.delete_requests,
                "total": self.requests,
            },
            "mass_delete": self.mass_delete,
        }


@dataclass
class Plan:
    """Counts plus the actions: writes in a temporary file, deletions in a temporary table.

    The file is removed when the plan is garbage-collected.
    """

    schema: str
    now: int
    counts: PlanCounts
    db: sqlite3.Connection
    puts_file: Path

    def puts(self, phase: str) -> Iterator[tuple[str, str, int, bytes]]:
        """``(key, value, ttl, hash)`` to write in ``phase``, in order, read batch by batch."""
        for key, value, ttl, digest, _ in self._put_rows(phase):
            yield key, value, ttl, digest

    def writes(self) -> Iterator[tuple[str, str, int, bytes, str]]:
        """``(key, value, ttl, hash, phase)`` of every write in send order: segments first.

        This is the order :func:`build_plan` counted the write requests in.
        """
        return self._put_rows(None)

    def _put_rows(self, phase: str | None) -> Iterator[tuple[str, str, int, bytes, str]]:
        # The file holds batches of at most _Writer.CHUNK rows: memory stays bounded.
        with pa.ipc.open_stream(self.puts_file) as reader:
            for batch in reader:
                cols = [batch.column(name).to_pylist() for name in _PUT_SCHEMA.names]
                for key, value, ttl, digest, row_phase in zip(*cols, strict=True):
                    if phase is None or row_phase == phase:
                        yield key, value, ttl, digest, row_phase

    def deletes(self, chunk: int = 10_000) -> Iterator[str]:
        last = ""
        while True:
            rows = self.db.execute(
                "SELECT key FROM temp.plan_delete WHERE key > ? ORDER BY key LIMIT ?",
                (last, chunk),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for (key,) in rows:
                yield key


_LIMITS: Final = {"segments": MAX_SEGMENT_BYTES, "profiles": MAX_PROFILE_BYTES}


def scope(schema: str) -> list[str]:
    return [USER_PREFIX + "*", f"{SEGMENT_PREFIX}*:{schema}"]


_PUT_SCHEMA: Final = pa.schema(
    [
        ("key", pa.string()),
        ("value", pa.string()),
        ("ttl", pa.int64()),
        ("hash", pa.binary()),
        ("phase", pa.string()),
    ]
)


class _Writer:
    """Buffers plan actions: writes appended to a temporary file, deletions to a temporary table.

    The writes file is an Arrow IPC stream (LZ4-compressed record batches) in a directory of
    its own, removed by :meth:`discard` or when the owner it is handed to is collected.
    """

    CHUNK: Final = 10_000

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute("DROP TABLE IF EXISTS temp.plan_delete")
        db.execute("CREATE TEMP TABLE plan_delete (key TEXT PRIMARY KEY) WITHOUT ROWID")
        self.dir = Path(tempfile.mkdtemp(prefix="edgeshelf-plan-"))
        self.path = self.dir / "puts.arrow"
        self._sink = pa.OSFile(str(self.path), "wb")
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        self._stream = pa.ipc.new_stream(self._sink, _PUT_SCHEMA, options=options)
        # One list per column of _PUT_SCHEMA: a batch is then made without transposing rows.
        self.puts: tuple[list[str], list[str], list[int], list[bytes], list[str]] = (
            [], [], [], [], []
        )  # fmt: skip
        self.deletes: list[tuple[str]] = []

    def put_row(self, phase: str, key: str, value: str, ttl: int, digest: bytes) -> None:
        keys, values, ttls, digests, phases = self.puts
        keys.append(key)
        values.append(value)
        ttls.append(ttl)
        digests.append(digest)
        phases.append(phase)
        if len(keys) >= self.CHUNK:
            self.flush()

    def close(self) -> None:
        """Flush and close the writes file (it stays on disk for the plan to read)."""
        self.flush()
        self._stream.close()
        self._sink.close()

    def discard(self) -> None:
        """Close and remove the writes file (the plan was not made)."""
        try:
            self._stream.close()
            self._sink.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def put_all(self, batch: ItemBatch, digests: pa.Array) -> None:
        """:meth:`put_row` every key of ``batch``, in order, written as Arrow slices."""
        self.flush()  # the rows put one by one before these go first
        n = len(batch.keys)
        columns = [
            batch.keys,
            batch.values,
            pa.repeat(pa.scalar(batch.ttl, pa.int64()), n),
            digests,
            pa.repeat(pa.scalar(batch.phase, pa.string()), n),
        ]
        rows = pa.record_batch(columns, schema=_PUT_SCHEMA)
        for start in range(0, n, self.CHUNK):
            self._stream.write_batch(rows.slice(start, self.CHUNK))

    def delete(self, key: str) -> None:
        self.deletes.append((key,))
        if len(self.deletes) >= 10_000:
            self.flush()

    def flush(self) -> None:
        if self.puts[0]:
            self._stream.write_batch(pa.record_batch(list(self.puts), schema=_PUT_SCHEMA))
            for column in self.puts:
                column.clear()
        if self.deletes:
            self.db.executemany("INSERT INTO temp.plan_delete (key) VALUES (?)", self.deletes)
            self.deletes.clear()


_Row = tuple[str, bytes | None, int]
"""A state row: ``(key, hash or None when unconfirmed, expires_at)``."""


def _reason(row: _Row | None, digest: bytes, now: int, refresh_before: float) -> str | None:
    """Which write counter a computed key falls under, or None to skip it.

    ``row`` is the state's ``(key, hash, expires_at)`` of the key, if it has one; a key is
    refreshed when it expires within ``refresh_before`` seconds.
    """
    if row is None:
        return "new"
    _, old_hash, expires_at = row
    if old_hash is None:
        return "unconfirmed"
    if old_hash != digest:
        return "changed"
    if expires_at - now < refresh_before:
        return "refresh"
    return None


def _fits(batch: ItemBatch) -> bool:
    """True if no key or value of ``batch`` needs :func:`check_payload`'s refusal or warning."""
    if not len(batch.keys):
        return True
    limit = min(_LIMITS[batch.phase], MAX_VALUE_BYTES, HOT_KEY_WARN_BYTES)
    return bool(
        pc.max(batch.sizes).as_py() <= limit
        and pc.max(pc.binary_length(batch.keys)).as_py() <= MAX_KEY_BYTES
        and pc.all(pc.string_is_ascii(batch.keys)).as_py()  # as the schema module's keys are
    )


def _checked(item: Item, warn: Callable[[str], None] | None) -> ItemBatch:
    """``item`` as a batch of one, its sizes checked by :func:`check_payload` (which may warn)."""
    check_payload(item.key, item.value, _LIMITS[item.phase], warn)
    if not item.key.isascii():  # the schema module's keys are
        raise PayloadError(f"key {item.key[:60]!r} is not ASCII")
    return ItemBatch.of([item.key], [item.value], item.ttl, item.phase)


def _plan_batch(
    batch: ItemBatch,
    counts: PlanCounts,
    batcher: BatchCounter,
    out: _Writer,
    published: Iterator[_Row],
    previous: str,
    current: _Row | None,
    n: int,
    now: int,
    refresh_fraction: float,
    progress: Callable[[int], None] | None,
) -> tuple[str, _Row | None, int]:
    """Diff the keys of a batch whose sizes are checked (:func:`_fits`, :func:`_checked`).

    Each key is written or skipped (:func:`_reason`); confirmed keys before it that are no longer
    computed are deleted. Returns the last key, the next state row and the keys seen so far.
    """
    ttl, phase = batch.ttl, batch.phase
    if len(batch.keys) and (current is None or current[0] > batch.keys[-1].as_py()):
        # No state row before this batch's last key: every key is new and nothing is deleted
        # (a first run, or keys past the state's): the same outcome, made in bulk.
        last, n = _plan_new(batch, counts, batcher, out, previous, n, progress)
        return last, current, n
    refresh_before = ttl * refresh_fraction
    written = {"new": 0, "changed": 0, "refresh": 0, "unconfirmed": 0}
    skipped = write_bytes = 0
    add, put, pair_size = batcher.add, out.put_row, BatchCounter.pair_size
    keys, values = batch.keys.to_pylist(), batch.values.to_pylist()
    made = value_hashes(values, ttl) if batch.digests is None else batch.digests.to_pylist()
    rows = zip(keys, values, batch.sizes.to_pylist(), made, strict=True)
    for key, value, size, digest in rows:
        if key <= previous:
            raise _out_of_order(previous, key)
        previous = key
        while current is not None and current[0] < key:
            out.delete(current[0])
            current = next(published, None)
        match = None
        if current is not None and current[0] == key:
            match, current = current, next(published, None)
            if match[1] is not None and len(match[1]) != len(digest):  # an older state's
                match = (key, as_current(match[1], value, ttl, digest), match[2])
        reason = _reason(match, digest, now, refresh_before)
        if reason is None:
            skipped += 1
        else:
            written[reason] += 1
            write_bytes += size
            add(pair_size(len(key), size))
            put(phase, key, value, ttl, digest)
        n += 1
        if progress is not None and n % 10_000 == 0:
            progress(10_000)
    counts.computed[phase] += len(keys)
    counts.skipped[phase] += skipped
    counts.write_bytes += write_bytes
    for reason_name, count in written.items():
        getattr(counts, reason_name)[phase] += count
    return previous, current, n


def _out_of_order(previous: str, key: str) -> AssertionError:
    """The refusal of ``key`` coming after ``previous``: the merge join relies on key order."""
    return AssertionError(f"computed keys out of order: {previous!r}, {key!r}")


def _plan_new(
    batch: ItemBatch,
    counts: PlanCounts,
    batcher: BatchCounter,
    out: _Writer,
    previous: str,
    n: int,
    progress: Callable[[int], None] | None,
) -> tuple[str, int]:
    """:func:`_plan_batch` for a batch with no state row up to its last key: all keys new.

    Returns the last key and the keys seen so far.
    """
    keys, n_keys = batch.keys, len(batch.keys)
    last = keys[-1].as_py()
    ordered = pc.all(pc.less(keys[:-1], keys[1:]), min_count=0).as_py()
    if keys[0].as_py() <= previous or not ordered:
        listed = [previous, *keys.to_pylist()]
        raise next(_out_of_order(a, b) for a, b in itertools.pairwise(listed) if a >= b)
    sizes = batch.sizes.to_numpy()
    batcher.add_all(BatchCounter.pair_size(pc.binary_length(keys).to_numpy(), sizes))
    made = batch.digests
    if made is None:
        made = pa.array(value_hashes(batch.values.to_pylist(), batch.ttl), pa.binary())
    out.put_all(batch, made)
    counts.computed[batch.phase] += n_keys
    counts.new[batch.phase] += n_keys
    counts.write_bytes += int(sizes.sum())
    if progress is not None:
        done = (n + n_keys) // 10_000 - n // 10_000
        for _ in range(done):
            progress(10_000)
    return last, n + n_keys


def build_plan(
    state: State,
    items: Iterable[Item | ItemBatch],
    *,
    schema: str,
    now: int,
    refresh_fraction: float = REFRESH_FRACTION,
    warn: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    max_pairs: int = MAX_BULK_PAIRS,
    max_bytes: int = MAX_BULK_BYTES,
) -> Plan:
    """Diff ``items`` (sorted by key) against the state; store the actions; return the plan."""
    db = state.db
    counts = PlanCounts()
    # One counter over the whole send order (what Publisher batches), not one per phase.
    batcher = BatchCounter(max_pairs=max_pairs, max_bytes=max_bytes)
    out = _Writer(db)
    previous = ""
    n = 0
    db.execute("BEGIN")
    try:
        published = state.scan(scope(schema))
        current = next(published, None)
        for entry in items:
            if isinstance(entry, ItemBatch) and _fits(entry):
                batches: Iterable[ItemBatch] = (entry,)
            else:  # one key at a time, checked (and warned about) one by one
                singles = entry.items() if isinstance(entry, ItemBatch) else (entry,)
                batches = (_checked(item, warn) for item in singles)
            for batch in batches:
                previous, current, n = _plan_batch(
                    batch, counts, batcher, out, published, previous, current, n,
                    now, refresh_fraction, progress,
                )  # fmt: skip
        while current is not None:
            out.delete(current[0])
            current = next(published, None)
        out.close()
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        out.discard()
        raise
    if progress is not None:
        progress(n % 10_000)
    counts.write_requests = batcher.batches
    row = db.execute("SELECT count(*) FROM temp.plan_delete").fetchone()
    counts.deleted = int(row[0]) if row else 0
    counts.delete_requests = -(-counts.deleted // max_pairs)
    plan = Plan(schema=schema, now=now, counts=counts, db=db, puts_file=out.path)
    weakref.finalize(plan, shutil.rmtree, out.dir, ignore_errors=True)
    return plan
