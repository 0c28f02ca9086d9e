"""Reliability of experiments (issue 16): invalid documents, a corrupted exp:active, and hostile
exposure logs.

- ``experiment set`` with an invalid document, while an experiment is running and visitors
  read the Worker: refused (exit 3) naming the reason, exp:active unchanged, no 5xx.
- exp:active overwritten with junk by another system: visitors get no 5xx (the Worker ignores
  what does not validate), ``experiment show`` exits 1 naming the problem, ``report`` refuses
  it, ``experiment stop`` removes it.
- ``report --exposures`` over logs mixing valid lines (plain and Logpush) with hostile ones and
  a cut gzip file: exit 0, every valid exposure counted, every hostile line skipped and counted.
"""

from __future__ import annotations

import gzip
import json
import random
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner, Result

from builder.cli import main
from edgeshelf.experiment import Experiment, assign
from edgeshelf.schema import EXPERIMENT_KEY
from tests.builder.helpers import (
    CATALOG_HEADER,
    EVENT_HEADER,
    EXAMPLE_EXPERIMENT,
    T0,
    write_csv,
)
from tests.conftest import start_stack
from tests.reliability.conftest import scale

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from localstack import LocalStack

pytestmark = pytest.mark.runtime

VIEWS = scale(20, 200)  # page views around each attempt
LOG_LINES = scale(2_000, 200_000)
RUNNING: Experiment = {**EXAMPLE_EXPERIMENT, "name": "running"}


@pytest.fixture(scope="module")
def xstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of its own (these scenarios write exp:active); the Worker re-reads KV each time."""
    stack = start_stack(tmp_path_factory, "experiment-reliability-stack",
                        vars={"SHELL_POINTER_TTL": "0", "SEGMENT_MEMO_TTL": "0"})  # fmt: skip
    yield stack
    stack.stop()


def cli(stack: LocalStack, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=stack.builder_env(), catch_exceptions=False)


def page_views(stack: LocalStack, n: int) -> tuple[int, int]:
    """``n`` homepage views by known and new visitors; (views, 5xx answers)."""
    errors = 0
    rng = random.Random(n)
    with httpx.Client(timeout=30) as http:
        for i in range(n):
            headers = {"accept": "text/html"}
            if i % 2:
                headers["cookie"] = f"es_uid={uuid.UUID(int=rng.getrandbits(128), version=4)}"
            errors += http.get(stack.worker + "/", headers=headers).status_code >= 500
    return n, errors


INVALID_DOCUMENTS: dict[str, Any] = {
    "weights add up to 0": {**RUNNING, "arms": [
        {"name": "a", "weight": 0, "treatment": "control"},
        {"name": "b", "weight": 0, "treatment": "personalized"}]},
    "unknown treatment": {**RUNNING, "arms": [{"name": "a", "weight": 1, "treatment": "magic"}]},
    "schema arm never published": {**RUNNING, "arms": [
        *RUNNING["arms"], {"name": "canary", "weight": 5, "treatment": "schema:v42"}]},
    "negative weight": {**RUNNING, "arms": [{"name": "a", "weight": -5, "treatment": "none"}]},
    "nine arms": {**RUNNING, "arms": [
        {"name": f"a{i}", "weight": 1, "treatment": "none"} for i in range(9)]},
    "key-like arm name": {**RUNNING, "arms": [
        {"name": "../u:admin", "weight": 1, "treatment": "none"}]},
    "unknown field": {**RUNNING, "targeting": {"country": "us"}},
    "not JSON (cut file)": json.dumps(RUNNING)[:40],
    "nested too deeply": "[" * 20_000 + "]" * 20_000,
    "too large (100 KB)": json.dumps({**RUNNING, "salt": "s" * 100_000}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(INVALID_DOCUMENTS))
def test_invalid_documents_are_refused_and_the_running_one_stays(
    xstack: LocalStack, tmp_path: Path, record: Callable[..., None], case: str
) -> None:
    """An invalid document exits 3 naming why; the running experiment stays and nobody gets 5xx."""
    xstack.reset_faults()
    xstack.faults(key_write_rate=False)  # the running document is rewritten per scenario
    running = tmp_path / "running.json"
    running.write_text(json.dumps(RUNNING))
    assert cli(xstack, "experiment", "set", str(running)).exit_code == 0
    before = xstack.kv_get(EXPERIMENT_KEY)
    writes_before = xstack.api_stats()["writes"]
    doc = INVALID_DOCUMENTS[case]
    path = tmp_path / "exp.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    views, errors = page_views(xstack, VIEWS // 2)
    result = cli(xstack, "experiment", "set", str(path))
    more, more_errors = page_views(xstack, VIEWS - VIEWS // 2)
    message = result.stderr.strip().splitlines()[-1].replace(str(tmp_path) + "/", "")
    changed = xstack.kv_get(EXPERIMENT_KEY) != before
    writes = xstack.api_stats()["writes"] - writes_before
    record(
        "builder", f"experiment set, invalid document: {case}",
        load=f"a running experiment; {views + more} page views meanwhile",
        faults="invalid experiment document", five_xx=errors + more_errors,
        keys_lost=int(changed),
        notes=f"exit {result.exit_code}: {message[:160]}; {writes} API writes",
    )  # fmt: skip
    assert result.exit_code == 3
    assert message.startswith("error: exp.json: ")
    assert not changed
    assert writes == 0
    assert errors + more_errors == 0


JUNK: dict[str, str] = {
    "not JSON": "{not json",
    "JSON null": "null",
    "a list": "[1, 2, 3]",
    "wrong types": json.dumps({**RUNNING, "arms": "all"}),
    "zero weights": json.dumps({**RUNNING, "arms": [{"name": "a", "weight": 0,
                                                     "treatment": "none"}]}),
    "unknown treatment": json.dumps({**RUNNING, "arms": [{"name": "a", "weight": 1,
                                                          "treatment": "<script>"}]}),
    "oversized (5 KB)": json.dumps({**RUNNING, "salt": "s" * 5000}),
    "nested too deeply": "[" * 50_000 + "]" * 50_000,
    "invalid UTF-8 bytes": "\udcff\udcfe",
}  # fmt: skip


def test_a_corrupted_exp_active_is_reported_not_used(
    xstack: LocalStack, tmp_path: Path, record: Callable[..., None]
) -> None:
    """Junk in exp:active: no 5xx, show exits 1 with the reason, report refuses, stop removes."""
    xstack.reset_faults()
    xstack.faults(key_write_rate=False)
    events = tmp_path / "events.csv"
    uid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    write_csv(events, EVENT_HEADER, [[uid, "v0", T0 + 10, "us", "en", 60]])
    catalog = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, [["v0", "music", "en", T0, "x"]])
    views = errors = shown_ok = refused_ok = 0
    for text in JUNK.values():
        value = text.encode("utf-8", "surrogateescape")
        xstack.kv_put(EXPERIMENT_KEY, value)
        n, e = page_views(xstack, max(4, VIEWS // len(JUNK)))
        views, errors = views + n, errors + e
        shown = cli(xstack, "experiment", "show", "--json")
        shown_ok += shown.exit_code == 1 and bool(json.loads(shown.stdout)["invalid"])
        report = cli(xstack, "report", "--events", str(events), "--catalog", str(catalog))
        refused_ok += report.exit_code == 2 and "holds an invalid document" in report.stderr
    stopped = cli(xstack, "experiment", "stop")
    gone = xstack.kv_get(EXPERIMENT_KEY) is None
    record(
        "builder", f"exp:active corrupted by another system ({len(JUNK)} kinds of junk)",
        load=f"{views} page views", faults=", ".join(JUNK), five_xx=errors, keys_lost="n/a",
        notes=f"show exit 1 naming the problem: {shown_ok}/{len(JUNK)}; report refused: "
              f"{refused_ok}/{len(JUNK)}; stop removed it: {gone}",
    )  # fmt: skip
    assert errors == 0
    assert shown_ok == len(JUNK)
    assert refused_ok == len(JUNK)
    assert stopped.exit_code == 0
    assert gone


def _request(exp: str | None, arm: str | None) -> dict[str, Any]:
    return {"event": "edgeshelf.request", "segment": "global", "fallback": 2, "exp": exp,
            "arm": arm, "kv_reads": 2}  # fmt: skip


def _hostile(rng: random.Random, i: int) -> bytes:
    """The ``i``-th hostile line; the large kinds only among the first few hundred lines."""
    kinds: list[Callable[[], bytes]] = [
        lambda: (
            b"\x00"
            + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))).replace(b"\n", b"")
        ),
        lambda: json.dumps(_request("running", "control"))[: rng.randint(1, 40)].encode(),  # noqa: PLW0108
        lambda: b"[" * 60_000 + b"]" * 60_000,
        lambda: json.dumps({"Logs": {"Message": "x"}}).encode(),
        lambda: json.dumps(_request("running", None) | {"arm": [1]}).encode(),
        lambda: b'{"event": "edgeshelf.request", "exp": NaN, "arm": Infinity}',
        lambda: json.dumps(
            {"Logs": [{"Message": ['{"event":"edgeshelf.request","exp":']}]}
        ).encode(),
        lambda: b"\xc3\x28" + json.dumps(_request("running", "control")).encode(),
        lambda: b"x" * 300_000,
        lambda: json.dumps([_request("running", "control")]).encode(),
    ]
    kind = i % len(kinds)
    if kind in (2, 8) and i > 400:  # keep the file small at full size: a few huge lines suffice
        kind = 1
    return kinds[kind]()


def test_hostile_exposure_logs_are_skipped_and_counted(
    tmp_path: Path, record: Callable[..., None]
) -> None:
    """Every valid exposure is counted, every hostile line skipped and counted; report exits 0."""
    rng = random.Random(16)
    uids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(40)]
    rows = [[uid, f"v{i % 3}", T0 + 100 + i, "us", "en", 60] for i, uid in enumerate(uids)]
    events = write_csv(tmp_path / "events.csv", EVENT_HEADER, rows)
    catalog = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER,
                        [[f"v{i}", "music", "en", T0, "x"] for i in range(3)])  # fmt: skip
    doc = tmp_path / "exp.json"
    doc.write_text(json.dumps({**RUNNING, "started_at": T0}))
    expected = {"control": 0, "personalized": 0}
    hostile = 0
    lines: list[bytes] = []
    for i in range(LOG_LINES):
        if i % 4 == 3:
            lines.append(_hostile(rng, i))
            hostile += 1
            continue
        arm = assign(RUNNING, uids[i % len(uids)])["name"]
        expected[arm] += 1
        record_line = _request("running", arm)
        if i % 2:
            line = {
                "EventTimestampMs": (T0 + 200) * 1000,
                "Logs": [
                    {
                        "Level": "log",
                        "Message": [json.dumps(record_line)],
                        "TimestampMs": (T0 + 200) * 1000,
                    }
                ],
            }
            lines.append(json.dumps(line).encode())
        else:
            lines.append(json.dumps(record_line).encode())
    plain = tmp_path / "logs.jsonl"
    plain.write_bytes(b"\n".join(lines) + b"\n")
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(gzip.compress(b"\n".join(lines[:500]) + b"\n")[:-100])
    started = time.monotonic()
    base = ["report", "--events", str(events), "--catalog", str(catalog)]
    base += ["--experiment", str(doc), "--json", "--exposures"]
    result = CliRunner().invoke(main, [*base, str(plain)], catch_exceptions=False)
    seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    exposures = json.loads(result.stdout)["exposures"]
    # The cut gzip file on its own: what it held before the cut counts, the cut is one skip.
    cut_result = CliRunner().invoke(main, [*base, str(cut)], catch_exceptions=False)
    cut_exposures = json.loads(cut_result.stdout)["exposures"]
    record(
        "builder", "report: hostile exposure log lines",
        load=f"{LOG_LINES:,} log lines ({hostile:,} hostile; plain and Logpush) and a cut .gz",
        faults="binary garbage, cut JSON, 120 KB of nesting, 300 KB lines, wrong types, NaN, "
               "bad UTF-8, malformed Logs",
        five_xx=0, keys_lost="n/a",
        notes=f"exit {result.exit_code} in {seconds:.1f} s (offline: no requests); "
              f"{exposures['total']:,} exposures = the {sum(expected.values()):,} valid; "
              f"skipped {exposures['skipped']:,}: "
              + ", ".join(f"{n} {r}" for r, n in exposures["skipped_by_reason"].items())
              + f"; cut .gz: exit {cut_result.exit_code}, "
                f"{cut_exposures['skipped_by_reason']}",
    )  # fmt: skip
    assert exposures["arms"] == expected
    assert exposures["skipped"] == hostile
    assert cut_result.exit_code == 0
    assert cut_exposures["skipped_by_reason"].get("unreadable file (EOFError)") == 1
