"""Which shelf an arm showed a visitor, reconstructed in the builder (report and simulation).

The Worker serves, per treatment (see :mod:`edgeshelf.experiment`): ``personalized`` the first
non-empty segment along the fallback chain of :func:`edgeshelf.schema.segment_chain` (exact ->
``<country>-<lang>-default`` -> ``global``) under its ``SEGMENT_SCHEMA``; ``control`` the
``global`` segment; ``none`` no shelf; ``schema:vN`` the same chain over segments of ``vN``.
A visitor with a profile is placed by it; one without is placed by request signals (country
and language) in the ``default`` bucket: from watch events, those of the user's first event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from edgeshelf.experiment import treatment_schema
from edgeshelf.schema import (
    DEFAULT_BUCKET,
    GLOBAL_SEGMENT,
    normalize_country,
    normalize_lang,
    segment_chain,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from edgeshelf.profile import Audience

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


def _first_nonempty(
    chain: Sequence[str], segments: Mapping[str, Sequence[str]], seg_schema: str
) -> Shelf | None:
    for segment in chain:
        if segments.get(segment):
            return Shelf(seg_schema, segment)
    return None


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
    if treatment == "none":
        return None
    if treatment == "control":
        return _first_nonempty([GLOBAL_SEGMENT], shelves[default_schema], default_schema)
    seg_schema = default_schema if treatment == "personalized" else treatment_schema(treatment)
    if seg_schema is None:
        raise ValueError(f"unknown treatment {treatment!r}")
    return _first_nonempty(segment_chain(country, lang, bucket), shelves[seg_schema], seg_schema)
