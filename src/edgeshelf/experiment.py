"""The experiment document and arm assignment, shared by the Worker and the builder (pure).

Part of the shared contract with :mod:`edgeshelf.schema` (which names the key,
``exp:active``): the builder validates and publishes the document (``edgeshelf-builder
experiment set``), the Worker reads it and assigns each visitor an arm, and the builder's lift
report recomputes every user's arm from their ID with the same function, so no log ever needs
a visitor ID. Standard library only: it runs under CPython and Pyodide alike.

The document::

    {"name": "shelf-2026-12", "salt": "a1", "started_at": 1764633600,
     "arms": [{"name": "control", "weight": 10, "treatment": "control"},
              {"name": "personalized", "weight": 90, "treatment": "personalized"}]}

Treatments: ``personalized`` (the visitor's segment, as without an experiment), ``control``
(the ``global`` shelf: what a visitor gets without personalization), ``none`` (no shelf: the
shell's own default content) and ``schema:<vN>`` (the visitor's segment under another segment
schema, falling back as usual). ``started_at`` (epoch seconds) is optional.

**Assignment.** ``bucket = int.from_bytes(sha256(salt + ":" + uid)[:8], "big") % 10000``;
arms own consecutive bucket ranges in document order, in proportion to their weights: arm *i*
takes the buckets ``b`` with ``C[i-1] * 10000 <= b * T < C[i] * 10000``, where ``C`` are the
cumulative weights and ``T`` their total. A visitor's arm therefore changes only when the salt
or the weights do.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final, NotRequired, TypedDict, cast

__all__ = [
    "ASSIGNMENT_BUCKETS",
    "MAX_ARMS",
    "MAX_EXPERIMENT_BYTES",
    "TREATMENTS",
    "Arm",
    "Experiment",
    "assign",
    "assignment_bucket",
    "decode_experiment",
    "encode_experiment",
    "parse_experiment",
    "treatment_schema",
]

ASSIGNMENT_BUCKETS: Final = 10_000
MAX_ARMS: Final = 8
MAX_EXPERIMENT_BYTES: Final = 4096
# Fixed treatments; `schema:<vN>` is the fourth kind.
TREATMENTS: Final = ("personalized", "control", "none")
_MAX_WEIGHT: Final = 1_000_000
_NAME_RE: Final = re.compile(r"[a-z0-9_-]{1,32}")
_SALT_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SCHEMA_TREATMENT_RE: Final = re.compile(r"schema:(v[0-9]{1,4})")


class Arm(TypedDict):
    """One arm: its name, integer weight and treatment."""

    name: str
    weight: int
    treatment: str


class Experiment(TypedDict):
    """The experiment document stored under ``exp:active``."""

    name: str
    salt: str
    arms: list[Arm]
    started_at: NotRequired[int]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def treatment_schema(treatment: str) -> str | None:
    """``"schema:v4"`` -> ``"v4"``; None for the fixed treatments (and anything else)."""
    match = _SCHEMA_TREATMENT_RE.fullmatch(treatment)
    return match.group(1) if match else None


def _arm(index: int, raw: object) -> Arm:
    if not isinstance(raw, dict):
        raise ValueError(f"arms[{index}] must be an object")
    unknown = set(raw) - {"name", "weight", "treatment"}
    if unknown:
        raise ValueError(f"arms[{index}] has unknown fields: {', '.join(sorted(unknown))}")
    name, weight, treatment = raw.get("name"), raw.get("weight"), raw.get("treatment")
    if not (isinstance(name, str) and _NAME_RE.fullmatch(name)):
        raise ValueError(f"arms[{index}].name must match [a-z0-9_-]{{1,32}}, got {name!r}")
    if not (_is_int(weight) and 0 <= cast("int", weight) <= _MAX_WEIGHT):
        raise ValueError(
            f"arms[{index}].weight must be an integer 0..{_MAX_WEIGHT}, got {weight!r}"
        )
    if not isinstance(treatment, str) or (
        treatment not in TREATMENTS and treatment_schema(treatment) is None
    ):
        raise ValueError(
            f"arms[{index}].treatment must be one of {', '.join(TREATMENTS)} or schema:v<N>, "
            f"got {treatment!r}"
        )
    return {"name": name, "weight": cast("int", weight), "treatment": treatment}


def parse_experiment(obj: object) -> Experiment:
    """Validate a decoded document; ``ValueError`` says what is wrong, field by field."""
    if not isinstance(obj, dict):
        raise ValueError("an experiment must be a JSON object")
    unknown = set(obj) - {"name", "salt", "arms", "started_at"}
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    name, salt, arms = obj.get("name"), obj.get("salt"), obj.get("arms")
    if not (isinstance(name, str) and _NAME_RE.fullmatch(name)):
        raise ValueError(f"name must match [a-z0-9_-]{{1,32}}, got {name!r}")
    if not (isinstance(salt, str) and _SALT_RE.fullmatch(salt)):
        raise ValueError(f"salt must match [A-Za-z0-9_-]{{1,64}}, got {salt!r}")
    if not isinstance(arms, list) or not 1 <= len(arms) <= MAX_ARMS:
        raise ValueError(f"arms must be a list of 1 to {MAX_ARMS} arms")
    parsed = [_arm(i, raw) for i, raw in enumerate(arms)]
    names = [arm["name"] for arm in parsed]
    if len(set(names)) != len(names):
        raise ValueError("arm names must be unique")
    if sum(arm["weight"] for arm in parsed) <= 0:
        raise ValueError("arm weights must add up to more than 0")
    experiment: Experiment = {"name": name, "salt": salt, "arms": parsed}
    if "started_at" in obj:
        started = obj["started_at"]
        if not (_is_int(started) and 0 <= started < 2**53):
            raise ValueError(f"started_at must be epoch seconds, got {started!r}")
        experiment["started_at"] = started
    return experiment


def encode_experiment(experiment: Experiment) -> str:
    """Serialise a valid document (validated again: what is written always decodes)."""
    text = json.dumps(parse_experiment(experiment), separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_EXPERIMENT_BYTES:
        raise ValueError(f"an experiment is at most {MAX_EXPERIMENT_BYTES} bytes")
    return text


def decode_experiment(text: object) -> Experiment | None:
    """The stored document, or None when it is missing, oversized or invalid in any way."""
    if not isinstance(text, str) or not text or len(text) > MAX_EXPERIMENT_BYTES:
        return None
    try:
        return parse_experiment(json.loads(text))
    except (ValueError, RecursionError):
        return None


def assignment_bucket(salt: str, uid: str) -> int:
    """The visitor's bucket in ``0..9999`` (see the module docstring for the definition)."""
    digest = hashlib.sha256(f"{salt}:{uid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % ASSIGNMENT_BUCKETS


def assign(experiment: Experiment, uid: str) -> Arm:
    """The arm a visitor ID belongs to: the same answer in the Worker and the builder."""
    arms: list[Arm] = experiment["arms"]
    scaled = assignment_bucket(experiment["salt"], uid) * sum(arm["weight"] for arm in arms)
    cumulative = 0
    for arm in arms:
        cumulative += arm["weight"]
        if scaled < cumulative * ASSIGNMENT_BUCKETS:
            return arm
    raise AssertionError("unreachable: the weights add up to more than the bucket")
