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

from predlog._record import JSON_COLUMNS, SCHEMA_VERSION, arrow_schema

CONTENT_TYPE: Final = b"application/json"
HEADERS: Final = [
    ("predlog-schema-version", str(SCHEMA_VERSION).encode()),
    ("content-type", CONTENT_TYPE),
]
_SCHEMA: Final = arrow_schema()


def encode(batch: pa.RecordBatch) -> list[tuple[bytes, bytes]]:
    """(key, value) per record of ``batch``, in order."""
    columns = {name: batch.column(name).to_pylist() for name in _SCHEMA.names}
    for name in JSON_COLUMNS:
        columns[name] = [None if v is None else orjson.Fragment(v) for v in columns[name]]
    names = _SCHEMA.names
    out: list[tuple[bytes, bytes]] = []
    dumps = orjson.dumps
    for values in zip(*(columns[name] for name in names), strict=True):
        row = dict(zip(names, values, strict=True))
        key = row["request_id"] or str(row["prediction_id"])
        out.append((key.encode("utf-8"), dumps(row)))
    return out


def decode(values: Sequence[bytes]) -> pa.RecordBatch:
    """Arrow batch (the Parquet schema) from message values in predlog record JSON v1."""
    rows = [orjson.loads(v) for v in values]
    columns: dict[str, list[Any]] = {name: [] for name in _SCHEMA.names}
    for row in rows:
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
    return pa.RecordBatch.from_arrays(arrays, schema=_SCHEMA)
