"""Counting exposures per arm from the Worker's request log lines.

The Worker logs one JSON object per personalized request (``{"event": "edgeshelf.request", ...,
"exp": <experiment name> | null, "arm": <arm name> | null}``; never a visitor ID). Three shapes
of file are read, line by line, and may be mixed:

- **plain JSON lines**, one request object per line (Workers Logs export, ``scripts/dev``);
- **Workers Trace Events Logpush** (dataset ``workers_trace_events``): one invocation per line,
  whose ``Logs`` array holds ``{"Level", "Message": [<the logged values>], "TimestampMs"}``;
  the request object is the JSON string in ``Message`` (or the object itself);
- ``wrangler tail --format json``: the same with lower-case ``logs`` / ``message`` /
  ``timestamp``.

A file ending in ``.gz`` is decompressed (Logpush writes gzip). Logs are untrusted input: a line
that is not JSON, too long, nested too deeply, not valid UTF-8, or a request record whose
``exp``/``arm`` are not strings or null, is **skipped and counted** by reason, never fatal.
Records of other experiments, records of arms the experiment does not have, and records logged
before the window (when the line carries a time) are counted separately and not as exposures.
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from edgeshelf.experiment import Experiment

__all__ = ["MAX_LINE_BYTES", "ExposureCounts", "count_exposures", "read_exposures"]

REQUEST_EVENT: Final = "edgeshelf.request"
# A request line is well under 2 KiB; a Logpush invocation line holds a few of them.
MAX_LINE_BYTES: Final = 256 * 1024
_MAX_LOGS_PER_LINE: Final = 1000


@dataclass
class ExposureCounts:
    """Exposures per arm and what else the lines held."""

    experiment: str
    arms: dict[str, int]
    lines: int = 0
    records: int = 0  # request records found (of any experiment, or none)
    not_enrolled: int = 0  # records with "exp": null
    other_experiment: int = 0
    unknown_arm: int = 0
    before_window: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.arms.values())

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.skipped_by_reason[reason] = self.skipped_by_reason.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "arms": dict(self.arms),
            "total": self.total,
            "lines": self.lines,
            "records": self.records,
            "not_enrolled": self.not_enrolled,
            "other_experiment": self.other_experiment,
            "unknown_arm": self.unknown_arm,
            "before_window": self.before_window,
            "skipped": self.skipped,
            "skipped_by_reason": dict(sorted(self.skipped_by_reason.items())),
        }


def _time_ms(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# (logs array, message array, entry time, invocation time): Logpush, then ``wrangler tail``.
_TRACE_SHAPES: Final = (
    ("Logs", "Message", "TimestampMs", "EventTimestampMs"),
    ("logs", "message", "timestamp", "eventTimestamp"),
)
_MALFORMED: Final = object()  # stands for a Logs entry that is not {..., Message: [...]}


def _messages(obj: dict[str, Any]) -> list[tuple[object, float | None]] | None:
    """The logged values of a Logpush / tail line with their times, or None for another shape."""
    for logs_key, msg_key, ts_key, event_ts in _TRACE_SHAPES:
        if logs_key not in obj:
            continue
        logs = obj[logs_key]
        if not isinstance(logs, list):
            return [(_MALFORMED, None)]
        fallback = _time_ms(obj.get(event_ts))
        out: list[tuple[object, float | None]] = []
        for entry in logs[:_MAX_LOGS_PER_LINE]:
            if not isinstance(entry, dict) or not isinstance(entry.get(msg_key), list):
                out.append((_MALFORMED, None))
                continue
            when = _time_ms(entry.get(ts_key))
            out.extend((value, fallback if when is None else when) for value in entry[msg_key])
        return out
    return None


def _request(value: object) -> dict[str, Any] | str | None:
    """A logged value as a request record; None if it is something else; a reason if hostile."""
    if isinstance(value, str):
        if not value.startswith("{") or f'"{REQUEST_EVENT}"' not in value:
            return None  # another console.log line of the Worker: not ours to judge
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return "unparsable logged message"
    if not isinstance(value, dict) or value.get("event") != REQUEST_EVENT:
        return None
    return value


class _Counter:
    def __init__(self, experiment: Experiment, since_ms: float | None) -> None:
        self.name = experiment["name"]
        self.counts = ExposureCounts(self.name, {arm["name"]: 0 for arm in experiment["arms"]})
        self.since_ms = since_ms

    def record(self, rec: dict[str, Any], when: float | None) -> None:
        exp, arm = rec.get("exp"), rec.get("arm")
        c = self.counts
        if not (exp is None or isinstance(exp, str)) or not (arm is None or isinstance(arm, str)):
            c.skip("exp/arm not a string or null")
            return
        c.records += 1
        if exp is None:
            c.not_enrolled += 1
        elif exp != self.name:
            c.other_experiment += 1
        elif arm is None or arm not in c.arms:
            c.unknown_arm += 1
        elif self.since_ms is not None and when is not None and when < self.since_ms:
            c.before_window += 1
        else:
            c.arms[arm] += 1

    def line(self, raw: bytes) -> None:
        c = self.counts
        c.lines += 1
        if not raw.strip():
            c.lines -= 1  # blank lines are not lines of log
            return
        if len(raw) > MAX_LINE_BYTES:
            c.skip("line too long")
            return
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            c.skip("not UTF-8")
            return
        except (ValueError, RecursionError):
            c.skip("not JSON")
            return
        if not isinstance(obj, dict):
            c.skip("not a JSON object")
            return
        messages = _messages(obj)
        if messages is None:
            found = _request(obj)
            if isinstance(found, dict):
                self.record(found, None)
            else:
                c.skip("not a request record")
            return
        for value, when in messages:
            if value is _MALFORMED:
                c.skip("malformed Logs entry")
                continue
            found = _request(value)
            if isinstance(found, str):
                c.skip(found)
            elif found is not None:
                self.record(found, when)


def _lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        while True:
            # Bounded reads: a hostile file of one endless line must not exhaust memory.
            line = fh.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
            yield line


def read_exposures(
    paths: Iterable[Path], experiment: Experiment, *, since: int | None = None
) -> ExposureCounts:
    """Exposures per arm of ``experiment`` in the files (or directories of files) at ``paths``.

    ``since`` (epoch seconds) drops records whose line carries an earlier time (Logpush and
    tail lines do; plain request lines carry none and count whenever they were logged).
    """
    counter = _Counter(experiment, None if since is None else since * 1000.0)
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    for path in files:
        try:
            for raw in _lines(path):
                counter.line(raw)
        except (OSError, EOFError, zlib.error) as exc:
            # A truncated gzip file keeps what was read before the damage.
            counter.counts.skip(f"unreadable file ({type(exc).__name__})")
    return counter.counts


def count_exposures(lines: Iterable[bytes | str], experiment: Experiment) -> ExposureCounts:
    """The same count over lines already in memory (tests, the demo's captured logs)."""
    counter = _Counter(experiment, None)
    for line in lines:
        counter.line(line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line)
    return counter.counts
