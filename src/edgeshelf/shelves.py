"""The shelf: the first segment along the fallback chain, ready to inject (FFI module).

Awaiting a JS promise is the dearest step for Python, so the isolate keeps what all its
visitors share: each segment value it read (or its absence) for ``SEGMENT_MEMO_TTL`` seconds,
and each shelf ready for injection, per segment value: its HTML as JS Blobs (for split shells,
``shell.SplitShell``) and as an HTMLRewriter handler prototype (for per-request injection).
Which keys to read, and in what order, is ``segments.chain_for``'s to say (pure).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from js import Blob, Object
from pyodide.ffi import JsException, create_proxy, to_js

from . import ffi, inject
from .memo import TtlMemo
from .segments import EMPTY_LEVEL, ids_from

if TYPE_CHECKING:
    from .metrics import RequestRecord
    from .segments import Step

__all__ = ["ReadyShelf", "ShelfStore"]

# Ready shelves per segment value; a few hundred segments per isolate at most.
_READY_MEMO_SIZE = 512
# Segment values (or their absence) an isolate keeps for SEGMENT_MEMO_TTL seconds.
_SEGMENT_MEMO_SIZE = 1024


def _inject_into_slot(handler: Any, el: Any) -> None:
    """HTMLRewriter element handler: the first slot gets the shelf (cards when it asks).

    Called with ``this`` (``handler``) set to the request's own handler object, which records
    that the shelf went in; the HTML is passed on as prebuilt JS arrays, never as Python text.
    """
    if handler.done:  # only the first slot gets the shelf
        return
    handler.done = True
    cards = ffi.py(handler.cards)
    if cards is not None and ffi.attribute(el, inject.RENDER_ATTR) == "cards":
        el.setInnerContent.apply(el, cards)
    else:
        el.append.apply(el, handler.script)


class ReadyShelf:
    """A shelf as ready JS Blobs and as an HTMLRewriter handler prototype, built once per
    segment value.

    The prototype is a plain JS object holding the isolate's element function and the shelf's
    HTML as JS ``[html, {html: true}]`` argument arrays; each request's handler is
    ``Object.create(proto)``: one FFI call, no proxy, and no string crossing the FFI.
    """

    __slots__ = ("cards_blob", "proto", "script_blob", "shelf")

    def __init__(self, shelf: inject.Shelf, element_fn: Any, html_opts: Any) -> None:
        self.shelf = shelf
        script = inject.script_html(shelf)
        cards_text = inject.cards_html(shelf.ids) + script if shelf.ids else None
        self.script_blob = Blob.new(to_js([script]))
        self.cards_blob = Blob.new(to_js([cards_text])) if cards_text is not None else None
        cards = to_js([cards_text, html_opts]) if cards_text is not None else None
        self.proto = ffi.js_object(
            [
                ("element", element_fn),
                ("done", False),
                ("cards", cards),
                ("script", to_js([script, html_opts])),
            ]
        )

    def rewriter_handler(self) -> Any:
        """This request's HTMLRewriter handler: a fresh object over the shelf's prototype."""
        return Object.create(self.proto)


class ShelfStore:
    """Finds a visitor's shelf; one per isolate."""

    def __init__(self, kv: Any, kv_text_opts: Any, segment_memo_ttl_s: float, seg_schema: str):
        self._kv = kv
        self._text_opts = kv_text_opts
        self._html_opts = ffi.js_object([("html", True)])
        # Every request's HTMLRewriter handler calls it; it lives as long as the isolate.
        self._element_fn = create_proxy(_inject_into_slot, capture_this=True)
        self._segments: TtlMemo[str, str | None] = TtlMemo(segment_memo_ttl_s, _SEGMENT_MEMO_SIZE)
        self._ready: dict[tuple[int, str, str, str | None, str | None], ReadyShelf] = {}
        self._seg_schema = seg_schema
        self._empty: dict[tuple[str | None, str | None], ReadyShelf] = {}

    def _make(self, shelf: inject.Shelf) -> ReadyShelf:
        return ReadyShelf(shelf, self._element_fn, self._html_opts)

    def empty(self, exp: str | None = None, arm: str | None = None) -> ReadyShelf:
        """No shelf (the shell's own default content stays), with the visitor's arm, if any."""
        ready = self._empty.get((exp, arm))
        if ready is None:
            if len(self._empty) >= _READY_MEMO_SIZE:
                self._empty.clear()
            shelf = inject.Shelf([], "", EMPTY_LEVEL, self._seg_schema, exp, arm)
            ready = self._empty[exp, arm] = self._make(shelf)
        return ready

    def _remember(
        self, memo_key: tuple[int, str, str, str | None, str | None], shelf: inject.Shelf
    ) -> ReadyShelf:
        if len(self._ready) >= _READY_MEMO_SIZE:
            del self._ready[next(iter(self._ready))]
        ready = self._ready[memo_key] = self._make(shelf)
        return ready

    async def find(
        self, steps: list[Step], seg_schema: str, record: RequestRecord,
        exp: str | None = None, arm: str | None = None,
    ) -> ReadyShelf:  # fmt: skip
        """The first step with a non-empty, valid segment, else the empty shelf.

        ``exp`` and ``arm`` (the visitor's experiment arm) travel in the payload, so ready
        shelves are kept per segment value and arm.

        Records each step's outcome and KV read; a read that fails is not remembered, so the
        next request asks KV again.
        """
        for step in steps:
            remembered = self._segments.get(step.key, time.monotonic())
            if remembered is not None:
                text = remembered.value
                record.memo_reads += 1
            else:
                try:
                    text = ffi.text(await self._kv.get(step.key, self._text_opts))
                except JsException as exc:
                    record.errors.append(f"kv-segment: {exc.name}")
                    text = None
                else:
                    self._segments.put(step.key, text, time.monotonic())
            # A segment value seen before was valid then and is valid now: same text, same shelf.
            memo_key = (step.level, step.key, text, exp, arm) if text is not None else None
            ready = self._ready.get(memo_key) if memo_key is not None else None
            if ready is None:
                ids = ids_from(text, seg_schema)
                if ids is not None and memo_key is not None:
                    shelf = inject.Shelf(ids, step.segment, step.level, seg_schema, exp, arm)
                    ready = self._remember(memo_key, shelf)
            outcome = "hit" if ready is not None else ("miss" if text is None else "invalid")
            if remembered is None:
                record.kv_read(outcome)
            record.segment_reads.append(outcome)
            if ready is not None:
                record.segment, record.fallback = step.segment, step.level
                return ready
        record.segment, record.fallback = "", EMPTY_LEVEL
        return self.empty(exp, arm)
