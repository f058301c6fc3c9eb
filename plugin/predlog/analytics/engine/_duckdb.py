"""The embedded engine: DuckDB, with its intermediate tables in a scratch file on disk.

DuckDB keeps memory under ``memory_limit`` by spilling sorts, joins and aggregations
to its temporary directory; the tables the metrics build (features extracted from
JSON, predictions joined with outcomes) live in a scratch database file beside it, so
memory does not grow with the number of records.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from predlog.analytics._data import Predictions
from predlog.analytics.engine._base import Engine
from predlog.analytics.engine._sql import ident, literal

#: DuckDB's memory limit unless told otherwise: enough to be quick, far under what a
#: laptop or a small pod has.
DEFAULT_MEMORY_LIMIT = "1GB"


class DuckDBEngine(Engine):
    name = "duckdb"
    dialect = "duckdb"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None,
        *,
        table: str | None,
        memory_limit: str | None = None,
    ) -> None:
        self._scratch = Path(tempfile.mkdtemp(prefix="predlog-analytics-"))
        try:
            self.data = Predictions(
                data_dir,
                table=table,
                database=self._scratch / "scratch.duckdb",
            )
            con = self.data.con
            con.execute(f"SET memory_limit = {literal(memory_limit or DEFAULT_MEMORY_LIMIT)}")
            con.execute(f"SET temp_directory = {literal(str(self._scratch / 'spill'))}")
            # Row order of intermediate tables does not matter; not keeping it lets
            # DuckDB stream and spill more freely.
            con.execute("SET preserve_insertion_order = false")
            con.execute("SET enable_progress_bar = false")  # it would write to stdout
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise
        self.where = self.data.where
        self.columns = self.data.columns

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        result: list[tuple[Any, ...]] = self.data.con.execute(sql).fetchall()
        return result

    def materialise(self, name: str, sql: str) -> None:
        self.data.con.execute(f"CREATE OR REPLACE TABLE {ident(name)} AS {sql}")

    def outcomes(self, path: Path) -> set[str]:
        reader = "read_parquet" if path.suffix == ".parquet" else "read_csv_auto"
        self.data.con.execute(
            f"CREATE OR REPLACE VIEW outcomes AS SELECT * FROM {reader}({literal(str(path))})"
        )
        return {r[0] for r in self.data.con.execute("DESCRIBE outcomes").fetchall()}

    def close(self) -> None:
        try:
            self.data.con.close()
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)
