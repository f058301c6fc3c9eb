"""Fuzzing every decoder that reads bytes predlog did not write.

Each input must yield a record, a counted failure or the documented named error;
no other exception may escape.
"""

from __future__ import annotations

import contextlib
import json
import struct
import tempfile
import zlib
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from predlog import arrow_schema
from predlog._capture import EXTRA, FEATURES, FLAGS
from predlog.audit import leaf_hash
from predlog.audit._store import HEAD, ReadOnlyStore, UnreadableError, parse_records
from predlog.flush import BatchBuilder, ExchangeDecoder, as_arrow
from predlog.flush._decode import JSON_OPTIONS, json_extractor, loads, optional_str
from predlog.flush._exchange import field_path, flatten
from predlog.sinks.kafka import decode, encode
from predlog.storage import Spool
from predlog.testing import CAPTURE_FIELDS, ErrorReporter, Exchange, resolve
from predlog.tools.sink import Batch, ConsumerStats, ParquetDestination

AT_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def fuzz(max_examples):
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def capture(**values):
    """A capture tuple with the named values and None everywhere else."""
    values.setdefault("timestamp_ns", AT_NS)
    return tuple(values.get(name) for name in CAPTURE_FIELDS)


def ignore_report(kind, message, exc):
    return None


# Hostile JSON bodies ---------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=8), children, max_size=5),
    ),
    max_leaves=20,
)


@st.composite
def deep_nesting(draw):
    depth = draw(st.integers(min_value=900, max_value=3500))
    opener, closer = draw(
        st.sampled_from(
            [(b'{"a":', b"}"), (b'{"b":1,"a":', b"}"), (b"[", b"]"), (b'[{"a":[', b"]}]")]
        )
    )
    leaf = draw(st.sampled_from([b"1", b"[]", b"{}", b'"x"', b"NaN"]))
    body = opener * depth + leaf + closer * depth
    if draw(st.booleans()):
        body = b'{"score":' + body + b',"decision":' + body + b',"f":1}'
    return body


@st.composite
def many_keys(draw):
    count = draw(st.integers(min_value=1, max_value=20_000))
    value = draw(st.sampled_from([b"1", b"NaN", b'"v"', b"null", b"1e400"]))
    return b"{" + b",".join(b'"k%d":%s' % (i, value) for i in range(count)) + b"}"


@st.composite
def huge_number(draw):
    digits = draw(st.integers(min_value=18, max_value=6000))
    sign = draw(st.sampled_from([b"", b"-"]))
    number = sign + b"9" * digits
    number += draw(st.sampled_from([b"", b".5", b"e400", b"e-400", b"E+99999"]))
    lenient = draw(st.sampled_from([b"", b',"n":NaN']))
    return draw(st.sampled_from([number, b'{"score":' + number + lenient + b"}"]))


@st.composite
def odd_literals(draw):
    literal = draw(
        st.sampled_from(
            [
                b"NaN",
                b"-Infinity",
                b"Infinity",
                b'"\\ud800"',
                b'"\\udfff"',
                b'"\\ud83d\\ude00"',
                b'"a\\udc00b"',
                b'"\xff\xfe"',
                b'"\xed\xa0\x80"',
                b'"\xc3"',
                b"1" + b"0" * 30,
            ]
        )
    )
    shape = draw(
        st.sampled_from(
            [
                b"%s",
                b'{"a":%s}',
                b"{%s:1}",
                b'{"score":%s,"decision":%s}',
                b'{"tx":{"a":%s,"b":[%s,%s]}}',
                b"[%s]",
            ]
        )
    )
    return shape.replace(b"%s", literal)


duplicate_keys = st.sampled_from(
    [
        b'{"a":1,"a":2}',
        b'{"score":0.1,"score":"high"}',
        b'{"decision":"ok","decision":{"x":1}}',
        b'{"tx":{"a":1},"tx":{"b":2}}',
    ]
)


@st.composite
def mutated(draw, bodies):
    body = bytearray(draw(bodies))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if not body:
            body += draw(st.binary(min_size=1, max_size=4))
            continue
        at = draw(st.integers(min_value=0, max_value=len(body) - 1))
        if action == "flip":
            body[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif action == "insert":
            body[at:at] = draw(
                st.sampled_from([b"\xff", b"\xc3", b"\x00", b"NaN", b"\\ud800", b"{", b"]"])
            )
        elif action == "delete":
            del body[at]
        else:
            del body[at:]
    return bytes(body)


valid_bodies = json_values.map(lambda v: json.dumps(v, allow_nan=True).encode())
hostile_bodies = st.one_of(
    st.binary(max_size=64),
    valid_bodies,
    deep_nesting(),
    many_keys(),
    huge_number(),
    odd_literals(),
    duplicate_keys,
)
bodies = st.one_of(hostile_bodies, mutated(hostile_bodies))


# The exchange decoder ---------------------------------------------------------------

path_steps = st.sampled_from(
    ["a", "b", "0", "1", "tx", "score", "decision", "k1", "", "\u00b2", "\u0663", "0" * 5000]
)
field_paths = st.one_of(
    st.none(),
    st.lists(path_steps, min_size=1, max_size=4).map(".".join),
    st.text(max_size=10),
)
recorded_names = st.one_of(
    st.sampled_from(
        [
            "features",
            "score",
            "decision",
            "threshold",
            "session_id",
            "model_version",
            "feature_timestamps",
            "feature_fetch_ms",
            "inference_ms",
            "customer_tier",
        ]
    ),
    st.text(max_size=8),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from([b"application/json", b"APPLICATION/JSON; charset=utf-8", b"text/plain"]),
    st.binary(max_size=16),
)


def failing_extractor(body):
    raise RuntimeError("extractor failed")


@st.composite
def decoders(draw):
    return ExchangeDecoder(
        features_field=draw(field_paths),
        score_field=draw(field_paths),
        decision_field=draw(field_paths),
        request_extractor=draw(st.sampled_from([None, None, json_extractor, failing_extractor])),
        response_extractor=draw(st.sampled_from([None, None, json_extractor, failing_extractor])),
    )


@st.composite
def chunked(draw, body):
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(body)), max_size=3)))
    bounds = [0, *cuts, len(body)]
    chunks = [body[a:b] for a, b in pairwise(bounds)]
    size = draw(st.sampled_from(["exact", "more", "less"]))
    if size == "more":
        return chunks, len(body) + draw(st.integers(min_value=1, max_value=1 << 20))
    if size == "less":
        return chunks, draw(st.integers(min_value=0, max_value=len(body)))
    return chunks, len(body)


@st.composite
def exchanges(draw, decoder=None):
    ex = Exchange(
        draw(st.sampled_from(["POST", "GET", "PUT"])),
        draw(st.text(max_size=20)),
        decoder if decoder is not None else draw(decoders()),
    )
    ex.request_chunks, ex.request_size = draw(chunked(draw(bodies)))
    ex.response_chunks, ex.response_size = draw(chunked(draw(bodies)))
    ex.request_content_type = draw(content_types)
    ex.response_content_type = draw(content_types)
    ex.response_parts = draw(st.integers(min_value=0, max_value=3))
    ex.streamed = draw(st.booleans())
    ex.status = draw(st.integers(min_value=0, max_value=999))
    ex.handler_failed = draw(st.booleans())
    ex.invalid_request_id = draw(st.one_of(st.none(), st.text(max_size=300)))
    ex.request_id_repeated = draw(st.booleans())
    ex.fields = draw(st.dictionaries(recorded_names, json_values, max_size=4))
    return ex


@st.composite
def exchange_captures(draw):
    return capture(
        request_id=draw(st.one_of(st.none(), st.text(max_size=12))),
        features=draw(exchanges()),
        extra=draw(st.one_of(st.none(), st.dictionaries(st.text(max_size=5), json_scalars))),
        trace_id=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**128 - 1))),
        span_id=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1))),
        flags=draw(st.one_of(st.none(), st.just(("given_flag",)))),
    )


def one_exchange(request=None, response=b'{"score":0.5}'):
    """An exchange as the middleware leaves it, holding these whole bodies."""
    ex = Exchange("POST", "/predict", ExchangeDecoder())
    for chunks, body in ((ex.request_chunks, request), (ex.response_chunks, response)):
        if body is not None:
            chunks.append(body)
    ex.request_size = len(request or b"")
    ex.response_size = len(response or b"")
    ex.response_parts = 1
    ex.status = 200
    return ex


def build_one_per_input(captures):
    """Build a batch and check it holds one row per capture, in order."""
    reporter = ErrorReporter()
    builder = BatchBuilder.from_settings(resolve({}), reporter=reporter)
    result = builder.build(captures)
    assert (result.kept, result.sampled_out, result.failed) == (len(captures), 0, 0), (
        reporter.counts()
    )
    assert result.batch is not None
    batch = as_arrow(result.batch)
    assert batch.schema.equals(arrow_schema(), check_metadata=True)
    return batch.to_pylist()


class TestExchangeDecoderFuzz:
    @fuzz(500)
    @given(exchange_captures())
    def test_resolve_returns_a_capture_for_any_exchange(self, value):
        """resolve() returns a whole capture, string flags and HTTP extras, whatever the bodies."""
        resolved = value[FEATURES].decoder.resolve(value, ignore_report)
        assert len(resolved) == len(CAPTURE_FIELDS)
        assert all(isinstance(flag, str) for flag in resolved[FLAGS])
        assert {"http_method", "http_path", "http_status"} <= set(resolved[EXTRA])

    @fuzz(200)
    @given(st.lists(exchange_captures(), min_size=1, max_size=4))
    def test_build_keeps_one_row_per_exchange(self, captures):
        """Resolved and built, every exchange is one row, its decoder's flags in data_quality."""
        resolved = [c[FEATURES].decoder.resolve(c, ignore_report) for c in captures]
        rows = build_one_per_input(captures)
        assert [r["request_id"] for r in rows] == [
            c[CAPTURE_FIELDS.index("request_id")] for c in captures
        ]
        for row, decoded in zip(rows, resolved, strict=True):
            assert "exchange_undecodable" not in row["data_quality"]
            assert set(decoded[FLAGS]) <= set(row["data_quality"])
            if decoded[FEATURES] is None:
                assert "features_missing" in row["data_quality"]

    @pytest.mark.parametrize(
        "body",
        [
            b'{"a":"\\ud800","b":1}',
            b'{"\\udc00":1,"b":2}',
            b'{"tx":{"a":["\\udbff",1]},"n":NaN}',
            b'{"a":NaN,"b":100000000000000000000000000000}',
            b'{"a":Infinity,"b":-99999999999999999999}',
            b'{"a":1,"b":' + b"9" * 5000 + b"}",
            b'{"b":1,"a":' * 1000 + b"1" + b"}" * 1000,
        ],
        ids=[
            "lone-high-surrogate-value",
            "lone-low-surrogate-key",
            "surrogate-in-nested-list",
            "lenient-body-with-int-over-64-bits",
            "lenient-body-with-int-under-64-bits",
            "integer-over-str-digits-limit",
            "two-key-objects-nested-1000-deep",
        ],
    )
    def test_hostile_request_body_keeps_its_features(self, body):
        """A request body the server accepted is a row with its features, never a lost record."""
        ex = one_exchange(request=body)
        resolved = ex.decoder.resolve(capture(request_id="r", features=ex), ignore_report)
        assert isinstance(resolved[FEATURES], dict)
        (row,) = build_one_per_input([capture(request_id="r", features=ex)])
        assert row["features"] is not None
        assert row["raw_score"] == 0.5

    @pytest.mark.parametrize(
        "response",
        [
            b'{"score":0.5,"decision":"\\ud800"}',
            b'{"score":0.5,"decision":' + b"[" * 1020 + b"]" * 1020 + b"}",
            b'{"score":0.5,"decision":' + b'{"a":1,"b":' * 1000 + b"1" + b"}" * 1000 + b"}",
        ],
        ids=["surrogate-decision", "decision-list-nested-1020-deep", "decision-object-nested"],
    )
    def test_hostile_response_keeps_its_score(self, response):
        """An odd decision in the response still leaves one row with the score."""
        ex = one_exchange(request=b'{"a":1}', response=response)
        (row,) = build_one_per_input([capture(request_id="r", features=ex)])
        assert row["raw_score"] == 0.5

    @pytest.mark.parametrize(
        "features",
        [
            b'{"a":' * 300 + b"1" + b"}" * 300,
            b'{"a":NaN,"b":' + b"[" * 300 + b"]" * 300 + b"}",
        ],
        ids=["object-nested-300-deep", "lenient-list-nested-300-deep"],
    )
    def test_raw_body_too_deep_to_write_is_a_flagged_row(self, features):
        """Raw JSON nested past orjson's write depth is a row flagged features_unencodable."""
        ex = one_exchange(request=features)
        ex.decoder = ExchangeDecoder(request_extractor=json_extractor)
        rows = build_one_per_input(
            [capture(request_id="log", features=features), capture(request_id="ex", features=ex)]
        )
        for row in rows:
            assert row["features"] is None
            assert "features_unencodable" in row["data_quality"]


# loads, json_extractor, flatten -----------------------------------------------------


class TestDecodeFuzz:
    @fuzz(800)
    @given(bodies)
    @example(b'{"a":"\\ud800"}')
    @example(b'{"a":NaN,"b":' + b"1" * 40 + b"}")
    def test_loads_is_a_value_orjson_can_write_or_a_value_error(self, body):
        """loads() returns a value orjson writes (unless nested past its depth), or ValueError."""
        try:
            value, _ = loads(body)
        except ValueError:
            return
        try:
            orjson.dumps(value, option=JSON_OPTIONS)
        except TypeError as exc:
            message = str(exc)
        else:
            return
        assert message == "Recursion limit reached"

    @fuzz(400)
    @given(bodies)
    def test_json_extractor_is_a_dict_or_a_value_error(self, body):
        """json_extractor() returns a dict or raises ValueError."""
        try:
            value = json_extractor(body)
        except ValueError:
            return
        assert isinstance(value, dict)

    @fuzz(300)
    @given(bodies)
    def test_flatten_any_parsed_object(self, body):
        """flatten() of any object loads() returns is flat and serialisable."""
        try:
            value, _ = loads(body)
        except ValueError:
            return
        assume(isinstance(value, dict))
        flat = flatten(value)
        assert not any(isinstance(v, dict) for v in flat.values())
        orjson.dumps(flat, option=JSON_OPTIONS)

    @fuzz(300)
    @given(json_values, st.one_of(field_paths.filter(bool), st.text(min_size=1)))
    @example([1, 2], "\u00b2")
    @example([1, 2], "0" * 5000)
    def test_field_path_is_a_value_or_none(self, value, path):
        """field_path() finds a value or None on any path into any parsed body."""
        field_path(value, path)

    @pytest.mark.parametrize(
        "path", ["\u00b2", "items.\u00b2", "0" * 5000], ids=["superscript", "nested", "5000-digits"]
    )
    def test_field_path_step_that_is_no_index_is_missing(self, path):
        """A step str.isdigit() accepts but int() does not is a missing step, not an error."""
        assert field_path({"items": [1, 2]} if "." in path else [1, 2], path) is None

    @fuzz(300)
    @given(st.one_of(json_values, st.text()))
    @example("\ud800")
    @example([[[]]])
    def test_optional_str_is_storable_text(self, value):
        """optional_str() yields None or text Arrow can store."""
        text = optional_str(value)
        assert text is None or isinstance(text, str)
        pa.array([text], type=pa.string())

    def test_optional_str_of_a_list_too_deep_to_print(self):
        """A list nested past the recursion limit still becomes text."""
        deep: list = []
        for _ in range(100_000):
            deep = [deep]
        assert isinstance(optional_str(deep), str)


# Kafka wire -------------------------------------------------------------------------


def wire_messages(n=3):
    reporter = ErrorReporter()
    builder = BatchBuilder.from_settings(resolve({}), reporter=reporter)
    captures = [
        capture(
            request_id=f"r{i}",
            features={"i": i, "s": "x"},
            score=i / 10,
            decision="ok",
            extra={"k": [1, 2]},
            flags=("given",) if i else None,
        )
        for i in range(n)
    ]
    batch = as_arrow(builder.build(captures).batch)
    assert batch is not None
    return [message[1] for message in encode(batch)]


WIRE = wire_messages()
NULL_MODEL_VERSION = WIRE[0].replace(b'"model_version":"unversioned"', b'"model_version":null')
wire_values = st.one_of(
    st.binary(max_size=64),
    valid_bodies,
    st.sampled_from(WIRE),
    mutated(st.sampled_from(WIRE)),
)


@st.composite
def field_mutated_messages(draw):
    row = orjson.loads(draw(st.sampled_from(WIRE)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        name = draw(st.sampled_from(sorted(row)))
        row[name] = draw(
            st.one_of(
                json_values,
                st.sampled_from(
                    [
                        "not-a-uuid",
                        "2026-13-01T00:00:00+00:00",
                        "0001-01-01T00:00:00",
                        "9999-12-31T23:59:59.999999+14:00",
                        "1969-07-20T20:17:40+00:00",
                        2**63,
                        -(2**63) - 1,
                    ]
                ),
            )
        )
    if draw(st.booleans()):
        row.pop(draw(st.sampled_from(sorted(row))))
    return json.dumps(row, allow_nan=True).encode()


class TestWireDecodeFuzz:
    @fuzz(500)
    @given(st.one_of(wire_values, field_mutated_messages()))
    @example(b"[]")
    @example(b"1")
    @example(b'{"schema_version":1}')
    @example(NULL_MODEL_VERSION)
    def test_one_message_is_one_row_or_a_value_error(self, value):
        """decode() of one message is a one-row batch in the record schema, or ValueError."""
        try:
            batch = decode([value])
        except ValueError:
            return
        assert batch.num_rows == 1
        assert batch.schema.equals(arrow_schema(), check_metadata=True)

    @fuzz(150)
    @given(st.lists(st.one_of(st.sampled_from(WIRE), field_mutated_messages()), max_size=5))
    def test_messages_decodable_alone_decode_together(self, values):
        """Messages each decodable alone decode together, one row each, in order."""
        good = []
        for value in values:
            try:
                decode([value])
            except ValueError:
                continue
            good.append(value)
        assert decode(good).num_rows == len(good)


def consumed(values: list[bytes]) -> Batch:
    """``values`` as the consumer loop hands them over: one batch, offsets from 0."""
    batch = Batch()
    batch.add(0, [SimpleNamespace(offset=i, value=v) for i, v in enumerate(values)])
    return batch


class TestConsumerFuzz:
    @fuzz(100)
    @given(st.lists(st.one_of(wire_values, field_mutated_messages()), min_size=1, max_size=6))
    @example([b"[]", WIRE[0]])
    @example([b'{"schema_version":1}'])
    @example([WIRE[0], NULL_MODEL_VERSION])
    def test_write_counts_every_message(self, values):
        """write() never raises; each message is written, a duplicate or counted undecodable."""
        with tempfile.TemporaryDirectory() as tmp:
            destination = ParquetDestination(tmp)
            stats = ConsumerStats()
            try:
                destination.write(consumed(values), stats)
            finally:
                destination.close()
        assert stats.written + stats.duplicates + stats.undecodable == len(values)

    def test_message_with_a_null_required_column_is_undecodable(self):
        """A message null where the schema is not nullable is counted, and the rest written."""
        assert WIRE[0] != NULL_MODEL_VERSION
        with tempfile.TemporaryDirectory() as tmp:
            destination = ParquetDestination(tmp)
            stats = ConsumerStats()
            destination.write(consumed([WIRE[1], NULL_MODEL_VERSION]), stats)
            destination.close()
        assert (stats.written, stats.undecodable) == (1, 1)


# The spool --------------------------------------------------------------------------


def spool_entry(key, value):
    payload = struct.pack("<H", len(key)) + key + value
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


@st.composite
def spool_segments(draw):
    """Segment bytes, and the entries appended to make them (None when not made so)."""
    entries = draw(st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=16)), max_size=4))
    data = b"".join(spool_entry(k, v) for k, v in entries)
    odd = st.sampled_from(
        [
            b"\x00" * 8,
            b"\x01\x00\x00\x00" + struct.pack("<I", zlib.crc32(b"\x00")) + b"\x00",
            spool_entry(b"k", b"v")[:-1],
            b"\x03\x00\x00\x00" + struct.pack("<I", zlib.crc32(b"\xff\xff\x00")) + b"\xff\xff\x00",
        ]
    )
    kind = draw(st.sampled_from(["intact", "mutated", "torn", "junk", "odd"]))
    if kind == "intact":
        return data, entries
    if kind == "mutated" and data:
        return draw(mutated(st.just(data))), entries
    if kind == "torn":
        return data + draw(st.binary(min_size=1, max_size=7)), entries
    return draw(st.binary(max_size=64) if kind == "junk" else odd), None


class TestSpoolReadFuzz:
    @fuzz(600)
    @given(spool_segments())
    def test_read_yields_entries_then_stops_counted(self, case):
        """read() yields the entries appended, up to the first corrupt one, and counts that one."""
        segment, appended = case
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "000000000001.seg"
            path.write_bytes(segment)
            spool = Spool(tmp, max_bytes=1 << 20)
            entries = list(spool.read(path))
        assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in entries)
        consumed = sum(len(spool_entry(k, v)) for k, v in entries)
        assert spool.corrupt == (0 if consumed == len(segment) else 1)
        if appended is not None:
            assert entries == appended[: len(entries)]
        if appended is not None and segment == b"".join(spool_entry(k, v) for k, v in appended):
            assert entries == appended

    @pytest.mark.parametrize(
        "segment",
        [
            b"\x00" * 8,
            b"\x01\x00\x00\x00" + struct.pack("<I", zlib.crc32(b"\x00")) + b"\x00",
            b"\x03\x00\x00\x00" + struct.pack("<I", zlib.crc32(b"\xff\xff\x00")) + b"\xff\xff\x00",
            b"\x00\x00\x00",
        ],
        ids=["empty-payload", "one-byte-payload", "key-longer-than-payload", "torn-header"],
    )
    def test_entry_too_short_for_its_key_is_corrupt(self, tmp_path, segment):
        """An entry too short for its header or its key is counted corrupt, after the good one."""
        path = tmp_path / "000000000001.seg"
        path.write_bytes(spool_entry(b"k", b"v") + segment)
        spool = Spool(tmp_path, max_bytes=1 << 20)
        assert list(spool.read(path)) == [(b"k", b"v")]
        assert spool.corrupt == 1


# The audit record reader ------------------------------------------------------------


def audit_record(index, data):
    return HEAD.pack(len(data), index, leaf_hash(data)) + data


@st.composite
def audit_segments(draw):
    count = draw(st.integers(min_value=0, max_value=4))
    records = [audit_record(i, b'{"i":%d}' % i) for i in range(count)]
    data = b"".join(records)
    return draw(
        st.one_of(
            st.just(data),
            st.binary(max_size=128),
            mutated(st.just(data)) if data else st.binary(max_size=128),
            st.just(data).map(lambda d: d + HEAD.pack(0xFFFFFFFF, count, b"\x00" * 32)),
        )
    )


class TestAuditReaderFuzz:
    @fuzz(500)
    @given(audit_segments())
    def test_parse_records_raises_only_unreadable(self, data):
        """parse_records() yields records covering the bytes, or raises UnreadableError."""
        try:
            records = list(parse_records(data, 0, "000000000001.seg"))
        except UnreadableError:
            return
        assert sum(HEAD.size + len(r.data) for r in records) == len(data)

    @fuzz(250)
    @given(segments=st.lists(audit_segments(), min_size=1, max_size=3))
    def test_store_raises_only_unreadable(self, segments):
        """records() and tail() raise only UnreadableError; torn_tail() never raises."""
        with tempfile.TemporaryDirectory() as tmp:
            entries = Path(tmp) / "entries"
            entries.mkdir()
            for number, data in enumerate(segments, start=1):
                (entries / f"{number:012d}.seg").write_bytes(data)
            store = ReadOnlyStore(tmp)
            positions = []
            with contextlib.suppress(UnreadableError):
                positions.extend(r.position for r in store.records())
            assert positions == list(range(len(positions)))
            with contextlib.suppress(UnreadableError):
                store.tail()
            assert store.torn_tail() >= 0
