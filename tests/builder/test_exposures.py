"""Exposures from the Worker's log lines: plain JSON lines, Logpush and wrangler tail; hostile
lines skipped and counted, never fatal."""

from __future__ import annotations

import gzip
import json
from typing import TYPE_CHECKING, Any

from hypothesis import given, settings
from hypothesis import strategies as st

from builder.exposures import MAX_LINE_BYTES, count_exposures, read_exposures
from tests.builder.helpers import EXAMPLE_EXPERIMENT

if TYPE_CHECKING:
    from pathlib import Path

EXP = EXAMPLE_EXPERIMENT


def request(exp: object = "shelf-2026-12", arm: object = "control", **extra: Any) -> dict[str, Any]:
    """A request record as the Worker logs it (no visitor ID, ever)."""
    return {"event": "edgeshelf.request", "segment": "global", "fallback": 2, "exp": exp,
            "arm": arm, **extra}  # fmt: skip


def logpush(*records: dict[str, Any], event_ms: int = 1_764_633_600_000, **extra: Any) -> str:
    """One Workers Trace Events Logpush line holding ``records`` as console.log strings."""
    logs = [
        {"Level": "log", "Message": [json.dumps(r)], "TimestampMs": event_ms + i}
        for i, r in enumerate(records)
    ]
    line = {"EventTimestampMs": event_ms, "EventType": "fetch", "Outcome": "ok",
            "ScriptName": "edgeshelf", "Exceptions": [], "Logs": logs, **extra}  # fmt: skip
    return json.dumps(line)


def test_plain_json_lines_are_counted_per_arm():
    """Plain request lines count per arm; null, other experiments and unknown arms apart."""
    lines = [
        json.dumps(request(arm="control")),
        json.dumps(request(arm="personalized")),
        json.dumps(request(arm="personalized")),
        json.dumps(request(exp=None, arm=None)),
        json.dumps(request(exp="another", arm="control")),
        json.dumps(request(arm="treatment-b")),
        "",
    ]
    c = count_exposures(lines, EXP)
    assert c.arms == {"control": 1, "personalized": 2}
    assert (c.not_enrolled, c.other_experiment, c.unknown_arm) == (1, 1, 1)
    assert (c.lines, c.records, c.skipped) == (6, 6, 0)


def test_logpush_trace_events_lines_are_parsed():
    """A Logpush line's Logs[].Message strings are the request records, several per line."""
    lines = [
        logpush(request(arm="control"), request(arm="personalized")),
        logpush(request(arm="personalized")),
        # Other console output of the Worker in the same invocation is not an exposure.
        json.dumps({"EventTimestampMs": 1, "Logs": [{"Level": "warn", "Message": ["hello"]}]}),
    ]
    c = count_exposures(lines, EXP)
    assert c.arms == {"control": 1, "personalized": 2}
    assert c.skipped == 0


def test_logpush_message_objects_and_wrangler_tail_lines_are_parsed():
    """A logged object (not a string) and wrangler tail's lower-case shape count too."""
    tail = {"eventTimestamp": 5, "logs": [{"level": "log", "message": [json.dumps(request())],
            "timestamp": 5}]}  # fmt: skip
    as_object = {"Logs": [{"Level": "log", "Message": [request(arm="personalized")]}]}
    c = count_exposures([json.dumps(tail), json.dumps(as_object)], EXP)
    assert c.arms == {"control": 1, "personalized": 1}


def test_files_gzip_and_directories_are_read(tmp_path: Path):
    """A .gz Logpush file and a directory of plain files are read alike."""
    (tmp_path / "logs").mkdir()
    with gzip.open(tmp_path / "logs" / "20261201.log.gz", "wt") as fh:
        fh.write(logpush(request(arm="control")) + "\n" + logpush(request()) + "\n")
    (tmp_path / "logs" / "plain.jsonl").write_text(json.dumps(request(arm="personalized")) + "\n")
    c = read_exposures([tmp_path / "logs"], EXP)
    assert c.arms == {"control": 2, "personalized": 1}
    assert c.skipped == 0


def test_logpush_times_before_the_window_are_left_out(tmp_path: Path):
    """With ``since``, Logpush records logged earlier count as before the window."""
    path = tmp_path / "logs.jsonl"
    path.write_text(
        logpush(request(), event_ms=1_000_000_000_000) + "\n"  # 2001
        + logpush(request(), event_ms=2_000_000_000_000) + "\n"  # 2033
        + json.dumps(request()) + "\n"  # plain lines carry no time: counted
    )  # fmt: skip
    c = read_exposures([path], EXP, since=1_500_000_000)
    assert c.arms["control"] == 2
    assert c.before_window == 1


HOSTILE: list[tuple[bytes, str]] = [
    (b"not json at all", "not JSON"),
    (b'{"event": "edgeshelf.request", "exp": ', "not JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"[" * 150_000 + b"]" * 150_000, "line too long"),
    (b"[" * 50_000 + b"]" * 50_000, "not JSON"),  # nested too deeply for the parser
    (b"x" * (MAX_LINE_BYTES + 10), "line too long"),
    (json.dumps(request(exp=7)).encode(), "exp/arm not a string or null"),
    (json.dumps(request(arm={"$ne": 1})).encode(), "exp/arm not a string or null"),
    (json.dumps({"Logs": "everything"}).encode(), "malformed Logs entry"),
    (json.dumps({"Logs": [{"Level": "log", "Message": "x"}]}).encode(), "malformed Logs entry"),
    (json.dumps({"Logs": [7]}).encode(), "malformed Logs entry"),
    (
        json.dumps({"Logs": [{"Message": ['{"event":"edgeshelf.request", "exp": ']}]}).encode(),
        "unparsable logged message",
    ),
    (json.dumps({"event": "something.else"}).encode(), "not a request record"),
]


def test_hostile_lines_are_skipped_with_a_count_and_valid_lines_still_count():
    """Each hostile line is skipped under its reason; the valid lines around them all count."""
    valid = [json.dumps(request()).encode(), logpush(request(arm="personalized")).encode()]
    lines = [valid[0]] + [line for line, _ in HOSTILE] + [valid[1]]
    c = count_exposures(lines, EXP)
    assert c.arms == {"control": 1, "personalized": 1}
    expected: dict[str, int] = {}
    for _, reason in HOSTILE:
        expected[reason] = expected.get(reason, 0) + 1
    assert c.skipped_by_reason == expected
    assert c.skipped == len(HOSTILE)


def test_an_endless_line_and_a_cut_gzip_file_are_survived(tmp_path: Path):
    """An over-long line is skipped unread; a cut .gz file keeps what was read before the cut."""
    endless = tmp_path / "endless.jsonl"
    endless.write_bytes(b"a" * (3 * MAX_LINE_BYTES) + b"\n" + json.dumps(request()).encode())
    cut = tmp_path / "cut.log.gz"
    body = "".join(json.dumps(request()) + "\n" for _ in range(2000)).encode()
    cut.write_bytes(gzip.compress(body)[:-500])
    c = read_exposures([endless, cut], EXP)
    assert c.skipped_by_reason["line too long"] == 1
    assert c.skipped_by_reason["unreadable file (EOFError)"] == 1
    assert 1 < c.arms["control"] < 2001


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300) | st.text(max_size=300), max_size=20))
def test_arbitrary_input_never_raises(lines: list[bytes | str]):
    """Whatever the lines hold, counting returns; every non-blank line is seen and counted."""
    c = count_exposures(lines, EXP)
    raw = [x.encode("utf-8", "surrogatepass") if isinstance(x, str) else x for x in lines]
    assert c.lines == sum(1 for x in raw if x.strip())
    assert c.total <= c.records
    assert c.skipped + c.records >= c.lines - sum(1 for x in raw if b"Logs" in x or b"logs" in x)
