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

    if isinstance(value, float) and not math.isfinite(value):  # no portable literal
        text = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return f"CAST('{text}' AS DOUBLE)"
    rendered: str = exp.convert(value).sql(dialect=SOURCE_DIALECT)
    return rendered


def ident(name: str) -> str:
    """``name`` as a quoted identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def json_path(key: str) -> str:
    """The JSON path literal of a top-level key (sqlglot renders it for each engine)."""
    return literal("$." + '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"')


def feature(key: str, document: str = "features") -> str:
    """The text of one feature of a JSON document column; NULL when the key is absent or
    the document is malformed (a record flagged at capture must not stop a report)."""
    return f"TRY(json_extract_string({document}, {json_path(key)}))"


#: What :func:`http_error` calls an error, for reports.
HTTP_ERROR_RULE = (
    "an error is a record whose extra.http_status (the status the service answered) is "
    "outside 200-299; records without one (log(), record() outside a request) never are"
)


def http_error(extra: str = "extra") -> str:
    """SQL true for a record of a request the service refused or failed, else false.

    The one definition ``drift`` and ``evaluate`` share, on every engine: the HTTP
    status the middleware keeps in the ``extra`` document lies outside 200-299. A
    record without a status (written by ``log()``, or a status that is not a number)
    is never an error, so it is never left out.
    """
    status = f"TRY_CAST({feature('http_status', extra)} AS DOUBLE)"
    return f"coalesce({status} < 200 OR {status} >= 300, FALSE)"


@functools.lru_cache(maxsize=256)
def render(sql: str, dialect: str) -> str:
    """``sql`` (DuckDB's dialect) as ``dialect`` writes it.

    Anything sqlglot cannot express in ``dialect`` is an error, never a silent change,
    with one exception: ``TRY(x)`` becomes ``x``. The queries wrap only JSON extraction
    in it (DuckDB raises on a malformed document), and Spark's JSON functions already
    return NULL there.
    """
    if dialect == SOURCE_DIALECT:
        return sql
    import sqlglot  # noqa: PLC0415
    from sqlglot import exp  # noqa: PLC0415
    from sqlglot.errors import ErrorLevel  # noqa: PLC0415

    tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    tree = tree.transform(lambda node: node.this if isinstance(node, exp.Try) else node)
    out: str = tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    return out
