"""A shell version split around its slot, kept in isolate memory (FFI module).

A shell version's content never changes while its pointer names it, so an isolate keeps the one
it served, split around its first slot, and builds each page from ready JS Blobs: no Cache API
read and no HTML parse per request. Where the split comes from and when it is trusted is
``inject.split_marked``'s to say (pure).
"""

from __future__ import annotations

from typing import Any, Protocol

from js import Array, Blob, HTMLRewriter, Response
from pyodide.ffi import create_proxy

from . import ffi, inject
from .shellrules import page_headers

__all__ = ["ShelfBlobs", "SplitShell", "blob", "page_init", "split_shell"]

# Finished pages a split shell keeps, per shelf, within about this many characters.
_PAGE_BUDGET_CHARS = 8 * 1024 * 1024


def blob(*parts: Any) -> Any:
    """A JS Blob of the given parts (Python text is encoded once, Blobs are referenced)."""
    return Blob.new(Array.of(*parts))


def page_init(content_type: str, headers: tuple[tuple[str, str], ...]) -> Any:
    """The response init of a personalized page: the shell's kept headers and edgeshelf's own
    (one init serves every request of a shell version)."""
    return ffi.response_init(page_headers(content_type, headers))


class ShelfBlobs(Protocol):
    """A shelf's HTML as JS Blobs: its cards and payload (None for an empty shelf), its payload."""

    @property
    def cards_blob(self) -> Any: ...
    @property
    def script_blob(self) -> Any: ...


class SplitShell:
    """A shell version split around its first slot, as JS Blobs ready to concatenate.

    ``page(shelf)`` is byte for byte what the HTML rewriter would make of the shell for that
    shelf (the split is checked against two rewriter passes when it is made). The page is one
    Blob of three references, built once per shelf and kept (within ``_PAGE_BUDGET_CHARS``):
    every visitor of a segment gets the same bytes, and building a new Blob of a 1 MB shell per
    request cost the Python isolate about a third more CPU per request (bench/ab.mjs). A shell
    with no slot is kept whole. A shell whose split cannot be trusted is kept whole too, with
    ``needs_rewriter`` set: requests still skip the cache, and inject with HTMLRewriter.
    ``init`` holds the page's response headers, the origin's kept ones included.
    """

    __slots__ = (
        "_max_pages", "_pages", "after", "before", "before_inner", "cards_slot", "content_type",
        "headers", "init", "needs_rewriter", "whole",
    )  # fmt: skip

    def __init__(
        self, parts: tuple[str, str, str] | None, text: str, cards_slot: bool, content_type: str,
        headers: tuple[tuple[str, str], ...] = (), needs_rewriter: bool = False,
    ) -> None:  # fmt: skip
        self.content_type = content_type
        self.headers = headers
        self.init = page_init(content_type, headers)
        self.cards_slot = cards_slot
        self.needs_rewriter = needs_rewriter
        # Keyed by the shelf object itself: the dict holds it, so its identity is never reused.
        self._pages: dict[ShelfBlobs, Any] = {}
        self._max_pages = max(1, _PAGE_BUDGET_CHARS // max(1, len(text)))
        if parts is None:  # no slot, or a split not to be trusted: the shell as it is
            self.whole = blob(text)
            self.before = self.before_inner = self.after = None
        else:
            before, inner, after = parts
            self.whole = None
            self.before = blob(before)
            self.before_inner = blob(self.before, inner)
            self.after = blob(after)

    def page(self, shelf: ShelfBlobs) -> Any:
        """The page for ``shelf``: its cards (when it has any and the slot renders them) or its
        payload alone in the slot."""
        if self.whole is not None:
            return self.whole
        pages = self._pages
        page = pages.get(shelf)
        if page is None:
            if len(pages) >= self._max_pages:
                del pages[next(iter(pages))]
            if shelf.cards_blob is not None and self.cards_slot:
                page = blob(self.before, shelf.cards_blob, self.after)
            else:
                page = blob(self.before_inner, shelf.script_blob, self.after)
            pages[shelf] = page
        return page


class _SplitPass:
    """One-off HTMLRewriter handler marking the first slot (see ``inject.split_marked``)."""

    def __init__(self, markers: tuple[str, str, str], replace: bool, html_opts: Any) -> None:
        self.markers = markers
        self.replace = replace
        self.html_opts = html_opts
        self.done = False
        self.cards = False

    def element(self, el: Any) -> None:
        if self.done:
            return
        self.done = True
        self.cards = ffi.attribute(el, inject.RENDER_ATTR) == "cards"
        if self.replace:
            el.setInnerContent(self.markers[2], self.html_opts)
        else:
            el.prepend(self.markers[0], self.html_opts)
            el.append(self.markers[1], self.html_opts)


async def _rewrite(text: str, handler: _SplitPass) -> str:
    proxy = create_proxy(handler)
    try:
        out = HTMLRewriter.new().on(inject.SLOT_SELECTOR, proxy).transform(Response.new(text))
        return str(await out.text())
    finally:
        proxy.destroy()


async def split_shell(
    text: str, content_type: str, headers: tuple[tuple[str, str], ...],
    markers: tuple[str, str, str], html_opts: Any,
) -> SplitShell:  # fmt: skip
    """Split a shell around its slot with two rewriter passes (see ``SplitShell``)."""
    first = _SplitPass(markers, False, html_opts)
    prepended = await _rewrite(text, first)
    parts = None  # no slot: served as it is
    if first.done:
        replaced = await _rewrite(text, _SplitPass(markers, True, html_opts))
        parts = inject.split_marked(prepended, replaced, markers)
    untrusted = first.done and parts is None
    return SplitShell(
        parts, text, first.cards, content_type, headers=headers, needs_rewriter=untrusted
    )
