"""Which shelf each treatment showed, as the report and the simulation reconstruct it."""

from __future__ import annotations

import pytest

from builder.shelves import Shelf, audience_from_event, shown_shelf

SHELVES = {
    "v3": {"us-en-music": ["a"], "us-en-default": ["b"], "fr-fr-default": [], "global": ["g"]},
    "v4": {"global": ["g4"]},
}


@pytest.mark.parametrize(
    ("treatment", "audience", "want"),
    [
        ("personalized", ("us", "en", "music"), Shelf("v3", "us-en-music")),
        ("personalized", ("us", "en", "gaming"), Shelf("v3", "us-en-default")),
        ("personalized", ("fr", "fr", "music"), Shelf("v3", "global")),  # empty default skipped
        ("control", ("us", "en", "music"), Shelf("v3", "global")),
        ("none", ("us", "en", "music"), None),
        ("schema:v4", ("us", "en", "music"), Shelf("v4", "global")),
    ],
)
def test_each_treatment_follows_the_workers_rule(treatment, audience, want):
    """personalized and schema:vN walk the fallback chain, control is global, none is nothing."""
    assert shown_shelf(treatment, audience, SHELVES, "v3") == want


def test_unknown_schemas_and_treatments_are_errors_not_guesses():
    """A schema with no shelves given raises KeyError; an unknown treatment ValueError."""
    with pytest.raises(KeyError):
        shown_shelf("schema:v9", ("us", "en", "music"), SHELVES, "v3")
    with pytest.raises(ValueError, match="unknown treatment"):
        shown_shelf("magic", ("us", "en", "music"), SHELVES, "v3")


def test_a_visitor_without_profile_is_placed_by_request_signals():
    """Country and language of the event, normalised as the Worker does, in the default bucket."""
    assert audience_from_event("US", "en-GB") == ("us", "en", "default")
    assert audience_from_event(None, "??") == ("xx", "xx", "default")
