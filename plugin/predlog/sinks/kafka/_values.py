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

No Python value is converted by Arrow here (``pa.scalar``, ``pa.array`` of a list, a
Python value given to a compute function): on its first use that conversion imports
pandas into the application's process, where pandas is installed, about 40 MiB and
40,000 objects more for every full pass of its garbage collector to walk. Scalars and
arrays are made from their bytes instead (:func:`text`, :func:`binaries`).
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
#: The largest offset of an Arrow string or binary array (32-bit offsets).
_MAX_OFFSET: Final = 2**31 - 1


def text(value: str) -> Any:
    """``value`` as an Arrow string scalar, made from its UTF-8 bytes (see the module
    docstring for why not ``pa.scalar``)."""
    data = value.encode()
    offsets = np.array([0, len(data)], dtype=np.int32)
    return pa.StringArray.from_buffers(1, pa.py_buffer(offsets.data), pa.py_buffer(data))[0]


def binaries(parts: list[bytes]) -> Any:
    """``parts`` as an Arrow binary array, made from their bytes (not ``pa.array``)."""
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)), out=offsets[1:])
    if offsets[-1] > _MAX_OFFSET:
        return pa.array(parts, type=pa.binary())  # past 32-bit offsets: Arrow's own way
    narrow = pa.py_buffer(offsets.astype(np.int32).data)
    data = pa.py_buffer(b"".join(parts))
    return pa.Array.from_buffers(pa.binary(), len(parts), [None, narrow, data])


_NULL: Final = text("null")
_QUOTE_TEXT: Final = text('"')
_CLOSE: Final = text("}")
_NOTHING: Final = text("")


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
            member = _quoted(times)
        elif name == "prediction_id":
            member = _json_text(name, column)  # one per record: never constant
        elif name == "data_quality" and not len(column.flatten()):
            constant[name] = []  # no flags at all, the usual case
            continue
        elif name != "data_quality" and is_constant(column):
            value = column[0].as_py()
            json_text = name in JSON_COLUMNS and value is not None
            constant[name] = orjson.Fragment(value) if json_text else value
            continue
        else:
            member = _json_text(name, column)
        pieces += [f',"{name}":', member]
    # The constants' object, open, then each varying column's member; the first
    # member's comma goes when there are no constants before it.
    head = orjson.dumps(constant)[:-1].decode() if constant else "{"
    pieces[0] = head + pieces[0] if constant else head + pieces[0][1:]
    pieces = [text(p) if isinstance(p, str) else p for p in pieces]
    joined = pc.binary_join_element_wise(*pieces, _CLOSE, _NOTHING)
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
        return pc.fill_null(column, _NULL)  # JSON text already
    if pa.types.is_string(kind) and not _needs_escape(column):
        return _quoted(column)
    if pa.types.is_integer(kind):
        return pc.fill_null(column.cast(pa.string()), _NULL)
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
    quoted = pc.binary_join_element_wise(_QUOTE_TEXT, column, _QUOTE_TEXT, _NOTHING)
    return pc.fill_null(quoted, _NULL)


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
    return binaries(parts).cast(pa.string())
