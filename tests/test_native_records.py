"""The extension's decoder of Kafka values against the Python one, the reference.

Whatever the extension takes, it must decode as Python does; whatever Python refuses,
the extension must leave to Python (answer None), so that the error, and the count of
undecodable messages, stay Python's. Records predlog writes itself it must take.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import predlog
from predlog import _table
from predlog._record import JSON_COLUMNS, SCHEMA_VERSION
from predlog.sinks.kafka import decode, encode
from tests.test_kafka_values import records

pytestmark = pytest.mark.skipif(not _table.AVAILABLE, reason="the native extension is not built")

SCHEMA = predlog.arrow_schema()


def native(values: list[bytes]) -> pa.RecordBatch | None:
    batch = _table.decode_json_records(
        values, json_columns=JSON_COLUMNS, uuid_columns=("prediction_id",), version=SCHEMA_VERSION
    )
    return None if batch is None else _table.as_arrow(batch)


def reference(values: list[bytes]) -> pa.RecordBatch | None:
    """Python's batch, or None where Python refuses the values."""
    try:
        return decode(values, native=False)
    except ValueError:
        return None


def assert_same_or_declined(values: list[bytes]) -> pa.RecordBatch | None:
    taken = native(values)
    if taken is not None:
        expected = reference(values)
        assert expected is not None, f"the extension took values Python refuses: {values!r}"
        assert taken.schema.equals(expected.schema, check_metadata=True)
        for name in SCHEMA.names:
            assert taken.column(name).equals(expected.column(name)), name
    return taken


def as_predlog_writes(row: dict[str, Any]) -> dict[str, Any]:
    """The record of this schema version, without -0.0: the one value predlog writes
    that the extension leaves to Python (tested below)."""
    row = {k: 0.0 if v == 0.0 and isinstance(v, float) else v for k, v in row.items()}
    if not math.isfinite(row["sample_weight"]):
        row["sample_weight"] = 1.0  # sent as null, which this column never is
    for name in JSON_COLUMNS:
        if row[name] is not None and "-0.0" in row[name]:
            row[name] = None
    return {**row, "schema_version": SCHEMA_VERSION}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records().map(as_predlog_writes), min_size=1, max_size=12))
def test_takes_every_record_predlog_writes_and_decodes_it_as_python(
    rows: list[dict[str, Any]],
) -> None:
    values = [value for _, value, _, _ in encode(pa.RecordBatch.from_pylist(rows, schema=SCHEMA))]
    assert assert_same_or_declined(values) is not None


def _one_value() -> bytes:
    row = {
        "schema_version": 1,
        "prediction_id": str(uuid.uuid4()),
        "timestamp_utc": "2026-12-07T10:11:12.123456+00:00",
        "model_name": "m",
        "model_version": "v",
        "sample_weight": 1.0,
        "sampling_reason": "base_rate",
        "data_quality": [],
        "features": {"amount": 12.5, "merchant": "<script>"},
        "raw_score": 0.25,
        "feature_null_count": 0,
    }
    return orjson.dumps(row)


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=4),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = st.sampled_from([*SCHEMA.names, "unknown"])
TIME_TEXTS = [
    "2026-12-07T10:11:12.123456Z",
    "2026-12-07T10:11:12+00:00",
    "2026-12-07 10:11:12.123456+00:00",
    "2026-12-07T10:11:12.123456+01:00",
    "2026-02-29T10:11:12.123456+00:00",
    "2024-02-29T10:11:12.123456+00:00",
    "2026-13-01T10:11:12.123456+00:00",
    "2026-12-07T24:00:00.000000+00:00",
    "2026-12-07T10:11:60.000000+00:00",
    "0000-01-01T00:00:00.000000+00:00",
    "9999-12-31T23:59:59.999999+00:00",
    "2026-12-07T10:11:12.12345+00:00",
    "\uff12026-12-07T10:11:12.123456+00:00",  # a full-width digit: Python takes it
    "1970-01-01T00:00:00.000000+00:00",
    "1969-12-31T23:59:59.999999+00:00",
    "0001-01-01T00:00:00.000000+00:00",
]
#: Those in the form predlog writes, of real dates and times.
TAKEN_TIMES = {
    "2024-02-29T10:11:12.123456+00:00",
    "9999-12-31T23:59:59.999999+00:00",
    "1970-01-01T00:00:00.000000+00:00",
    "1969-12-31T23:59:59.999999+00:00",
    "0001-01-01T00:00:00.000000+00:00",
}
TIMES = st.sampled_from(TIME_TEXTS)
ID_TEXTS = [
    "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b",
    "0190A5B2-7C3D-7E4F-8A9B-0C1D2E3F4A5B",
    "{0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b}",
    "0190a5b27c3d7e4f8a9b0c1d2e3f4a5b",
    "not-a-uuid",
]
IDS = st.sampled_from(ID_TEXTS)


@st.composite
def hostile_values(draw: st.DrawFn) -> bytes:
    """A record with one field changed to anything, or its text broken."""
    row = orjson.loads(_one_value())
    for _ in range(draw(st.integers(1, 3))):
        name = draw(FIELDS)
        choice = draw(st.integers(0, 4))
        if choice == 0:
            row.pop(name, None)
        elif name == "timestamp_utc" and choice == 1:
            row[name] = draw(TIMES)
        elif name == "prediction_id" and choice == 1:
            row[name] = draw(IDS)
        else:
            row[name] = draw(JSON_VALUES)
    # The standard library's writer: any integer, spaces, other float spellings.
    text = json.dumps(row).encode()
    cut = draw(st.integers(0, 3))
    if cut == 1:
        text = text[: draw(st.integers(0, len(text)))]
    elif cut == 2:
        text = b" " + text.replace(b",", b" , ", 1) + b"\n"
    elif cut == 3:
        text = text.replace(b'"m"', b'"m","model_name":"twice"', 1)
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_values(), min_size=1, max_size=4))
def test_hostile_values_are_decoded_as_python_does_or_left_to_it(values: list[bytes]) -> None:
    assert_same_or_declined(values)


@pytest.mark.parametrize(
    "text",
    [
        b"[1, 2]",
        b'"a string"',
        b"null",
        b"{}",
        b'{"schema_version": 2}',
        b'{"schema_version": 1.0}',
        b'{"schema_version": true}',
        b"\xff\xfe",
        b'{"a": "\\ud800"}',
        b"[" * 200 + b"]" * 200,
    ],
)
def test_anything_not_a_record_is_left_to_python(text: bytes) -> None:
    assert native([_one_value(), text]) is None
    assert reference([_one_value(), text]) is None  # and Python refuses it with a reason


@pytest.mark.parametrize("stamp", TIME_TEXTS)
def test_times_are_read_as_python_reads_them_or_left_to_it(stamp: str) -> None:
    values = [orjson.dumps({**orjson.loads(_one_value()), "timestamp_utc": stamp})]
    taken = assert_same_or_declined(values)
    assert (taken is not None) == (stamp in TAKEN_TIMES)


@pytest.mark.parametrize("given", ID_TEXTS)
def test_ids_are_taken_only_in_canonical_form(given: str) -> None:
    values = [orjson.dumps({**orjson.loads(_one_value()), "prediction_id": given})]
    taken = assert_same_or_declined(values)
    assert (taken is not None) == (given == ID_TEXTS[0])


def test_values_python_rewrites_are_left_to_it() -> None:
    """Python converts these (a bool or a fraction into a number column, a non-canonical
    id into the canonical one); the extension declines rather than guess how."""
    base = orjson.loads(_one_value())
    for name, value in [
        ("raw_score", True),
        ("feature_null_count", 1.5),
        ("raw_score", 2**53),
        ("raw_score", -0.0),
        ("prediction_id", str(uuid.uuid4()).upper()),
    ]:
        values = [orjson.dumps({**base, name: value})]
        assert native(values) is None, (name, value)
        assert reference(values) is not None, (name, value)


def test_a_value_that_is_not_bytes_is_left_to_python() -> None:
    with pytest.raises(TypeError):
        _table.decode_json_records(
            [_one_value(), bytearray(_one_value())],  # type: ignore[list-item]
            json_columns=JSON_COLUMNS,
            uuid_columns=("prediction_id",),
            version=SCHEMA_VERSION,
        )
    assert decode([_one_value(), bytearray(_one_value())]).num_rows == 2  # type: ignore[list-item]


def test_the_consumer_uses_the_extension_and_gets_the_same_batch() -> None:
    values = [_one_value() for _ in range(50)]
    assert native(values) is not None
    assert decode(values).equals(decode(values, native=False))
