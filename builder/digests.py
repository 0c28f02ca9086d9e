"""What the state remembers of a value: its digest, defined once, made in Python or by the engine.

A state row's ``hash`` is the SHA-1 of ``"<ttl>\\n<value>"`` in UTF-8 (20 bytes), so a change of
TTL is a change too. The profiles' digests are made by the engine as it streams them
(:func:`digest_expr`; SHA-1 is built into DuckDB and Spark): at ten million keys, a Python call
per value was most of the Python work of a first run's plan. Python makes the same digest for
the few segment keys (:func:`value_hashes`) and re-makes it for sampled profile rows, which must
agree (:func:`verify`): the engine's text and Python's are one definition, checked every batch.

The digest only tells the builder's own output apart from its last confirmed output; it
authenticates nothing. (A collision would make a run skip one write; a profile is short JSON of
normalised fields, with no room for the blocks a crafted SHA-1 collision needs.) Of the digests
both engines have built in, SHA-1 is as cheap as MD5, and DuckDB's SHA-256 costs about twice as
much; MD5's 16 bytes could not be told apart from the older digests below.

States written before this digest (state format 1) hold BLAKE2b-128 digests of the same text,
16 bytes. A row is compared by the digest it holds (:func:`as_current`) and gets the SHA-1 when
its key is next written (a change or a TTL refresh), so an upgrade rewrites no key.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final

import ibis
import ibis.expr.datatypes as dt

from builder.errors import PayloadError

if TYPE_CHECKING:
    from collections.abc import Iterable

    import ibis.expr.types as ir
    import pyarrow as pa

__all__ = [
    "DIGEST_BYTES",
    "LEGACY_DIGEST_BYTES",
    "as_current",
    "digest_expr",
    "legacy_hash",
    "value_hash",
    "value_hashes",
    "verify",
]

DIGEST_BYTES: Final = 20
LEGACY_DIGEST_BYTES: Final = 16


def value_hashes(values: Iterable[str], ttl: int) -> list[bytes]:
    """The digest of each value for a key with this TTL (a batch shares its TTL)."""
    prefix, sha1 = f"{ttl}\n", hashlib.sha1
    return [sha1((prefix + value).encode(), usedforsecurity=False).digest() for value in values]


def value_hash(value: str, ttl: int) -> bytes:
    """:func:`value_hashes` of one value."""
    return value_hashes((value,), ttl)[0]


def legacy_hash(value: str, ttl: int) -> bytes:
    """The digest state format 1 kept: BLAKE2b-128 of the same text."""
    return hashlib.blake2b(f"{ttl}\n{value}".encode(), digest_size=LEGACY_DIGEST_BYTES).digest()


def as_current(old: bytes, value: str, ttl: int, digest: bytes) -> bytes:
    """A state row's digest ``old`` as the current digest format, for comparing with ``digest``.

    ``digest`` is :func:`value_hash` of ``value``. A legacy digest of this very value counts as
    ``digest``; any other stays as it is (and differs from ``digest``: the value changed).
    """
    if len(old) == LEGACY_DIGEST_BYTES and old == legacy_hash(value, ttl):
        return digest
    return old


@ibis.udf.scalar.builtin(name="sha1")  # type: ignore[untyped-decorator]
def _sha1(text: str) -> str:  # type: ignore[empty-body]
    """The SHA-1 of a text's UTF-8 bytes, in hexadecimal (DuckDB's and Spark's own ``sha1``)."""


@ibis.udf.scalar.builtin(name="unhex")  # type: ignore[untyped-decorator]
def _unhex(text: str) -> dt.Binary:
    """The bytes a hexadecimal text spells (DuckDB's and Spark's own ``unhex``)."""


def digest_expr(value: ir.StringValue, ttl: int) -> ir.BinaryValue:
    """:func:`value_hash` of each value, made by the engine."""
    digest: ir.BinaryValue = _unhex(_sha1(ibis.literal(f"{ttl}\n") + value))
    return digest


def verify(batch: pa.RecordBatch, rows: Iterable[int], ttl: int) -> None:
    """Raise PayloadError if the engine's ``digest`` of a sampled row is not :func:`value_hash`."""
    values, digests = batch.column("value"), batch.column("digest")
    for i in rows:
        value, made = values[i].as_py(), digests[i].as_py()
        if made != value_hash(value, ttl):
            raise PayloadError(
                f"the engine's digest of {value!r} is {bytes(made or b'').hex()}, not SHA-1 "
                "of the TTL and the value; nothing was published"
            )
