"""Profile payloads written by the engine, in bulk, and checked against the schema module.

:func:`edgeshelf.schema.encode_profile` is the definition of a profile's bytes (the Worker reads
them with the same module). Calling it once per user costs the driver about 15 µs per profile,
which at ten million users is minutes. So the engine assembles the same JSON text itself
(:func:`profile_json`), from fields that already went through the schema module's normalisers
(country, language and categories via the lookup tables of :mod:`builder.ranking`), and this
module keeps that honest:

- every batch that reaches the plan has rows re-encoded with ``encode_profile`` and compared
  (:func:`verify`, the first and last row of each batch and every ``VERIFY_EVERY``-th one); a
  difference stops the run before anything is written (:class:`~builder.errors.PayloadError`);
- tests/builder/test_payloads.py compares the two on random profiles, byte for byte.

The JSON layout is ``encode_profile``'s: compact, keys sorted, ASCII; every field is a key-safe
token (``[a-z0-9_]``) or an integer, so nothing needs escaping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import ibis

from builder.errors import PayloadError
from edgeshelf.schema import PROFILE_FORMAT, encode_profile

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa

__all__ = ["VERIFY_EVERY", "profile_json", "sampled_rows", "verify"]

VERIFY_EVERY: Final = 997
"""Besides the first and last row of a batch, every this-many-th row is re-encoded."""


def profile_json(
    country: ir.StringValue,
    lang: ir.StringValue,
    bucket: ir.StringValue,
    recent: ir.ArrayValue,
    last_seen: ir.IntegerValue,
) -> ir.StringValue:
    """The text ``encode_profile`` gives for these (already normalised) fields."""
    items = recent.join('","')  # NULL for an empty list on some engines, "" on others
    listed = ibis.ifelse(recent.length() > 0, '"' + items + '"', "")
    return (
        ibis.literal('{"affinity_bucket":"')
        + bucket
        + '","country":"'
        + country
        + f'","fv":{int(PROFILE_FORMAT)},"lang":"'
        + lang
        + '","last_seen":'
        + last_seen.cast("string")
        + ',"recent_categories":['
        + listed
        + "]}"
    )


def sampled_rows(n: int) -> list[int]:
    """The rows of an ``n``-row batch that are checked: first, last, every ``VERIFY_EVERY``-th."""
    return sorted({0, n - 1, *range(VERIFY_EVERY, n, VERIFY_EVERY)}) if n else []


def verify(batch: pa.RecordBatch, value_column: str = "value") -> None:
    """Re-encode sampled rows of a profile batch with ``encode_profile``; raise on a difference."""
    rows = sampled_rows(batch.num_rows)
    if not rows:
        return
    sample = batch.take(rows).to_pylist()
    for row in sample:
        want = encode_profile(
            country=row["country"],
            lang=row["lang"],
            affinity_bucket=row["bucket"],
            recent_categories=row["recent"],
            last_seen=row["last_seen"],
        )
        if row[value_column] != want:
            raise PayloadError(
                f"u:{row['user_id']}: the engine wrote {row[value_column]!r} where "
                f"edgeshelf.schema.encode_profile writes {want!r}; nothing was published"
            )
