"""Starting, reading and stopping the experiment the Worker serves (``exp:active`` in KV).

The document and its validation are :mod:`edgeshelf.experiment`'s (shared with the Worker);
this module adds what only the builder can check before publishing, because it needs KV: a
``schema:vN`` arm is refused unless segments of ``vN`` were published (``seg:global:vN`` holds a
valid segment), since such an arm would otherwise fall back to nothing for every visitor.

``started_at`` is the start of the report's window. ``set`` records the current time unless the
file gives one, or unless the very same experiment (name, salt and arms) is already active, in
which case its recorded start is kept: re-running the same ``set`` must not move the window.
Any other change of salt or weights moves visitors between arms, so it restarts the window.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from builder.cloudflare import MAX_BULK_GET, KVClient
from builder.errors import APIError, InputError
from builder.limiter import DEFAULT_LIMIT
from builder.publish import PublishOptions, Retrier
from edgeshelf.experiment import (
    MAX_EXPERIMENT_BYTES,
    Experiment,
    decode_experiment,
    encode_experiment,
    parse_experiment,
    treatment_schema,
)
from edgeshelf.schema import (
    EXPERIMENT_KEY,
    GLOBAL_SEGMENT,
    SEGMENT_PREFIX,
    decode_segment,
    segment_key,
    segment_key_schema,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ActiveExperiment",
    "SetResult",
    "invalid_reason",
    "load_experiment_file",
    "read_experiment",
    "read_segments",
    "set_experiment",
    "stop_experiment",
]

# A document file is small; anything much larger is the wrong file, not an experiment.
_MAX_FILE_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class ActiveExperiment:
    """What ``exp:active`` holds: the valid document, or the raw text when it is invalid."""

    experiment: Experiment | None
    raw: str | None

    @property
    def present(self) -> bool:
        return self.raw is not None


@dataclass(frozen=True)
class SetResult:
    """What ``set_experiment`` wrote and what it replaced."""

    experiment: Experiment
    replaced: Experiment | None
    kept_start: bool


def load_experiment_file(path: Path) -> Experiment:
    """Read and validate a document file; ``InputError`` names the file and the bad field."""
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=where) from exc
    if len(data) > _MAX_FILE_BYTES:
        raise InputError(f"is {len(data)} bytes; an experiment is a small JSON file", file=where)
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 ({exc.reason} at byte {exc.start})", file=where) from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", file=where
        ) from exc
    except RecursionError as exc:
        raise InputError("not JSON: nested too deeply", file=where) from exc
    try:
        return parse_experiment(obj)
    except ValueError as exc:
        raise InputError(str(exc), file=where) from exc


def invalid_reason(text: str | None) -> str:
    """Why a stored document does not validate (what ``experiment show`` reports)."""
    if text is None:
        return "missing"
    if len(text) > MAX_EXPERIMENT_BYTES:
        return f"over {MAX_EXPERIMENT_BYTES} bytes"
    try:
        parse_experiment(json.loads(text))
    except (ValueError, RecursionError) as exc:
        return str(exc) if isinstance(exc, ValueError) else "nested too deeply"
    return "valid"


def read_experiment(
    kv: KVClient, *, rate_limit: int = DEFAULT_LIMIT, options: PublishOptions | None = None
) -> ActiveExperiment:
    """The document under ``exp:active`` as the Worker would see it (None when invalid)."""
    raw = Retrier.with_limit(rate_limit, options).call(lambda: kv.get_value(EXPERIMENT_KEY))
    if raw is None:
        return ActiveExperiment(None, None)
    text = raw.decode("utf-8", errors="replace")
    return ActiveExperiment(decode_experiment(text), text)


def _check_schema_arms(experiment: Experiment, kv: KVClient, retrier: Retrier, file: str) -> None:
    for index, arm in enumerate(experiment["arms"]):
        seg_schema = treatment_schema(arm["treatment"])
        if seg_schema is None:
            continue
        key = segment_key(GLOBAL_SEGMENT, seg_schema)
        raw = retrier.call(functools.partial(kv.get_value, key))
        text = raw.decode("utf-8", errors="replace") if raw is not None else None
        if text is None or decode_segment(text, seg_schema) is None:
            state = "is missing" if text is None else "is not a valid segment"
            raise InputError(
                f"arms[{index}] ({arm['name']}) serves {arm['treatment']}, but {key} {state}: "
                f"no segments of {seg_schema} were published (run the builder with "
                f"--schema {seg_schema} first)",
                file=file,
            )


def _same_assignment(a: Experiment, b: Experiment) -> bool:
    return (a["name"], a["salt"], a["arms"]) == (b["name"], b["salt"], b["arms"])


def set_experiment(
    kv: KVClient,
    experiment: Experiment,
    *,
    source: str = "the experiment",
    now: int | None = None,
    rate_limit: int = DEFAULT_LIMIT,
    options: PublishOptions | None = None,
) -> SetResult:
    """Check ``experiment`` against KV, record its start and write it to ``exp:active``.

    ``source`` names the document in error messages (the file it came from).
    """
    experiment = parse_experiment(experiment)
    retrier = Retrier.with_limit(rate_limit, options)
    _check_schema_arms(experiment, kv, retrier, source)
    current = read_experiment(kv, rate_limit=rate_limit, options=options).experiment
    kept = False
    if "started_at" not in experiment:
        same = current is not None and _same_assignment(current, experiment)
        if same and current is not None and "started_at" in current:
            experiment["started_at"] = current["started_at"]
            kept = True
        else:
            experiment["started_at"] = int(time.time()) if now is None else int(now)
    try:
        value = encode_experiment(experiment)
    except ValueError as exc:  # only the size can fail here: the document was validated
        raise InputError(f"{exc} (limit {MAX_EXPERIMENT_BYTES})", file=source) from exc
    retrier.put_one(kv, EXPERIMENT_KEY, value)
    return SetResult(experiment, current, kept)


def stop_experiment(
    kv: KVClient, *, rate_limit: int = DEFAULT_LIMIT, options: PublishOptions | None = None
) -> ActiveExperiment:
    """Delete ``exp:active`` (everyone gets ``personalized`` again); returns what it held."""
    before = read_experiment(kv, rate_limit=rate_limit, options=options)
    retrier = Retrier.with_limit(rate_limit, options)
    _, failed, error = retrier.bulk(
        [EXPERIMENT_KEY], lambda keys: kv.bulk_delete(keys).unsuccessful_keys
    )
    if failed:
        raise APIError(f"{EXPERIMENT_KEY} was not deleted: {error}")
    return before


def read_segments(
    kv: KVClient,
    seg_schema: str,
    *,
    rate_limit: int = DEFAULT_LIMIT,
    options: PublishOptions | None = None,
) -> dict[str, list[str]]:
    """Every published segment of ``seg_schema``: segment id -> video ids (invalid ones left out).

    What a ``schema:vN`` arm serves, for the report: one listing plus a bulk read per 100 keys.
    """
    retrier = Retrier.with_limit(rate_limit, options)
    # A failed page retries the whole listing: simple, and a report can afford it.
    listed = retrier.call(lambda: [k.name for k in kv.list_keys(SEGMENT_PREFIX)])
    keys = [name for name in listed if segment_key_schema(name) == seg_schema]
    out: dict[str, list[str]] = {}
    for start in range(0, len(keys), MAX_BULK_GET):
        chunk = keys[start : start + MAX_BULK_GET]
        values = retrier.call(functools.partial(kv.bulk_get, chunk))
        for key, text in values.items():
            segment = decode_segment(text, seg_schema) if text is not None else None
            if segment is not None:
                out[key[len(SEGMENT_PREFIX) : -len(seg_schema) - 1]] = segment["ids"]
    return out
