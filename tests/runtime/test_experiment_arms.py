"""Issue 16 at the edge: arms assigned from exp:active, each arm's treatment, nothing leaked."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from edgeshelf import schema
from edgeshelf.experiment import Experiment, assign, encode_experiment
from tests.builder.test_report import uids_in
from tests.runtime.helpers import fresh_audience, put_profile, put_segment, shelf, visit

if TYPE_CHECKING:
    from collections.abc import Iterator

    from localstack import LocalStack

# Worker behaviour: scripts/test runs these on every runtime, Pyodide 0.28 and 314 included.
pytestmark = pytest.mark.every_runtime

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
# fresh_stack serves SEGMENT_SCHEMA v7 and reads exp:active on every request (pointer TTL 0).
SCHEMA = "v7"
CANARY = "v9"
EXPERIMENT: Experiment = {
    "name": "edge-arms",
    "salt": "t16",
    "arms": [
        {"name": "personalized", "weight": 40, "treatment": "personalized"},
        {"name": "personalized-b", "weight": 10, "treatment": "personalized"},
        {"name": "control", "weight": 20, "treatment": "control"},
        {"name": "holdout", "weight": 15, "treatment": "none"},
        {"name": "canary", "weight": 15, "treatment": f"schema:{CANARY}"},
    ],
}


@pytest.fixture
def running(fresh_stack: LocalStack) -> Iterator[LocalStack]:
    """fresh_stack with EXPERIMENT in exp:active, a global shelf, and neither afterwards."""
    fresh_stack.kv_put(schema.EXPERIMENT_KEY, encode_experiment(EXPERIMENT))
    put_segment(fresh_stack, schema.GLOBAL_SEGMENT, ["globalpick1"], SCHEMA)
    yield fresh_stack
    fresh_stack.kv_delete(schema.EXPERIMENT_KEY)
    fresh_stack.kv_delete(schema.segment_key(schema.GLOBAL_SEGMENT, SCHEMA))


def known(stack: LocalStack, uid: str) -> tuple[Any, list[str], list[str]]:
    """A profile for ``uid`` with its exact segment under v7 and under the canary's v9."""
    aud = fresh_audience()
    put_profile(stack, uid, aud)
    ids, canary = [f"p{uuid.uuid4().hex[:8]}"], [f"c{uuid.uuid4().hex[:8]}"]
    put_segment(stack, aud.exact, ids, SCHEMA)
    put_segment(stack, aud.exact, canary, CANARY)
    return aud, ids, canary


def test_each_arm_gets_its_treatment(running):
    """personalized: the own segment; control: global; none: no shelf and the shell's default
    content; schema:v9: the own segment under v9. The payload names experiment and arm."""
    uids = uids_in(EXPERIMENT, {arm["name"]: 1 for arm in EXPERIMENT["arms"]})
    served = {}
    for arm, (uid,) in uids.items():
        aud, ids, canary = known(running, uid)
        r = visit(running, uid=uid)
        assert r.status_code == 200
        got = shelf(r)
        assert (got["exp"], got["arm"]) == ("edge-arms", arm)
        served[arm] = (got["segment"], got["ids"], got["schema"])
        if arm.startswith("personalized"):
            assert served[arm] == (aud.exact, ids, SCHEMA)
        elif arm == "canary":
            assert served[arm] == (aud.exact, canary, CANARY)
    assert served["control"] == ("global", ["globalpick1"], SCHEMA)
    assert served["holdout"][:2] == ("", [])
    holdout = visit(running, uid=uids["holdout"][0])
    assert "Editor's picks" in holdout.text
    assert 'id="edgeshelf-cards"' not in holdout.text


def test_worker_and_builder_agree_on_every_arm(running):
    """For 120 visitors the arm the Worker serves is the one the builder's report recomputes
    from the ID (edgeshelf.experiment.assign), and it is the same on a second visit."""
    for _ in range(120):
        uid = str(uuid.uuid4())
        want = assign(EXPERIMENT, uid)["name"]
        assert shelf(visit(running, uid=uid))["arm"] == want
    sticky = str(uuid.uuid4())
    arms = {shelf(visit(running, uid=sticky))["arm"] for _ in range(3)}
    assert arms == {assign(EXPERIMENT, sticky)["name"]}


def test_new_visitors_are_enrolled_gpc_and_crawlers_are_not(running):
    """A minted ID is enrolled on its first page; Sec-GPC visitors get the personalized shelf
    and crawlers the global one, both with exp and arm null."""
    first = shelf(visit(running))
    assert first["exp"] == "edge-arms"
    assert first["arm"] in {arm["name"] for arm in EXPERIMENT["arms"]}
    uid = str(uuid.uuid4())
    aud, _ids, _ = known(running, uid)
    put_segment(running, aud.lang_default, ["gpcpick01"], SCHEMA)
    headers = {"sec-gpc": "1", "accept-language": aud.lang}
    gpc = shelf(visit(running, uid=uid, country=aud.country, headers=headers))
    assert (gpc["exp"], gpc["arm"], gpc["ids"]) == (None, None, ["gpcpick01"])
    bot = shelf(visit(running, uid=uid, headers={"user-agent": GOOGLEBOT}))
    assert (bot["exp"], bot["arm"], bot["segment"]) == (None, None, "global")


def test_log_and_data_point_carry_the_arm_never_the_id(running):
    """The log line and the Analytics Engine point name the experiment and arm; the visitor's
    ID appears in neither."""
    [uid] = uids_in(EXPERIMENT, {"canary": 1}, seed=9)["canary"]
    aud, _, _ = known(running, uid)
    before = len(running.analytics_points())
    visit(running, uid=uid)
    logs = running.wait_worker_logs(lambda ls: any(x["segment"] == aud.exact for x in ls))
    rec = next(x for x in reversed(logs) if x["segment"] == aud.exact)
    assert (rec["exp"], rec["arm"]) == ("edge-arms", "canary")
    assert uid not in json.dumps(rec)
    point = running.wait_analytics_points(before + 1)[-1]
    assert point["blobs"][6:8] == ["edge-arms", "canary"]
    assert uid not in json.dumps(point)


@pytest.mark.parametrize(
    "document",
    [
        "{not json",
        json.dumps({**EXPERIMENT, "arms": []}),
        json.dumps({**EXPERIMENT, "arms": [{"name": "x", "weight": 0, "treatment": "control"}]}),
        json.dumps({**EXPERIMENT, "arms": [{"name": "x", "weight": 1, "treatment": "evil"}]}),
        json.dumps({**EXPERIMENT, "salt": "../u:"}),
        "x" * 10_000,
    ],
    ids=["corrupt", "no-arms", "zero-weight", "unknown-treatment", "bad-salt", "oversized"],
)
def test_an_invalid_document_is_ignored_and_logged(fresh_stack, document):
    """An exp:active that does not validate enrolls nobody, serves the personalized shelf, and
    says so in the log line; never a 5xx."""
    uid = str(uuid.uuid4())
    aud, ids, _ = known(fresh_stack, uid)
    fresh_stack.kv_put(schema.EXPERIMENT_KEY, document)
    try:
        r = visit(fresh_stack, uid=uid)
    finally:
        fresh_stack.kv_delete(schema.EXPERIMENT_KEY)
    assert r.status_code == 200
    got = shelf(r)
    assert (got["ids"], got["exp"], got["arm"]) == (ids, None, None)
    logs = fresh_stack.wait_worker_logs(lambda ls: any(x["segment"] == aud.exact for x in ls))
    rec = next(x for x in reversed(logs) if x["segment"] == aud.exact)
    assert any(e.startswith("experiment:") for e in rec["errors"])


def test_a_failed_read_keeps_the_running_experiment(running):
    """A KV error reading exp:active keeps the document the isolate knew: arms stay assigned."""
    uid = str(uuid.uuid4())
    known(running, uid)
    assert shelf(visit(running, uid=uid))["exp"] == "edge-arms"
    running.kv_faults(keys=[schema.EXPERIMENT_KEY])
    try:
        r = visit(running, uid=uid)
    finally:
        running.clear_kv_faults()
    assert r.status_code == 200
    assert shelf(r)["arm"] == assign(EXPERIMENT, uid)["name"]
