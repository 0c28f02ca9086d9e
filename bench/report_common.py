"""What the edge benchmark's report sections share: names of the Workers, typography, and the
small formatting helpers (bench/report.py, bench/report_sessions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

NOTES = Path(__file__).resolve().parent / "notes"

# The two JavaScript peers (bench/notes/method.md): the same algorithm as edgeshelf (the
# like-for-like "equivalent JavaScript Worker" the targets name), and the read path as a
# JavaScript team would first write it. Runs from before the split have only "js-peer", which
# was then the naive read path (bench/workers/jsnaive.mjs is that file, unchanged in behaviour).
PEER = "js-peer"
NAIVE = "js-naive"
PEER_NAMES = {PEER: "same-algorithm JS peer", NAIVE: "naive JS peer"}
LABELS = {
    "py-floor": "Python passthrough",
    "js-floor": "JavaScript passthrough",
    PEER: "JavaScript read path, same algorithm",
    NAIVE: "JavaScript read path, naive",
    "edgeshelf": "edgeshelf (Python)",
}
# Typography for the report, spelled as escapes so the source stays ASCII-unambiguous.
X = "\u00d7"  # multiplication sign
MINUS = "\u2212"
DASH = "\u2013"


def fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def note(name: str) -> list[str]:
    path = NOTES / f"{name}.md"
    return [path.read_text().rstrip(), ""] if path.exists() else []
