"""What is injected into the shell: a script payload and cards that no content can break out of."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st

from edgeshelf import inject
from edgeshelf.inject import Shelf, cards_html, script_html
from tests.unit.strategies import FAST, hostile_text

OPEN = '<script type="application/json" id="edgeshelf-shelf">'
CLOSE = "</script>"

XSS = [
    "</script><script>alert(1)</script>",
    "</SCRIPT >",
    "<!--",
    "-->",
    "<![CDATA[",
    "&lt;",
    '"><img src=x onerror=alert(1)>',
    "\u2028\u2029",
    "\ud800",
]


def _payload(html: str) -> str:
    assert html.startswith(OPEN)
    assert html.endswith(CLOSE)
    return html[len(OPEN) : -len(CLOSE)]


def test_marker_constants() -> None:
    """The slot marker and the selector the HTMLRewriter uses are the documented ones."""
    assert inject.SLOT_ATTR == "data-edgeshelf-slot"
    assert inject.RENDER_ATTR == "data-edgeshelf-render"
    assert inject.SLOT_SELECTOR == "[data-edgeshelf-slot]"
    assert inject.SCRIPT_ID == "edgeshelf-shelf"


def test_script_html_of_a_plain_shelf() -> None:
    """A normal shelf is compact JSON with the IDs, segment, fallback level, schema and arm."""
    html = script_html(Shelf(["a1", "b2"], "us-en-music", 1, "v3"))
    assert html == (
        OPEN + '{"ids":["a1","b2"],"segment":"us-en-music","fallback":1,"schema":"v3",'
        '"exp":null,"arm":null}' + CLOSE
    )
    enrolled = script_html(Shelf([], "", 3, "v3", "shelf-2026-12", "holdout"))
    assert enrolled.endswith('"exp":"shelf-2026-12","arm":"holdout"}' + CLOSE)


@FAST
@given(
    st.lists(st.one_of(hostile_text, st.sampled_from(XSS)), max_size=8),
    st.one_of(hostile_text, st.sampled_from(XSS)),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.one_of(hostile_text, st.sampled_from(XSS)),
    st.one_of(st.none(), hostile_text, st.sampled_from(XSS)),
)
def test_script_payload_cannot_break_out(
    ids: list[str], segment: str, fallback: int, seg_schema: str, arm: str | None
) -> None:
    """Whatever the content, the payload has no markup characters and parses back to the input."""
    html = script_html(Shelf(ids, segment, fallback, seg_schema, arm, arm))
    payload = _payload(html)
    assert "</script" not in html.lower()[: -len(CLOSE)]
    assert "<!--" not in html
    assert not set(payload) & {"<", ">", "&"}
    assert payload.isascii()
    assert "\n" not in payload
    assert json.loads(payload) == {
        "ids": ids,
        "segment": segment,
        "fallback": fallback,
        "schema": seg_schema,
        "exp": arm,
        "arm": arm,
    }


def test_script_payload_of_known_attacks() -> None:
    """Classic script-breaking strings come out as JSON unicode escapes and nothing else."""
    html = script_html(Shelf(XSS, "</script>", 3, "<!--"))
    payload = _payload(html)
    assert "\\u003c/script\\u003e" in payload
    assert "\\u2028\\u2029" in payload
    assert json.loads(payload)["ids"] == XSS


class _Cards(HTMLParser):
    """Collects each card's link target and thumbnail text, as a browser would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.thumbs: list[str] = []
        self.tags: list[str] = []
        self._in_thumb = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "a":
            self.hrefs.append(attributes["href"] or "")
        if tag == "div" and attributes.get("class") == "thumb":
            self._in_thumb = True
            self.thumbs.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            self._in_thumb = False

    def handle_data(self, data: str) -> None:
        if self._in_thumb:
            self.thumbs[-1] += data


_IDS = st.one_of(hostile_text.map(lambda s: s[:40]), st.sampled_from(XSS))


@FAST
@given(st.lists(_IDS, max_size=6))
def test_cards_html_escapes_every_id(ids: list[str]) -> None:
    """Any ID renders only as text and attribute values: the markup is exactly the template's."""
    html = cards_html(ids)
    assert html.count("<") == 4 + 8 * len(ids)
    assert html.count(">") == 4 + 8 * len(ids)
    assert html.count('"') == 6 + 6 * len(ids)
    assert "'" not in html
    parser = _Cards()
    parser.feed(html)
    parser.close()
    assert parser.tags == ["h2", "ul"] + ["li", "a", "div", "span"] * len(ids)
    assert parser.hrefs == [f"/watch/{vid}" for vid in ids]
    assert parser.thumbs == ids


def test_cards_html_of_an_empty_shelf() -> None:
    """No IDs give the heading and an empty list, not broken markup."""
    assert cards_html([]) == (
        '<h2 id="shelf-title">Picked for you</h2>'
        '<ul class="row es-rendered" id="edgeshelf-cards"></ul>'
    )


# --- the split of a shell around its slot ---------------------------------------------------

MARKERS = inject.split_markers("n0nce")
START, END, INNER = MARKERS


def test_split_markers_are_html_comments_carrying_the_nonce() -> None:
    assert len(set(MARKERS)) == 3
    for marker in MARKERS:
        assert marker.startswith("<!--")
        assert marker.endswith("-->")
        assert "n0nce" in marker
    assert inject.split_markers("other") != MARKERS


def test_split_marked_of_a_plain_slot() -> None:
    prepended = f"<body><div slot>{START}<p>default</p>{END}</div></body>"
    replaced = f"<body><div slot>{INNER}</div></body>"
    assert inject.split_marked(prepended, replaced, MARKERS) == (
        "<body><div slot>",
        "<p>default</p>",
        "</div></body>",
    )


_no_markers = st.text(max_size=40).filter(lambda t: "<!--" not in t)


@FAST
@given(_no_markers, _no_markers, _no_markers)
def test_split_marked_recovers_any_before_inner_after(before: str, inner: str, after: str) -> None:
    """Whatever surrounds the slot, the split gives back exactly the three parts."""
    prepended = before + START + inner + END + after
    replaced = before + INNER + after
    assert inject.split_marked(prepended, replaced, MARKERS) == (before, inner, after)


def test_split_marked_refuses_what_it_cannot_trust() -> None:
    """Missing, repeated or reordered markers, or passes that disagree: no split."""
    good_replaced = f"a{INNER}c"
    cases = [
        ("abc", "abc"),  # no slot: the caller serves the shell whole instead
        (f"a{START}b", good_replaced),  # end marker missing
        (f"a{START}{START}b{END}c", good_replaced),  # the shell itself contains the marker
        (f"a{START}b{END}c{END}", good_replaced),
        (f"a{END}b{START}c", good_replaced),  # reordered
        (f"a{START}b{END}c", "a-c"),  # the replacing pass put its marker elsewhere
        (f"a{START}b{END}c", f"a{INNER}{INNER}c"),
    ]
    for prepended, replaced in cases:
        assert inject.split_marked(prepended, replaced, MARKERS) is None, prepended
