"""Fixtures for the builder's tests: a fake KV behind MockTransport, env, small data sets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import stamina

from builder.cloudflare import KVClient
from builder.engines import EngineSettings
from builder.sample import SampleFiles, write_sample
from tests.builder.fakekv import ACCOUNT, BASE, NAMESPACE, TOKEN, FakeKV

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from pyspark.sql import SparkSession

    from builder.spark import SparkEngine

# Small enough to run in well under a second, big enough for several segments with K=10.
SMALL: dict[str, int] = {"users": 600, "videos": 250, "events": 12_000, "seed": 3}
SMALL_K = 10
NOW = 1_748_736_000 + 3_600  # an hour after the sample's newest event


@pytest.fixture(autouse=True)
def _stamina_testing() -> Iterator[None]:
    """No backoff sleeps in unit tests; three attempts per call."""
    with stamina.set_testing(True, attempts=3):
        yield


@pytest.fixture
def fake() -> FakeKV:
    return FakeKV()


@pytest.fixture
def kv(fake: FakeKV) -> Iterator[KVClient]:
    with fake.client() as http:
        yield KVClient(http, account_id=ACCOUNT, namespace_id=NAMESPACE)


@pytest.fixture
def cf_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "CLOUDFLARE_API_TOKEN": TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
        "EDGESHELF_KV_NAMESPACE_ID": NAMESPACE,
        "CLOUDFLARE_BASE_URL": BASE,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory: pytest.TempPathFactory) -> SampleFiles:
    return write_sample(
        tmp_path_factory.mktemp("sample"),
        users=SMALL["users"],
        videos=SMALL["videos"],
        events=SMALL["events"],
        seed=SMALL["seed"],
    )


@pytest.fixture(scope="session")
def small_sample_csv(tmp_path_factory: pytest.TempPathFactory) -> SampleFiles:
    return write_sample(
        tmp_path_factory.mktemp("sample_csv"),
        users=SMALL["users"],
        videos=SMALL["videos"],
        events=SMALL["events"],
        seed=SMALL["seed"],
        fmt="csv",
    )


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.sqlite"


# One local Spark for the whole test session: two cores, no UI, two shuffle partitions, and no
# adaptive execution (it re-plans every stage, which costs more than it saves on kilobytes).
SPARK_TEST_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.adaptive.enabled": "false",
}


@pytest.fixture(scope="session")
def spark_session_local() -> Iterator[SparkSession]:
    """A ``local[2]`` SparkSession shared by every Spark test (about 6 s to start)."""
    from builder.spark import spark_session  # noqa: PLC0415  (starts a JVM: only when needed)

    settings = EngineSettings(name="spark", spark_master="local[2]", spark_conf=SPARK_TEST_CONF)
    session = spark_session(settings, app_name="edgeshelf-tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def spark_engine(spark_session_local: SparkSession) -> Callable[[], SparkEngine]:
    """Makes engines on the shared session (closing one leaves the session running)."""
    from builder.spark import SparkEngine  # noqa: PLC0415

    return lambda: SparkEngine(spark_session_local)
