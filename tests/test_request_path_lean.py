"""The lean request path keeps what the middleware promises.

The middleware sets structlog's context variables itself, sends through a plain
function instead of a coroutine, skips annotating spans that do not record, and
ends its own span with one attribute call. Each test pins the behaviour one of
those shortcuts could lose. The ASGI app is driven directly (no server, no HTTP
client), so each test takes milliseconds.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import multiprocessing
import os
import random
import re
from typing import Any

import pytest
import structlog
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import predlog
from predlog import PredictionLogMiddleware, _tracing
from predlog.testing import capture_records

BODY = b'{"tx": {"amount": 12.5, "channel": "web"}}'


def handler_logging(lines: list[dict[str, Any]], *, unbind: bool = False) -> Any:
    """An ASGI app whose handler logs one structlog line through ``merge_contextvars``,
    the processor users configure, and records a score."""

    def keep(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        lines.append(dict(event))
        raise structlog.DropEvent

    log = structlog.wrap_logger(
        structlog.ReturnLogger(), processors=[structlog.contextvars.merge_contextvars, keep]
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if unbind:
            structlog.contextvars.unbind_contextvars("request_id")
        log.info("scoring")
        predlog.record(score=0.25, decision="approved")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"score":0.25}'})

    return app


def call(app: Any, request_id: bytes = b"req-lean-1", **send_options: Any) -> list[Any]:
    """One POST through ``app``; returns the messages the server was sent."""
    sent: list[Any] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id)],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Any) -> None:
        if send_options.get("fail_on") == message["type"]:
            raise OSError("client went away")
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


class TestStructlogBinding:
    def test_handler_lines_carry_the_ids_without_operational_logs(self):
        """With operational logs off, the handler's own structlog line still carries the
        request id and the model version, through merge_contextvars."""
        lines: list[dict[str, Any]] = []
        with capture_records(model_name="fraud", model_version="v9") as (logger, sink):
            call(PredictionLogMiddleware(handler_logging(lines), logger=logger))
        assert [(line["request_id"], line["model_version"]) for line in lines] == [
            ("req-lean-1", "v9")
        ]
        assert sink.records[0]["request_id"] == "req-lean-1"

    def test_the_ids_are_structlogs_own_bindings(self):
        """They are structlog's variables, not lookalikes: the handler's unbind_contextvars
        removes the id from its lines, and the caller's own bindings are back afterwards."""
        lines: list[dict[str, Any]] = []

        def scenario() -> dict[str, Any]:
            structlog.contextvars.bind_contextvars(request_id="outer", model_version="v0")
            with capture_records(model_name="fraud", model_version="v9") as (logger, _):
                app = PredictionLogMiddleware(handler_logging(lines, unbind=True), logger=logger)
                call(app)
            return structlog.contextvars.get_contextvars()

        after = contextvars.copy_context().run(scenario)
        assert "request_id" not in lines[0]
        assert lines[0]["model_version"] == "v9"
        assert after == {"request_id": "outer", "model_version": "v0"}

    def test_nothing_stays_bound_after_the_request(self):
        """An outer middleware, in the same task after predlog returns, finds nothing
        predlog bound left in structlog's context."""
        lines: list[dict[str, Any]] = []
        after: list[dict[str, Any]] = []
        with capture_records(model_name="fraud", model_version="v9") as (logger, _):
            inner = PredictionLogMiddleware(handler_logging(lines), logger=logger)

            async def outer(scope: Any, receive: Any, send: Any) -> None:
                await inner(scope, receive, send)
                after.append(structlog.contextvars.get_contextvars())

            call(outer)
        assert after == [{}]
        assert lines[0]["request_id"] == "req-lean-1"


class TestSend:
    def test_messages_reach_the_server_in_order_with_the_echo(self):
        """The plain send wrapper hands each message on, the id header added, in order."""
        with capture_records(model_name="fraud") as (logger, sink):
            sent = call(PredictionLogMiddleware(handler_logging([]), logger=logger))
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        assert sent[0]["headers"] == [(b"x-request-id", b"req-lean-1")]
        assert json.loads(sink.records[0]["extra"])["http_status"] == 200

    def test_a_failing_server_send_reaches_the_app_and_is_recorded(self):
        """When the server's send raises (client gone), the app sees the error where it
        awaited, it propagates, and the record is still written, flagged as failed."""
        with capture_records(model_name="fraud") as (logger, sink):
            app = PredictionLogMiddleware(handler_logging([]), logger=logger)
            with pytest.raises(OSError, match="client went away"):
                call(app, fail_on="http.response.body")
        (record,) = sink.records
        assert record["request_id"] == "req-lean-1"
        assert json.loads(record["extra"])["http_status"] == 200
        assert record["data_quality"] == ["handler_exception"]


def server_span(recording: bool) -> Any:
    """A current server span, as an instrumented server would have: recording or not."""
    if recording:
        return TracerProvider().get_tracer("server").start_span("POST /predict")
    ids = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(0))
    return NonRecordingSpan(ids)


class TestSpans:
    @pytest.mark.parametrize("recording", [True, False])
    def test_only_a_recording_span_is_annotated(self, recording, monkeypatch):
        """The recorded score goes on a recording server span; a span that does not
        record (sampled out) is not even asked, yet its ids still reach the record."""
        calls: list[Any] = []
        annotate = _tracing.annotate

        def counted(span: Any, fields: Any) -> None:
            calls.append(span)
            annotate(span, fields)

        monkeypatch.setattr(_tracing, "annotate", counted)
        span = server_span(recording)
        token = context.attach(trace.set_span_in_context(span))
        try:
            with capture_records(model_name="fraud") as (logger, sink):
                call(PredictionLogMiddleware(handler_logging([]), logger=logger))
        finally:
            context.detach(token)
        assert calls == ([span] if recording else [])
        ids = span.get_span_context()
        assert sink.records[0]["trace_id"] == f"{ids.trace_id:032x}"
        if recording:
            assert span.attributes[_tracing.SCORE] == 0.25
            assert span.attributes[_tracing.REQUEST_ID] == "req-lean-1"


class FakeSpan:
    """Records how leave() ends a span predlog opened."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def is_recording(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, args))


def test_leave_sets_route_and_status_in_one_call():
    """The span predlog opened gets its route and status in one set_attributes call
    (the SDK locks and validates per call), is renamed, marked failed on a 5xx, ended."""
    span = FakeSpan()
    token = context.attach(context.get_current())
    _tracing.leave(token, span, {"route": "/predict", "method": "POST"}, 503)  # type: ignore[arg-type]
    names = [name for name, _ in span.calls]
    assert names == ["update_name", "set_status", "set_attributes", "end"]
    assert span.calls[2][1] == ({_tracing.HTTP_ROUTE: "/predict", _tracing.HTTP_STATUS: 503},)
    assert span.calls[0][1] == ("POST /predict",)


def test_bench_middleware_total_cost_adds_up():
    """bench_middleware's total line: request path plus flusher per record, against the
    stdlib-JSON app's own time, from runs that lost no record."""
    from benchmarks import bench_middleware  # puts benchmarks/ on sys.path

    total = bench_middleware.total_cost(200, 1)
    assert total["app"] > 0 and total["flusher"] > 0
    assert total["total"] == pytest.approx(total["path"] + total["flusher"])


def made_id() -> str:
    """The id the middleware makes for a request that brings none (from the echo)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    sent: list[Any] = []
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    async def send(message: Any) -> None:
        sent.append(message)

    with capture_records(model_name="fraud") as (logger, _):
        asyncio.run(PredictionLogMiddleware(app, logger=logger)(scope, receive, send))
    ((name, value),) = sent[0]["headers"]
    assert name == b"x-request-id"
    return str(value.decode())


class TestMadeIds:
    def test_model_code_seeding_random_does_not_repeat_ids(self):
        """Model code that calls random.seed() for reproducibility leaves the ids alone:
        32 hex digits each, never the same twice."""
        ids = []
        for _ in range(3):
            random.seed(42)
            ids.append(made_id())
        assert len(set(ids)) == 3
        assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_forked_workers_make_different_ids(self):
        """Workers forked from one parent each draw their own ids."""
        made_id()  # the parent has drawn before forking, as a preloading server may
        context = multiprocessing.get_context("fork")
        queue = context.SimpleQueue()
        children = [context.Process(target=_made_id_in_child, args=(queue,)) for _ in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join(30)
        first, second = queue.get(), queue.get()
        assert first != second


def _made_id_in_child(queue: Any) -> None:
    queue.put(made_id())
