"""OpenTelemetry on the request path: the request id on the server span and in baggage.

With no OpenTelemetry SDK configured, every call here is a cheap no-op on
non-recording spans. With one, the server span (BentoML's, or the OpenTelemetry
ASGI middleware's) gets the request id and model attributes, and the request id
goes into baggage so instrumented httpx/aiohttp clients carry it downstream.

Attribute names follow OpenTelemetry's semantic conventions where one exists
(``http.*``); everything predlog adds that has none lives under one namespace,
``predlog.*``, so it never collides with another instrumentation's names. README's
"Span attributes" table lists them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import baggage, context, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import Span, SpanKind, StatusCode

_TRACER: Final = trace.get_tracer("predlog")
#: What OpenTelemetry returns for the current span when there is none.
_NO_SPAN: Final = trace.INVALID_SPAN

#: The id predlog used for the request: the client's, or one it made. Not the semantic
#: convention's header attribute, which must hold what the client sent and nothing else.
REQUEST_ID: Final = "predlog.request.id"
MODEL_NAME: Final = "predlog.model.name"
MODEL_VERSION: Final = "predlog.model.version"
SCORE: Final = "predlog.prediction.score"
DECISION: Final = "predlog.prediction.decision"
THRESHOLD: Final = "predlog.prediction.threshold"
#: Semantic conventions, set on the server span only when predlog opened it (a server
#: span someone else opened already has them, from the instrumentation that knows best).
HTTP_METHOD: Final = "http.request.method"
HTTP_ROUTE: Final = "http.route"
HTTP_STATUS: Final = "http.response.status_code"
#: The baggage entry downstream services read; baggage has no semantic conventions.
BAGGAGE_KEY: Final = "request_id"
#: Recorded fields that also go on the span, and the attribute each becomes.
_RECORDED: Final = (
    ("score", SCORE),
    ("decision", DECISION),
    ("threshold", THRESHOLD),
    ("model_version", MODEL_VERSION),
)
#: Methods the semantic conventions call known; any other is reported as ``_OTHER``,
#: so a client cannot mint span names and attribute values at will.
_KNOWN_METHODS: Final = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE")
)


def header_attribute(header: str) -> str:
    """The semantic-convention attribute of a request header, ``http.request.header.<name>``.

    Its value is a list of strings, as the conventions require.
    """
    return f"http.request.header.{header.lower()}"


def enter(
    request_id: str,
    model_name: str,
    model_version: str,
    method: str,
    *,
    header: str | None = None,
) -> tuple[object, Span, Span | None]:
    """Annotate (or open) the server span and attach the baggage.

    ``header`` is the :func:`header_attribute` to also set when the request id is the
    one the client sent (None when predlog made it). Returns the context token to
    detach, the server span, and the span predlog opened itself (None when the server
    already had one).
    """
    ctx = context.get_current()
    span = trace.get_current_span(ctx)  # from ctx: one context lookup, not two
    own: Span | None = None
    # No server span: OpenTelemetry's own stand-in (an identity check, the usual case
    # without an SDK) or any span with invalid ids.
    if span is _NO_SPAN or not span.get_span_context().is_valid:
        # With no SDK installed (the default proxy provider) a span would be a no-op:
        # skip making one. The baggage below still works without an SDK.
        if _sdk_installed():
            known = method if method in _KNOWN_METHODS else "_OTHER"
            attributes = _attributes(request_id, model_name, model_version, header)
            attributes[HTTP_METHOD] = known
            # Named by method only until the route is known (leave() renames it): the
            # raw path would give every distinct URL its own span name.
            own = _TRACER.start_span(
                _span_name(known, None), kind=SpanKind.SERVER, attributes=attributes
            )
            span = own
            ctx = trace.set_span_in_context(own, ctx)
    elif span.is_recording():
        # The attributes are built only for a span that records.
        span.set_attributes(_attributes(request_id, model_name, model_version, header))
    ctx = baggage.set_baggage(BAGGAGE_KEY, request_id, context=ctx)
    return context.attach(ctx), span, own


def _attributes(
    request_id: str, model_name: str, model_version: str, header: str | None
) -> dict[str, Any]:
    """The server span's attributes for this request."""
    attributes: dict[str, Any] = {
        REQUEST_ID: request_id,
        MODEL_NAME: model_name,
        MODEL_VERSION: model_version,
    }
    if header is not None:
        attributes[header] = (request_id,)
    return attributes


class _Provider:
    """Whether a real tracer provider is installed, asked of OpenTelemetry at most once
    a second until one is: without one, each answer costs an environment lookup
    (~12 µs, the largest predlog frame of benchmarks/profile_request_path.txt). Once
    set, the global provider can never change."""

    installed = False
    asked_at = -1.0


def _sdk_installed() -> bool:
    if _Provider.installed:
        return True
    now = time.monotonic()
    if now - _Provider.asked_at >= 1.0:
        _Provider.asked_at = now
        provider = trace.get_tracer_provider()
        _Provider.installed = not isinstance(provider, trace.ProxyTracerProvider)
    return _Provider.installed


def annotate(span: Span, fields: Mapping[str, Any]) -> None:
    """Put what the handler recorded (score, decision...) on the span.

    Called just before the last body message goes out: the OpenTelemetry ASGI
    middleware ends its server span as soon as that message is sent.
    """
    if fields and span.is_recording():
        # One call: the SDK validates and locks per call, not per attribute.
        attributes = {
            attribute: value
            for name, attribute in _RECORDED
            if isinstance(value := fields.get(name), (str, bool, int, float))
        }
        if attributes:
            span.set_attributes(attributes)


def leave(
    token: object, own: Span | None, scope: Mapping[str, Any] | None = None, status: int = 0
) -> None:
    """Detach the context and end the span predlog opened, if it opened one.

    That span is named by method and route once the route is known: the framework's
    router puts it in the ASGI scope (``scope["route"]``) while the request runs, after
    enter() is long past. Without a route it keeps the method alone.
    """
    context.detach(token)  # type: ignore[arg-type]
    if own is None:
        return
    if own.is_recording():
        # One call: the SDK validates and locks per call, not per attribute.
        attributes: dict[str, Any] = {}
        route = _route(scope) if scope is not None else None
        if route is not None:
            attributes[HTTP_ROUTE] = route
            method = scope.get("method") if scope is not None else None
            own.update_name(_span_name(method if method in _KNOWN_METHODS else "_OTHER", route))
        if status:
            attributes[HTTP_STATUS] = status
            if status >= 500:  # a server span's 4xx is the client's error, not ours
                own.set_status(StatusCode.ERROR)
        if attributes:
            own.set_attributes(attributes)
    own.end()


def _span_name(method: str, route: str | None) -> str:
    """``{method} {route}``, as the semantic conventions name server spans; ``HTTP`` stands
    for a method they do not know."""
    verb = "HTTP" if method == "_OTHER" else method
    return verb if route is None else f"{verb} {route}"


def _route(scope: Mapping[str, Any]) -> str | None:
    """The route template (``/users/{id}``) the framework matched, if it says.

    Starlette and FastAPI put the matched route object in ``scope["route"]``; its
    ``path_format`` (or ``path``) is relative to ``root_path`` (a mount, a proxy prefix),
    as OpenTelemetry's ASGI instrumentation reads it.
    """
    route = scope.get("route")
    if route is None:
        return None
    template = route if isinstance(route, str) else getattr(route, "path_format", None)
    if not isinstance(template, str):
        template = getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return None
    root = scope.get("root_path")
    return f"{root}{template}" if isinstance(root, str) else template


def ids(span: Span) -> tuple[int, int]:
    """Trace and span id as integers (formatted to hex later, in the flusher)."""
    ctx = span.get_span_context()
    return ctx.trace_id, ctx.span_id


#: The key older instrumentations read before the API had its own.
_SUPPRESS_PLAIN: Final = "suppress_instrumentation"


def uninstrumented_context() -> context.Context:
    """The current context with OpenTelemetry instrumentation switched off.

    Set the way OpenTelemetry's own exporters and ``suppress_instrumentation()`` set it
    (the API's key, which every instrumentation checks, and the plain key older ones
    read), so that instrumented clients inside predlog's sinks (boto3, aiokafka, httpx)
    make no spans for predlog's own writes.
    """
    ctx = context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True)
    return context.set_value(_SUPPRESS_PLAIN, True, ctx)


@contextmanager
def uninstrumented() -> Iterator[None]:
    """Run a block (a sink's export, flush, tick or close) with instrumentation off."""
    token = context.attach(uninstrumented_context())
    try:
        yield
    finally:
        context.detach(token)
