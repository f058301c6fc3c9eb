"""Where the analytics' SQL runs: DuckDB embedded (the default), or Spark.

Both run the same query text (:mod:`predlog.tools.analytics.engine._sql`); only the plumbing
differs: how the records are opened, and where intermediate tables are kept.
"""

from __future__ import annotations

import os
from typing import Final

from predlog.tools.analytics._data import AnalyticsError
from predlog.tools.analytics.engine._base import Engine
from predlog.tools.analytics.engine._sql import HTTP_ERROR_RULE, ident, json_path, literal

ENGINES: Final = ("duckdb", "spark")


def open_engine(
    name: str = "duckdb",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    table: str | None = None,
    spark_master: str | None = None,
    memory_limit: str | None = None,
) -> Engine:
    """An engine over the prediction records of ``data_dir`` or ``table``."""
    if name == "duckdb":
        from predlog.tools.analytics.engine._duckdb import DuckDBEngine  # noqa: PLC0415

        return DuckDBEngine(data_dir, table=table, memory_limit=memory_limit)
    if name == "spark":
        from predlog.tools.analytics.engine._spark import SparkEngine  # noqa: PLC0415

        return SparkEngine(data_dir, table=table, master=spark_master)
    raise AnalyticsError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")


__all__ = ["ENGINES", "HTTP_ERROR_RULE", "Engine", "ident", "json_path", "literal", "open_engine"]
