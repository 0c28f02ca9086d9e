"""The segment fallback chain: which keys to read, in order, and what a read yields (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

from . import schema

if TYPE_CHECKING:
    from .profile import Audience

__all__ = ["EMPTY_LEVEL", "LEVELS", "Step", "chain_for", "ids_from"]

# Fallback levels: 0 the audience's own segment, 1 its country+language default, 2 the global
# default, 3 nothing (the shell's own default content stays).
LEVELS: Final = ("exact", "lang-default", "global", "none")
EMPTY_LEVEL: Final = 3


class Step(NamedTuple):
    level: int
    segment: str
    key: str


def chain_for(audience: Audience, seg_schema: str) -> list[Step]:
    exact = schema.segment_id(audience.country, audience.lang, audience.bucket)
    lang_default = schema.segment_id(audience.country, audience.lang, schema.DEFAULT_BUCKET)
    steps = [Step(0, exact, schema.segment_key(exact, seg_schema))]
    if lang_default != exact:
        steps.append(Step(1, lang_default, schema.segment_key(lang_default, seg_schema)))
    steps.append(
        Step(2, schema.GLOBAL_SEGMENT, schema.segment_key(schema.GLOBAL_SEGMENT, seg_schema))
    )
    return steps


def ids_from(text: str | None, seg_schema: str) -> list[str] | None:
    """The shelf's IDs from a stored segment, or None when it is missing, corrupt or empty."""
    if text is None:
        return None
    segment = schema.decode_segment(text, seg_schema)
    if segment is None or not segment["ids"]:
        return None
    return segment["ids"]
