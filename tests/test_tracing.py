from __future__ import annotations

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, SpanKind

from predlog import _tracing
from tests.helpers import start_python


@pytest.fixture
def local():
    """A tracer from a provider of the test's own, and where its spans end up."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


@pytest.fixture(scope="module")
def global_exporter():
    """Spans of the process-wide provider: an SDK one, installed here if nobody has yet.

    The global provider can be set once per process, and other modules (test_middleware)
    set theirs at import; this adds an exporter to whichever SDK provider is in place.
    """
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "a non-SDK tracer provider is installed"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def spans(global_exporter, monkeypatch):
    """Finished spans of the global provider from this test only; predlog sees the SDK now."""
    monkeypatch.setattr(_tracing._Provider, "asked_at", -1.0)
    global_exporter.clear()
    return global_exporter


class TestEnter:
    def test_annotates_the_current_server_span(self, local):
        """With a server span current, enter() puts the request id and model on it."""
        tracer, exporter = local
        with tracer.start_as_current_span("POST /predict", kind=SpanKind.SERVER) as server:
            token, span, own = _tracing.enter("req-1", "fraud", "v2", "POST", "/predict")
            try:
                assert span is server
                assert own is None
            finally:
                _tracing.leave(token, own)
        (finished,) = exporter.get_finished_spans()
        assert finished.attributes == {
            "request_id": "req-1",
            "ml.model.name": "fraud",
            "ml.model.version": "v2",
        }

    def test_opens_a_server_span_when_there_is_none(self, spans):
        """With no current span and an SDK installed, enter() opens a current server span."""
        assert not trace.get_current_span().get_span_context().is_valid
        token, span, own = _tracing.enter("req-2", "fraud", "v2", "POST", "/predict")
        try:
            assert own is span
            assert trace.get_current_span() is own
            assert own.is_recording()
        finally:
            _tracing.leave(token, own)
        (finished,) = spans.get_finished_spans()
        assert finished.name == "POST /predict"
        assert finished.kind is SpanKind.SERVER
        assert finished.attributes["request_id"] == "req-2"
        assert finished.attributes["ml.model.name"] == "fraud"

    def test_baggage_carries_the_request_id(self, local):
        """Inside enter()/leave() the request id is in baggage for downstream calls."""
        tracer, _ = local
        with tracer.start_as_current_span("server", kind=SpanKind.SERVER):
            token, _, own = _tracing.enter("req-3", "fraud", "v2", "POST", "/predict")
            try:
                assert baggage.get_baggage("request_id") == "req-3"
            finally:
                _tracing.leave(token, own)
            assert baggage.get_baggage("request_id") is None

    def test_existing_baggage_is_kept(self, local):
        """Baggage the caller already had survives beside the request id."""
        tracer, _ = local
        outer = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            with tracer.start_as_current_span("server", kind=SpanKind.SERVER):
                token, _, own = _tracing.enter("req-4", "fraud", "v2", "POST", "/p")
                try:
                    assert baggage.get_all() == {"tenant": "acme", "request_id": "req-4"}
                finally:
                    _tracing.leave(token, own)
        finally:
            context.detach(outer)

    def test_without_an_sdk_no_span_is_made(self):
        """With only the OpenTelemetry API, enter() opens no span but still sets baggage."""
        proc = start_python(
            """
            from opentelemetry import baggage, trace
            from predlog import _tracing
            token, span, own = _tracing.enter("req-5", "fraud", "v2", "POST", "/p")
            assert own is None, own
            assert not span.is_recording()
            assert baggage.get_baggage("request_id") == "req-5"
            _tracing.leave(token, own)
            assert baggage.get_baggage("request_id") is None
            print("ok")
            """
        )
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"


class TestAnnotate:
    def test_recorded_values_become_attributes(self, local):
        """Score, decision, threshold and model version recorded by the handler go on the span."""
        tracer, exporter = local
        with tracer.start_as_current_span("server") as span:
            _tracing.annotate(
                span,
                {
                    "score": 0.87,
                    "decision": "declined",
                    "threshold": 0.5,
                    "model_version": "v3",
                    "feature_cache_hit": True,
                },
            )
        (finished,) = exporter.get_finished_spans()
        assert finished.attributes == {
            "ml.prediction.score": 0.87,
            "ml.prediction.decision": "declined",
            "ml.prediction.threshold": 0.5,
            "ml.model.version": "v3",
        }

    def test_values_a_span_cannot_hold_are_left_out(self, local):
        """Non-scalar or missing recorded values set no attribute."""
        tracer, exporter = local
        with tracer.start_as_current_span("server") as span:
            _tracing.annotate(span, {"score": [0.1, 0.9], "decision": None, "threshold": 0.4})
        (finished,) = exporter.get_finished_spans()
        assert finished.attributes == {"ml.prediction.threshold": 0.4}

    def test_non_recording_span_is_left_alone(self):
        """On a non-recording span annotate() does nothing and raises nothing."""
        _tracing.annotate(INVALID_SPAN, {"score": 0.5})
        assert not INVALID_SPAN.is_recording()


class TestLeave:
    def test_ends_the_span_it_opened_and_restores_the_context(self, spans):
        """leave() ends predlog's own span and makes the previous context current again."""
        before = context.get_current()
        token, _, own = _tracing.enter("req-6", "fraud", "v2", "POST", "/p")
        _tracing.leave(token, own)
        assert not own.is_recording()
        assert [s.name for s in spans.get_finished_spans()] == ["POST /p"]
        assert context.get_current() == before
        assert trace.get_current_span() is INVALID_SPAN

    def test_leaves_the_server_span_open(self, local):
        """A server span predlog did not open is not ended by leave()."""
        tracer, exporter = local
        with tracer.start_as_current_span("server") as server:
            token, _, own = _tracing.enter("req-7", "fraud", "v2", "POST", "/p")
            _tracing.leave(token, own)
            assert server.is_recording()
            assert trace.get_current_span() is server
            assert exporter.get_finished_spans() == ()


class TestIds:
    def test_ids_are_the_span_context_integers(self, local):
        """ids() gives the span's trace and span id as integers."""
        tracer, _ = local
        with tracer.start_as_current_span("server") as span:
            ctx = span.get_span_context()
            assert _tracing.ids(span) == (ctx.trace_id, ctx.span_id)
        assert _tracing.ids(INVALID_SPAN) == (0, 0)
