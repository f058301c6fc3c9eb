"""The analytics' SQL text: written once, in DuckDB's dialect, and rendered for each engine.

Queries are built as DuckDB SQL with every value inlined as a literal that sqlglot
renders (so a feature name or a category cannot break out of its quotes), then
transpiled by sqlglot for engines that speak another dialect. One text per query,
not a hand-kept copy per engine: what DuckDB answers, Spark answers from the same
definition.
"""

from __future__ import annotations

import functools
import math
from typing import Any

SOURCE_DIALECT = "duckdb"


def literal(value: Any) -> str:
    """``value`` as a SQL literal (string, number, boolean or NULL)."""
    from sqlglot import exp  # noqa: PLC0415  # the analytics extra

    if isinstance(value, float) and math.isnan(value):  # NaN has no portable literal
        return "CAST('NaN' AS DOUBLE)"
    rendered: str = exp.convert(value).sql(dialect=SOURCE_DIALECT)
    return rendered


def ident(name: str) -> str:
    """``name`` as a quoted identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def json_path(key: str) -> str:
    """The JSON path literal of a top-level key (sqlglot renders it for each engine)."""
    return literal("$." + '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"')


@functools.lru_cache(maxsize=256)
def render(sql: str, dialect: str) -> str:
    """``sql`` (DuckDB's dialect) as ``dialect`` writes it."""
    if dialect == SOURCE_DIALECT:
        return sql
    import sqlglot  # noqa: PLC0415
    from sqlglot.errors import ErrorLevel  # noqa: PLC0415

    (out,) = sqlglot.transpile(
        sql, read=SOURCE_DIALECT, write=dialect, unsupported_level=ErrorLevel.RAISE
    )
    return out
