"""The segment fallback chain: which keys to read, in order, and what a read yields (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

from . import schema
from .experiment import treatment_schema

if TYPE_CHECKING:
    from .profile import Audience

__all__ = ["EMPTY_LEVEL", "LEVELS", "Step", "chain_for", "ids_from", "treatment_chain"]

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


def treatment_chain(treatment: str, audience: Audience, seg_schema: str) -> tuple[str, list[Step]]:
    """The segment schema and fallback chain an experiment treatment reads for this audience.

    ``personalized``: :func:`chain_for` under ``seg_schema``; ``control``: the ``global``
    segment alone; ``none``: no chain (the shell keeps its own default content);
    ``schema:vN``: :func:`chain_for` under ``vN``. The Worker serves the first step found, the
    builder's lift report reconstructs the same shelf from it. ValueError on anything else.
    """
    if treatment == "personalized":
        return seg_schema, chain_for(audience, seg_schema)
    if treatment == "control":
        key = schema.segment_key(schema.GLOBAL_SEGMENT, seg_schema)
        return seg_schema, [Step(2, schema.GLOBAL_SEGMENT, key)]
    if treatment == "none":
        return seg_schema, []
    other = treatment_schema(treatment)
    if other is None:
        raise ValueError(f"unknown treatment {treatment!r}")
    return other, chain_for(audience, other)


def ids_from(text: str | None, seg_schema: str) -> list[str] | None:
    """The shelf's IDs from a stored segment, or None when it is missing, corrupt or empty."""
    if text is None:
        return None
    segment = schema.decode_segment(text, seg_schema)
    if segment is None or not segment["ids"]:
        return None
    return segment["ids"]
