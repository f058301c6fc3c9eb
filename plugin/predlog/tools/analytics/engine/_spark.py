"""Spark as the engine: the same queries, on a cluster or in local mode.

``--spark-master`` is any master URL Spark takes (``local[*]`` by default,
``spark://host:7077``, ``yarn``). Spark reads the Parquet layout on a local disk (its
``date=`` directories become a column, as in DuckDB) or the data files of an Iceberg
table's current snapshot, listed through pyiceberg, so no catalog configuration or
Iceberg jars are needed on the Spark side. Object-store layouts need Spark's own
filesystem set-up (hadoop-aws and credentials); predlog refuses them here rather
than guess it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from predlog._settings import env_var, read
from predlog.storage import locate
from predlog.tools.analytics._data import AnalyticsError
from predlog.tools.analytics.engine._base import Engine

DEFAULT_MASTER = "local[*]"
#: Characters Spark's ``get_json_object`` path syntax gives a meaning of their own even
#: inside ``['...']``.
_PATH_SYNTAX = ("'", "*", "[", "]")


class SparkEngine(Engine):
    name = "spark"
    dialect = "spark"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None,
        *,
        table: str | None,
        master: str | None = None,
    ) -> None:
        try:
            from pyspark.sql import SparkSession  # noqa: PLC0415  # optional
        except ImportError as exc:
            raise AnalyticsError(
                f"--engine spark needs PySpark: pip install 'predlog[spark]' ({exc})"
            ) from None
        text = os.fspath(data_dir) if data_dir else str(read("data_dir"))
        paths = _table_paths(table, text) if table else _layout_paths(text)
        self.where = f"table {table}" if table else text
        builder = (
            SparkSession.builder.master(master or DEFAULT_MASTER)
            .appName("predlog-analytics")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.parquet.mergeSchema", "true")
        )
        if (master or DEFAULT_MASTER).startswith("local"):
            # Spark's 200 shuffle partitions suit a cluster; on one machine most would be
            # empty tasks, each paying its start-up.
            builder = builder.config("spark.sql.shuffle.partitions", str(4 * (os.cpu_count() or 1)))
        try:
            self.session: Any = builder.getOrCreate()
        except Exception as exc:  # noqa: BLE001  # Spark's own errors, said plainly
            raise AnalyticsError(
                f"--spark-master {master or DEFAULT_MASTER}: Spark did not start "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]})"
            ) from None
        reader = self.session.read.option("mergeSchema", "true")
        if table:
            frame = reader.parquet(*paths)
        else:
            frame = reader.option("basePath", paths[0]).parquet(paths[0])
        frame.createOrReplaceTempView("predictions")
        self.columns = set(frame.columns)
        self._cached: list[str] = []

    def unreadable(self, key: str) -> str | None:
        if any(c in key for c in _PATH_SYNTAX):
            return (
                "Spark's JSON paths cannot name a key holding any of "
                f"{' '.join(_PATH_SYNTAX)}; --engine duckdb reads it"
            )
        return None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.session.sql(self.sql(sql)).collect()]

    def materialise(self, name: str, sql: str) -> None:
        frame = self.session.sql(self.sql(sql))
        frame.persist()  # memory and disk: Spark spills what does not fit
        frame.createOrReplaceTempView(name)
        self._cached.append(name)

    def outcomes(self, path: Path) -> set[str]:
        reader = self.session.read
        if path.suffix == ".parquet":
            frame = reader.parquet(str(path))
        else:
            frame = reader.option("header", "true").option("inferSchema", "true").csv(str(path))
        frame.createOrReplaceTempView("outcomes")
        return set(frame.columns)

    def close(self) -> None:
        for name in self._cached:
            self.session.catalog.dropTempView(name)
        self.session.catalog.clearCache()


def _layout_paths(text: str) -> list[str]:
    """The Parquet layout's directory, which Spark lists itself."""
    try:
        location = locate(text)
    except ValueError as exc:
        raise AnalyticsError(f"{exc} (set --data or {env_var('data_dir')})") from None
    if not location.is_local:
        raise AnalyticsError(
            f"--engine spark reads a local data directory or an Iceberg table (--table); "
            f"{text} is on an object store, which Spark reads only with its own "
            "filesystem set-up: use --engine duckdb, or point Spark at the table"
        )
    root = location.local_path / "predictions"
    if not any(root.glob("date=*/*.parquet")):
        raise AnalyticsError(f"no prediction files under {root}")
    return [str(root)]


def _table_paths(table: str, data_dir: str) -> list[str]:
    """URIs of the table's current data files."""
    from predlog.tools.analytics._data import table_files  # noqa: PLC0415

    filesystem, paths = table_files(table, data_dir)
    kind = filesystem.type_name
    if kind == "local":
        # Not Path.as_uri(): it escapes the "=" of partition directories as %3D, and
        # Hadoop takes the escape literally (no such file).
        return [f"file://{Path(p).resolve()}" for p in paths]
    scheme = {"s3": "s3a", "gcs": "gs"}.get(kind, kind)
    return [f"{scheme}://{p}" for p in paths]
