"""The local record of what Cloudflare confirmed, in SQLite, and the lock against overlapping runs.

Table ``published`` holds, per key, a digest of the value (and TTL) that Cloudflare confirmed
(:mod:`builder.digests`) and when it expires. Before a batch is sent its keys are marked
*unconfirmed* (``hash`` NULL); only after Cloudflare answered is the hash set (or, for a delete,
the row removed). So at any moment, also right after a crash:

- a key with a hash holds exactly that value in KV (until ``expires_at``);
- an unconfirmed key may hold anything or nothing, and the next plan writes or deletes it.

That is what makes "kill the run anywhere, rerun, and KV equals the plan" hold.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from builder.errors import LockedError, StateError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["DEFAULT_STATE", "FORMAT", "RunLock", "State"]

DEFAULT_STATE: Final = Path(".edgeshelf/state.sqlite")
FORMAT: Final = "2"
_OLDER_FORMATS: Final = frozenset({"1"})
"""Formats this builder opens as its own. Format 1's rows keep their digests (BLAKE2b, 16 bytes),
which builder.digests compares as such until each key is next written; an older builder would
take every new digest for a change, so it refuses a format-2 state."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS published (
    key TEXT PRIMARY KEY,
    hash BLOB,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
"""


class RunLock:
    """An exclusive ``flock`` on ``<state>.lock``; the kernel drops it if the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(self.path.read_text().strip())})"
            raise LockedError(f"another builder run holds {self.path}{holder}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class State:
    """The state file: ``meta`` (target, last run) and ``published`` (confirmed keys)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
            # WAL keeps readers (status) from blocking a run; FULL makes each confirmation
            # durable before the next batch goes out.
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")
            self.db.executescript(_SCHEMA)
            fmt = self.get_meta("format")
            if fmt is None or fmt in _OLDER_FORMATS:
                self.set_meta("format", FORMAT)
            elif fmt != FORMAT:
                raise StateError(f"{path}: state format {fmt!r}, this builder reads {FORMAT!r}")
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: not a usable state file ({exc})") from exc

    @classmethod
    def lock_path(cls, path: Path) -> Path:
        return path.with_name(path.name + ".lock")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- meta -----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    def bind(self, identity: str) -> None:
        """Tie the state to one namespace: a diff against another namespace's state is wrong."""
        bound = self.get_meta("target")
        if bound is None:
            self.set_meta("target", identity)
        elif bound != identity:
            raise StateError(
                f"{self.path} records keys published to {bound}, not {identity}; "
                "use another --state file for this namespace"
            )

    def record_run(self, summary: dict[str, Any]) -> None:
        self.set_meta("last_run", json.dumps(summary, sort_keys=True))

    def last_run(self) -> dict[str, Any] | None:
        text = self.get_meta("last_run")
        if text is None:
            return None
        value = json.loads(text)
        return value if isinstance(value, dict) else None

    # --- published keys -------------------------------------------------------------------

    def scan(self, globs: Iterable[str]) -> Iterator[tuple[str, bytes | None, int]]:
        """Rows whose key matches any of ``globs``, in key order (binary collation)."""
        patterns = list(globs)
        where = " OR ".join("key GLOB ?" for _ in patterns) or "0"
        sql = f"SELECT key, hash, expires_at FROM published WHERE {where} ORDER BY key"  # noqa: S608
        cur = self.db.execute(sql, patterns)
        while rows := cur.fetchmany(10_000):
            yield from rows

    def count_scope(self, schema: str, *, unconfirmed: bool = False) -> int:
        """Published profile keys plus segment keys of ``schema`` (what a run may delete).

        With ``unconfirmed``, only those whose content in KV is unknown (sent, not confirmed).
        """
        row = self.db.execute(
            "SELECT count(*) FROM published WHERE (key GLOB 'u:*' OR key GLOB ?1) "
            "AND (NOT ?2 OR hash IS NULL)",
            (f"seg:*:{schema}", unconfirmed),
        ).fetchone()
        return int(row[0]) if row else 0

    def keys(self, glob: str) -> list[str]:
        return [
            r[0] for r in self.db.execute("SELECT key FROM published WHERE key GLOB ?", (glob,))
        ]

    def mark_unconfirmed(self, keys: Iterable[str]) -> None:
        """Before sending: these keys' KV content is unknown until Cloudflare answers."""
        with self._tx():
            self.db.executemany(
                "INSERT INTO published (key, hash, expires_at) VALUES (?, NULL, 0) "
                "ON CONFLICT (key) DO UPDATE SET hash = NULL",
                ((k,) for k in keys),
            )

    def confirm_written(self, rows: Iterable[tuple[str, bytes, int]]) -> None:
        """Cloudflare confirmed these ``(key, hash, expires_at)``."""
        with self._tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO published (key, hash, expires_at) VALUES (?, ?, ?)", rows
            )

    def confirm_deleted(self, keys: Iterable[str]) -> None:
        with self._tx():
            self.db.executemany("DELETE FROM published WHERE key = ?", ((k,) for k in keys))

    def counts(self) -> dict[str, int]:
        """Keys per kind (``u``, ``seg:<schema>``, ``shell``) and unconfirmed ones."""
        out: dict[str, int] = {}
        rows = self.db.execute(
            """
            SELECT CASE WHEN key GLOB 'seg:*' THEN 'seg:' || substr(key, length(rtrim(key,
                        'abcdefghijklmnopqrstuvwxyz0123456789')) + 1)
                        ELSE substr(key, 1, instr(key, ':') - 1) END AS kind,
                   count(*), sum(hash IS NULL)
            FROM published GROUP BY kind
            """
        )
        for kind, total, unconfirmed in rows:
            out[str(kind)] = int(total)
            if unconfirmed:
                out["unconfirmed"] = out.get("unconfirmed", 0) + int(unconfirmed)
        return out

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
