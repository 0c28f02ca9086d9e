"""The Spark engine: the same Ibis definitions, compiled to Spark SQL and run by a SparkSession.

The session is a local one (``local[*]``, the default), a cluster's (``--spark-master``: a
``spark://``, ``yarn`` or ``k8s://`` URL) or a Spark Connect server (``SPARK_REMOTE``,
``sc://host:15002``). Inputs are local files as on DuckDB, or anything Spark reads itself:
``s3a://``, ``gs://``, ``abfss://`` paths (with the cluster's own credentials and connectors)
and table names (``catalog.db.events``).

Row numbers: Spark reads a file in parallel splits and numbers nothing, so each row gets
``monotonically_increasing_id()``, which grows with the row's position in a file (the splits of
a file are read in order). A refusal turns the first bad row's id into its row number by
counting the rows before it, which only means something when the source is one file; for a
table or a directory the message names the source, the column, the value and the count, and no
row. A path without a ``.parquet``/``.csv``/``.csv.gz`` suffix is read as a directory of Parquet
files (``s3a://lake/events/date=2026-12-02/``).

Results reach the driver through ``toLocalIterator``, one partition at a time, and are handed
on as Arrow record batches of bounded size.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import ibis
import pyarrow as pa
from ibis.backends.pyspark import Backend as _IbisPySpark
from ibis.backends.pyspark.datatypes import PySparkType
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType
from pyspark.storagelevel import StorageLevel

from builder.engines import ROW, Engine, EngineSettings, RawInput, _csv_header
from builder.errors import InputError
from builder.sources import BAD_UTF8

if TYPE_CHECKING:
    from collections.abc import Iterator

    import ibis.expr.types as ir

__all__ = ["LOCAL_CONF", "SESSION_CONF", "START_CONF", "SparkEngine", "spark_session"]

SESSION_CONF: Final = {
    # Text timestamps without an offset are UTC, as on DuckDB.
    "spark.sql.session.timeZone": "UTC",
}
START_CONF: Final = {
    # The builder draws its own progress; Spark's console bars would interleave with it.
    "spark.ui.showConsoleProgress": "false",
}
LOCAL_CONF: Final = {
    "spark.ui.enabled": "false",
    # Spark's default of 1 GB of driver heap runs out on the aggregations of a million users;
    # in local mode the driver is the only executor.
    "spark.driver.memory": "4g",
    # The default of 200 partitions is for clusters; on one machine it is mostly overhead.
    "spark.sql.shuffle.partitions": "8",
}
_FILE_SUFFIXES: Final = (".parquet", ".csv", ".csv.gz")
_SCHEME_RE: Final = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
# Conditions of errors that mean "this input cannot be read", not a bug of the builder.
_READ_CONDITIONS: Final = (
    "FAILED_READ_FILE",
    "MALFORMED_RECORD_IN_PARSING",
    "PATH_NOT_FOUND",
    "TABLE_OR_VIEW_NOT_FOUND",
    "UNABLE_TO_INFER_SCHEMA",
    "CANNOT_READ_FILE_FOOTER",
)
_CONDITION_RE: Final = re.compile(r"\[([A-Z_]+(?:\.[A-Z_]+)*)\]")

# The PySpark dialect of Ibis reads this backend's options when it compiles.
_IbisPySpark.register_options()


def spark_session(settings: EngineSettings, app_name: str = "edgeshelf-builder") -> SparkSession:
    """A session as ``settings`` say: Spark Connect, a cluster's master, or local."""
    builder: Any = SparkSession.builder.appName(app_name)
    if settings.spark_remote:
        builder = builder.remote(settings.spark_remote)
    else:
        builder = builder.master(settings.spark_master or "local[*]")
        if not settings.spark_master:
            for key, value in LOCAL_CONF.items():
                builder = builder.config(key, value)
    for key, value in {**START_CONF, **SESSION_CONF, **settings.spark_conf}.items():
        builder = builder.config(key, value)
    session: SparkSession = builder.getOrCreate()
    for key, value in SESSION_CONF.items():  # an existing session keeps its own otherwise
        session.conf.set(key, value)
    return session


def _is_file(source: str) -> bool:
    return source.lower().endswith(_FILE_SUFFIXES)


def _is_table(source: str) -> bool:
    return not _is_file(source) and not _SCHEME_RE.match(source) and "/" not in source


class SparkEngine(Engine):
    """Runs the builder's expressions on a SparkSession (local, a cluster or Spark Connect)."""

    name = "spark"
    dialect = "pyspark"

    def __init__(self, session: SparkSession, *, owns_session: bool = False) -> None:
        super().__init__()
        self.session = session
        self._owns = owns_session
        self._cached: dict[str, DataFrame] = {}
        self._views: list[str] = []

    @classmethod
    def start(cls, settings: EngineSettings) -> SparkEngine:
        """Start (or join) the session ``settings`` describe; it is stopped on close()."""
        return cls(spark_session(settings), owns_session=True)

    # --- reading ------------------------------------------------------------------------

    def check_source(self, source: str) -> None:
        if _SCHEME_RE.match(source) or _is_table(source):
            return  # Spark's to find: a missing one is refused when it is read
        if not (Path(source).is_file() or Path(source).is_dir()):
            raise InputError("no such file", file=source)

    def _frame(self, source: str) -> DataFrame:
        lower = source.lower()
        if lower.endswith(".parquet"):
            return self.session.read.parquet(source)
        if lower.endswith((".csv", ".csv.gz")):
            if not _SCHEME_RE.match(source):
                header = _csv_header(Path(source))  # the same refusals as on DuckDB
                if len(set(header)) != len(header):
                    raise InputError("the header names a column twice", file=source, row=0)
            frame = self.session.read.options(
                header=True,
                inferSchema=False,
                mode="FAILFAST",
                encoding="UTF-8",
                quote='"',
                escape='"',
            ).csv(source)
            # Spark decodes bytes that are not UTF-8 to U+FFFD instead of failing: name the
            # first column of the row that has one, and the rules refuse the row.
            bad = F.coalesce(
                *[F.when(F.col(c).contains("\ufffd"), F.lit(c)) for c in frame.columns],
                F.lit(None).cast("string"),
            )
            return frame.withColumn(BAD_UTF8, bad)
        if _is_table(source):
            return self.session.table(source)
        # A path without a file suffix: a directory (or prefix) of Parquet files, the usual
        # layout of a lake table.
        return self.session.read.parquet(source)

    def read(self, source: str) -> RawInput:
        self.check_source(source)
        try:
            frame = self._frame(source).withColumn(ROW, F.monotonically_increasing_id())
            return RawInput(table=self._register(frame, "raw"), source=source)
        except InputError:
            raise
        except Exception as exc:
            refusal = self.read_error(exc, source)
            if refusal is None:
                raise
            raise refusal from exc

    def read_error(self, exc: Exception, source: str) -> InputError | None:
        if not isinstance(exc, (PySparkException, Py4JJavaError)):
            return None
        text = str(exc)
        found = _CONDITION_RE.search(text)
        if found is None or not found.group(1).startswith(_READ_CONDITIONS):
            return None
        # The first line that names the condition, and the innermost cause Java gives.
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        head = next((ln for ln in lines if found.group(0) in ln), lines[0])
        head = head.split("Exception: ", 1)[-1]
        causes = [ln.split(": ", 1)[-1] for ln in lines if ln.startswith("Caused by:")]
        summary = head + (f"; {causes[-1]}" if causes else "")
        return InputError(f"cannot read: {summary[:300]}", file=source)

    def row_number(self, raw: RawInput, row_id: int) -> int | None:
        if not _is_file(raw.source):
            return None
        table = raw.table.op().name
        [row] = self.session.sql(
            f"SELECT count(*) AS n FROM {table} WHERE {ROW} < {int(row_id)}"  # noqa: S608
        ).collect()
        return int(row["n"]) + 1

    # --- computing ----------------------------------------------------------------------

    def _register(self, frame: DataFrame, prefix: str) -> ir.Table:
        name = self.fresh_name(prefix)
        frame.createOrReplaceTempView(name)
        self._views.append(name)
        schema = ibis.schema({f.name: PySparkType.to_ibis(f.dataType) for f in frame.schema.fields})
        return ibis.table(schema, name=name)

    def cache(self, expr: ir.Table, prefix: str = "t") -> ir.Table:
        frame = self.session.sql(self.compile(expr)).persist(StorageLevel.MEMORY_AND_DISK)
        # Computed now, as on DuckDB: what it was computed from can then be released.
        frame.count()
        name = self.fresh_name(prefix)
        self._cached[name] = frame
        frame.createOrReplaceTempView(name)
        self._views.append(name)
        return ibis.table(expr.schema(), name=name)

    def release(self, table: ir.Table) -> None:
        # Only the data goes: later views may name this one (Spark Connect resolves views by
        # name again when it analyses a plan), so views are dropped with the engine.
        frame = self._cached.pop(table.op().name, None)
        if frame is not None:
            frame.unpersist()

    def small_table(self, name: str, data: pa.Table) -> ir.Table:
        schema = ibis.Schema.from_pyarrow(data.schema)
        struct = StructType([StructField(c, PySparkType.from_ibis(t)) for c, t in schema.items()])
        frame = self.session.createDataFrame(data.to_pylist(), schema=struct)
        frame.createOrReplaceTempView(name)
        self._views.append(name)
        return ibis.table(schema, name=name)

    def batches(self, expr: ir.Table, chunk: int) -> Iterator[pa.RecordBatch]:
        # Spark has no UUID type: what Ibis calls a uuid arrives as its text.
        schema = pa.schema(
            [(n, pa.string() if t.is_uuid() else t.to_pyarrow()) for n, t in expr.schema().items()]
        )
        names = schema.names
        frame = self.session.sql(self.compile(expr))
        rows: list[tuple[Any, ...]] = []
        for row in frame.toLocalIterator(prefetchPartitions=True):
            rows.append(tuple(row))
            if len(rows) >= chunk:
                yield _batch(rows, names, schema)
                rows = []
        if rows:
            yield _batch(rows, names, schema)

    def close(self) -> None:
        for frame in self._cached.values():
            frame.unpersist()
        for view in self._views:
            self.session.catalog.dropTempView(view)
        self._cached.clear()
        self._views.clear()
        if self._owns:
            self.session.stop()


def _batch(rows: list[tuple[Any, ...]], names: list[str], schema: pa.Schema) -> pa.RecordBatch:
    columns = [pa.array([r[i] for r in rows], type=schema.field(i).type) for i in range(len(names))]
    return pa.RecordBatch.from_arrays(columns, schema=schema)
