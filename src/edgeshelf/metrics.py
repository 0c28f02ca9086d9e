"""One record per personalized request: the JSON log line and the Analytics Engine point (pure).

From these numbers come the operational metrics: request count (records), KV miss rate
(sum of ``kv_misses`` / sum of ``kv_reads``) and fallback rate (share of records with
``fallback`` > 0). Crawlers (``bot``) always get the global shelf by design, so their records
are left out of both rates: their data point counts no reads, misses or fallback, and
``double6`` marks them. docs/operations.md shows the queries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RequestRecord"]

_EVENT = "edgeshelf.request"
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_MAX_INDEX_BYTES = 96


def _index(value: str) -> str:
    """``value`` cut to Analytics Engine's index limit, which counts UTF-8 bytes, not characters."""
    index = value[:_MAX_INDEX_BYTES]
    # Segment IDs are ASCII, so this only loops for a value that should not be there at all.
    while len(index.encode("utf-8", "surrogatepass")) > _MAX_INDEX_BYTES:
        index = index[:-1]
    return index


@dataclass(slots=True)
class RequestRecord:
    method: str = "GET"
    path: str = "/"
    visitor: str = "none"  # cookie | minted | gpc | bot
    bot: bool = False  # a known crawler (crawlers.py): global shelf, no ID, not in the rates
    profile: str = "none"  # kv | request (defaulted from cf.country + Accept-Language)
    audience: str = "none"  # cookie (the audience cookie) | kv | request: what served it
    exp: str | None = None  # the experiment the visitor is enrolled in (exp:active), if any
    arm: str | None = None  # their arm: never the ID, which the builder recomputes arms from
    profile_read: str = "skipped"  # hit | miss | invalid | skipped
    segment: str = ""
    fallback: int = 3
    segment_reads: list[str] = field(default_factory=list)  # "hit"/"miss"/"invalid" per step
    kv_reads: int = 0
    kv_misses: int = 0
    memo_reads: int = 0  # segment reads answered from isolate memory (not KV reads)
    shell: str = "none"  # memory | cache | kv-copy | origin | none
    shell_version: str = ""
    status: int = 200
    kv_ms: float = 0.0
    shell_ms: float = 0.0
    total_ms: float = 0.0
    errors: list[str] = field(default_factory=list)

    def kv_read(self, outcome: str) -> None:
        self.kv_reads += 1
        if outcome != "hit":
            self.kv_misses += 1

    def to_json(self) -> str:
        # Built field by field: dataclasses.asdict deep-copies recursively and was the larger
        # part of this line's cost on the Worker's hot path (docs/benchmarks.md).
        return _ENCODE(
            {
                "event": _EVENT,
                "method": self.method,
                "path": self.path,
                "visitor": self.visitor,
                "bot": self.bot,
                "profile": self.profile,
                "audience": self.audience,
                "exp": self.exp,
                "arm": self.arm,
                "profile_read": self.profile_read,
                "segment": self.segment,
                "fallback": self.fallback,
                "segment_reads": self.segment_reads,
                "kv_reads": self.kv_reads,
                "kv_misses": self.kv_misses,
                "memo_reads": self.memo_reads,
                "shell": self.shell,
                "shell_version": self.shell_version,
                "status": self.status,
                "kv_ms": round(self.kv_ms, 3),
                "shell_ms": round(self.shell_ms, 3),
                "total_ms": round(self.total_ms, 3),
                "errors": self.errors,
            }
        )

    def data_point(self) -> dict[str, Any]:
        """Analytics Engine: blobs are dimensions, doubles are summed; index by segment.

        ``double1`` request, ``double2`` KV reads, ``double3`` KV misses, ``double4`` 1 when the
        shelf fell back, ``double5`` total ms, ``double6`` 1 for a crawler (whose reads, misses
        and fallback are not counted, so the rates describe visitors), ``double7`` 1 when the
        visitor's profile ``u:<uid>`` was read (profile reads per page view: ``SUM(double7) /
        SUM(double1 - double6)``; the audience cookie keeps it near 0 for returning visitors).
        Blobs: segment, fallback, shell source, profile source, visitor kind, audience source,
        experiment and arm (empty when the visitor is not enrolled).
        """
        human = not self.bot
        # fmt: off
        return {
            "indexes": [_index(self.segment)],
            "blobs": [
                self.segment, str(self.fallback), self.shell, self.profile, self.visitor,
                self.audience, self.exp or "", self.arm or "",
            ],
            "doubles": [
                1.0,
                float(self.kv_reads) if human else 0.0,
                float(self.kv_misses) if human else 0.0,
                1.0 if self.fallback > 0 and human else 0.0,
                self.total_ms,
                0.0 if human else 1.0,
                0.0 if self.profile_read == "skipped" else 1.0,
            ],
        }
        # fmt: on
