"""Opening the prediction log with DuckDB, with errors a person can act on."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from predlog._settings import env_var, read
from predlog.errors import PredlogError


class AnalyticsError(PredlogError):
    """The data cannot answer the question; the message says why and what to check."""


def check_time(text: str, what: str) -> str:
    """``text`` if it is a date or an ISO 8601 time; otherwise an error naming ``what``.

    Checked here, before DuckDB casts it, so that ``--since 2026-13-45`` is one line
    saying so rather than a conversion error from inside a query.
    """
    try:
        datetime.fromisoformat(text.strip().removesuffix("Z").removesuffix("z"))
    except ValueError:
        raise AnalyticsError(
            f"{what}: {text!r} is not a date (2026-10-01) or an ISO 8601 time "
            "(2026-10-01T12:00:00+00:00)"
        ) from None
    return text


class Predictions:
    """The prediction records under a data directory, as a DuckDB view ``predictions``.

    Without ``data_dir`` the directory is the ``data_dir`` setting (``PREDLOG_DATA_DIR``
    or its declared default), so the analytics look where the logger writes.
    """

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, *, progress: bool = False
    ) -> None:
        import duckdb  # noqa: PLC0415  # the analytics extra

        root = Path(data_dir or read("data_dir"))
        self.root = root
        files = root / "predictions"
        if not root.exists():
            raise AnalyticsError(
                f"data directory {root} does not exist (set --data or {env_var('data_dir')})"
            )
        if not files.exists() or not any(files.glob("date=*/*.parquet")):
            raise AnalyticsError(
                f"no prediction files under {files}: nothing has been logged there yet, "
                "or files are still open (they are published on roll, flush and exit)"
            )
        self.con = duckdb.connect()
        if progress:
            # DuckDB draws its own bar on stderr for queries that run long.
            self.con.execute("SET enable_progress_bar = true")
        glob = str(files / "**" / "*.parquet").replace("'", "''")
        self.con.execute(  # the glob is quoted above; DuckDB cannot bind a view's path
            "CREATE VIEW predictions AS SELECT * FROM "  # noqa: S608
            f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
        )
        self.columns = {row[0] for row in self.con.execute("DESCRIBE predictions").fetchall()}

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
