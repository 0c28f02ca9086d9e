"""`experiment set/show/stop` and `report` against the local v4 API: what KV holds afterwards,
and invalid documents refused with their reason and nothing written.

A stack of its own: these tests write ``exp:active``, which the session stack's Worker tests
read.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from builder.cli import main
from edgeshelf.experiment import Experiment, decode_experiment
from edgeshelf.schema import EXPERIMENT_KEY, encode_segment, segment_key
from tests.builder.helpers import (
    CATALOG_HEADER,
    EVENT_HEADER,
    EXAMPLE_EXPERIMENT,
    T0,
    write_csv,
)
from tests.builder.test_report import uids_in
from tests.conftest import start_stack

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from localstack import LocalStack

pytestmark = pytest.mark.runtime

DOC = EXAMPLE_EXPERIMENT


@pytest.fixture(scope="module")
def estack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A local stack for these tests alone."""
    stack = start_stack(tmp_path_factory, "experiment-stack")
    yield stack
    stack.stop()


@pytest.fixture
def stack(estack: LocalStack) -> LocalStack:
    """The stack with no experiment and no v9 segment at the start of each test.

    These tests rewrite exp:active within a second, which the local API refuses like KV does
    (and the builder would wait out, but stamina's test mode does not wait): the per-key limit
    is off here, as docs/local-api.md advises.
    """
    estack.reset_faults()
    estack.faults(key_write_rate=False)
    for key in (EXPERIMENT_KEY, segment_key("global", "v9")):
        estack.kv_delete(key)
    return estack


def cli(stack: LocalStack, *args: str) -> Result:
    """The CLI in this process against the stack's local API."""
    return CliRunner().invoke(main, list(args), env=stack.builder_env(), catch_exceptions=False)


def doc_file(tmp_path: Path, doc: Any, name: str = "exp.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def stored(stack: LocalStack) -> Experiment | None:
    return decode_experiment(stack.kv_get(EXPERIMENT_KEY))


def test_set_show_stop_round_trip(stack: LocalStack, tmp_path: Path):
    """set records started_at, show prints it, a repeated set keeps it, and stop deletes it."""
    path = doc_file(tmp_path, DOC)
    before = int(time.time())
    result = cli(stack, "experiment", "set", str(path))
    assert result.exit_code == 0, result.output
    assert "shelf-2026-12" in result.stdout
    first = stored(stack)
    assert first is not None
    assert before <= first["started_at"] <= int(time.time())
    assert {k: v for k, v in first.items() if k != "started_at"} == DOC

    shown = cli(stack, "experiment", "show", "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout) == {"active": True, "experiment": first}
    table = cli(stack, "experiment", "show")
    assert "personalized" in table.stdout
    assert "90.0%" in table.stdout

    again = cli(stack, "experiment", "set", str(path))
    assert "kept from the running experiment" in again.stdout
    assert stored(stack) == first

    stop = cli(stack, "experiment", "stop")
    assert stop.exit_code == 0
    assert "stopped shelf-2026-12" in stop.stdout
    assert stack.kv_get(EXPERIMENT_KEY) is None
    none = cli(stack, "experiment", "show", "--json")
    assert json.loads(none.stdout) == {"active": False, "experiment": None}
    assert "no experiment was active" in cli(stack, "experiment", "stop").stdout


def test_a_given_started_at_is_kept_and_a_new_experiment_replaces_the_old(
    stack: LocalStack, tmp_path: Path
):
    """A file's started_at is kept as given; replacing a running experiment is warned about."""
    cli(stack, "experiment", "set", str(doc_file(tmp_path, DOC)))
    other = {**DOC, "name": "next", "started_at": 1_764_633_600}
    result = cli(stack, "experiment", "set", str(doc_file(tmp_path, other, "next.json")))
    assert result.exit_code == 0
    assert "replaced the running experiment shelf-2026-12" in result.stderr
    assert stored(stack) == other


INVALID: dict[str, tuple[Any, str]] = {
    "weights add up to 0": (
        {**DOC, "arms": [{"name": "a", "weight": 0, "treatment": "control"}]},
        "weights must add up to more than 0",
    ),
    "unknown treatment": (
        {**DOC, "arms": [{"name": "a", "weight": 1, "treatment": "magic"}]},
        "arms[0].treatment must be one of",
    ),
    "unknown field": ({**DOC, "owner": "me"}, "unknown fields: owner"),
    "not JSON": ('{"name": "x",', "not JSON: Expecting property name"),
    "not an object": ("[1, 2]", "an experiment must be a JSON object"),
    "schema arm never published": (
        {**DOC, "arms": [*DOC["arms"], {"name": "canary", "weight": 5, "treatment": "schema:v9"}]},
        "arms[2] (canary) serves schema:v9, but seg:global:v9 is missing",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_documents_are_refused_with_their_reason(
    stack: LocalStack, tmp_path: Path, case: str
):
    """Each invalid document exits 3 naming the file and the reason; exp:active is untouched."""
    doc, reason = INVALID[case]
    path = doc_file(tmp_path, doc)
    result = cli(stack, "experiment", "set", str(path))
    assert result.exit_code == 3, result.output
    assert f"error: {path}: " in result.stderr
    assert reason in result.stderr
    assert stack.kv_get(EXPERIMENT_KEY) is None


def test_a_schema_arm_is_accepted_once_its_segments_exist(stack: LocalStack, tmp_path: Path):
    """A corrupt seg:global:v9 is refused as invalid; a valid one lets the canary start."""
    doc = INVALID["schema arm never published"][0]
    path = doc_file(tmp_path, doc)
    stack.kv_put(segment_key("global", "v9"), "{not json")
    refused = cli(stack, "experiment", "set", str(path))
    assert refused.exit_code == 3
    assert "seg:global:v9 is not a valid segment" in refused.stderr
    stack.kv_put(segment_key("global", "v9"), encode_segment(["v1"], built_at=T0, schema="v9"))
    accepted = cli(stack, "experiment", "set", str(path))
    assert accepted.exit_code == 0, accepted.output
    current = stored(stack)
    assert current is not None
    assert current["arms"][2]["treatment"] == "schema:v9"


def test_an_invalid_document_in_kv_is_reported_not_used(stack: LocalStack, tmp_path: Path):
    """Junk in exp:active: show exits 1 saying why, report refuses it, and stop removes it."""
    stack.kv_put(EXPERIMENT_KEY, json.dumps({**DOC, "salt": "not a salt!"}))
    shown = cli(stack, "experiment", "show", "--json")
    assert shown.exit_code == 1
    assert json.loads(shown.stdout)["invalid"].startswith("salt must match")
    assert "the Worker ignores it" in shown.stderr
    data = report_inputs(tmp_path, DOC)
    refused = cli(stack, "report", "--events", str(data["events"]), "--catalog",
                  str(data["catalog"]), "--json")  # fmt: skip
    assert refused.exit_code == 2
    assert "exp:active holds an invalid document" in refused.stderr
    stopped = cli(stack, "experiment", "stop")
    assert "it held an invalid document" in stopped.stdout
    assert stack.kv_get(EXPERIMENT_KEY) is None


def report_inputs(tmp_path: Path, exp: Experiment) -> dict[str, Path]:
    """Two users per arm of ``exp``, each watching v1 then v2 after T0."""
    names = [arm["name"] for arm in exp["arms"]]
    users = uids_in(exp, dict.fromkeys(names, 2))
    rows = [
        [uid, video, T0 + 100 + i, "us", "en", 60]
        for i, uid in enumerate(u for n in names for u in users[n])
        for video in ("v1", "v2")
    ]
    catalog = [[f"v{i}", "music", "en", T0 - 86_400 * i, f"Video {i}"] for i in range(4)]
    return {
        "events": write_csv(tmp_path / "events.csv", EVENT_HEADER, rows),
        "catalog": write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, catalog),
    }


def test_report_reads_the_experiment_and_schema_segments_from_kv(stack: LocalStack, tmp_path: Path):
    """Without --experiment the report uses exp:active, and a canary's shelf is its v9 segment."""
    stack.kv_put(segment_key("global", "v9"), encode_segment(["v1"], built_at=T0, schema="v9"))
    exp: Experiment = {"name": "kv", "salt": "k1", "started_at": T0, "arms": [
        {"name": "off", "weight": 1, "treatment": "none"},
        {"name": "canary", "weight": 1, "treatment": "schema:v9"},
    ]}  # fmt: skip
    assert cli(stack, "experiment", "set", str(doc_file(tmp_path, exp))).exit_code == 0
    data = report_inputs(tmp_path, exp)
    result = cli(stack, "report", "--events", str(data["events"]), "--catalog",
                 str(data["catalog"]), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["experiment"] == exp
    arms = {a["name"]: a for a in report["arms"]}
    assert arms["canary"]["users"] == 2
    assert arms["canary"]["shelf_share"]["value"] == pytest.approx(0.5)  # v1 of v1, v2
    assert arms["off"]["shelf_share"]["value"] == 0.0
