"""Which profile a request is served with: the stored one, or one from request signals (pure)."""

from __future__ import annotations

from typing import Final, NamedTuple

from . import schema

__all__ = ["Audience", "audience_for", "best_language"]

_MAX_LANG_ENTRIES: Final = 32


class Audience(NamedTuple):
    """The three parts a segment is chosen by, plus where they came from."""

    country: str
    lang: str
    bucket: str
    source: str  # "kv": a stored profile; "request": cf.country and Accept-Language


def best_language(accept_language: str | None) -> str:
    """The primary subtag of the highest-q language (first wins ties); ``xx`` if none."""
    if not accept_language:
        return schema.UNKNOWN_LANG
    best, best_q = schema.UNKNOWN_LANG, 0.0
    for entry in accept_language[:2048].split(",")[:_MAX_LANG_ENTRIES]:
        tag, _, params = entry.partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        q = 1.0
        params = params.strip()
        if params:
            name, _, value = params.partition("=")
            if name.strip().lower() != "q":
                continue
            try:
                q = float(value.strip())
            except ValueError:
                continue
            if not 0.0 <= q <= 1.0:  # also rejects nan
                continue
        lang = schema.normalize_lang(tag)
        if lang != schema.UNKNOWN_LANG and q > best_q:
            best, best_q = lang, q
    return best


def audience_for(
    profile_text: str | None, country: str | None, accept_language: str | None
) -> Audience:
    """The stored profile's parts where it has them, the request's signals for the rest.

    A stored profile (``schema.read_profile``: lenient, normalised) makes a ``kv`` audience; a
    country or language it lacks comes from ``request.cf.country`` and ``Accept-Language``, as
    does the whole audience (``request``, bucket ``default``) when there is no usable profile.
    """
    stored = schema.read_profile(profile_text) if profile_text is not None else None
    if stored is None:
        return Audience(
            schema.normalize_country(country),
            best_language(accept_language),
            schema.DEFAULT_BUCKET,
            "request",
        )
    return Audience(
        stored.country if stored.country is not None else schema.normalize_country(country),
        stored.lang if stored.lang is not None else best_language(accept_language),
        stored.bucket,
        "kv",
    )
