from __future__ import annotations

import asyncio
import gc
import io
import json

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import predlog
import predlog.middleware
from predlog import ConfigError, PredictionLogMiddleware
from predlog.testing import CAPTURE_FIELDS, Exchange, MemorySink, paused

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_PROVIDER)


async def predict(request: Request) -> Response:
    body = await request.body()
    try:
        payload = json.loads(body)
    except ValueError:
        return JSONResponse({"error": "bad json"}, status_code=400)
    amount = float(payload.get("tx", {}).get("amount", 0)) if isinstance(payload, dict) else 0
    score = min(1.0, amount / 1000)
    predlog.record(
        score=score,
        decision="declined" if score >= 0.5 else "approved",
        inference_ms=0.5,
        feature_cache_hit=True,
    )
    return JSONResponse({"score": score, "decision": "declined" if score >= 0.5 else "approved"})


async def echo_text(request: Request) -> Response:
    return PlainTextResponse((await request.body()).decode("latin-1")[::-1])


async def stream(request: Request) -> Response:
    async def parts():
        for i in range(5):
            yield f"chunk-{i}\n".encode()

    return StreamingResponse(parts(), media_type="text/plain")


async def boom(request: Request) -> Response:
    raise RuntimeError("handler bug")


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def calls_downstream(request: Request) -> Response:
    transport = httpx.ASGITransport(app=downstream)
    async with httpx.AsyncClient(transport=transport, base_url="http://downstream") as client:
        HTTPXClientInstrumentor.instrument_client(client)
        seen = (await client.get("/headers")).json()
    return JSONResponse(seen)


async def show_headers(request: Request) -> Response:
    return JSONResponse({k: v for k, v in request.headers.items()})


downstream = Starlette(routes=[Route("/headers", show_headers)])

ROUTES = [
    Route("/predict", predict, methods=["POST"]),
    Route("/text", echo_text, methods=["POST"]),
    Route("/stream", stream, methods=["POST"]),
    Route("/boom", boom, methods=["POST"]),
    Route("/health", health, methods=["GET", "POST"]),
    Route("/metrics", health, methods=["GET", "POST"]),
    Route("/call", calls_downstream, methods=["POST"]),
]


def make_app(*, with_predlog: bool, sink: MemorySink | None = None, **options):
    app = Starlette(routes=ROUTES)
    if with_predlog:
        logger = predlog.PredictionLogger(
            model_name="fraud",
            model_version="v3",
            sinks=[sink or MemorySink()],
            install_signal_handlers=False,
            **{k: options.pop(k) for k in list(options) if k in ("pii_fields", "pseudonym_key")},
        )
        app.add_middleware(PredictionLogMiddleware, logger=logger, **options)
        app.state.logger = logger
    return app


def run(app, requests):
    """Send (method, path, kwargs) requests in process; return the responses."""

    async def go():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            return [await client.request(m, p, **kw) for m, p, kw in requests]

    return asyncio.run(go())


def logged(app, sink, requests):
    responses = run(app, requests)
    app.state.logger.close()
    return responses, sink.records


class TestRequestId:
    def test_client_id_is_used_and_echoed(self):
        """A valid X-Request-ID is kept, echoed, and is the record's request_id."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        (r,), (rec,) = logged(
            app,
            sink,
            [
                (
                    "POST",
                    "/predict",
                    {"json": {"tx": {"amount": 5}}, "headers": {"X-Request-ID": "abc-123"}},
                )
            ],
        )
        assert r.headers["x-request-id"] == "abc-123"
        assert rec["request_id"] == "abc-123"

    def test_missing_id_is_generated(self):
        """Without a header predlog makes an id, echoes it and records it."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        (r,), (rec,) = logged(app, sink, [("POST", "/predict", {"json": {"tx": {"amount": 5}}})])
        assert len(r.headers["x-request-id"]) == 32
        assert rec["request_id"] == r.headers["x-request-id"]

    @pytest.mark.parametrize("bad", ["line\r\nbreak", "x" * 10_000, "tab\there", "é-accent"])
    def test_invalid_id_is_replaced_and_recorded(self, bad):
        """A CR/LF, overlong or non-ASCII id is replaced; the original is kept as invalid."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        raw = bad.encode("utf-8")
        (r,), (rec,) = logged(
            app,
            sink,
            [
                (
                    "POST",
                    "/predict",
                    {"json": {"tx": {"amount": 5}}, "headers": [(b"x-request-id", raw)]},
                )
            ],
        )
        assert r.headers["x-request-id"] != bad
        assert len(r.headers["x-request-id"]) == 32
        assert "request_id_invalid" in rec["data_quality"]
        assert json.loads(rec["extra"])["invalid_request_id"] == raw.decode("latin-1")[:256]

    def test_the_first_of_two_ids_counts_as_for_the_handler(self):
        """With the header twice, the first id is the record's and the echo's, as
        Starlette's Headers.get gives the handler; the record is flagged."""
        seen = []

        async def handler(request: Request) -> Response:
            seen.append(request.headers.get("x-request-id"))
            return JSONResponse({"score": 0.1})

        sink = MemorySink()
        logger = predlog.PredictionLogger(sinks=[sink], install_signal_handlers=False)
        app = Starlette(routes=[Route("/p", handler, methods=["POST"])])
        app.add_middleware(PredictionLogMiddleware, logger=logger)
        headers = [(b"x-request-id", b"first-id"), (b"x-request-id", b"second-id")]
        (r,) = run(app, [("POST", "/p", {"json": {"x": 1}, "headers": headers})])
        logger.close()
        (rec,) = sink.records
        assert seen == ["first-id"]
        assert r.headers.get_list("x-request-id") == ["first-id"]
        assert rec["request_id"] == "first-id"
        assert "request_id_repeated" in rec["data_quality"]

    def test_header_name_is_configurable(self):
        """request_id_header chooses which header carries the id."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink, request_id_header="X-Correlation-ID")
        (r,), (rec,) = logged(
            app,
            sink,
            [("POST", "/predict", {"json": {}, "headers": {"X-Correlation-ID": "corr-9"}})],
        )
        assert r.headers["x-correlation-id"] == "corr-9"
        assert rec["request_id"] == "corr-9"


class TestCapture:
    def test_features_score_and_decision(self):
        """Body features are flattened, BentoML-style wrapping undone; score and decision kept."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        body = {"tx": {"amount": 800, "merchant": {"mcc": 5411}, "tags": [1, 2]}}
        (r,), (rec,) = logged(app, sink, [("POST", "/predict", {"json": body})])
        assert json.loads(rec["features"]) == {
            "amount": 800,
            "merchant.mcc": 5411,
            "tags.0": 1,
            "tags.1": 2,
        }
        assert rec["raw_score"] == r.json()["score"] == 0.8
        assert rec["decision"] == "declined"
        assert rec["inference_ms"] == 0.5
        assert json.loads(rec["extra"])["feature_cache_hit"] is True
        assert rec["total_ms"] > 0

    def test_nan_and_infinity_literals_keep_the_other_features(self):
        """A body with NaN/Infinity, which the handler accepted and scored, keeps its
        features; the non-finite ones are named and the record is flagged."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        body = b'{"tx": {"amount": 700, "velocity": NaN, "ratio": Infinity, "hour": 3}}'
        (r,), (rec,) = logged(
            app,
            sink,
            [
                (
                    "POST",
                    "/predict",
                    {"content": body, "headers": {"content-type": "application/json"}},
                )
            ],
        )
        assert r.status_code == 200
        assert json.loads(rec["features"]) == {
            "amount": 700,
            "velocity": None,
            "ratio": None,
            "hour": 3,
        }
        assert "request_body_nonstandard_json" in rec["data_quality"]
        assert "features_non_finite" in rec["data_quality"]
        assert "request_body_invalid_json" not in rec["data_quality"]
        assert json.loads(rec["extra"])["non_finite_features"] == ["velocity", "ratio"]
        assert rec["raw_score"] == 0.7

    def test_field_paths_override_the_defaults(self):
        """features_field, score_field and decision_field pick values by dotted path."""
        sink = MemorySink()
        app = make_app(
            with_predlog=True,
            sink=sink,
            features_field="tx.merchant",
            score_field="score",
            decision_field="decision",
        )
        (_,), (rec,) = logged(
            app,
            sink,
            [("POST", "/predict", {"json": {"tx": {"amount": 100, "merchant": {"mcc": 1}}}})],
        )
        assert json.loads(rec["features"]) == {"mcc": 1}
        assert rec["raw_score"] == 0.1

    def test_custom_extractors(self):
        """request_extractor and response_extractor replace the JSON decoding."""
        sink = MemorySink()
        app = make_app(
            with_predlog=True,
            sink=sink,
            request_extractor=lambda body: {"length": len(body)},
            response_extractor=lambda body: {"score": 0.33, "decision": "custom"},
        )
        (_,), (rec,) = logged(app, sink, [("POST", "/text", {"content": b"hello"})])
        assert json.loads(rec["features"]) == {"length": 5}
        assert (rec["raw_score"], rec["decision"]) == (0.33, "custom")

    def test_captures_waiting_in_the_ring_are_out_of_the_collectors_sight(self):
        """A capture waiting in the ring is neither walked by the garbage collector nor
        promoted into its old generation (whose growth sets off full collections of the
        application): the collector finds nothing holding the request's exchange but the
        exchange's own parts. The record is still written whole."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        with paused(app.state.logger):
            run(app, [("POST", "/predict", {"json": {"tx": {"amount": 5}}})])
            gc.collect()
            waiting = [o for o in gc.get_objects() if type(o) is Exchange and o.method == "POST"]
            assert len(waiting) == 1
            holders = [r for r in gc.get_referrers(waiting[0]) if type(r) is tuple]
            assert holders == []
        app.state.logger.close()
        assert [json.loads(r["features"]) for r in sink.records] == [{"amount": 5}]


class TestSharedLogger:
    def test_two_apps_with_different_score_fields_share_one_logger(self):
        """Each app's records are decoded with its own options, whichever app's
        middleware was set up last."""

        async def model_a(request: Request) -> Response:
            return JSONResponse({"result": {"p": 0.9}})

        async def model_b(request: Request) -> Response:
            return JSONResponse({"out": {"q": 0.1}, "result": {"p": 0.5}})

        sink = MemorySink()
        logger = predlog.PredictionLogger(sinks=[sink], install_signal_handlers=False)
        app_a = Starlette(routes=[Route("/a", model_a, methods=["POST"])])
        app_a.add_middleware(PredictionLogMiddleware, logger=logger, score_field="result.p")
        app_b = Starlette(routes=[Route("/b", model_b, methods=["POST"])])
        app_b.add_middleware(PredictionLogMiddleware, logger=logger, score_field="out.q")
        run(app_a, [("POST", "/a", {"json": {"x": 1}, "headers": {"X-Request-ID": "a"}})])
        run(app_b, [("POST", "/b", {"json": {"x": 2}, "headers": {"X-Request-ID": "b"}})])
        run(app_a, [("POST", "/a", {"json": {"x": 3}, "headers": {"X-Request-ID": "a2"}})])
        logger.close()
        scores = {r["request_id"]: r["raw_score"] for r in sink.records}
        assert scores == {"a": 0.9, "b": 0.1, "a2": 0.9}
        assert not any("score_missing" in r["data_quality"] for r in sink.records)


class TestPassThrough:
    def test_streaming_response_untouched_and_flagged(self):
        """A streamed response reaches the client whole and is recorded as streamed."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        (r,), (rec,) = logged(app, sink, [("POST", "/stream", {"content": b"{}"})])
        assert r.text == "".join(f"chunk-{i}\n" for i in range(5))
        assert "response_streamed" in rec["data_quality"]

    def test_non_json_body_recorded_as_such(self):
        """A text body passes through and is flagged, not parsed."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        (r,), (rec,) = logged(
            app,
            sink,
            [
                (
                    "POST",
                    "/text",
                    {"content": b"plain words", "headers": {"content-type": "text/plain"}},
                )
            ],
        )
        assert r.text == "sdrow nialp"
        assert "request_body_not_json" in rec["data_quality"]
        assert "response_not_json" in rec["data_quality"]

    def test_body_over_the_cap_is_captured_only_to_the_cap(self, monkeypatch):
        """Past max_body_bytes the middleware keeps exactly the first max_body_bytes of the
        body (nothing more is held), parses none of it, and the record says so."""
        handed: list[tuple] = []

        def keep_captures(logger):
            submit = real_handoff(logger)

            def recording(capture):
                handed.append(capture)
                return submit(capture)

            return recording

        real_handoff = predlog.middleware.handoff
        monkeypatch.setattr(predlog.middleware, "handoff", keep_captures)
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink, max_body_bytes=1024)
        body = json.dumps({"tx": {"amount": 1, "pad": "z" * 5000}}).encode()
        (r,), (rec,) = logged(
            app,
            sink,
            [
                (
                    "POST",
                    "/predict",
                    {"content": body, "headers": {"content-type": "application/json"}},
                )
            ],
        )
        assert r.status_code == 200
        assert "request_body_truncated" in rec["data_quality"]
        assert rec["features"] is None
        (capture,) = handed
        exchange = capture[CAPTURE_FIELDS.index("features")]
        assert b"".join(exchange.request_chunks) == body[:1024]
        assert exchange.request_size == len(body)
        assert sum(map(len, exchange.response_chunks)) <= 1024

    def test_health_metrics_and_get_are_not_logged(self):
        """Health and metrics endpoints and non-POST requests are passed through unlogged."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        responses, records = logged(
            app,
            sink,
            [
                ("POST", "/health", {}),
                ("GET", "/health", {}),
                ("POST", "/metrics", {}),
                ("GET", "/metrics", {}),
                ("POST", "/predict", {"json": {}}),
            ],
        )
        assert [r.status_code for r in responses] == [200] * 5
        assert "x-request-id" not in responses[0].headers
        assert len(records) == 1

    def test_paths_option_limits_logging(self):
        """With paths set, only those prefixes are logged."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink, paths=["/predict"])
        _, records = logged(
            app, sink, [("POST", "/text", {"content": b"a"}), ("POST", "/predict", {"json": {}})]
        )
        assert [json.loads(r["extra"])["http_path"] for r in records] == ["/predict"]


MALFORMED = [
    (
        "invalid JSON",
        (
            "POST",
            "/predict",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ),
    ),
    (
        "non-UTF-8 bytes",
        (
            "POST",
            "/predict",
            {"content": b"\xff\xfe\xfa", "headers": {"content-type": "application/json"}},
        ),
    ),
    ("non-UTF-8 text", ("POST", "/text", {"content": b"\xff\xfe\xfa"})),
    (
        "huge headers",
        (
            "POST",
            "/predict",
            {"json": {"tx": {"amount": 3}}, "headers": {f"x-h{i}": "v" * 4000 for i in range(16)}},
        ),
    ),
    (
        "CR/LF request id",
        ("POST", "/predict", {"json": {}, "headers": [(b"x-request-id", b"a\r\nb")]}),
    ),
    (
        "10 KB request id",
        ("POST", "/predict", {"json": {}, "headers": {"x-request-id": "r" * 10_240}}),
    ),
    ("handler exception", ("POST", "/boom", {"json": {}})),
    ("empty body", ("POST", "/predict", {"content": b""})),
]


class TestMalformedInputsChangeNothing:
    @pytest.mark.parametrize(("case", "request_"), MALFORMED, ids=[c for c, _ in MALFORMED])
    def test_same_response_with_and_without_predlog(self, case, request_):
        """Status, headers (but the request id) and body bytes are identical with predlog."""
        plain = run(make_app(with_predlog=False), [request_])[0]
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        (logged_response,), records = logged(app, sink, [request_])
        assert logged_response.status_code == plain.status_code
        assert logged_response.content == plain.content
        strip = lambda r: [(k, v) for k, v in r.headers.multi_items() if k != "x-request-id"]  # noqa: E731
        assert strip(logged_response) == strip(plain)
        assert len(records) == 1, "the request must still be recorded"

    def test_raising_extractor_changes_nothing(self):
        """An extractor that raises is counted; the response and the record survive."""

        def broken(body):
            raise ValueError("extractor bug")

        request_ = ("POST", "/predict", {"json": {"tx": {"amount": 900}}})
        plain = run(make_app(with_predlog=False), [request_])[0]
        sink = MemorySink()
        app = make_app(
            with_predlog=True, sink=sink, request_extractor=broken, response_extractor=broken
        )
        (r,), (rec,) = logged(app, sink, [request_])
        assert (r.status_code, r.content) == (plain.status_code, plain.content)
        assert "extractor_failed" in rec["data_quality"]
        assert rec["raw_score"] == 0.9  # predlog.record() still delivered the score
        assert app.state.logger.errors()["extractor_failed"] == 2

    def test_handler_exception_recorded(self):
        """A handler that raises still yields a record, flagged, with status 500."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        (r,), (rec,) = logged(app, sink, [("POST", "/boom", {"json": {}})])
        assert r.status_code == 500
        assert "handler_exception" in rec["data_quality"]
        assert json.loads(rec["extra"])["http_status"] == 500


class TestTracing:
    def test_server_span_carries_the_prediction(self):
        """The span predlog annotates carries request id, model, score and decision."""
        _EXPORTER.clear()
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        (_,), (rec,) = logged(
            app,
            sink,
            [
                (
                    "POST",
                    "/predict",
                    {"json": {"tx": {"amount": 700}}, "headers": {"X-Request-ID": "trace-me"}},
                )
            ],
        )
        (span,) = [
            s
            for s in _EXPORTER.get_finished_spans()
            if s.attributes.get("predlog.request.id") == "trace-me"
        ]
        assert span.kind == trace.SpanKind.SERVER
        assert span.attributes["http.request.header.x-request-id"] == ("trace-me",)
        assert span.attributes["predlog.model.name"] == "fraud"
        assert span.attributes["predlog.model.version"] == "v3"
        assert span.attributes["predlog.prediction.score"] == 0.7
        assert span.attributes["predlog.prediction.decision"] == "declined"
        assert rec["trace_id"] == f"{span.context.trace_id:032x}"
        assert rec["span_id"] == f"{span.context.span_id:016x}"

    def test_existing_server_span_is_annotated_not_replaced(self):
        """Under the OpenTelemetry ASGI middleware predlog annotates its span, opens none."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        _EXPORTER.clear()
        sink = MemorySink()
        inner = make_app(with_predlog=True, sink=sink)
        app = OpenTelemetryMiddleware(inner)
        run(
            app,
            [
                (
                    "POST",
                    "/predict",
                    {"json": {"tx": {"amount": 100}}, "headers": {"X-Request-ID": "outer"}},
                )
            ],
        )
        inner.state.logger.close()
        servers = [s for s in _EXPORTER.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
        assert len(servers) == 1
        assert servers[0].attributes["predlog.request.id"] == "outer"
        assert servers[0].attributes["predlog.prediction.score"] == 0.1

    def test_outgoing_httpx_call_carries_the_request_id_in_baggage(self):
        """An instrumented httpx client sends the request id downstream as baggage."""
        sink = MemorySink()
        app = make_app(with_predlog=True, sink=sink)
        (r,), _ = logged(
            app, sink, [("POST", "/call", {"json": {}, "headers": {"X-Request-ID": "down-1"}})]
        )
        assert "request_id=down-1" in r.json()["baggage"]
        assert r.json()["traceparent"].startswith("00-")


class TestPIICanary:
    def test_canary_never_leaves_in_the_clear(self, tmp_path):
        """A PII value appears in no Parquet file, log line or span attribute; its HMAC does."""
        canary = "canary.person@example.com"
        key = "pii-test-key-0123456789"
        _EXPORTER.clear()
        stream = io.BytesIO()
        predlog.configure_logging(stream=stream)
        data = tmp_path / "data"
        logger = predlog.PredictionLogger(
            model_name="fraud",
            model_version="v3",
            data_dir=str(data),
            pii_fields=["email"],
            pseudonym_key=key,
            summary_features=["email", "amount"],
            operational_log=True,
            install_signal_handlers=False,
        )
        app = Starlette(routes=ROUTES)
        app.add_middleware(PredictionLogMiddleware, logger=logger)
        run(app, [("POST", "/predict", {"json": {"tx": {"amount": 10, "email": canary}}})])
        logger.close()

        expected = predlog.flush.Pseudonymiser(
            key=key, key_id=None, pii_fields=["email"]
        ).pseudonym(canary)
        files = list(data.rglob("*.parquet"))
        assert files
        import pyarrow.parquet as pq

        table = pq.read_table(files[0])
        text = json.dumps(table.to_pylist(), default=str)
        assert canary not in text
        assert expected in text
        for f in files:
            assert canary.encode() not in f.read_bytes()
        lines = stream.getvalue().decode()
        assert "prediction_complete" in lines
        assert canary not in lines
        attributes = json.dumps([dict(s.attributes) for s in _EXPORTER.get_finished_spans()])
        assert canary not in attributes


class TestConfiguration:
    def test_malformed_option_names_the_variable(self, monkeypatch):
        """A bad PREDLOG_MAX_BODY_BYTES stops start-up, naming the variable."""
        monkeypatch.setenv("PREDLOG_MAX_BODY_BYTES", "lots")
        with pytest.raises(ConfigError, match=r"^PREDLOG_MAX_BODY_BYTES: "):
            PredictionLogMiddleware(
                Starlette(), sinks=[MemorySink()], install_signal_handlers=False
            )

    def test_paths_must_be_absolute(self):
        """A relative path prefix is refused, naming the option."""
        with pytest.raises(ConfigError, match=r"^exclude_paths: "):
            PredictionLogMiddleware(
                Starlette(),
                exclude_paths=["health"],
                sinks=[MemorySink()],
                install_signal_handlers=False,
            )

    def test_pii_without_key_refuses_to_start(self):
        """PII fields with no pseudonymisation key: the service does not start."""
        with pytest.raises(ConfigError, match=r"^PREDLOG_PSEUDONYM_KEY: "):
            PredictionLogMiddleware(
                Starlette(),
                pii_fields=["email"],
                sinks=[MemorySink()],
                install_signal_handlers=False,
            )

    def test_logger_options_beside_a_shared_logger_are_refused(self):
        """With logger= given, a logger setting passed to the middleware would be ignored:
        it is refused instead, naming the setting."""
        logger = predlog.PredictionLogger(sinks=[MemorySink()], install_signal_handlers=False)
        try:
            with pytest.raises(ConfigError, match=r"^sample_rate: "):
                PredictionLogMiddleware(Starlette(), logger=logger, sample_rate=0.1)
        finally:
            logger.close()

    @pytest.mark.parametrize("shared", [True, False])
    def test_a_misspelt_option_is_named_as_unknown(self, shared):
        """A typo in an option is refused as unknown, with or without a shared logger."""
        logger = predlog.PredictionLogger(sinks=[MemorySink()], install_signal_handlers=False)
        options = {"logger": logger} if shared else {"sinks": [MemorySink()]}
        try:
            with pytest.raises(ConfigError, match=r"^scor_field: unknown option .*score_field"):
                PredictionLogMiddleware(Starlette(), scor_field="out.p", **options)
        finally:
            logger.close()

    def test_non_http_scopes_pass_through(self):
        """Lifespan and websocket scopes reach the app untouched."""
        seen = []

        async def app(scope, receive, send):
            seen.append(scope["type"])

        middleware = PredictionLogMiddleware(
            app, sinks=[MemorySink()], install_signal_handlers=False
        )
        asyncio.run(middleware({"type": "lifespan"}, None, None))
        asyncio.run(middleware({"type": "websocket", "path": "/ws"}, None, None))
        middleware.logger.close()
        assert seen == ["lifespan", "websocket"]
        assert middleware.logger.stats()["captured"] == 0
