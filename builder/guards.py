"""The mass-deletion guard that ``run`` and ``gc`` share, and the ``--max-delete`` that passes it.

An export that came out empty or truncated looks to the diff exactly like a catalogue of users
who all left, and a mistyped ``gc --keep`` like a schema nobody reads any more. Either would
delete most of what the Worker reads, so both refuse to delete more than a share of what is
published (when that is over :data:`MASS_DELETE_FLOOR` keys) unless told a larger share.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MASS_DELETE_FLOOR",
    "MAX_DELETE_FRACTION",
    "deletion_allowed",
    "mass_delete",
    "max_delete_hint",
]

MAX_DELETE_FRACTION: Final = 0.25
MASS_DELETE_FLOOR: Final = 1000


def deletion_allowed(deleted: int, published: int, fraction: float) -> bool:
    """Whether deleting ``deleted`` of ``published`` keys is within ``--max-delete fraction``."""
    return deleted <= max(MASS_DELETE_FLOOR, fraction * published)


def max_delete_hint(deleted: int, published: int) -> float:
    """The smallest ``--max-delete`` with two decimals that lets the deletion through.

    Rounding the share (2549 of 10,000 printed as 0.25) would name a value that is refused
    again; the share is rounded up, then checked with :func:`deletion_allowed` itself, which
    also absorbs float error (0.29 * 100 is 28.999...).
    """
    hundredths = -(-deleted * 100 // max(published, 1))
    while hundredths < 100 and not deletion_allowed(deleted, published, hundredths / 100):
        hundredths += 1
    return min(hundredths, 100) / 100


def mass_delete(
    deleted: int, published: int, fraction: float, *, doing: str, keys: str, question: str
) -> str | None:
    """``None`` if allowed, else the refusal: "<doing> N of M <keys> (P%); <question> ..."."""
    if deletion_allowed(deleted, published, fraction):
        return None
    return (
        f"{doing} {deleted} of {published} {keys} ({deleted / max(published, 1):.0%}); "
        f"{question} If it is intended, rerun with "
        f"--max-delete {max_delete_hint(deleted, published):.2f}"
    )
