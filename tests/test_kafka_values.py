"""Message values made column-wise are the records orjson makes one by one, for any values."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import predlog
from predlog._record import JSON_COLUMNS
from predlog.sinks.kafka import encode

SCHEMA = predlog.arrow_schema()
#: Few values, so that columns are often constant for a batch, and often not.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
HOSTILE = st.sampled_from(['"', "\\", "\n", "\x00", "\x1f", "\x7f", "ü", "😀", "\u2028", ""])
STRINGS = st.one_of(st.none(), TEXT, HOSTILE, st.sampled_from(["a", "b,c"]))
FLOATS = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.1, 1e16, 1e-7, 5e-324, 123456789.0, 0.5]),
)
JSON_TEXT = st.one_of(
    st.none(),
    st.dictionaries(
        TEXT,
        st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), TEXT, st.floats(allow_nan=False)),
        max_size=3,
    ).map(lambda d: orjson.dumps(d).decode()),
)
STAMPS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for field in SCHEMA:
        kind = field.type
        if field.name == "prediction_id":
            row[field.name] = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
        elif field.name == "timestamp_utc":
            row[field.name] = draw(STAMPS)
        elif field.name in JSON_COLUMNS:
            row[field.name] = draw(JSON_TEXT)
        elif field.name == "data_quality":
            row[field.name] = draw(st.lists(st.one_of(TEXT, HOSTILE), max_size=2))
        elif pa.types.is_string(kind):
            value = draw(STRINGS)
            row[field.name] = value if value is not None or field.nullable else "x"
        elif pa.types.is_floating(kind):
            value = draw(FLOATS)
            row[field.name] = value if value is not None or field.nullable else 1.0
        else:
            row[field.name] = draw(st.one_of(st.none(), st.integers(-(2**15), 2**15 - 1)))
            if not field.nullable and row[field.name] is None:
                row[field.name] = 1
    return row


def one_by_one(row: dict[str, Any]) -> bytes:
    """The record as orjson makes it from the record's own values, sorted by name."""
    record = dict(row)
    stamp = record["timestamp_utc"]
    record["timestamp_utc"] = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    for name in JSON_COLUMNS:
        if record[name] is not None:
            record[name] = orjson.loads(record[name])
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def sorted_text(value: bytes) -> bytes:
    return orjson.dumps(orjson.loads(value), option=orjson.OPT_SORT_KEYS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=8), st.data())
def test_values_are_what_orjson_makes_of_each_record(rows, data):
    if rows and data.draw(st.booleans()):
        # Every row the same in some columns: the batch-constant path.
        shared = data.draw(records())
        names = data.draw(st.sets(st.sampled_from(SCHEMA.names)))
        for row in rows:
            row.update({n: shared[n] for n in names if n != "prediction_id"})
    batch = pa.RecordBatch.from_pylist(rows, schema=SCHEMA)
    messages = encode(batch)
    assert len(messages) == len(rows)
    for (key, value, stamp, _), row in zip(messages, rows, strict=True):
        assert sorted_text(value) == one_by_one(row)
        assert key == (row["request_id"] or row["prediction_id"]).encode()
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        assert stamp == (row["timestamp_utc"] - epoch) // timedelta(milliseconds=1)


def test_floats_keep_orjsons_text():
    """The text of a float is orjson's (shortest round trip, NaN as null), not Arrow's."""
    rows = [
        {**dict.fromkeys(SCHEMA.names), "prediction_id": str(uuid.uuid4()), "raw_score": v}
        for v in (1.0, 1e16, float("nan"), -0.0, 0.1)
    ]
    for row in rows:
        row.update(
            schema_version=1,
            timestamp_utc=datetime(2026, 1, 1, tzinfo=timezone.utc),
            model_name="m",
            model_version="v",
            sample_weight=1.0,
            sampling_reason="all",
            data_quality=[],
        )
    messages = encode(pa.RecordBatch.from_pylist(rows, schema=SCHEMA))
    texts = [re.search(rb'"raw_score":([^,}]*)', v).group(1) for _, v, _, _ in messages]
    assert texts == [b"1.0", b"1e+16", b"null", b"-0.0", b"0.1"]
