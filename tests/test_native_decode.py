"""The native decoder against the Python one: every record the same, to the byte.

The Python decoder (``ExchangeDecoder.resolve`` and the feature encoding after it) is
the reference. Each test builds the same captures twice, once per decoder, and compares
the Arrow batches column by column (``prediction_id`` aside: a fresh UUIDv7 per
record). Bodies are random JSON, BentoML-shaped requests, and hostile bytes: invalid
UTF-8, lone surrogates, NaN literals, duplicate keys, deep nesting, numbers past 64
bits, float formats at every exponent.
"""

from __future__ import annotations

import json
import math
import random
import re
import struct
from itertools import pairwise

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from predlog.flush import BatchBuilder, ExchangeDecoder, _native, as_arrow
from predlog.flush._exchange import flatten
from predlog.testing import CAPTURE_FIELDS, ErrorReporter, Exchange, resolve

AT_NS = 1_767_225_600_000_000_000


def test_the_extension_is_built():
    """CI builds predlog._rust; without it every other test here would prove nothing."""
    assert _native.AVAILABLE, "predlog._rust is not built (pip install -e . needs cargo)"


def audit_everything(decision, model_name, extra) -> bool:
    """An audit rule that reads the extra map, as real rules do: the native decoder must
    then hand over maps, not text."""
    return isinstance(extra, dict) and extra.get("http_status", 0) >= 0


def builder(*, native: bool, audit: bool = False, **options) -> BatchBuilder:
    settings_ = resolve(
        {"model_name": "m", "model_version": "v", "native_decode": native, **options}
    )
    return BatchBuilder.from_settings(
        settings_, reporter=ErrorReporter(), audit_rule=audit_everything if audit else None
    )


def capture_of(exchange: Exchange, *, trace_id=None, span_id=None) -> tuple:
    """A capture as the middleware submits it."""
    values = {
        "timestamp_ns": AT_NS,
        "request_id": "req-1",
        "features": exchange,
        "total_ms": 1.5,
        "trace_id": trace_id,
        "span_id": span_id,
    }
    return tuple(values.get(name) for name in CAPTURE_FIELDS)


def without_ids(batch: pa.RecordBatch | None) -> dict | None:
    if batch is None:
        return None
    table = pa.Table.from_batches([batch]).drop_columns(["prediction_id"])
    return table.to_pydict()


def both(make_captures, audit: bool = False, **options):
    """The batch from the Python decoder and from the native one, built from fresh
    captures each time (an exchange is decoded once)."""
    python = builder(native=False, audit=audit, **options).build(make_captures())
    native = builder(native=True, audit=audit, **options).build(make_captures())
    return python, native


def assert_same(make_captures, audit: bool = False, **options):
    python, native = both(make_captures, audit=audit, **options)
    assert (python.kept, python.sampled_out, python.failed) == (
        native.kept,
        native.sampled_out,
        native.failed,
    )
    left, right = without_ids(as_arrow(python.batch)), without_ids(as_arrow(native.batch))
    if left is None or right is None:
        assert left == right
        return
    for name in left:
        assert _same(left[name], right[name]), (name, left[name], right[name])


def _same(a: list, b: list) -> bool:
    """Equal, NaN equal to NaN (a float column's unusable value)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y or type(x) is not type(y):
            return False
    return True


# Strategies ----------------------------------------------------------------------

keys = st.one_of(
    st.sampled_from(["amount", "score", "decision", "tx", "a", "a.b", "0", "", "prediction"]),
    st.text(max_size=6),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    # Every decimal exponent, where orjson switches between its notations.
    st.builds(lambda e, m: float(f"{m}e{e}"), st.integers(-330, 310), st.floats(1, 10)).filter(
        math.isfinite
    ),
    st.text(max_size=12),
    st.sampled_from(["\u2028", "\x7f", "\x00\x1f", '"\\/', "é😀"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)


def _dumps(value) -> bytes:
    """JSON text of ``value``; integers past 64 bits, which orjson refuses, by ``json``."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value).encode()


@st.composite
def json_bodies(draw) -> bytes:
    """JSON as clients send it: orjson's text, reformatted or with odd literals."""
    value = draw(values)
    shape = draw(st.sampled_from(["plain", "wrapped", "spaced", "python"]))
    if shape == "wrapped":
        value = {draw(keys): value}
    text = _dumps(value)
    if shape == "spaced":
        text = text.replace(b",", b" ,\n\t").replace(b":", b" : ")
    elif shape == "python":
        text = json.dumps(value, ensure_ascii=draw(st.booleans())).encode()
    return text


hostile = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b'{"a": NaN, "b": 1}',
            b'{"a": Infinity}',
            b'{"a": "\\ud800"}',
            b'{"a": "\xed\xa0\x80"}',
            b'{"a": 1, "a": 2, "b": {"c": 1, "c": {"d": 2}}}',
            b'{"a": 1e400}',
            b'{"a": -0, "b": -0.0, "c": 0e5, "d": 1E2, "e": 1.0e-7}',
            b'{"a": 18446744073709551616, "b": -9223372036854775809}',
            b'{"a": 18446744073709551615, "b": -9223372036854775808}',
            b'{"a.b": 1, "a": {"b": 2}}',
            b'{"x": [1, 2, [3]], "y": [' + b",".join([b"1"] * 300) + b"]}",
            # Lists up to 256 scalars are flattened, longer ones left out.
            b'{"y": [' + b",".join([b"0.5"] * 256) + b'], "z": [' + b",".join([b"1"] * 257) + b"]}",
            b"[" * 200 + b"]" * 200,
            b'{"a":' * 150 + b"1" + b"}" * 150,
            b"\xef\xbb\xbf{}",
            b'{"a": 1} x',
            b" ",
            b"",
            b"null",
            b"3.5",
            b'"text"',
        ]
    ),
)
bodies = st.one_of(json_bodies(), hostile)


@st.composite
def responses(draw) -> bytes:
    """Responses under every name and shape the decoders look for, and others."""
    kind = draw(st.sampled_from(["object", "wrapped", "listed", "bare", "number", "other"]))
    score = draw(
        st.one_of(
            scalars,
            st.lists(scalars, max_size=2),
            st.dictionaries(st.sampled_from(["fraud", "legit", "x"]), scalars, max_size=3),
        )
    )
    decision = draw(
        st.one_of(
            scalars, st.lists(scalars, max_size=2), st.dictionaries(keys, scalars, max_size=1)
        )
    )
    names = ["score", "probability", "proba", "probabilities", "prediction", "p"]
    key = draw(st.sampled_from(names))
    names = ["decision", "label", "class", "outcome", "prediction", "d"]
    decision_key = draw(st.sampled_from(names))
    value: object = {key: score, decision_key: decision}
    if kind == "object":
        pass
    elif kind == "wrapped":
        value = {"result": value}
    elif kind == "listed":
        value = [value]
    elif kind == "bare":
        value = draw(st.sampled_from([[score], [decision], decision, {"r": {"s": [decision]}}]))
    elif kind == "number":
        value = draw(st.one_of(st.integers(-(2**65), 2**65), st.floats(allow_nan=False)))
    else:
        return draw(bodies)
    return _dumps(value)


@st.composite
def exchanges(draw, decoder: ExchangeDecoder):
    ex = Exchange(draw(st.sampled_from(["POST", "PUT"])), draw(st.text(max_size=10)), decoder)
    request = draw(bodies)
    # The body as it arrived: in one chunk or in consecutive pieces.
    size = max(1, len(request) // draw(st.integers(1, 3)))
    ex.request_chunks = [request[i : i + size] for i in range(0, len(request), size)]
    ex.request_size = len(request) + draw(st.sampled_from([0, 0, 0, 5]))
    ex.request_content_type = draw(
        st.sampled_from([None, b"application/json", b"Application/JSON; x", b"text/plain"])
    )
    response = draw(responses())
    size = max(1, len(response) // draw(st.integers(1, 2)))
    ex.response_chunks = [response[i : i + size] for i in range(0, len(response), size)]
    ex.response_size = len(response) + draw(st.sampled_from([0, 0, 0, 3]))
    ex.response_parts = draw(st.integers(0, 3))
    ex.streamed = draw(st.booleans())
    ex.response_content_type = draw(st.sampled_from([None, b"application/json", b"text/html"]))
    ex.status = draw(st.sampled_from([200, 200, 201, 400, 422, 500]))
    ex.handler_failed = draw(st.booleans())
    ex.invalid_request_id = draw(st.one_of(st.none(), st.text(max_size=300)))
    ex.request_id_repeated = draw(st.booleans())
    ex.fields = draw(
        st.dictionaries(
            st.sampled_from(
                ["score", "decision", "threshold", "user_segment", "cache_hit", "score_field"]
            ),
            scalars,
            max_size=3,
        )
    )
    return ex


class ScoreFromP(ExchangeDecoder):
    """A subclass that reads the score its own way: only Python can honour it."""

    def _score_and_decision(self, parsed):
        return {"score": parsed.get("p") if isinstance(parsed, dict) else None}


decoders = st.sampled_from([ExchangeDecoder, ExchangeDecoder, ExchangeDecoder, ScoreFromP]).flatmap(
    lambda kind: st.builds(
        kind,
        features_field=st.sampled_from([None, None, "", "tx", "a.b", "x.0", "inputs.features"]),
        score_field=st.sampled_from([None, None, "", "result.score", "p", "0"]),
        decision_field=st.sampled_from([None, None, "", "result.decision", "d"]),
    )
)
fuzz = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# Tests ---------------------------------------------------------------------------


@fuzz
@given(st.data())
def test_batches_equal_the_python_decoders(data):
    """Random and hostile exchanges: the same Arrow batch from both decoders."""
    decoder = data.draw(decoders)
    drawn = data.draw(st.lists(exchanges(decoder), min_size=1, max_size=6))
    ids = data.draw(st.sampled_from([(None, None), (2**127 + 5, 2**63 + 1), (7, 9)]))

    def make():
        out = []
        for ex in drawn:
            fresh = Exchange(ex.method, ex.path, ex.decoder)
            for name in Exchange.__slots__:
                if name not in ("method", "path", "decoder"):
                    value = getattr(ex, name)
                    setattr(fresh, name, dict(value) if isinstance(value, dict) else value)
            out.append(capture_of(fresh, trace_id=ids[0], span_id=ids[1]))
        return out

    assert_same(make)
    assert_same(make, max_feature_bytes=40)
    assert_same(make, audit=True)


#: A negative zero in JSON text: -0, -0.0, -0e5..., not -0.5.
NEGATIVE_ZERO = rb"-0+(?:\.0*)?(?:[eE][-+]?[0-9]+)?(?![0-9.eE])"


@settings(max_examples=1500, deadline=None)
@given(bodies, st.sampled_from([None, "tx", "a.b", "x.0"]))
@example(b'{"a": 1e16, "b": 1e15, "c": 1.5e-7, "d": 1e-5, "e": 5e-324}', None)
@example(b'{"tx": {"amount": 120.5, "merchant": "grocery", "hour": 13}}', None)
def test_request_features_equal_orjsons_text(body, features_field):
    """Where the extension writes features, they are orjson's text of the Python
    decoder's flattened features; it declines only what strict JSON does not read."""
    from predlog.flush._exchange import field_path, unwrap

    native = _native.request_features(body, features_field)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        assert native is None
        return
    target = field_path(parsed, features_field) if features_field else unwrap(parsed)
    if not isinstance(target, dict):
        assert native is None
        return
    flat = flatten(target)
    if native is None:
        # Declined only for nesting deeper than the extension's parser takes (128), or a
        # negative zero (its parser reads `-0` as the float -0.0, orjson as the integer 0).
        deep = body.count(b"[") + body.count(b"{") > 100
        zeros = [v for v in flat.values() if type(v) in (int, float) and v == 0]
        negative_zero = bool(zeros) and re.search(NEGATIVE_ZERO, body) is not None
        assert deep or negative_zero, body
        return
    text, nulls = native
    assert text == orjson.dumps(flat).decode()
    assert nulls == sum(1 for v in flat.values() if v is None)


@settings(max_examples=3000, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_every_double_is_written_as_orjson_writes_it(raw):
    """Any finite double, by its bits: the extension's text is orjson's."""
    (value,) = struct.unpack("<d", raw)
    if not math.isfinite(value):
        return
    body = orjson.dumps({"v": value})
    assert _native.request_features(body) == (body.decode(), 0)


def test_a_plain_batch_is_decoded_natively():
    """The ordinary case is taken by the extension, not declined to Python: otherwise
    the comparisons above would compare Python with itself."""
    decoder = ExchangeDecoder()
    ex = Exchange("POST", "/predict", decoder)
    ex.request_chunks = [b'{"tx": {"amount": 1.5, "card": {"country": "FR"}}}']
    ex.request_size = len(ex.request_chunks[0])
    ex.response_chunks = [b'{"score": 0.25, "decision": "approve"}']
    ex.response_size = len(ex.response_chunks[0])
    ex.response_parts = 1
    ex.status = 200
    (resolved,) = _native.resolve([capture_of(ex)], 1 << 20, extra_maps=False)
    assert resolved is not None
    features = resolved[CAPTURE_FIELDS.index("features")]
    assert features.text == '{"amount":1.5,"card.country":"FR"}'
    assert resolved[CAPTURE_FIELDS.index("score")] == 0.25
    assert resolved[CAPTURE_FIELDS.index("decision")] == "approve"


def test_extractors_and_recorded_features_are_left_to_python():
    """What the extension cannot reproduce (a user extractor, recorded features to
    merge) it declines, and the Python decoder resolves."""
    with_extractor = Exchange("POST", "/p", ExchangeDecoder(request_extractor=lambda b: {}))
    recorded = Exchange("POST", "/p", ExchangeDecoder())
    recorded.fields = {"features": {"a": 1}}
    for ex in (with_extractor, recorded):
        ex.request_chunks = [b'{"a": 2}']
        ex.request_size = 8
    assert _native.resolve(
        [capture_of(with_extractor), capture_of(recorded)], 1 << 20, extra_maps=False
    ) == [None, None]


def plain_exchange(i: int, *, pad: int = 0) -> Exchange:
    ex = Exchange("POST", f"/p/{i}", ExchangeDecoder())
    body = orjson.dumps({"tx": {"i": i, "v": i / 7, "pad": "x" * pad}})
    ex.request_chunks = [body]
    ex.request_size = len(body)
    ex.response_chunks = [orjson.dumps({"score": (i % 10) / 10})]
    ex.response_size = len(ex.response_chunks[0])
    ex.response_parts = 1
    ex.status = 200 if i % 3 else 404
    return ex


def test_large_batches_decode_in_groups_in_order():
    """Bodies are copied and parsed a group at a time (by count and by bytes); every
    record still lands in its own place."""
    many = [capture_of(plain_exchange(i)) for i in range(9_000)]
    big = [capture_of(plain_exchange(i, pad=700_000)) for i in range(30)]
    for batch in (many, big):
        resolved = _native.resolve(batch, 1 << 30, extra_maps=False)
        assert all(r is not None for r in resolved)
        features = [orjson.loads(r[CAPTURE_FIELDS.index("features")].text) for r in resolved]
        assert [f["i"] for f in features] == list(range(len(batch)))
    assert_same(lambda: [capture_of(plain_exchange(i)) for i in range(9_000)])


feature_dicts = st.dictionaries(
    keys,
    st.one_of(values, st.just(float("nan")), st.just(math.inf)),
    max_size=8,
)


@fuzz
@given(
    st.lists(st.one_of(feature_dicts, feature_dicts, st.none(), st.integers()), max_size=8),
    st.sampled_from([1 << 20, 30]),
)
def test_log_features_equal_one_call_per_record(features, max_bytes):
    """``log()``'s dicts written in one call and cut natively: the same column, null
    counts and flags as one orjson call per record (NaN is null, nested nulls are not
    counted, a text past max_feature_bytes is dropped and flagged)."""

    def make():
        return [
            tuple(
                {"timestamp_ns": AT_NS, "request_id": f"r{i}", "features": f, "score": 0.5}.get(
                    name
                )
                for name in CAPTURE_FIELDS
            )
            for i, f in enumerate(features)
        ]

    assert_same(make, max_feature_bytes=max_bytes)


def test_cut_objects_counts_top_level_nulls_only():
    """The cut keeps each object's text whole, escapes and brackets inside strings
    included, and counts only the nulls that are the object's own values."""
    text = orjson.dumps([{"a": 'x\\"}', "b": None, "c": {"d": None}}, {"e": [None]}, {}])
    data, offsets, nulls = _native.cut_objects(text)
    ends = list(struct.unpack(f"<{len(offsets) // 4}i", offsets))
    parts = [data[a:b] for a, b in pairwise(ends)]
    assert [orjson.loads(p) for p in parts] == orjson.loads(text)
    assert struct.unpack("<3i", nulls) == (1, 0, 0)
    assert _native.cut_objects(b"[1,2]") is None
    assert _native.cut_objects(b'{"a":1}') is None


def test_ordinary_traffic_is_decoded_natively_and_equally():
    """Seeded ordinary traffic (nested objects, lists, every JSON scalar, BentoML's
    wrapping, record() fields, error statuses): nearly every record is taken by the
    extension, so the equality below compares the two decoders, not Python with itself."""
    rng = random.Random(7)

    def leaf():
        return rng.choice(
            [
                None,
                True,
                rng.randint(-(2**40), 2**40),
                rng.random() * 10 ** rng.randint(-8, 20),
                "".join(rng.choice('ab"\\é\n') for _ in range(rng.randint(0, 5))),
            ]
        )

    def obj(depth):
        return {
            f"k{i}": obj(depth + 1)
            if depth < 2 and rng.random() < 0.2
            else [leaf() for _ in range(3)]
            if rng.random() < 0.1
            else leaf()
            for i in range(rng.randint(1, 8))
        }

    shapes = [
        (orjson.dumps({"tx": obj(0)}), orjson.dumps({"score": rng.random(), "decision": "ok"}))
        for _ in range(500)
    ]

    def make():
        out = []
        for i, (request, response) in enumerate(shapes):
            ex = Exchange("POST", "/predict", ExchangeDecoder())
            ex.request_chunks, ex.request_size = [request], len(request)
            ex.response_chunks, ex.response_size = [response], len(response)
            ex.response_parts, ex.status = 1, (200, 200, 422)[i % 3]
            if i % 4 == 0:
                ex.fields = {"threshold": 0.4, "cache_hit": True}
            out.append(capture_of(ex, trace_id=i + 1, span_id=i + 2))
        return out

    resolved = _native.resolve(make(), 1 << 20, extra_maps=False)
    assert sum(r is not None for r in resolved) >= 0.95 * len(shapes)
    assert_same(make)
    assert_same(make, audit=True)


def traffic(n: int, **fields) -> list[tuple]:
    """``n`` middleware captures of BentoML-shaped traffic, each with its own request
    id, the handler's recorded ``fields`` in every fourth."""
    out = []
    for i in range(n):
        ex = plain_exchange(i)
        if i % 4 == 0:
            ex.fields = dict(fields)
        capture = list(capture_of(ex, trace_id=2**127 + i, span_id=i + 1))
        capture[CAPTURE_FIELDS.index("request_id")] = f"req-{i}"
        out.append(tuple(capture))
    return out


#: Recorded fields of every kind a batch resolved into columns takes.
COLUMN_FIELDS = {
    "threshold": 0.4,
    "inference_ms": 3,
    "feature_fetch_ms": float("nan"),
    "model_version": "v2",
    "user_segment": "gold",
    "cache_hit": True,
    "note": 'a "quoted" é\n',
    "count": -(2**63),
    "big": 2**64 - 1,
    "ratio": 1e-7,
    "none": None,
}


def test_ordinary_batches_are_resolved_into_columns_and_equally():
    """A batch of ordinary middleware captures is resolved whole into columns (no tuple
    per record), with the handler's recorded fields of every plain kind, error
    statuses, trace ids, oversize features and sampling; the records are the Python
    decoder's."""
    assert _native.resolve_columns(traffic(300, **COLUMN_FIELDS)) is not None
    assert_same(lambda: traffic(300, **COLUMN_FIELDS))
    assert_same(lambda: traffic(300, **COLUMN_FIELDS), max_feature_bytes=30)
    assert_same(lambda: traffic(300, **COLUMN_FIELDS), sample_rate=0.3, high_risk_score=0.95)


@pytest.mark.parametrize(
    "fields",
    [
        {"user_segment": 5},  # a text column given an int: Python writes str(5)
        {"score": True},  # a bool score: Python's float(True)
        {"threshold": "0.5"},  # a string number: Python parses it
        {"cache_hit": float("inf")},  # orjson writes null
        {"cache_hit": -0.0},
        {"cache_hit": 2**64},  # past 64 bits: only the coercing retry writes it
        {"cache_hit": [1, 2]},
        {"http_status": 999},  # a recorded name the extra map already has
        {"feature_timestamps": {"a": 1.0}},
        {"model_name": "\ud800"},  # a lone surrogate
    ],
)
def test_a_batch_with_one_odd_value_is_left_to_the_tuples(fields):
    """One value whose column form only Python decides sends the whole batch the way of
    one tuple per record, with the same records as the Python decoder."""
    assert _native.resolve_columns(traffic(40, **fields)) is None
    assert_same(lambda: traffic(40, **fields))


def test_after_a_declined_batch_the_next_ones_go_one_tuple_each(monkeypatch):
    """A handler that records a value only Python writes would have every batch decoded
    twice; after a declined batch the extension's columns are not tried for
    COLUMNS_BACKOFF batches, then tried again."""
    asked = []
    real = _native.resolve_columns
    monkeypatch.setattr(_native, "resolve_columns", lambda c: asked.append(1) or real(c))
    b = builder(native=True)
    assert b.build(traffic(8, user_segment=5)).kept == 8
    assert len(asked) == 1
    for _ in range(BatchBuilder.COLUMNS_BACKOFF):
        assert b.build(traffic(8)).kept == 8
    assert len(asked) == 1
    assert b.build(traffic(8)).kept == 8
    assert len(asked) == 2
    b.build([(None,) * len(CAPTURE_FIELDS)])  # not an exchange: never asked
    assert len(asked) == 2


def test_large_objects_keep_first_places_and_last_values():
    """Past 32 keys repeated keys are found by an index, not a scan: the same rule holds
    (first place, last value), in the body and among flattened names."""
    pairs = [f'"k{i}": {i}' for i in range(40)] + ['"k5": "again"', '"k39": null']
    nested = ", ".join(f'"n{i}": {{"x": {i}}}' for i in range(40))
    body = ("{" + ", ".join(pairs) + ', "n3.x": 0, ' + nested + "}").encode()
    flat = flatten(orjson.loads(body))
    assert _native.request_features(body) == (orjson.dumps(flat).decode(), 1)
    assert list(flat)[5] == "k5" and flat["k5"] == "again" and flat["n3.x"] == 3
