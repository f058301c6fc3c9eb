"""Opening the prediction log with DuckDB, with errors a person can act on."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.fs as pafs

from predlog._record import arrow_schema
from predlog._settings import env_var, problem, read
from predlog.errors import PredlogError
from predlog.storage import Location, locate


class AnalyticsError(PredlogError):
    """The data cannot answer the question; the message says why and what to check."""


def check_time(text: str, what: str) -> str:
    """``text`` as an ISO 8601 time if it is a date or one; otherwise an error naming ``what``.

    Checked here, before DuckDB casts it, so that ``--since 2026-13-45`` is one line
    saying so rather than a conversion error from inside a query.
    """
    stripped = text.strip()
    utc = stripped[-1:] in ("Z", "z")
    try:
        parsed = datetime.fromisoformat(stripped[:-1] if utc else stripped)
    except ValueError:
        raise AnalyticsError(
            f"{what}: {text!r} is not a date (2026-10-01) or an ISO 8601 time "
            "(2026-10-01T12:00:00+00:00)"
        ) from None
    # As parsed, in the one form every engine casts: 20261001 and 2026-W40-1 are dates
    # Python reads and SQL would not.
    return parsed.isoformat() + ("+00:00" if utc and parsed.tzinfo is None else "")


def check_range(start: str, end: str, what: str) -> tuple[str, str]:
    """``start`` and ``end`` as by :func:`check_time`, refused unless ``end`` is later.

    END is exclusive, so a range that ends where or before it starts holds no record:
    said here, naming both ends, rather than "no predictions" after a scan of the data.
    """
    first, last = check_time(start, what), check_time(end, what)
    since, until = (_utc(datetime.fromisoformat(t)) for t in (first, last))
    if until < since:
        raise AnalyticsError(f"{what}: the end {end.strip()} is before the start {start.strip()}")
    if until == since:
        raise AnalyticsError(
            f"{what}: empty, it starts and ends at {start.strip()} (the end is exclusive)"
        )
    return first, last


def _utc(moment: datetime) -> datetime:
    """A time without an offset is UTC, as ``timestamp_utc`` is written."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


class Predictions:
    """The prediction records as a DuckDB view ``predictions``.

    They come from the Parquet layout under a data directory (a local path, or an
    ``s3://``, ``gs://`` or ``file://`` URL), or, with ``table`` (``catalog.ns.table``),
    from the data files of that Iceberg table's current snapshot; ``data_dir`` then
    locates the embedded default catalog. Without ``data_dir`` the directory is the
    ``data_dir`` setting (``PREDLOG_DATA_DIR`` or its declared default), so the
    analytics look where the logger writes.

    A local layout is read by DuckDB itself. Files on an object store, and a table's,
    are read through pyarrow's filesystems, registered with DuckDB as Arrow datasets:
    this DuckDB cannot load its own S3 extension, and Arrow datasets keep DuckDB's
    column projection and filter pushdown.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        table: str | None = None,
        database: str | os.PathLike[str] = ":memory:",
    ) -> None:
        import duckdb  # noqa: PLC0415  # the analytics extra

        text = os.fspath(data_dir) if data_dir else str(read("data_dir"))
        try:
            refused = problem("data_dir", text)
            if refused:
                raise ValueError(refused)
            self.location = locate(text)
        except ValueError as exc:
            raise AnalyticsError(f"{exc} (set --data or {env_var('data_dir')})") from None
        #: The local data directory (None on an object store), and where the audit log
        #: is looked for by default.
        self.root: Path | None = self.location.local_path if self.location.is_local else None
        self.audit_dir: Path | None = None if self.root is None else self.root / "audit"
        #: What the records were read from, for messages.
        self.where = f"table {table}" if table else text
        self.con = duckdb.connect(os.fspath(database))
        # A date without an offset means midnight UTC, as timestamp_utc is written,
        # whatever the zone of the machine running the query.
        self.con.execute("SET TimeZone = 'UTC'")
        if table:
            source = _register(self.con, *table_files(table, text), partition_base=None)
        elif self.root is not None:
            source = _local_source(self.root)
        else:
            source = _store_source(self.con, self.location)
        # the source is quoted or registered; a view's path cannot be bound
        self.con.execute(f"CREATE VIEW prediction_files AS FROM {source}")
        #: The columns the files hold (what :meth:`require` checks).
        self.columns = {row[0] for row in self.con.execute("DESCRIBE prediction_files").fetchall()}
        self.con.execute(f"CREATE VIEW predictions AS {_view(self.con, self.columns)}")

    def require(self, *columns: str) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise AnalyticsError(
                f"the prediction files have no column {', '.join(missing)} "
                f"(found: {', '.join(sorted(self.columns))})"
            )

    def query(self, sql: str, params: list[Any] | None = None) -> Any:
        return self.con.execute(sql, params or [])

    def arrow(self, sql: str, params: list[Any] | None = None) -> Any:
        """A query's result as an Arrow table, without the extra copy the DB-API path makes.

        (DuckDB 2 calls the method ``to_arrow_table``; 1.x called it ``arrow``.)
        """
        relation = self.con.sql(sql, params=params or [])
        return (getattr(relation, "to_arrow_table", None) or relation.arrow)()


def _view(con: Any, columns: set[str]) -> str:
    """The records with every column of the record schema: a column the files lack
    (written by an older or another writer) reads as null, as an absent value, so a
    question that can do without it is answered; :meth:`Predictions.require` still
    refuses one that cannot.

    prediction_id is text in every query: files written before ids were text hold
    DuckDB's UUID type, and a directory mixing both unifies to UUID.
    """
    replaced = (
        " REPLACE (CAST(prediction_id AS VARCHAR) AS prediction_id)"
        if "prediction_id" in columns
        else ""
    )
    # Each column's SQL type as DuckDB reads the record schema's Arrow type.
    schema = con.from_arrow(arrow_schema().empty_table())
    absent = "".join(
        f", CAST(NULL AS {sql_type}) AS {name}"
        for name, sql_type in zip(schema.columns, schema.types, strict=True)
        if name not in columns
    )
    return f"SELECT *{replaced}{absent} FROM prediction_files"


def _local_source(root: Path) -> str:
    """DuckDB's own reader over a local layout (every file's columns, by name)."""
    files = root / "predictions"
    if not root.exists():
        raise AnalyticsError(
            f"data directory {root} does not exist (set --data or {env_var('data_dir')})"
        )
    if not root.is_dir():
        raise AnalyticsError(
            f"data directory {root} is a file, not a directory (the one holding "
            f"predictions/date=*/*.parquet; set --data or {env_var('data_dir')})"
        )
    if not files.exists() or not any(files.glob("date=*/*.parquet")):
        raise AnalyticsError(_NOTHING.format(where=files))
    glob = str(files / "**" / "*.parquet").replace("'", "''")
    return f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"


_NOTHING: Final = (
    "no prediction files under {where}: nothing has been logged there yet, "
    "or files are still open (they are published on roll, flush and exit)"
)


def _store_source(con: Any, location: Location) -> str:
    """The layout on an object store, listed and registered as Arrow datasets."""
    base = location.join("predictions")
    try:
        infos = location.files(base)
    except OSError as exc:
        raise AnalyticsError(f"cannot list {location.uri(base)}: {exc}") from None
    paths = sorted(
        info.path
        for info in infos
        if info.base_name.endswith(".parquet")
        and not info.base_name.startswith(".")
        and info.path[len(base) :].lstrip("/").startswith("date=")
    )
    if not paths:
        raise AnalyticsError(_NOTHING.format(where=location.uri(base)))
    return _register(con, location.filesystem, paths, partition_base=base)


def table_files(table: str, data_dir: str) -> tuple[pafs.FileSystem, list[str]]:
    """The data files of an Iceberg table's current snapshot."""
    try:
        from predlog.sinks.iceberg import table_files as catalog_files  # noqa: PLC0415
    except ImportError as exc:
        raise AnalyticsError(
            f"reading table {table} needs pyiceberg: pip install 'predlog[iceberg]' ({exc})"
        ) from None
    try:
        filesystem, paths = catalog_files(table, data_dir=data_dir)
    except PredlogError:
        raise
    except Exception as exc:  # noqa: BLE001  # the catalog's own errors, said plainly
        raise AnalyticsError(f"cannot read table {table}: {type(exc).__name__}: {exc}") from None
    if not paths:
        raise AnalyticsError(f"table {table} has no data files yet: nothing committed to it")
    return filesystem, paths


def _register(
    con: Any, filesystem: pafs.FileSystem, paths: list[str], *, partition_base: str | None
) -> str:
    """Register ``paths`` with DuckDB as Arrow datasets; the SQL relation of them all.

    The schema is every file's, unified (a column added later is there, null in older
    files), read from their footers in parallel. Files whose column types cannot be
    unified (ids in Arrow's ``uuid`` type before, text after) become one dataset per
    schema, joined by name in SQL, where DuckDB finds the common type.
    """
    try:
        groups = [(paths, _factory(filesystem, paths, partition_base))]
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        by_schema: dict[str, list[str]] = {}
        for path in paths:
            schema = _factory(filesystem, [path], partition_base)[1]
            by_schema.setdefault(str(schema), []).append(path)
        groups = [
            (group, _factory(filesystem, group, partition_base)) for group in by_schema.values()
        ]
    names = []
    for index, (_, (factory, schema)) in enumerate(groups):
        name = f"prediction_files_{index}"
        con.register(name, factory.finish(schema))
        names.append(name)
    if len(names) == 1:
        return names[0]
    return "(" + " UNION ALL BY NAME ".join(f"FROM {name}" for name in names) + ")"


def _factory(
    filesystem: pafs.FileSystem, paths: list[str], partition_base: str | None
) -> tuple[Any, pa.Schema]:
    """A dataset factory over ``paths`` and their unified schema (ArrowTypeError when
    their types conflict)."""
    import pyarrow.dataset  # noqa: PLC0415

    ds: Any = pyarrow.dataset  # its stubs misspell partition_base_dir and lack inspect's options
    options = ds.FileSystemFactoryOptions(
        partition_base_dir=partition_base,
        partitioning=ds.HivePartitioning.discover() if partition_base is not None else None,
    )
    factory = ds.FileSystemDatasetFactory(filesystem, paths, ds.ParquetFileFormat(), options)
    return factory, factory.inspect(promote_options="permissive", fragments=None)
