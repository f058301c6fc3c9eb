"""Acceptance: hostile requests get the same answer with predlog as without, and a record.

Every request in the corpus goes to the same BentoML service twice, once with
predlog and once without. The responses must match byte for byte (the
``X-Request-ID`` header aside), the predlog server must stay healthy, and after
SIGTERM every POST to a logged path must have exactly one record, flagged where
the request was odd.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from services.bentoserve import BentoServer

from tests.helpers import ROOT, bento_env, read_all
from tests.hostile_service import MAX_BODY_BYTES

pytestmark = pytest.mark.integration

JSON = b"application/json"
#: Headers whose values are per request or per second whatever predlog does.
VOLATILE_HEADERS = frozenset({"date", "x-bentoml-request-id"})
#: Auto: the case gets a unique, valid request id of its own.
AUTO = None


def tx(payload: str) -> bytes:
    return f'{{"transaction": {payload}}}'.encode()


def nested(depth: int, *, opener: str = "[", closer: str = "]", leaf: str = "1") -> str:
    return opener * depth + leaf + closer * depth


@dataclass(frozen=True)
class Case:
    """One hostile request and what its record must show."""

    name: str
    body: bytes | tuple[bytes, ...] = b""
    ids: tuple[bytes, ...] | None = AUTO
    content_type: bytes | None = JSON
    method: str = "POST"
    path: str = "/predict"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    flags: frozenset[str] = field(default_factory=frozenset)
    logged: bool = True
    #: The body changes from call to call (metrics): compare status and type only.
    volatile_body: bool = False

    @property
    def marker(self) -> str:
        return f"hostile-{self.name}"

    def header_list(self) -> list[tuple[bytes, bytes]]:
        ids = (self.marker.encode(),) if self.ids is AUTO else self.ids
        out = [(b"X-Request-ID", value) for value in ids]
        if self.content_type is not None:
            out.append((b"Content-Type", self.content_type))
        return out + list(self.headers)

    def content(self) -> bytes | Iterator[bytes]:
        # A fresh iterator per send: httpx streams it with Transfer-Encoding: chunked.
        return iter(self.body) if isinstance(self.body, tuple) else self.body


def flags(*names: str) -> frozenset[str]:
    return frozenset(names)


INVALID = flags("request_body_invalid_json")
TRUNCATED = flags("request_body_truncated")
NONSTANDARD = flags("request_body_nonstandard_json")
NOT_OBJECT = flags("request_body_not_object")
NOT_JSON = flags("request_body_not_json")
LONG_ID = b"L" * 10_240
LATIN1_ID = b"caf\xe9-cr\xe8me"


def _cap_body(size: int) -> bytes:
    head = tx('{"marker": "cap", "pad": "')
    tail = b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _many_keys(n: int) -> bytes:
    return tx("{" + ",".join(f'"k{i}": {i}' for i in range(n)) + "}")


CORPUS: tuple[Case, ...] = (
    Case("valid", tx('{"amount": 420, "marker": "valid"}')),
    # Malformed JSON.
    Case("garbage", b"{bad", flags=INVALID),
    Case("trailing-comma", tx('{"amount": 1,}'), flags=INVALID),
    Case("leading-zero", tx('{"amount": 01}'), flags=INVALID),
    Case("single-quotes", b"{'transaction': {'amount': 1}}", flags=INVALID),
    Case("trailing-text", tx('{"amount": 1}') + b" and more", flags=INVALID),
    Case("comment", tx('{"amount": 1 /* c */}'), flags=INVALID),
    Case("bare-word", tx('{"amount": undefined}'), flags=INVALID),
    Case("unquoted-key", tx("{amount: 1}"), flags=INVALID),
    Case("control-char", tx('{"name": "a\x01b"}'), flags=INVALID),
    # Truncated and empty JSON.
    Case("cut-in-object", b'{"transaction": {"amount": 1', flags=INVALID),
    Case("cut-in-string", b'{"transaction": {"name": "ab', flags=INVALID),
    Case("cut-after-key", b'{"transaction"', flags=INVALID),
    Case("empty", b"", flags=flags("request_body_empty")),
    Case("whitespace", b"  \n\t ", flags=INVALID),
    Case("empty-object", b"{}", flags=flags("http_status_400")),
    Case("null", b"null", flags=NOT_OBJECT),
    # NaN and Infinity literals.
    Case("nan", tx('{"a": NaN, "marker": "nan"}'), flags=NONSTANDARD | {"features_non_finite"}),
    Case("infinity", tx('{"a": Infinity, "b": 1}'), flags=NONSTANDARD | {"features_non_finite"}),
    Case("minus-infinity", tx('{"a": -Infinity}'), flags=NONSTANDARD | {"features_non_finite"}),
    Case("nan-top-level", b"NaN", flags=NONSTANDARD | NOT_OBJECT),
    Case("nan-amount", tx('{"amount": NaN}'), flags=NONSTANDARD | {"features_non_finite"}),
    # Numbers beyond float and integer range.
    Case("1e400", tx('{"amount": 1e400}')),
    Case("minus-1e400", tx('{"a": -1e400}')),
    Case("1e-400", tx('{"a": 1e-400}')),
    Case("int-2-64", tx('{"a": 18446744073709551616}')),
    Case("int-400-digits", tx('{"a": 1' + "0" * 400 + "}")),
    Case("int-5000-digits", tx('{"a": ' + "9" * 5000 + "}"), flags=TRUNCATED),
    Case("int-4000-digits", tx('{"a": ' + "7" * 4000 + "}")),
    # Invalid UTF-8 and lone surrogates.
    Case("utf8-invalid", tx('{"name": "') + b"\xff\xfe" + b'"}}', flags=INVALID),
    Case("utf8-overlong", tx('{"name": "') + b"\xc0\xaf" + b'"}}', flags=INVALID),
    Case("utf8-bom", b"\xef\xbb\xbf" + tx('{"a": 1}'), flags=NONSTANDARD),
    Case("surrogate-value", tx(r'{"name": "\ud800"}'), flags=NONSTANDARD),
    Case("surrogate-low", tx(r'{"name": "\udc00x", "b": 2}'), flags=NONSTANDARD),
    Case("surrogate-key", tx(r'{"\ud800": 1}'), flags=NONSTANDARD),
    Case("utf8-raw-surrogate", tx('{"name": "') + b"\xed\xa0\x80" + b'"}}', flags=NONSTANDARD),
    # Duplicate keys.
    Case("duplicate-key", tx('{"a": 1, "a": 2}')),
    Case("duplicate-argument", b'{"transaction": {"a": 1}, "transaction": {"b": 2}}'),
    # Deep nesting.
    Case("deep-arrays-3000", tx('{"d": ' + nested(3000) + "}"), flags=TRUNCATED),
    Case("deep-objects-3000", tx(nested(3000, opener='{"a":', closer="}")), flags=TRUNCATED),
    Case("deep-arrays-2000", tx('{"d": ' + nested(2000) + "}")),
    Case("deep-objects-800", tx('{"x": 1, "d": ' + nested(800, opener='{"":', closer="}") + "}")),
    Case("deep-arrays-1100", tx('{"d": ' + nested(1100) + "}")),
    # Many keys, large bodies.
    Case("keys-20000", _many_keys(20_000), flags=TRUNCATED),
    Case("at-cap", _cap_body(MAX_BODY_BYTES)),
    Case("one-over-cap", _cap_body(MAX_BODY_BYTES + 1), flags=TRUNCATED),
    Case("one-mebibyte", _cap_body(1 << 20), flags=TRUNCATED),
    # Arrays and scalars at the top level, and a wrongly typed argument.
    Case("array-empty", b"[]", flags=NOT_OBJECT),
    Case("array-of-objects", b'[{"transaction": {"a": 1}}]', flags=NOT_OBJECT),
    Case("number", b"42", flags=NOT_OBJECT),
    Case("string", b'"transaction"', flags=NOT_OBJECT),
    Case("true", b"true", flags=NOT_OBJECT),
    Case("argument-array", tx("[1, 2]")),
    Case("argument-number", tx("5")),
    # Wrong or absent content types.
    Case("no-content-type", tx('{"a": 1}'), content_type=None),
    Case("text-plain", tx('{"a": 1}'), content_type=b"text/plain", flags=NOT_JSON),
    Case("form", b"transaction=1", content_type=b"application/x-www-form-urlencoded"),
    Case("multipart-garbage", b"--x\r\n\r\n", content_type=b"multipart/form-data; boundary=x"),
    Case("json-latin1-charset", tx('{"a": 1}'), content_type=b"application/json; charset=latin-1"),
    Case("octet-stream", tx('{"a": 1}'), content_type=b"application/octet-stream", flags=NOT_JSON),
    Case("content-type-junk", tx('{"a": 1}'), content_type=b";;;=", flags=NOT_JSON),
    # Chunked bodies.
    Case("chunked", (b'{"transaction": ', b'{"a": 1, "marker": "chunked"}}')),
    Case("chunked-bytes", tuple(bytes([b]) for b in tx('{"a": 2}'))),
    Case("chunked-empty", (), flags=flags("request_body_empty")),
    Case("chunked-invalid", (b'{"transaction": ', b"{oops"), flags=INVALID),
    Case(
        "chunked-over-cap",
        tuple(
            _cap_body(3 * MAX_BODY_BYTES)[i : i + 1000] for i in range(0, 3 * MAX_BODY_BYTES, 1000)
        ),
        flags=TRUNCATED,
    ),
    # Request ids: several, empty, long, latin-1, spaces, quotes.
    Case(
        "ids-two",
        tx('{"a": 1}'),
        ids=(b"hostile-ids-two", b"second"),
        flags=flags("request_id_repeated"),
    ),
    Case(
        "ids-three",
        tx('{"a": 1}'),
        ids=(b"bad id one", b"hostile-ids-three", b"x"),
        flags=flags("request_id_invalid", "request_id_repeated"),
    ),
    Case("id-empty", tx('{"a": 1}'), ids=(b"",), flags=flags("request_id_invalid")),
    Case("id-10kb", tx('{"a": 1}'), ids=(LONG_ID,), flags=flags("request_id_invalid")),
    Case("id-latin1", tx('{"a": 1}'), ids=(LATIN1_ID,), flags=flags("request_id_invalid")),
    Case(
        "id-spaces", tx('{"a": 1}'), ids=(b"hostile id spaces",), flags=flags("request_id_invalid")
    ),
    Case("id-quotes", tx('{"a": 1}'), ids=(b'hostile-"},{"x":"\\"',)),
    Case("id-129", tx('{"a": 1}'), ids=(b"h" * 129,), flags=flags("request_id_invalid")),
    Case("id-128", tx('{"a": 1}'), ids=(b"hostile-id-128-" + b"i" * 113,)),
    Case("id-tab", tx('{"a": 1}'), ids=(b"hostile\tid-tab",), flags=flags("request_id_invalid")),
    Case("id-utf8", tx('{"a": 1}'), ids=("hostile-é".encode(),), flags=flags("request_id_invalid")),
    Case("id-del", tx('{"a": 1}'), ids=(b"hostile-\x7f",), flags=flags("request_id_invalid")),
    Case("expect-continue", tx('{"a": 1}'), headers=((b"Expect", b"100-continue"),)),
    Case("id-absent", tx('{"a": 1, "marker": "id-absent"}'), ids=()),
    Case(
        "id-empty-then-valid",
        tx('{"a": 1}'),
        ids=(b"", b"hostile-later"),
        flags=flags("request_id_invalid", "request_id_repeated"),
    ),
    # Logged paths besides the API, and unlogged paths and methods.
    Case("unknown-path", tx('{"a": 1}'), path="/nowhere", flags=flags("http_status_404")),
    Case("post-root", tx('{"a": 1}'), path="/", flags=flags("http_status_405")),
    Case("get-predict", method="GET", content_type=None, logged=False),
    Case("put-predict", tx('{"a": 1}'), method="PUT", logged=False),
    Case("delete-predict", method="DELETE", content_type=None, logged=False),
    Case("head-predict", method="HEAD", content_type=None, logged=False),
    Case("get-healthz", method="GET", path="/healthz", content_type=None, logged=False),
    Case("get-readyz", method="GET", path="/readyz", content_type=None, logged=False),
    Case("get-docs", method="GET", path="/docs", content_type=None, logged=False),
    Case(
        "get-metrics",
        method="GET",
        path="/metrics",
        content_type=None,
        logged=False,
        volatile_body=True,
    ),
    Case("post-healthz", tx('{"a": 1}'), path="/healthz", logged=False),
    Case("post-metrics", tx('{"a": 1}'), path="/metrics", logged=False),
    Case("post-docs", b"{bad", path="/docs/anything", logged=False),
)

LOGGED = tuple(case for case in CORPUS if case.logged)
NAMED = {case.name: case for case in CORPUS}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, (name, values)
        return values[0] if values else None

    def comparable(self) -> tuple[tuple[str, str], ...]:
        """Headers as they must match: no X-Request-ID, volatile values masked."""
        return tuple(
            (k, "*" if k in VOLATILE_HEADERS else v) for k, v in self.headers if k != "x-request-id"
        )


def send(client: httpx.Client, case: Case) -> Answer:
    r = client.request(case.method, case.path, content=case.content(), headers=case.header_list())
    headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in r.headers.raw)
    return Answer(r.status_code, r.content, headers)


@dataclass
class Run:
    with_predlog: dict[str, Answer]
    without: dict[str, Answer]
    readyz_after: int
    normal_after: Answer
    records: list[dict[str, Any]]
    log: str


def _server(tmp: Path, name: str, *, predlog: bool) -> BentoServer:
    return BentoServer(
        "tests.hostile_service:Echo",
        log_path=tmp / f"{name}.log",
        cwd=ROOT,
        env=bento_env(
            tmp / "data",
            tmp / f"bentoml-{name}",
            HOSTILE_PREDLOG="1" if predlog else "0",
            # Starlette lists a route's methods in Allow from a set: same order in both.
            PYTHONHASHSEED="0",
        ),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("hostile")
    logged, bare = _server(tmp, "predlog", predlog=True), _server(tmp, "bare", predlog=False)
    with ThreadPoolExecutor(2) as pool:
        starts = [pool.submit(server.start) for server in (logged, bare)]
        errors = [f.exception() for f in starts]
    try:
        if any(errors):
            pytest.fail(f"{errors}\n{logged.stop()[-3000:]}\n{bare.stop()[-3000:]}")
        with (
            httpx.Client(base_url=logged.base_url, timeout=30) as a,
            httpx.Client(base_url=bare.base_url, timeout=30) as b,
        ):
            with_predlog: dict[str, Answer] = {}
            without: dict[str, Answer] = {}
            for case in CORPUS:
                with_predlog[case.name] = send(a, case)
                without[case.name] = send(b, case)
            readyz = a.get("/readyz").status_code
            normal = send(a, Case("after", tx('{"amount": 10, "marker": "after"}')))
    finally:
        log = logged.stop(timeout=60)
        bare.stop(timeout=60)
    records = read_all(tmp / "data").to_pylist()
    for record in records:
        record["extra"] = json.loads(record["extra"]) if record["extra"] else {}
    return Run(with_predlog, without, readyz, normal, records, log)


def echo(run: Run, case: Case) -> str | None:
    return run.with_predlog[case.name].header("x-request-id")


def record_of(run: Run, case: Case) -> dict[str, Any]:
    matches = [r for r in run.records if r["request_id"] == echo(run, case)]
    assert len(matches) == 1, f"{len(matches)} records for {case.name}"
    return matches[0]


class TestSameAnswers:
    def test_corpus_covers_enough(self):
        """At least 60 hostile requests, each with a distinct name."""
        assert len(CORPUS) >= 60
        assert len({case.name for case in CORPUS}) == len(CORPUS)

    @pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
    def test_response_identical_with_and_without_predlog(self, run, case):
        """Status, body and headers match byte for byte, X-Request-ID aside."""
        got, want = run.with_predlog[case.name], run.without[case.name]
        assert got.status == want.status
        assert got.header("content-type") == want.header("content-type")
        if not case.volatile_body:
            assert got.body == want.body
            assert got.comparable() == want.comparable()
        assert want.header("x-request-id") is None

    @pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
    def test_request_id_echoed_only_on_logged_requests(self, run, case):
        """A logged request gets its valid first id back, or a fresh one; others get none."""
        echoed = run.with_predlog[case.name].header("x-request-id")
        if not case.logged:
            assert echoed is None
        elif case.ids is AUTO:
            assert echoed == case.marker
        else:
            assert echoed is not None and 0 < len(echoed) <= 128


class TestServerAfterwards:
    def test_still_ready_and_serving(self, run):
        """After the corpus /readyz answers 200 and a normal prediction is scored."""
        assert run.readyz_after == 200
        assert run.normal_after.status == 200
        assert json.loads(run.normal_after.body)["marker"] == "after"

    def test_no_predlog_errors_in_server_log(self, run):
        """predlog reported no dropped or undecodable record."""
        kinds = ("record_invalid", "exchange_invalid", "batch_invalid", "dropped")
        reported = [line for line in run.log.splitlines() if any(k in line for k in kinds)]
        assert reported == []


class TestRecords:
    def test_one_record_per_logged_request(self, run):
        """Every POST to a logged path has exactly one record, and nothing else is logged."""
        ids = Counter(record["request_id"] for record in run.records)
        assert ids == Counter([*(echo(run, case) for case in LOGGED), "hostile-after"])

    @pytest.mark.parametrize("case", LOGGED, ids=lambda c: c.name)
    def test_record_flagged(self, run, case):
        """The request has one record showing its method, path, status and expected flags."""
        record = record_of(run, case)
        assert case.flags <= set(record["data_quality"]), record["data_quality"]
        extra = record["extra"]
        assert (extra["http_method"], extra["http_path"]) == (case.method, case.path)
        assert extra["http_status"] == run.with_predlog[case.name].status
        if run.with_predlog[case.name].status >= 400:
            assert f"http_status_{extra['http_status']}" in record["data_quality"]

    def test_valid_request_decoded(self, run):
        """A well-formed request has its features and its score, and no flag but the
        decision the service does not return."""
        record = record_of(run, NAMED["valid"])
        assert record["data_quality"] == ["decision_missing"]
        assert json.loads(record["features"]) == {"amount": 420, "marker": "valid"}
        assert record["raw_score"] == pytest.approx(0.42)

    def test_invalid_ids_kept_for_investigation(self, run):
        """A rejected request id is kept in extra (at most 256 characters)."""
        by_name = {name: record_of(run, NAMED[name]) for name in NAMED if name.startswith("id")}
        assert by_name["id-empty"]["extra"]["invalid_request_id"] == ""
        assert by_name["id-10kb"]["extra"]["invalid_request_id"] == "L" * 256
        assert by_name["id-latin1"]["extra"]["invalid_request_id"] == LATIN1_ID.decode("latin-1")
        assert by_name["id-spaces"]["extra"]["invalid_request_id"] == "hostile id spaces"
        assert by_name["ids-three"]["extra"]["invalid_request_id"] == "bad id one"
        assert by_name["id-tab"]["extra"]["invalid_request_id"] == "hostile\tid-tab"
        assert by_name["id-utf8"]["extra"]["invalid_request_id"] == "hostile-Ã©"
        assert "invalid_request_id" not in by_name["id-quotes"]["extra"]

    def test_truncated_body_keeps_no_partial_features(self, run):
        """A body over max_body_bytes is flagged and its prefix is not taken for features."""
        record = record_of(run, NAMED["one-over-cap"])
        assert "request_body_truncated" in record["data_quality"]
        assert record["features"] is None
        record = record_of(run, NAMED["at-cap"])
        assert "request_body_truncated" not in record["data_quality"]
        assert json.loads(record["features"])["marker"] == "cap"

    def test_first_valid_id_wins(self, run):
        """The first X-Request-ID counts when valid, is echoed verbatim and names the record."""
        assert echo(run, NAMED["ids-two"]) == "hostile-ids-two"
        assert echo(run, NAMED["id-quotes"]) == 'hostile-"},{"x":"\\"'
        assert echo(run, NAMED["id-128"]) == "hostile-id-128-" + "i" * 113
        assert echo(run, NAMED["ids-three"]) != "hostile-ids-three"
        assert echo(run, NAMED["id-empty-then-valid"]) != "hostile-later"

    def test_non_finite_features_named(self, run):
        """NaN and Infinity literals are stored as null and named in extra."""
        record = record_of(run, NAMED["infinity"])
        assert json.loads(record["features"]) == {"a": None, "b": 1}
        assert record["extra"]["non_finite_features"] == ["a"]
