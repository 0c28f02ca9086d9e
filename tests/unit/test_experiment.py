"""The experiment document and arm assignment: one definition for the Worker and the builder."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf import experiment as exp
from tests.unit.strategies import FAST

DOC = {
    "name": "shelf-2026-12",
    "salt": "a1",
    "arms": [
        {"name": "control", "weight": 10, "treatment": "control"},
        {"name": "personalized", "weight": 90, "treatment": "personalized"},
    ],
}


def _uids(n: int, seed: int = 7) -> list[str]:
    """Deterministic version-4 UUIDs (as the Worker mints them), so results never flake."""
    import random  # noqa: PLC0415

    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def test_the_example_document_parses_and_round_trips():
    """The issue's example is valid and survives encode -> decode unchanged."""
    parsed = exp.parse_experiment(DOC)
    assert exp.decode_experiment(exp.encode_experiment(parsed)) == parsed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arms": [{"name": "a", "weight": 0, "treatment": "control"}]}, "more than 0"),
        ({"arms": [{"name": "a", "weight": 1, "treatment": "magic"}]}, "treatment"),
        ({"arms": [{"name": "a", "weight": 1.5, "treatment": "none"}]}, "weight"),
        ({"arms": [{"name": "a", "weight": True, "treatment": "none"}]}, "weight"),
        ({"arms": [{"name": "a", "weight": -1, "treatment": "none"}]}, "weight"),
        ({"arms": [{"name": "A!", "weight": 1, "treatment": "none"}]}, "name"),
        ({"arms": [{"name": "a", "weight": 1, "treatment": "schema:3"}]}, "treatment"),
        ({"arms": [{"name": "a", "weight": 1, "treatment": "none", "x": 1}]}, "unknown"),
        ({"arms": [{"name": "a", "weight": 1, "treatment": "none"}] * 2}, "unique"),
        (
            {"arms": [{"name": f"a{i}", "weight": 1, "treatment": "none"} for i in range(9)]},
            "1 to 8",
        ),
        ({"arms": []}, "1 to 8"),
        ({"salt": "a b"}, "salt"),
        ({"name": "x" * 33}, "name"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"extra": 1}, "unknown"),
    ],
)
def test_invalid_documents_are_refused_with_the_reason(change, message):
    """Each malformed field is refused by name, so the builder can say what to fix."""
    with pytest.raises(ValueError, match=message):
        exp.parse_experiment({**DOC, **change})
    assert exp.decode_experiment(json.dumps({**DOC, **change})) is None


@pytest.mark.parametrize("text", [None, "", "null", "[]", "{", "x" * 5000, '{"name":1}'])
def test_junk_decodes_to_no_experiment(text):
    """Whatever sits in KV, the Worker gets a valid document or None, never an exception."""
    assert exp.decode_experiment(text) is None


def test_schema_treatments_name_their_schema():
    """A canary arm's treatment names the segment schema it reads."""
    assert exp.treatment_schema("schema:v4") == "v4"
    assert exp.treatment_schema("control") is None
    assert exp.treatment_schema("schema:v") is None


def test_assignment_is_sticky_and_follows_the_salt():
    """The same ID gets the same bucket every time; a new salt reshuffles the buckets."""
    uids = _uids(2000)
    first = [exp.assignment_bucket("a1", u) for u in uids]
    assert first == [exp.assignment_bucket("a1", u) for u in uids]
    assert all(0 <= b < exp.ASSIGNMENT_BUCKETS for b in first)
    salted = [exp.assignment_bucket("b2", u) for u in uids]
    moved = sum(a != b for a, b in zip(first, salted, strict=True))
    assert moved > 1900


def test_arms_take_bucket_ranges_by_cumulative_weight():
    """Buckets below 10% go to a 10-weight first arm, the rest to a 90-weight second one."""
    experiment = exp.parse_experiment(DOC)
    for uid in _uids(3000):
        bucket = exp.assignment_bucket(experiment["salt"], uid)
        expected = "control" if bucket < 1000 else "personalized"
        assert exp.assign(experiment, uid)["name"] == expected


def test_a_zero_weight_arm_gets_nobody():
    """An arm weighted 0 is kept in the document but never assigned."""
    doc = {**DOC, "arms": [*DOC["arms"], {"name": "off", "weight": 0, "treatment": "none"}]}
    experiment = exp.parse_experiment(doc)
    assert all(exp.assign(experiment, u)["name"] != "off" for u in _uids(3000))


@pytest.mark.cpython_only
def test_buckets_are_uniform_over_100000_ids():
    """A chi-square test finds no departure from uniform buckets (ten bins) over 100,000 IDs."""
    from scipy.stats import chisquare  # noqa: PLC0415

    bins = [0] * 10
    for uid in _uids(100_000, seed=11):
        bins[exp.assignment_bucket("a1", uid) // 1000] += 1
    assert chisquare(bins).pvalue > 0.001
    counts = {"control": 0, "personalized": 0}
    experiment = exp.parse_experiment(DOC)
    for uid in _uids(100_000, seed=12):
        counts[exp.assign(experiment, uid)["name"]] += 1
    assert chisquare([counts["control"], counts["personalized"]], [10_000, 90_000]).pvalue > 0.001


@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1000), st.sampled_from(["personalized", "control", "none", "schema:v9"])
        ),
        min_size=1,
        max_size=8,
    ).filter(lambda arms: sum(w for w, _ in arms) > 0),
    st.uuids(version=4).map(str),
)
def test_every_id_lands_in_an_arm_with_weight(arms, uid):
    """Any valid document assigns any ID to exactly one arm, and never to a zero-weight one."""
    doc = {
        "name": "e",
        "salt": "s",
        "arms": [{"name": f"a{i}", "weight": w, "treatment": t} for i, (w, t) in enumerate(arms)],
    }
    experiment = exp.parse_experiment(doc)
    arm = exp.assign(experiment, uid)
    assert arm in experiment["arms"]
    assert arm["weight"] > 0
    assert exp.decode_experiment(exp.encode_experiment(experiment)) == experiment
