"""Which shelf an arm showed a visitor, reconstructed in the builder (report and simulation).

The treatment's chain is :func:`edgeshelf.segments.treatment_chain`, the Worker's own: the
shelf shown is its first step whose segment has videos. A visitor with a profile is placed by
it; one without is placed by request signals (country and language) in the ``default``
bucket: from watch events, those of the user's first event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from edgeshelf.profile import Audience
from edgeshelf.schema import DEFAULT_BUCKET, normalize_country, normalize_lang
from edgeshelf.segments import treatment_chain

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["SegmentShelves", "Shelf", "audience_from_event", "shown_shelf"]

SegmentShelves = dict[str, dict[str, list[str]]]
"""Segment shelves per schema: ``{"v3": {"us-en-music": ["vid", ...], ...}, ...}``."""


class Shelf(NamedTuple):
    """The shelf a visitor was shown: the segment and the schema it was read under."""

    schema: str
    segment: str


def audience_from_event(country: object, lang: object) -> tuple[str, str, str]:
    """The audience of a visitor without a profile, from one event's raw country and language."""
    return normalize_country(country), normalize_lang(lang), DEFAULT_BUCKET


def shown_shelf(
    treatment: str,
    audience: Audience | tuple[str, str, str],
    shelves: Mapping[str, Mapping[str, Sequence[str]]],
    default_schema: str,
) -> Shelf | None:
    """The shelf ``treatment`` showed this audience; None when it showed none.

    ``shelves`` maps each schema to its segments; ``default_schema`` is the Worker's
    ``SEGMENT_SCHEMA`` (read by ``personalized`` and ``control``). A schema missing from
    ``shelves`` raises ``KeyError``: the caller decides whether that is an error.
    """
    country, lang, bucket = audience[0], audience[1], audience[2]
    seg_schema, chain = treatment_chain(
        treatment, Audience(country, lang, bucket, "kv"), default_schema
    )
    if not chain:
        return None
    segments = shelves[seg_schema]
    for step in chain:
        if segments.get(step.segment):
            return Shelf(seg_schema, step.segment)
    return None
