"""Where the builder's computation runs: embedded DuckDB (the default) or Spark, through Ibis.

The validation rules (:mod:`builder.sources`) and the ranking (:mod:`builder.ranking`) are Ibis
expressions, written once; an :class:`Engine` is what they are compiled for and run on. What
differs between engines lives here and nowhere else:

- **reading** an input into a table of its raw columns plus ``__row``, a row identifier
  (DuckDB: the 1-based row number itself; Spark: an increasing id that
  :meth:`Engine.row_number` turns into a row number when a single file is read);
- turning the engine's own read errors (a ragged CSV line, a truncated Parquet file) into an
  :class:`~builder.errors.InputError` naming the file;
- **streaming** a result out in bounded Arrow record batches (:meth:`Engine.batches`), so a
  result of any size reaches the plan without ever being one list in the driver.

:class:`DuckDBEngine` is an in-process DuckDB capped at ``memory_limit`` (spilling to a
temporary directory beyond it). :class:`~builder.spark.SparkEngine` (imported only when asked
for, it starts a JVM) runs on a local session, a cluster (``--spark-master``) or Spark
Connect (``SPARK_REMOTE``).
"""

# ruff: noqa: S608  # SQL is assembled from constants and file paths quoted by quote_sql();
# no cell of the input is ever spliced into SQL.

from __future__ import annotations

import abc
import csv
import gzip
import itertools
import os
import re
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

import duckdb
import ibis
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ibis.backends.sql.datatypes import DuckDBType

from builder.errors import ConfigError, InputError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import ibis.expr.types as ir

__all__ = [
    "DEFAULT_ENGINE",
    "DUCKDB_MEMORY_LIMIT",
    "DUCKDB_PARTITION_ROWS",
    "ENGINES",
    "ROW",
    "DuckDBEngine",
    "Engine",
    "EngineSettings",
    "RawInput",
    "open_engine",
    "quote_sql",
]

ENGINES: Final = ("duckdb", "spark")
DEFAULT_ENGINE: Final = "duckdb"
DUCKDB_MEMORY_LIMIT: Final = "3.2GB"
"""DuckDB's own cap; with Python and DuckDB's allocations outside it the process stays < 4 GiB
(about 3.5 GiB at its peak at 10M users; at 3 GB the per-user stages spilled more, ~3 s)."""
DUCKDB_PARTITION_ROWS: Final = 12_500_000
"""Events per part when DuckDB splits a large input by user (:meth:`Engine.partitioned`): a part's
per-user aggregations then fit in memory instead of spilling one hundred-million-row hash table."""
_PART: Final = "__part"
_SPLIT_BATCH_ROWS: Final = 1_000_000
"""Rows per batch read out of DuckDB while splitting an input into parts."""
ROW: Final = "__row"
"""The row-identifier column every :meth:`Engine.read` adds."""

_LINE_RE: Final = re.compile(r"CSV Error on Line: (\d+)")
# What a malformed, truncated, mis-encoded or unreadable file raises in DuckDB; anything else
# (a binder error, say) is a bug here and must not be reported as the user's input being wrong.
_DUCKDB_READ_ERRORS: Final = (
    duckdb.IOException,
    duckdb.InvalidInputException,
    duckdb.ConversionException,
)


def _is_read_error(exc: Exception) -> bool:
    """Whether ``exc`` is DuckDB failing to read a file rather than a bug in our query.

    Besides the typed read errors, the untyped base ``duckdb.Error`` itself: what DuckDB raises
    for an error of a third-party reader it embeds, such as Thrift's "Payload value bigger than
    allowed. Corrupted file?" on a Parquet file whose page headers are damaged. Errors of our
    own SQL (binder, catalog, parser) always have a subclass.
    """
    return isinstance(exc, _DUCKDB_READ_ERRORS) or type(exc) is duckdb.Error


@dataclass(frozen=True)
class EngineSettings:
    """Which engine, and how to reach it (docs/builder.md, "Running on Spark")."""

    name: str = DEFAULT_ENGINE
    memory_limit: str = DUCKDB_MEMORY_LIMIT
    spark_master: str | None = None
    spark_remote: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {self.name!r}")
        if self.spark_master and self.spark_remote:
            raise ConfigError("give --spark-master or SPARK_REMOTE (Spark Connect), not both")
        if self.spark_master and self.name != "spark":
            raise ConfigError("--spark-master needs --engine spark (or EDGESHELF_ENGINE=spark)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> EngineSettings:
        """Settings from ``EDGESHELF_ENGINE`` and ``SPARK_REMOTE``; explicit options win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "name": env.get("EDGESHELF_ENGINE", "").strip() or DEFAULT_ENGINE,
            "spark_remote": env.get("SPARK_REMOTE", "").strip() or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("spark_master"):
            values["spark_remote"] = None  # an explicit master wins over the environment
        return cls(**values)


@dataclass(frozen=True)
class RawInput:
    """An input as the engine read it: raw columns plus :data:`ROW`, and where it came from."""

    table: ir.Table
    source: str


def quote_sql(text: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


class Engine(abc.ABC):
    """Runs Ibis expressions: compiled to the engine's SQL, executed by the engine itself.

    Ibis is used as the portable expression language and its compiler; execution, temporary
    tables and streaming are the engine's own (docs/architecture.md says why).
    """

    name: ClassVar[str]
    dialect: ClassVar[str]

    def __init__(self) -> None:
        self._names = itertools.count(1)

    def compile(self, expr: ir.Table) -> str:
        """``expr`` as SQL for this engine."""
        return str(ibis.to_sql(expr, dialect=self.dialect))

    def fresh_name(self, prefix: str) -> str:
        return f"edgeshelf_{prefix}_{next(self._names)}"

    @abc.abstractmethod
    def check_source(self, source: str) -> None:
        """Raise InputError now if ``source`` plainly does not exist (before reading anything)."""

    @abc.abstractmethod
    def read(self, source: str) -> RawInput:
        """The input at ``source`` with its raw columns and :data:`ROW`; InputError if unusable."""

    @abc.abstractmethod
    def read_error(self, exc: Exception, source: str) -> InputError | None:
        """``exc`` as the refusal of ``source`` if it is a read error of this engine, else None."""

    @abc.abstractmethod
    def row_number(self, raw: RawInput, row_id: int) -> int | None:
        """The 1-based row number of the row whose :data:`ROW` is ``row_id``, if it has one."""

    @abc.abstractmethod
    def cache(self, expr: ir.Table, prefix: str = "t") -> ir.Table:
        """``expr`` computed once and kept (a temporary table, a persisted DataFrame)."""

    def partition_count(self, raw: RawInput) -> int:
        """How many parts :meth:`partitioned` should split ``raw``'s rows into (1: do not split)."""
        return 1

    def partitioned(self, expr: ir.Table, by: str, parts: int, prefix: str = "t") -> list[ir.Table]:
        """``expr`` computed once and kept, split into ``parts`` tables by the hash of ``by``.

        Every row with the same ``by`` lands in the same part, so work that is per value of
        ``by`` (per user) can run part by part, in memory. Engines that distribute work
        themselves keep one part (the default).
        """
        return [self.cache(expr, prefix)]

    @abc.abstractmethod
    def release(self, table: ir.Table) -> None:
        """Drop a table :meth:`cache` made, once nothing reads it any more (memory, disk)."""

    @abc.abstractmethod
    def small_table(self, name: str, data: pa.Table) -> ir.Table:
        """A small local table (a normalisation map) registered as ``name`` in the engine."""

    @abc.abstractmethod
    def batches(self, expr: ir.Table, chunk: int) -> Iterator[pa.RecordBatch]:
        """The rows of ``expr`` in its order, at most ``chunk`` rows per batch."""

    def rows(self, expr: ir.Table) -> list[dict[str, Any]]:
        """A small result as a list of dicts (distinct values, counts, shelves)."""
        out: list[dict[str, Any]] = []
        for batch in self.batches(expr, 100_000):
            out.extend(batch.to_pylist())
        return out

    @abc.abstractmethod
    def close(self) -> None:
        """Release the engine (temporary tables, the session this engine started)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _csv_header(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        # Only the first line, as bytes: decoding a whole text chunk would blame the header for
        # a bad byte on a later row, which DuckDB then reports with its row number.
        with opener(path, "rb") as fh:
            line = fh.readline()
        text = line.decode("utf-8-sig")
        header = next(csv.reader([text.rstrip("\r\n")]), [])
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the CSV header: {exc}", file=str(path), row=0) from exc
    if not any(h.strip() for h in header):
        raise InputError("no header line (the file is empty)", file=str(path), row=0)
    return header


def _duckdb_relation(path: Path) -> str:
    """SQL for a relation over ``path`` with a 1-based :data:`ROW` column."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return (
            f"SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {ROW} "
            f"FROM read_parquet({quote_sql(str(path))}, file_row_number = true)"
        )
    if name.endswith((".csv", ".csv.gz")):
        header = _csv_header(path)
        if len(set(header)) != len(header):
            raise InputError("the header names a column twice", file=str(path), row=0)
        cols = ", ".join(f"{quote_sql(h)}: 'VARCHAR'" for h in header)
        # Explicit dialect and columns: DuckDB's sniffer would otherwise silently skip ragged
        # leading rows. With a fixed dialect a malformed line is an error with its number.
        src = (
            f"read_csv({quote_sql(str(path))}, header = true, auto_detect = false, skip = 0, "
            f"delim = ',', quote = '\"', escape = '\"', strict_mode = true, "
            f"null_padding = false, columns = {{{cols}}})"
        )
        return f"SELECT *, row_number() OVER () AS {ROW} FROM {src}"
    raise InputError("unsupported file type: use .parquet, .csv or .csv.gz", file=str(path))


class DuckDBEngine(Engine):
    """In-process DuckDB, capped at ``memory_limit`` and spilling to a temporary directory."""

    name = "duckdb"
    dialect = "duckdb"

    def __init__(
        self,
        memory_limit: str = DUCKDB_MEMORY_LIMIT,
        partition_rows: int = DUCKDB_PARTITION_ROWS,
    ) -> None:
        super().__init__()
        self.partition_rows = partition_rows
        spill = tempfile.mkdtemp(prefix="edgeshelf-duckdb-")
        self._spill = Path(spill)
        # Removed on close(), or when the engine is collected (a test that never closed it).
        self._cleanup = weakref.finalize(self, shutil.rmtree, spill, ignore_errors=True)
        self.con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": spill})
        # Epoch seconds of text timestamps without an offset are UTC, as on Spark.
        self.con.execute("SET TimeZone = 'UTC'")
        # Ibis 12 writes list lambdas as `x -> ...`, which DuckDB 2 only accepts when asked.
        self.con.execute("SET lambda_syntax = 'ENABLE_SINGLE_ARROW'")
        # DuckDB 2 pre-aggregates the per-(user, video) rows below their join with the users
        # by the very keys they are unique by: at 10M users that doubled the segment scores'
        # time per part (2 s -> 4.5 s) for nothing. Our aggregations are placed by hand.
        self.con.execute("SET disabled_optimizers = 'partial_aggregate_pushdown'")

    def _table(self, name: str) -> ir.Table:
        described = self.con.execute(f"DESCRIBE {name}").fetchall()
        schema = {str(row[0]): DuckDBType.from_string(str(row[1])) for row in described}
        return ibis.table(schema, name=name)

    def check_source(self, source: str) -> None:
        if not Path(source).is_file():
            raise InputError("no such file", file=source)

    def read(self, source: str) -> RawInput:
        self.check_source(source)
        name = self.fresh_name("raw")
        try:
            self.con.execute(f"CREATE TEMP VIEW {name} AS {_duckdb_relation(Path(source))}")
            table = self._table(name)
        except duckdb.Error as exc:
            if not _is_read_error(exc):
                raise
            raise _duckdb_input_error(exc, source) from exc
        return RawInput(table=table, source=source)

    def read_error(self, exc: Exception, source: str) -> InputError | None:
        if _is_read_error(exc):
            return _duckdb_input_error(exc, source)
        return None

    def row_number(self, raw: RawInput, row_id: int) -> int | None:
        return row_id

    def cache(self, expr: ir.Table, prefix: str = "t") -> ir.Table:
        # Declared with Ibis's types, not inferred by DuckDB: a sum of BIGINTs is a HUGEINT in
        # DuckDB and a BIGINT everywhere else, and later expressions must type the same.
        name = self.fresh_name(prefix)
        schema = expr.schema()
        cols = ", ".join(f'"{col}" {DuckDBType.to_string(dtype)}' for col, dtype in schema.items())
        self.con.execute(f"CREATE TEMP TABLE {name} ({cols})")
        self.con.execute(f"INSERT INTO {name} {self.compile(expr)}")
        return ibis.table(schema, name=name)

    def partition_count(self, raw: RawInput) -> int:
        if not raw.source.lower().endswith(".parquet"):
            return 1
        # The row count is in the Parquet footer: nothing is read to learn it.
        [(rows,)] = self.con.execute(
            f"SELECT count(*) FROM read_parquet({quote_sql(raw.source)})"
        ).fetchall()
        return max(1, -(-int(rows) // self.partition_rows))

    def partitioned(self, expr: ir.Table, by: str, parts: int, prefix: str = "t") -> list[ir.Table]:
        if parts <= 1:
            return [self.cache(expr, prefix)]
        # One pass splits every row into its part's Parquet file in the spill directory; a part
        # is then read back on its own. Temporary tables of all the rows would spill anyway, and
        # reading one part back out of them would scan them all. The rows are written by Arrow's
        # Parquet writer, without the statistics nothing reads: at 10M users DuckDB's
        # partitioned COPY of the same rows took 55-62 s, this about 33 s.
        name = self.fresh_name(prefix)
        where = self._spill / name
        where.mkdir()
        schema = expr.schema()
        files = self._split(
            f"SELECT *, CAST(hash({_ident(by)}) % {int(parts)} AS INTEGER) AS {_PART} "
            f"FROM ({self.compile(expr)})",
            where,
            parts,
        )
        cols = ", ".join(
            f"CAST({_ident(col)} AS {DuckDBType.to_string(dtype)}) AS {_ident(col)}"
            for col, dtype in schema.items()
        )
        tables = []
        for part, file in enumerate(files):
            view = f"{name}_{part}"
            if file is not None:
                src = f"read_parquet({quote_sql(str(file))})"
                self.con.execute(f"CREATE TEMP VIEW {view} AS SELECT {cols} FROM {src}")
            else:  # no row hashed to this part
                empty = ", ".join(
                    f"CAST(NULL AS {DuckDBType.to_string(dtype)}) AS {_ident(col)}"
                    for col, dtype in schema.items()
                )
                self.con.execute(f"CREATE TEMP VIEW {view} AS SELECT {empty} WHERE false")
            tables.append(ibis.table(schema, name=view))
        return tables

    def _split(self, sql: str, where: Path, parts: int) -> list[Path | None]:
        """Write the rows of ``sql`` to one Parquet file per value of its :data:`_PART`."""
        self.con.execute("SET preserve_insertion_order = false")  # rows are split, not ordered
        # A UUID leaves DuckDB as Arrow's 16-byte uuid type (Parquet's UUID, read back as one),
        # not as its 36 characters of text.
        self.con.execute("SET arrow_lossless_conversion = true")
        writers: dict[int, pq.ParquetWriter] = {}
        try:
            with self.con.sql(sql).to_arrow_reader(_SPLIT_BATCH_ROWS) as reader:
                schema = reader.schema.remove(reader.schema.get_field_index(_PART))
                # Text columns (country, language) hold few distinct values: dictionary pages
                # make the parts smaller and a part's text faster to read back (10M users:
                # 0.26 -> 0.10 s a part); the other columns are written plain.
                text = [f.name for f in schema if pa.types.is_string(f.type)]
                for batch in reader:
                    for value, rows in _by_part(batch):
                        if value not in writers:
                            writers[value] = pq.ParquetWriter(
                                where / f"part-{value}.parquet",
                                schema,
                                compression="lz4",
                                use_dictionary=text,
                                write_statistics=False,
                            )
                        writers[value].write_batch(rows)
        finally:
            for writer in writers.values():
                writer.close()
            self.con.execute("SET preserve_insertion_order = true")
            self.con.execute("RESET arrow_lossless_conversion")
            # Arrow's allocator would keep the batches' memory for itself; DuckDB needs it next.
            pa.default_memory_pool().release_unused()
        return [where / f"part-{v}.parquet" if v in writers else None for v in range(parts)]

    def release(self, table: ir.Table) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {table.op().name}")

    def small_table(self, name: str, data: pa.Table) -> ir.Table:
        self.con.register(f"{name}_arrow", data)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
        self.con.unregister(f"{name}_arrow")
        return self._table(name)

    def batches(self, expr: ir.Table, chunk: int) -> Iterator[pa.RecordBatch]:
        reader = self.con.sql(self.compile(expr)).to_arrow_reader(chunk)
        try:
            yield from reader
        finally:
            reader.close()

    def close(self) -> None:
        self.con.close()
        self._cleanup()


def _by_part(batch: pa.RecordBatch) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The rows of ``batch`` grouped by their :data:`_PART` (dropped): one slice per value."""
    part = batch.column(_PART)
    ordered = batch.take(pc.sort_indices(part)).drop_columns([_PART])
    counts = pc.value_counts(part)
    values = counts.field("values").to_pylist()
    sizes = dict(zip(values, counts.field("counts").to_pylist(), strict=True))
    offset = 0
    for value in sorted(values):
        yield value, ordered.slice(offset, sizes[value])
        offset += sizes[value]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _duckdb_input_error(exc: Exception, source: str) -> InputError:
    text = str(exc)
    # DuckDB appends the failing SQL ("LINE 1: ...") and a caret line: our query, not the
    # user's problem, so it stays out of the message.
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.lstrip().startswith(("LINE ", "^"))
    ]
    found = _LINE_RE.search(text)
    row = int(found.group(1)) - 1 if found else None
    summary = "; ".join(lines[:3]) if lines else type(exc).__name__
    return InputError(f"cannot read: {summary[:300]}", file=source, row=row)


def open_engine(settings: EngineSettings | None = None) -> Engine:
    """Start the engine ``settings`` name (Spark is imported, and its JVM started, only here)."""
    settings = settings or EngineSettings()
    if settings.name == "spark":
        from builder.spark import SparkEngine  # noqa: PLC0415  (starts a JVM: only when asked)

        return SparkEngine.start(settings)
    return DuckDBEngine(memory_limit=settings.memory_limit)
