"""The Kafka record format: predlog record JSON, version 1.

One Kafka message per prediction record:

* **key**: the request id (UTF-8), or the prediction id when there is none, so a
  request's records share a partition and stay in order;
* **timestamp**: the prediction's own time (``timestamp_utc``, in milliseconds), not
  the time of sending, so a record replayed from the spool after an outage keeps it;
* **headers**: ``predlog-schema-version`` (``1``) and ``content-type``
  (``application/json``); the CloudEvents binary-mode headers of its Kafka protocol
  binding (``ce_specversion`` ``1.0``, ``ce_id`` the prediction id, ``ce_source``
  ``predlog/<model name, percent-encoded>``, ``ce_type``
  ``dev.predlog.prediction.v1``, ``ce_time`` the prediction's time in RFC 3339), so
  that CloudEvents consumers (Knative, KServe tooling) take each message as an event
  whose data is the value; and ``traceparent`` (W3C Trace Context,
  ``00-<trace id>-<span id>-01``) when the record carries a valid trace and span id;
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

import gc
import operator
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final, TypeAlias
from urllib.parse import quote

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from predlog import _table
from predlog._record import JSON_COLUMNS, SCHEMA_VERSION, arrow_schema
from predlog.sinks.kafka import _rfc3339
from predlog.sinks.kafka._values import is_constant, text, values

CONTENT_TYPE: Final = b"application/json"
#: The headers of predlog record JSON v1 itself, on every message.
HEADERS: Final = [
    ("predlog-schema-version", str(SCHEMA_VERSION).encode()),
    ("content-type", CONTENT_TYPE),
]
#: CloudEvents attributes that are the same for every record of this schema version.
EVENT_TYPE: Final = f"dev.predlog.prediction.v{SCHEMA_VERSION}".encode()
_EVENT_HEADERS: Final = [*HEADERS, ("ce_specversion", b"1.0"), ("ce_type", EVENT_TYPE)]
_TRACE_ID: Final = re.compile(r"[0-9a-f]{32}")
_SPAN_ID: Final = re.compile(r"[0-9a-f]{16}")

#: A list, not any sequence: aiokafka's record builder takes nothing else.
Headers: TypeAlias = list[tuple[str, bytes]]
#: One Kafka message: key, value, timestamp (milliseconds since the epoch; ``None``
#: leaves it to the producer's clock) and headers.
Message: TypeAlias = tuple[bytes, bytes, int | None, Headers]
_SCHEMA: Final = arrow_schema()
# Arrow scalars made from their bytes, not converted from Python values: that
# conversion imports pandas (see predlog.sinks.kafka._values).
_EMPTY: Final = text("")
_VERSION: Final = text("00-")
_DASH: Final = text("-")
_SAMPLED: Final = text("-01")
_ZERO_TRACE: Final = text("0" * 32)
_ZERO_SPAN: Final = text("0" * 16)
_NO_TEXT: Final = pa.nulls(1, pa.string())[0]
_THOUSAND: Final = pa.Int64Array.from_buffers(
    pa.int64(), 1, [None, pa.py_buffer((1000).to_bytes(8, "little"))]
)[0]


def encode(batch: pa.RecordBatch) -> list[Message]:
    """One message per record of ``batch``, in order: :func:`messages`, one tuple each."""
    return list(messages(batch))


class Messages:
    """A batch's messages column by column: what :func:`encode` gives, before any
    per-record tuple or header list is made.

    Iterating gives each :data:`Message` with headers of its own. The producer uses
    :meth:`each` instead: one list of headers, rewritten in place for every record,
    since aiokafka copies a record's headers into the batch as it appends it. Kept
    tuples and lists per record (seven objects each) made the garbage collector pass
    over every one of them again and again while the batch grew, and over everything
    else the process holds (the ring, full behind the flusher): measured, that cost
    twice the encoding itself. Bytes and ints are never tracked by the collector, and a
    tuple freed before the next collection costs it nothing.
    """

    __slots__ = ("ids", "keys", "parents", "sources", "stamps", "times", "values")

    def __init__(
        self,
        *,
        keys: list[bytes],
        values: list[bytes],
        stamps: list[int | None],
        ids: list[bytes],
        times: list[bytes],
        sources: list[tuple[str, bytes]],
        parents: list[bytes | None],
    ) -> None:
        #: Per record: the key, the value, the timestamp (ms), and what the headers are
        #: made of: the prediction id, the time as text, the ``ce_source`` header (one
        #: shared tuple per model) and the ``traceparent`` value (``None``: no header).
        self.keys = keys
        self.values = values
        self.stamps = stamps
        self.ids = ids
        self.times = times
        self.sources = sources
        self.parents = parents

    def __len__(self) -> int:
        return len(self.keys)

    def part(self, start: int, stop: int) -> Messages:
        """The messages from ``start`` up to ``stop``, column by column."""
        return Messages(
            keys=self.keys[start:stop],
            values=self.values[start:stop],
            stamps=self.stamps[start:stop],
            ids=self.ids[start:stop],
            times=self.times[start:stop],
            sources=self.sources[start:stop],
            parents=self.parents[start:stop],
        )

    def __iter__(self) -> Iterator[Message]:
        for key, value, stamp, headers in self.each():
            yield key, value, stamp, list(headers)

    def each(self) -> Iterator[Message]:
        """Each message in order, its headers one list that the next message rewrites:
        read (or copy) them before asking for the next."""
        f0, f1, f2, f3 = _EVENT_HEADERS
        plain: Headers = [f0, f1, f2, f3, f0, f0, f0]
        traced: Headers = [f0, f1, f2, f3, f0, f0, f0, f0]
        columns = (self.keys, self.values, self.stamps, self.ids, self.sources, self.times)
        for (key, value, stamp, pid, source, time), parent in zip(
            zip(*columns, strict=True), self.parents, strict=True
        ):
            headers = plain if parent is None else traced
            headers[4] = ("ce_id", pid)
            headers[5] = source
            headers[6] = ("ce_time", time)
            if parent is not None:
                headers[7] = ("traceparent", parent)
            yield key, value, stamp, headers


def messages(batch: pa.RecordBatch) -> Messages:
    """The messages of every record of ``batch``, in order, column by column.

    Everything is made column-wise (:mod:`predlog.sinks.kafka._values` for the values):
    per record only the message's own bytes are made, no intermediate objects.

    It runs in the application's process, so it leaves the garbage collector alone:
    pausing it would be a process-wide change the application never asked for (and
    could undo an application's own ``gc.disable()``). The consumer's :func:`decode`,
    in predlog's own process, does pause it.
    """
    n = batch.num_rows
    if not n:
        return Messages(keys=[], values=[], stamps=[], ids=[], times=[], sources=[], parents=[])
    ids: Any = batch.column("prediction_id")
    request_ids: Any = batch.column("request_id")
    times: Any = _rfc3339.texts(batch.column("timestamp_utc"))
    # The request id, or the prediction id where there is none (or it is empty).
    has_request_id = pc.and_kleene(pc.is_valid(request_ids), pc.not_equal(request_ids, _EMPTY))
    keys = pc.if_else(has_request_id, request_ids, ids).cast(pa.binary()).to_pylist()
    micros = pc.cast(batch.column("timestamp_utc"), pa.int64())
    stamps = pc.divide(micros, _THOUSAND).to_pylist()
    return Messages(
        keys=keys,
        values=values(batch, times),
        stamps=stamps,
        ids=ids.cast(pa.binary()).to_pylist(),
        times=times.cast(pa.binary()).to_pylist(),
        sources=_sources(batch.column("model_name")),
        parents=_traceparents(batch.column("trace_id"), batch.column("span_id")),
    )


def _sources(models: Any) -> list[tuple[str, bytes]]:
    """Each record's ``ce_source`` header, one shared tuple per model."""
    if is_constant(models):
        return [("ce_source", source_for(models[0].as_py()))] * len(models)
    known: dict[str, tuple[str, bytes]] = {}
    return [
        known.get(m) or known.setdefault(m, ("ce_source", source_for(m)))
        for m in models.to_pylist()
    ]


def _traceparents(trace_ids: Any, span_ids: Any) -> list[bytes | None]:
    """The ``traceparent`` value per record, ``None`` where the ids are missing or not
    W3C's."""
    if trace_ids.null_count == len(trace_ids) or span_ids.null_count == len(span_ids):
        return [None] * len(trace_ids)
    joined = pc.binary_join_element_wise(_VERSION, trace_ids, _DASH, span_ids, _SAMPLED, _EMPTY)
    valid = pc.and_kleene(
        pc.match_substring_regex(joined, "^00-[0-9a-f]{32}-[0-9a-f]{16}-01$"),
        # All zeros is W3C's invalid id.
        pc.and_kleene(
            pc.not_equal(trace_ids, _ZERO_TRACE),
            pc.not_equal(span_ids, _ZERO_SPAN),
        ),
    )
    return pc.if_else(valid, joined, _NO_TEXT).cast(pa.binary()).to_pylist()  # type: ignore[no-any-return]


def source_for(model_name: str) -> bytes:
    """The ``ce_source`` of a model's records: a relative URI reference, ``predlog/<name>``
    with the name percent-encoded, so any model name makes a valid one."""
    return f"predlog/{quote(model_name, safe='')}".encode()


def headers_for(
    prediction_id: str, time_text: str, source: bytes, trace_id: str | None, span_id: str | None
) -> Headers:
    """One record's headers: the format's own, CloudEvents binary mode, and ``traceparent``;
    :func:`encode` makes the same ones column-wise.

    ``traceparent`` is added only for ids W3C Trace Context accepts (lowercase hex, 32
    and 16 digits, not all zero): ids a caller passed to ``log()`` may be anything, and
    a malformed one would make consumers drop the whole header or the trace.
    """
    headers = [
        *_EVENT_HEADERS,
        ("ce_id", prediction_id.encode()),
        ("ce_source", source),
        ("ce_time", time_text.encode()),
    ]
    if (
        trace_id is not None
        and span_id is not None
        and _TRACE_ID.fullmatch(trace_id)
        and _SPAN_ID.fullmatch(span_id)
        and trace_id.strip("0")
        and span_id.strip("0")
    ):
        headers.append(("traceparent", f"00-{trace_id}-{span_id}-01".encode()))
    return headers


def decode(values: Sequence[bytes], *, native: bool = True) -> pa.RecordBatch:
    """Arrow batch (the Parquet schema) from message values in predlog record JSON v1.

    Raises ``ValueError`` when any value is not such a record: not JSON, not an
    object, another schema version, a column of the wrong type, or null where the
    schema allows none (a batch the Parquet sink would refuse).

    With ``native`` and the extension built, the extension parses the values and
    builds the columns (``native/src/records.rs``) when every value is a record it
    reads exactly as the code below does; any other batch is decoded here, the
    reference, which also says what is wrong with a bad one.
    """
    if native and _table.AVAILABLE and type(values) is list:
        try:
            batch = _table.decode_json_records(
                values,
                json_columns=JSON_COLUMNS,
                uuid_columns=_UUID_COLUMNS,
                version=SCHEMA_VERSION,
            )
        except TypeError:  # a value that is not bytes: the reference says what it is
            batch = None
        if batch is not None:
            return _table.as_arrow(batch)
    # A batch is tens of thousands of fresh dicts and lists, none in a cycle: the
    # collector's passes over them cost more than the decoding (measured: 1.3-2x), so
    # it waits until the batch is built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _decode(values)
    except ValueError:
        raise
    except (TypeError, AttributeError, OverflowError, pa.ArrowException) as exc:
        raise ValueError(f"not a predlog record: {exc!r}") from exc
    finally:
        if collecting:
            gc.enable()


def _decode(values: Sequence[bytes]) -> pa.RecordBatch:
    rows = [orjson.loads(v) for v in values]
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"a predlog record is a JSON object, not {type(row).__name__}")
        version = row.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported predlog schema_version {version!r}")
    columns = _columns(rows)
    for name in JSON_COLUMNS:
        columns[name] = [None if v is None else orjson.dumps(v).decode() for v in columns[name]]
    arrays: list[pa.Array] = []  # type: ignore[type-arg]
    for field in _SCHEMA:
        if field.name == "prediction_id":
            arrays.append(_canonical_ids(columns[field.name]))
        elif field.name == "timestamp_utc":
            stamps = [datetime.fromisoformat(v) for v in columns[field.name]]
            arrays.append(pa.array(stamps, type=field.type))
        else:
            arrays.append(pa.array(columns[field.name], type=field.type))
        if not field.nullable and arrays[-1].null_count:
            raise ValueError(f"null {field.name}, which a predlog record always has")
    return pa.RecordBatch.from_arrays(arrays, schema=_SCHEMA)


_ALL_FIELDS: Final = operator.itemgetter(*_SCHEMA.names)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The rows' values column by column; a field a record lacks is null.

    Every record predlog writes has every field, so one C-level getter per record and
    a transpose do it (a third of the time of a lookup per field); a record without
    some field (another writer's) falls back to looking each one up.
    """
    try:
        picked = [_ALL_FIELDS(row) for row in rows]
    except KeyError:
        return {name: [row.get(name) for row in rows] for name in _SCHEMA.names}
    if not picked:
        return {name: [] for name in _SCHEMA.names}
    return {
        name: list(values)
        for name, values in zip(_SCHEMA.names, zip(*picked, strict=True), strict=True)
    }


#: Columns whose values must be canonical UUID text (:func:`_canonical_ids`).
_UUID_COLUMNS: Final = ("prediction_id",)
_CANONICAL_ID: Final = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _canonical_ids(values: list[Any]) -> pa.StringArray:
    """The ids as canonical UUID text; ``ValueError`` for any that is no UUID.

    Ids in canonical form (all that predlog writes) are checked in one pass. Any other
    spelling Python's ``uuid.UUID`` takes (upper case, braces, ``urn:uuid:``, no dashes)
    is rewritten to the canonical one, so that the same id never lands as two values.
    """
    ids: Any = pa.array(values, type=pa.string())
    canonical = pc.match_substring_regex(ids, _CANONICAL_ID)
    if ids.null_count or pc.all(canonical).as_py():
        return ids  # type: ignore[no-any-return]  # nulls are refused by the caller
    return pa.array(
        [
            v if ok else _canonical_id(v)
            for v, ok in zip(values, canonical.to_pylist(), strict=True)
        ],
        type=pa.string(),
    )


def _canonical_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValueError(f"prediction_id {text!r} is not a UUID") from None
