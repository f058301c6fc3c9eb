"""The Kafka record format: predlog record JSON, version 1.

One Kafka message per prediction record:

* **key**: the request id (UTF-8), or the prediction id when there is none, so a
  request's records share a partition and stay in order;
* **headers**: ``predlog-schema-version`` (``1``) and ``content-type``
  (``application/json``);
* **value**: one JSON object with every column of :func:`predlog.arrow_schema`:
  ``prediction_id`` as the usual UUID text, ``timestamp_utc`` as RFC 3339 with a
  UTC offset and microseconds, the JSON columns (``features``, ``features_summary``,
  ``extra``) as nested JSON objects, ``data_quality`` as an array of strings, and
  every other column as a JSON string, number or null.

Any JSON consumer reads it (``kcat -C -t predictions`` shows it as is).
:func:`decode` turns messages back into Arrow batches of the Parquet schema.
JSON per record was chosen over Arrow IPC per batch because it keeps one key per
record and needs no Arrow on the consumer side; ``benchmarks/bench_kafka.py``
measures both encodings.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from predlog._record import JSON_COLUMNS, SCHEMA_VERSION, arrow_schema

CONTENT_TYPE: Final = b"application/json"
HEADERS: Final = [
    ("predlog-schema-version", str(SCHEMA_VERSION).encode()),
    ("content-type", CONTENT_TYPE),
]
_SCHEMA: Final = arrow_schema()
#: Arrow's %S prints the fraction for microsecond timestamps: 2026-11-26T03:12:54.767701.
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S+00:00"


def _uuid_text(column: Any) -> list[str]:
    """Canonical 8-4-4-4-12 text of a uuid column, from its 16-byte storage in one pass."""
    raw = column.storage.buffers()[1].to_pybytes()[
        column.offset * 16 : (column.offset + len(column)) * 16
    ]
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-"
        f"{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, len(h), 32)
    ]


def encode(batch: pa.RecordBatch) -> list[tuple[bytes, bytes]]:
    """(key, value) per record of ``batch``, in order."""
    n = batch.num_rows
    # Column-wise conversions first: datetime and UUID objects per record would cost
    # more than all the rest of the encoding. Columns with one value for the whole
    # batch (model name and version, threshold, nulls, ...) are serialised once and
    # spliced into every record: about half of the columns, as a rule.
    varying: dict[str, list[Any]] = {}
    constant: dict[str, Any] = {}
    for name in _SCHEMA.names:
        column: Any = batch.column(name)
        if name == "prediction_id":
            varying[name] = _uuid_text(column)
        elif name == "timestamp_utc":
            varying[name] = pc.strftime(column, format=_TIME_FORMAT).to_pylist()
        elif name == "data_quality" and not len(column.flatten()):
            constant[name] = []  # no flags at all, the usual case
        elif name != "data_quality" and _is_constant(column):
            constant[name] = column[0].as_py() if n else None
        else:
            varying[name] = column.to_pylist()
    for name in JSON_COLUMNS:
        if name in varying:
            varying[name] = [None if v is None else orjson.Fragment(v) for v in varying[name]]
        elif constant[name] is not None:
            constant[name] = orjson.Fragment(constant[name])
    prefix = orjson.dumps(constant)[:-1] + b"," if constant else b"{"
    names = list(varying)
    keys = [
        (request_id or prediction_id).encode("utf-8")
        for request_id, prediction_id in zip(
            varying["request_id"] if "request_id" in varying else [constant["request_id"]] * n,
            varying["prediction_id"],
            strict=True,
        )
    ]
    dumps = orjson.dumps
    values = [
        prefix + dumps(dict(zip(names, row, strict=True)))[1:]
        for row in zip(*varying.values(), strict=True)
    ]
    return list(zip(keys, values, strict=True))


def _is_constant(column: Any) -> bool:
    """One value (or all null) in the whole column."""
    if column.null_count:
        return bool(column.null_count == len(column))
    return bool(pc.count_distinct(column).as_py() <= 1)


def decode(values: Sequence[bytes]) -> pa.RecordBatch:
    """Arrow batch (the Parquet schema) from message values in predlog record JSON v1.

    Raises ``ValueError`` when any value is not such a record: not JSON, not an
    object, another schema version, a column of the wrong type, or null where the
    schema allows none (a batch the Parquet sink would refuse).
    """
    try:
        return _decode(values)
    except ValueError:
        raise
    except (TypeError, AttributeError, OverflowError, pa.ArrowException) as exc:
        raise ValueError(f"not a predlog record: {exc!r}") from exc


def _decode(values: Sequence[bytes]) -> pa.RecordBatch:
    rows = [orjson.loads(v) for v in values]
    columns: dict[str, list[Any]] = {name: [] for name in _SCHEMA.names}
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"a predlog record is a JSON object, not {type(row).__name__}")
        version = row.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported predlog schema_version {version!r}")
        for name in _SCHEMA.names:
            columns[name].append(row.get(name))
    for name in JSON_COLUMNS:
        columns[name] = [None if v is None else orjson.dumps(v).decode() for v in columns[name]]
    ids = b"".join(uuid.UUID(v).bytes for v in columns["prediction_id"])
    storage = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(rows), [None, pa.py_buffer(ids)]
    )
    arrays: list[pa.Array] = []  # type: ignore[type-arg]
    for field in _SCHEMA:
        if field.name == "prediction_id":
            arrays.append(pa.ExtensionArray.from_storage(pa.uuid(), storage))
        elif field.name == "timestamp_utc":
            stamps = [datetime.fromisoformat(v) for v in columns[field.name]]
            arrays.append(pa.array(stamps, type=field.type))
        else:
            arrays.append(pa.array(columns[field.name], type=field.type))
        if not field.nullable and arrays[-1].null_count:
            raise ValueError(f"null {field.name}, which a predlog record always has")
    return pa.RecordBatch.from_arrays(arrays, schema=_SCHEMA)
