"""The JSON values of a batch's records, made column by column in Arrow.

A message value is one JSON object per record (:mod:`predlog.sinks.kafka._wire`
describes it). Made record by record, a dict and its Python values per record cost
more than everything else the sink does with a record, and leave tens of thousands of
small objects per batch behind for the collector and the allocator. Here each column
becomes the JSON text of its values, as one Arrow string array, and the columns are
joined into the records' objects by one Arrow call; the only Python objects per
record are the finished values.

The text is exactly what ``orjson.dumps`` makes of the record: Arrow's own
formatting is used only where it is the same (integers; strings that need no
escaping, quoted; the JSON columns, as they are), and every other column's values
(floats, strings that need escaping, lists) are serialised by orjson, one call per
column, so no formatting rule is reimplemented here. Columns with one value for the
whole batch are serialised once and spliced into every record.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from predlog._record import JSON_COLUMNS, arrow_schema

_SCHEMA: Final = arrow_schema()
#: What JSON must escape in a string, besides the bytes below 0x20 (orjson escapes
#: nothing else).
_QUOTE: Final = ord('"')
_BACKSLASH: Final = ord("\\")


def values(batch: pa.RecordBatch, times: Any) -> list[bytes]:
    """Each record's JSON value, in order; ``times`` is ``timestamp_utc`` as text
    (:mod:`predlog.sinks.kafka._rfc3339`), which the caller needs too."""
    n = batch.num_rows
    if not n:
        return []
    constant: dict[str, Any] = {}
    pieces: list[Any] = []
    for name in _SCHEMA.names:
        column: Any = batch.column(name)
        if name == "timestamp_utc":
            text = _quoted(times)
        elif name == "prediction_id":
            text = _json_text(name, column)  # one per record: never constant
        elif name == "data_quality" and not len(column.flatten()):
            constant[name] = []  # no flags at all, the usual case
            continue
        elif name != "data_quality" and is_constant(column):
            value = column[0].as_py()
            json_text = name in JSON_COLUMNS and value is not None
            constant[name] = orjson.Fragment(value) if json_text else value
            continue
        else:
            text = _json_text(name, column)
        pieces += [f',"{name}":', text]
    # The constants' object, open, then each varying column's member; the first
    # member's comma goes when there are no constants before it.
    head = orjson.dumps(constant)[:-1].decode() if constant else "{"
    pieces[0] = head + pieces[0] if constant else head + pieces[0][1:]
    joined = pc.binary_join_element_wise(*pieces, "}", "")
    return joined.cast(pa.binary()).to_pylist()  # type: ignore[no-any-return]


def is_constant(column: Any) -> bool:
    """One value (or all null) in the whole column.

    Without nulls, a column is constant when it equals itself shifted by one: one
    comparison that stops at the first difference, where counting distinct values
    hashes every one (a tenth of a millisecond against 8 for a batch's features).
    """
    if column.null_count:
        return bool(column.null_count == len(column))
    n = len(column)
    if pa.types.is_floating(column.type):
        # Bit for bit: 0.0 and -0.0 are equal numbers but not the same text.
        column = column.view(pa.int64() if column.type.bit_width == 64 else pa.int32())
    return n < 2 or bool(column.slice(1).equals(column.slice(0, n - 1)))


def _json_text(name: str, column: Any) -> Any:
    """The JSON text of each value of ``column``, as a string array without nulls."""
    kind = column.type
    if name in JSON_COLUMNS:
        return pc.fill_null(column, "null")  # JSON text already
    if pa.types.is_string(kind) and not _needs_escape(column):
        return _quoted(column)
    if pa.types.is_integer(kind):
        return pc.fill_null(column.cast(pa.string()), "null")
    return _by_orjson(column)


def _needs_escape(column: Any) -> bool:
    """Whether any value of a string column holds a byte JSON must escape.

    One pass of numpy over the values' bytes: a regular expression per value cost
    about 0.4 us a record for each string column, most of the encoding's time.
    """
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)
    data = column.buffers()[2]
    if data is None:
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    raw = raw[offsets[column.offset] : offsets[column.offset + len(column)]]
    return bool(((raw < 0x20) | (raw == _QUOTE) | (raw == _BACKSLASH)).any())


def _quoted(column: Any) -> Any:
    """Strings that need no escaping as JSON strings; null as ``null``."""
    return pc.fill_null(pc.binary_join_element_wise('"', column, '"', ""), "null")


def _by_orjson(column: Any) -> Any:
    """orjson's text for each value, one call for the column where the values can be
    split apart again (numbers, null), one call per value otherwise."""
    items = column.to_pylist()
    if pa.types.is_floating(column.type):
        # Numbers and nulls hold no comma: the array's text splits into its values.
        parts = orjson.dumps(items)[1:-1].split(b",")
    else:
        dumps = orjson.dumps
        parts = [dumps(v) for v in items]
    return pa.array(parts, type=pa.binary()).cast(pa.string())
