"""Choosing the engine: options, environment, and what is refused before anything starts."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from builder.cli import main
from builder.engines import DuckDBEngine, EngineSettings, open_engine
from builder.errors import ConfigError


def test_duckdb_is_the_default_engine() -> None:
    """With no option and no environment the builder computes on embedded DuckDB."""
    settings = EngineSettings.from_env({})
    assert (settings.name, settings.spark_master, settings.spark_remote) == ("duckdb", None, None)
    engine = open_engine(settings)
    try:
        assert isinstance(engine, DuckDBEngine)
    finally:
        engine.close()


def test_environment_chooses_spark_connect() -> None:
    """EDGESHELF_ENGINE and SPARK_REMOTE (PySpark's own variable) select Spark Connect."""
    env = {"EDGESHELF_ENGINE": "spark", "SPARK_REMOTE": "sc://spark.internal:15002"}
    settings = EngineSettings.from_env(env)
    assert (settings.name, settings.spark_remote) == ("spark", "sc://spark.internal:15002")


def test_an_explicit_master_wins_over_spark_remote() -> None:
    """--spark-master given on the command line replaces SPARK_REMOTE from the environment."""
    settings = EngineSettings.from_env(
        {"SPARK_REMOTE": "sc://x:15002"}, name="spark", spark_master="spark://m:7077"
    )
    assert (settings.spark_master, settings.spark_remote) == ("spark://m:7077", None)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"name": "polars"}, "--engine must be one of duckdb, spark"),
        ({"name": "duckdb", "spark_master": "spark://m:7077"}, "needs --engine spark"),
        ({"name": "spark", "spark_master": "yarn", "spark_remote": "sc://x"}, "not both"),
    ],
)
def test_inconsistent_engine_settings_are_refused(kw: dict[str, Any], needle: str) -> None:
    """Settings that cannot both hold are a configuration error naming the option."""
    with pytest.raises(ConfigError, match=needle):
        EngineSettings(**kw)


def test_cli_refuses_an_unknown_engine_from_the_environment() -> None:
    """EDGESHELF_ENGINE=polars is a usage error (exit 2) naming the choices."""
    result = CliRunner().invoke(
        main,
        ["plan", "--events", "e.parquet", "--catalog", "c.parquet"],
        env={"EDGESHELF_ENGINE": "polars"},
    )
    assert result.exit_code == 2
    assert "duckdb" in result.output
    assert "spark" in result.output


def test_cli_refuses_spark_master_without_spark() -> None:
    """--spark-master with the DuckDB engine is refused before any input is read (exit 2)."""
    result = CliRunner().invoke(
        main,
        ["plan", "--events", "e.parquet", "--catalog", "c.parquet", "--spark-master", "yarn"],
        env={"EDGESHELF_ENGINE": ""},
    )
    assert result.exit_code == 2
    assert "needs --engine spark" in result.output


def test_duckdb_does_not_pre_aggregate_rows_already_unique_by_their_keys() -> None:
    """The builder's DuckDB starts with partial aggregate pushdown off (it doubled a stage)."""
    engine = DuckDBEngine()
    try:
        [(disabled,)] = engine.con.execute(
            "SELECT current_setting('disabled_optimizers')"
        ).fetchall()
    finally:
        engine.close()
    assert "partial_aggregate_pushdown" in str(disabled).split(",")
