from __future__ import annotations

import sys

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, SpanKind, StatusCode
from starlette.routing import Mount, Route

from predlog import _otel_setup, _tracing
from predlog.errors import ConfigError
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
            token, span, own = _tracing.enter("req-1", "fraud", "v2", "POST")
            try:
                assert span is server
                assert own is None
            finally:
                _tracing.leave(token, own)
        (finished,) = exporter.get_finished_spans()
        assert finished.name == "POST /predict"
        assert finished.attributes == {
            "predlog.request.id": "req-1",
            "predlog.model.name": "fraud",
            "predlog.model.version": "v2",
        }

    def test_the_clients_id_also_goes_on_its_header_attribute(self, local):
        """An id the client sent is also the semantic convention's header attribute, a list."""
        tracer, exporter = local
        header = _tracing.header_attribute("X-Request-ID")
        assert header == "http.request.header.x-request-id"
        with tracer.start_as_current_span("server", kind=SpanKind.SERVER):
            token, _, own = _tracing.enter("req-h", "fraud", "v2", "POST", header=header)
            _tracing.leave(token, own)
        (finished,) = exporter.get_finished_spans()
        assert finished.attributes["http.request.header.x-request-id"] == ("req-h",)
        assert finished.attributes["predlog.request.id"] == "req-h"

    def test_opens_a_server_span_when_there_is_none(self, spans):
        """With no current span and an SDK installed, enter() opens a current server span."""
        assert not trace.get_current_span().get_span_context().is_valid
        token, span, own = _tracing.enter("req-2", "fraud", "v2", "POST")
        try:
            assert own is span
            assert trace.get_current_span() is own
            assert own.is_recording()
        finally:
            _tracing.leave(
                token, own, {"method": "POST", "route": Route("/predict", endpoint)}, 200
            )
        (finished,) = spans.get_finished_spans()
        assert finished.name == "POST /predict"
        assert finished.kind is SpanKind.SERVER
        assert finished.attributes == {
            "predlog.request.id": "req-2",
            "predlog.model.name": "fraud",
            "predlog.model.version": "v2",
            "http.request.method": "POST",
            "http.route": "/predict",
            "http.response.status_code": 200,
        }
        assert finished.status.status_code is StatusCode.UNSET

    def test_baggage_carries_the_request_id(self, local):
        """Inside enter()/leave() the request id is in baggage for downstream calls."""
        tracer, _ = local
        with tracer.start_as_current_span("server", kind=SpanKind.SERVER):
            token, _, own = _tracing.enter("req-3", "fraud", "v2", "POST")
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
                token, _, own = _tracing.enter("req-4", "fraud", "v2", "POST")
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
            token, span, own = _tracing.enter("req-5", "fraud", "v2", "POST")
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


def endpoint() -> None:
    """A route's endpoint; never called."""


class TestOwnServerSpan:
    """The server span predlog opens when there is none: named and tagged by convention."""

    def finish(self, spans, scope, status=200, method="POST"):
        token, _, own = _tracing.enter("req-s", "fraud", "v2", method)
        _tracing.leave(token, own, {"method": method, **scope}, status)
        (finished,) = spans.get_finished_spans()
        return finished

    def test_named_by_route_template_never_by_raw_path(self, spans):
        """A matched route names the span by its template; the raw path appears nowhere."""
        route = Route("/users/{user_id:int}/predict", endpoint, methods=["POST"])
        scope = {"route": route, "path": "/users/12345/predict", "root_path": ""}
        finished = self.finish(spans, scope)
        assert finished.name == "POST /users/{user_id}/predict"
        assert finished.attributes["http.route"] == "/users/{user_id}/predict"
        assert "12345" not in repr(dict(finished.attributes)) + finished.name

    def test_a_mount_prefix_is_part_of_the_route(self, spans):
        """Under a mount, the route is the mount's root path followed by the inner template."""
        mount = Mount("/v1", routes=[Route("/predict", endpoint)])
        scope = {"route": mount.routes[0], "root_path": "/v1", "path": "/v1/predict"}
        assert self.finish(spans, scope).name == "POST /v1/predict"

    def test_without_a_route_the_method_alone(self, spans):
        """No route in the scope: the span is named by the method, with no http.route."""
        finished = self.finish(spans, {"path": "/anything/42"})
        assert finished.name == "POST"
        assert "http.route" not in finished.attributes
        assert finished.attributes["http.request.method"] == "POST"

    def test_an_unknown_method_is_other(self, spans):
        """A method outside the conventions' list is _OTHER, and the span is named HTTP."""
        finished = self.finish(spans, {"route": "/predict"}, method="BREW")
        assert finished.name == "HTTP /predict"
        assert finished.attributes["http.request.method"] == "_OTHER"

    def test_server_errors_mark_the_span_client_errors_do_not(self, spans):
        """A 5xx status sets the span's status to error; a 4xx is the client's and leaves it."""
        failed = self.finish(spans, {}, status=503)
        assert failed.attributes["http.response.status_code"] == 503
        assert failed.status.status_code is StatusCode.ERROR
        spans.clear()
        refused = self.finish(spans, {}, status=422)
        assert refused.attributes["http.response.status_code"] == 422
        assert refused.status.status_code is StatusCode.UNSET


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
            "predlog.prediction.score": 0.87,
            "predlog.prediction.decision": "declined",
            "predlog.prediction.threshold": 0.5,
            "predlog.model.version": "v3",
        }

    def test_values_a_span_cannot_hold_are_left_out(self, local):
        """Non-scalar or missing recorded values set no attribute."""
        tracer, exporter = local
        with tracer.start_as_current_span("server") as span:
            _tracing.annotate(span, {"score": [0.1, 0.9], "decision": None, "threshold": 0.4})
        (finished,) = exporter.get_finished_spans()
        assert finished.attributes == {"predlog.prediction.threshold": 0.4}

    def test_non_recording_span_is_left_alone(self):
        """On a non-recording span annotate() does nothing and raises nothing."""
        _tracing.annotate(INVALID_SPAN, {"score": 0.5})
        assert not INVALID_SPAN.is_recording()


class TestLeave:
    def test_ends_the_span_it_opened_and_restores_the_context(self, spans):
        """leave() ends predlog's own span and makes the previous context current again."""
        before = context.get_current()
        token, _, own = _tracing.enter("req-6", "fraud", "v2", "POST")
        _tracing.leave(token, own)
        assert not own.is_recording()
        assert [s.name for s in spans.get_finished_spans()] == ["POST"]
        assert context.get_current() == before
        assert trace.get_current_span() is INVALID_SPAN

    def test_leaves_the_server_span_open(self, local):
        """A server span predlog did not open is not ended by leave()."""
        tracer, exporter = local
        with tracer.start_as_current_span("server") as server:
            token, _, own = _tracing.enter("req-7", "fraud", "v2", "POST")
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


class TestThroughTheMiddleware:
    """What a Starlette app behind PredictionLogMiddleware puts on the span predlog opens."""

    @staticmethod
    def serve(requests):
        import asyncio

        import httpx
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse

        import predlog
        from tests.helpers import MemorySink

        async def score(request):
            predlog.record(score=0.9, decision="declined")
            return JSONResponse({"score": 0.9, "decision": "declined"})

        app = Starlette(routes=[Route("/users/{user_id}/predict", score, methods=["POST"])])
        logger = predlog.PredictionLogger(
            model_name="fraud",
            model_version="v2",
            sinks=[MemorySink()],
            install_signal_handlers=False,
        )
        app.add_middleware(predlog.PredictionLogMiddleware, logger=logger)

        async def go():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                return [await client.post(path, json={}, headers=h) for path, h in requests]

        try:
            return asyncio.run(go())
        finally:
            logger.close()

    def test_route_template_status_and_ids(self, spans):
        """The span is named by the matched route's template and carries the conventions."""
        (r,) = self.serve([("/users/4711/predict", {"X-Request-ID": "mw-1"})])
        assert r.status_code == 200
        (finished,) = spans.get_finished_spans()
        assert finished.name == "POST /users/{user_id}/predict"
        assert finished.attributes == {
            "predlog.request.id": "mw-1",
            "http.request.header.x-request-id": ("mw-1",),
            "predlog.model.name": "fraud",
            "predlog.model.version": "v2",
            "http.request.method": "POST",
            "http.route": "/users/{user_id}/predict",
            "http.response.status_code": 200,
            "predlog.prediction.score": 0.9,
            "predlog.prediction.decision": "declined",
        }

    def test_an_id_predlog_made_is_not_a_header_value(self, spans):
        """With no usable X-Request-ID, the id predlog made is on the span, no header attribute."""
        self.serve([("/users/1/predict", {}), ("/users/2/predict", {"X-Request-ID": "bad id\x7f"})])
        finished = spans.get_finished_spans()
        assert len(finished) == 2
        for span in finished:
            assert len(span.attributes["predlog.request.id"]) == 32
            assert not any(k.startswith("http.request.header.") for k in span.attributes)

    def test_unmatched_path_is_named_by_method_only(self, spans):
        """A path no route matches (404) keeps the method-only name: no raw path."""
        (r,) = self.serve([("/nowhere/12345", {})])
        assert r.status_code == 404
        (finished,) = spans.get_finished_spans()
        assert finished.name == "POST"
        assert "http.route" not in finished.attributes
        assert finished.attributes["http.response.status_code"] == 404


#: Every variable predlog's tracing set-up reads or the SDK's pieces read.
_OTEL = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture
def otel_env(monkeypatch):
    """No OpenTelemetry variable from the machine; the test sets its own."""
    for name in _OTEL:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _exporter_of(provider):
    """The exporter behind the one span processor of an SDK provider."""
    (processor,) = provider._active_span_processor._span_processors
    assert type(processor).__name__ == "BatchSpanProcessor"
    return processor._batch_processor._exporter


class TestTracerProviderFromEnvironment:
    """predlog._otel_setup: the SDK's provider, built from the standard variables."""

    @pytest.mark.parametrize(
        ("env", "expected"),
        [
            ({}, False),
            ({"OTEL_SERVICE_NAME": "credit"}, False),
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
            ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
            (
                {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"},
                False,
            ),
            (
                {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "otlp"},
                True,
            ),
            (  # the specification's list form
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                    "OTEL_TRACES_EXPORTER": "otlp, console",
                },
                True,
            ),
        ],
    )
    def test_wanted_when_an_endpoint_is_set_and_nothing_is_switched_off(
        self, otel_env, env, expected
    ):
        """An OTLP endpoint asks for traces; OTEL_SDK_DISABLED or exporter none says no."""
        for name, value in env.items():
            otel_env.setenv(name, value)
        assert _otel_setup.wanted() is expected

    def test_another_exporter_is_refused_by_name(self, otel_env):
        """An exporter predlog does not set up is refused, naming the variable."""
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")
        otel_env.setenv("OTEL_TRACES_EXPORTER", "zipkin")
        with pytest.raises(ConfigError, match=r"^OTEL_TRACES_EXPORTER: .*'zipkin'"):
            _otel_setup.wanted()

    def test_resource_exporter_and_batching_from_the_variables(self, otel_env):
        """Service name and resource attributes from the variables; OTLP/HTTP to
        the endpoint's /v1/traces, behind a batch processor."""
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
        otel_env.setenv("OTEL_SERVICE_NAME", "credit-decisions")
        otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
        provider = _otel_setup.provider_from_environment()
        try:
            attributes = provider.resource.attributes
            assert attributes["service.name"] == "credit-decisions"
            assert attributes["deployment.environment"] == "staging"
            exporter = _exporter_of(provider)
            assert type(exporter).__module__.endswith("proto.http.trace_exporter")
            assert exporter._endpoint == "http://collector:4318/v1/traces"
        finally:
            provider.shutdown()

    def test_the_traces_endpoint_is_taken_as_it_is(self, otel_env):
        """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT wins and gets no path appended."""
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318")
        otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:9999/traces")
        provider = _otel_setup.provider_from_environment()
        try:
            assert _exporter_of(provider)._endpoint == "http://collector:9999/traces"
        finally:
            provider.shutdown()

    @pytest.mark.parametrize(
        ("variable", "value", "message"),
        [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "must be http/protobuf or grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift", "must be http/protobuf or grpc"),
        ],
    )
    def test_a_protocol_it_cannot_honour_is_refused(self, otel_env, variable, value, message):
        """A protocol other than http/protobuf or grpc is refused, naming its variable."""
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")
        otel_env.setenv(variable, value)
        with pytest.raises(ConfigError, match=rf"^{variable}: {message}"):
            _otel_setup.provider_from_environment()

    def test_grpc_without_its_exporter_says_what_to_install(self, otel_env):
        """grpc asked for without its exporter package: refused, naming the package."""
        otel_env.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
        otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        with pytest.raises(ConfigError, match=r"^OTEL_EXPORTER_OTLP_PROTOCOL: .*proto-grpc"):
            _otel_setup.provider_from_environment()


_INSTRUMENT = """
from opentelemetry import trace
from starlette.applications import Starlette
import predlog
{before}
predlog.instrument({target}, model_name="credit")
provider = trace.get_tracer_provider()
print(type(provider).__module__, type(provider).__name__)
print(getattr(getattr(provider, "resource", None), "attributes", {{}}).get("service.name"))
"""


def _provider_after_instrument(tmp_path, *, before="", target="Starlette()", **env):
    """The global provider's class and service name after ``predlog.instrument`` in a
    fresh interpreter with ``env`` (and no other OpenTelemetry variable)."""
    variables = {name: "" for name in _OTEL}
    variables["PREDLOG_DATA_DIR"] = str(tmp_path / "data")
    proc = start_python(_INSTRUMENT.format(before=before, target=target), **{**variables, **env})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out.split("\n")[:2]


class TestInstrumentSetsUpTracing:
    """predlog.instrument and the global tracer provider, each in a fresh interpreter."""

    def test_sets_up_the_sdk_when_the_variables_ask(self, tmp_path):
        """OTLP endpoint and service name set, no provider: the SDK's, named by the variable."""
        kind, name = _provider_after_instrument(
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
            OTEL_SERVICE_NAME="credit-svc",
        )
        assert kind == "opentelemetry.sdk.trace TracerProvider"
        assert name == "credit-svc"

    def test_nothing_without_the_variables(self, tmp_path):
        """No endpoint: the API's proxy stays, and predlog opens no spans of its own."""
        kind, _ = _provider_after_instrument(tmp_path)
        assert kind == "opentelemetry.trace ProxyTracerProvider"

    def test_the_applications_own_provider_is_kept(self, tmp_path):
        """A provider set before instrument() stays the global one, untouched, and the
        variables are its to read (an exporter predlog would refuse is not refused)."""
        before = (
            "from opentelemetry.sdk.resources import Resource\n"
            "from opentelemetry.sdk.trace import TracerProvider\n"
            "trace.set_tracer_provider(TracerProvider(resource=Resource({'service.name': 'own'})))"
        )
        kind, name = _provider_after_instrument(
            tmp_path,
            before=before,
            OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
            OTEL_TRACES_EXPORTER="console",
        )
        assert (kind, name) == ("opentelemetry.sdk.trace TracerProvider", "own")

    def test_nothing_when_predlog_is_disabled(self, tmp_path):
        """PREDLOG_ENABLED=false starts nothing, no tracing either."""
        kind, _ = _provider_after_instrument(
            tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", PREDLOG_ENABLED="false"
        )
        assert kind == "opentelemetry.trace ProxyTracerProvider"

    def test_bentoml_services_keep_bentomls_tracing(self, tmp_path):
        """On a BentoML service BentoML's own tracing configuration rules: no global set."""
        before = "import bentoml\n@bentoml.service\nclass Svc:\n    pass"
        kind, _ = _provider_after_instrument(
            tmp_path, before=before, target="Svc", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"
        )
        assert kind == "opentelemetry.trace ProxyTracerProvider"
