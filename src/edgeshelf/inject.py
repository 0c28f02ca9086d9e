"""What gets injected into the shell's slot, escaped for where it lands (pure).

The slot is the first element carrying ``data-edgeshelf-slot``. The shelf always goes in as a
``<script type="application/json" id="edgeshelf-shelf">`` payload; when the slot also carries
``data-edgeshelf-render="cards"``, server-rendered cards replace the slot's default content.
An empty shelf leaves the default content alone.
"""

from __future__ import annotations

import json
from html import escape
from typing import Final, NamedTuple

__all__ = [
    "RENDER_ATTR",
    "SCRIPT_ID",
    "SLOT_ATTR",
    "SLOT_SELECTOR",
    "Shelf",
    "cards_html",
    "script_html",
    "split_marked",
    "split_markers",
]

SLOT_ATTR: Final = "data-edgeshelf-slot"
RENDER_ATTR: Final = "data-edgeshelf-render"
SLOT_SELECTOR: Final = f"[{SLOT_ATTR}]"
SCRIPT_ID: Final = "edgeshelf-shelf"

# Inside <script>, only "</script" and "<!--" can end or confuse the element; escaping every
# "<", ">" and "&" as JSON unicode escapes rules both out and keeps the JSON identical.
_SCRIPT_SAFE: Final = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


class Shelf(NamedTuple):
    ids: list[str]
    segment: str
    fallback: int  # 0 exact segment, 1 language default, 2 global default, 3 none
    schema: str
    exp: str | None = None  # the experiment the visitor is enrolled in, if any
    arm: str | None = None  # and their arm in it


def script_html(shelf: Shelf) -> str:
    payload = json.dumps(
        {
            "ids": shelf.ids,
            "segment": shelf.segment,
            "fallback": shelf.fallback,
            "schema": shelf.schema,
            "exp": shelf.exp,
            "arm": shelf.arm,
        },
        separators=(",", ":"),
        ensure_ascii=True,  # also escapes U+2028/U+2029
    ).translate(_SCRIPT_SAFE)
    return f'<script type="application/json" id="{SCRIPT_ID}">{payload}</script>'


def cards_html(ids: list[str]) -> str:
    """Server-rendered cards for the shell's ``cards`` renderer; every ID is HTML-escaped."""
    items = "".join(
        f'<li class="card"><a href="/watch/{escape(vid)}"><div class="thumb">{escape(vid)}</div>'
        f"<span>Video {escape(vid)}</span></a></li>"
        for vid in ids
    )
    return (
        '<h2 id="shelf-title">Picked for you</h2>'
        f'<ul class="row es-rendered" id="edgeshelf-cards">{items}</ul>'
    )


def split_markers(nonce: str) -> tuple[str, str, str]:
    """Three HTML comments no shell contains: slot start, slot end, and replaced content."""
    return (
        f"<!--edgeshelf-split-{nonce}-start-->",
        f"<!--edgeshelf-split-{nonce}-end-->",
        f"<!--edgeshelf-split-{nonce}-inner-->",
    )


def split_marked(
    prepended: str, replaced: str, markers: tuple[str, str, str]
) -> tuple[str, str, str] | None:
    """``(before, inner, after)`` of the first slot, from two passes of the HTML rewriter.

    ``prepended`` is the shell with ``markers[0]`` prepended to the slot's content and
    ``markers[1]`` appended to it; ``replaced`` is the shell with the slot's content replaced by
    ``markers[2]``. The split is trusted only if each marker is there exactly once, in order, and
    the second pass agrees with the first; then ``before + shelf + after`` (cards) and
    ``before + inner + script + after`` are the rewriter's own output for any shelf. Otherwise
    None, and the caller runs the rewriter per request instead.
    """
    start, end, inner_mark = markers
    if prepended.count(start) != 1 or prepended.count(end) != 1:
        return None
    before, rest = prepended.split(start)
    if end not in rest:
        return None
    inner, after = rest.split(end)
    if replaced != before + inner_mark + after:
        return None
    return before, inner, after
