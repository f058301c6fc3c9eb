"""What the analytics ask of an engine: run a query, keep an intermediate table, read outcomes."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

from predlog.tools.analytics._data import AnalyticsError
from predlog.tools.analytics.engine._sql import http_error, render


class Engine(abc.ABC):
    """A SQL engine holding the view ``predictions`` (and, once opened, ``outcomes``).

    Every query is DuckDB SQL (see :mod:`predlog.tools.analytics.engine._sql`); an engine
    that speaks another dialect runs it transpiled. Only small results come back: the
    metrics are aggregations the engine computes where the data is.
    """

    #: ``duckdb`` or ``spark``, as ``--engine`` names it.
    name: str
    #: sqlglot's name for the engine's dialect.
    dialect: str
    #: What the records were read from, for messages.
    where: str
    #: The columns of ``predictions``.
    columns: set[str]

    def sql(self, text: str) -> str:
        """``text`` as this engine writes it."""
        return render(text, self.dialect)

    def http_error(self, alias: str | None = None) -> str:
        """SQL true for a record of a refused or failed request (see
        :func:`~predlog.tools.analytics.engine._sql.http_error`), ``alias`` naming the records'
        table in a join; false everywhere when the records have no ``extra`` column."""
        if "extra" not in self.columns:
            return "FALSE"
        return http_error(f"{alias}.extra" if alias else "extra")

    def unreadable(self, key: str) -> str | None:
        """Why this engine cannot read the feature ``key`` from the JSON, or None."""
        return None

    @abc.abstractmethod
    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a query (DuckDB SQL), as tuples."""

    @abc.abstractmethod
    def materialise(self, name: str, sql: str) -> None:
        """Keep a query's result as the table ``name``, out of memory if it is large.

        The metrics read the records they compare several times; extracting features
        from JSON once, into a columnar table the engine can spill, is cheaper than
        every query parsing them again.
        """

    @abc.abstractmethod
    def outcomes(self, path: Path) -> set[str]:
        """Make the outcomes file (CSV or Parquet) the view ``outcomes``; its columns."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the engine holds (scratch tables, a session)."""

    def require(self, *columns: str) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise AnalyticsError(
                f"the prediction records have no column {', '.join(missing)} "
                f"(found: {', '.join(sorted(self.columns))})"
            )

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
