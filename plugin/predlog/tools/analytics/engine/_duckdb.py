"""The embedded engine: DuckDB, with its intermediate tables in a scratch file on disk.

DuckDB keeps memory under ``memory_limit`` by spilling sorts, joins and aggregations
to its temporary directory; the tables the metrics build (features extracted from
JSON, predictions joined with outcomes) live in a scratch database file beside it, so
memory does not grow with the number of records.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

from predlog.tools.analytics._data import AnalyticsError, Predictions
from predlog.tools.analytics.engine._base import Engine
from predlog.tools.analytics.engine._sql import ident, literal

#: DuckDB's memory limit unless told otherwise: enough to be quick, far under what a
#: laptop or a small pod has.
DEFAULT_MEMORY_LIMIT = "1GB"
_SIZE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
_UNIT: Final = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
#: Less than this and DuckDB cannot hold even a join's build side.
_SMALLEST: Final = 64e6
#: Scratch directories are named for the process that made them.
_PREFIX: Final = "predlog-analytics-"


def memory_limit_of(text: str | None) -> str:
    """``text`` if it is a size DuckDB takes and large enough to work in."""
    if text is None:
        return DEFAULT_MEMORY_LIMIT
    match = _SIZE.fullmatch(text.strip())
    size = 0.0 if match is None else float(match[1]) * _UNIT[match[2][0].lower()]
    if size < _SMALLEST:
        raise AnalyticsError(
            f"--memory-limit: {text!r} is not a size of at least 64MB such as 512MB or 2GB"
        )
    return text.strip()


def _sweep(root: Path) -> None:
    """Remove scratch directories of processes that are gone (killed mid-query)."""
    for path in root.glob(f"{_PREFIX}*-*"):
        pid = path.name[len(_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


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
        limit = memory_limit_of(memory_limit)
        if Path("/proc/self").exists():
            _sweep(Path(tempfile.gettempdir()))
        self._scratch = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
        try:
            self.data = Predictions(
                data_dir,
                table=table,
                database=self._scratch / "scratch.duckdb",
            )
            con = self.data.con
            con.execute(f"SET memory_limit = {literal(limit)}")
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
