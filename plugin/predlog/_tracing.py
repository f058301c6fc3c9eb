"""OpenTelemetry on the request path: the request id on the server span and in baggage.

With no OpenTelemetry SDK configured, every call here is a cheap no-op on
non-recording spans. With one, the server span (BentoML's, or the OpenTelemetry
ASGI middleware's) gets the request id and model attributes, and the request id
goes into baggage so instrumented httpx/aiohttp clients carry it downstream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import baggage, context, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import Span, SpanKind

_TRACER: Final = trace.get_tracer("predlog")

#: Span attribute names. ``request_id`` is kept short so it is easy to search by.
REQUEST_ID: Final = "request_id"
MODEL_NAME: Final = "ml.model.name"
MODEL_VERSION: Final = "ml.model.version"
SCORE: Final = "ml.prediction.score"
DECISION: Final = "ml.prediction.decision"
THRESHOLD: Final = "ml.prediction.threshold"
BAGGAGE_KEY: Final = "request_id"
#: Recorded fields that also go on the span, and the attribute each becomes.
_RECORDED: Final = (
    ("score", SCORE),
    ("decision", DECISION),
    ("threshold", THRESHOLD),
    ("model_version", MODEL_VERSION),
)


def enter(
    request_id: str, model_name: str, model_version: str, method: str, path: str
) -> tuple[object, Span, Span | None]:
    """Annotate (or open) the server span and attach the baggage.

    Returns the context token to detach, the server span, and the span predlog
    opened itself (None when the server already had one).
    """
    span = trace.get_current_span()
    ctx = context.get_current()
    own: Span | None = None
    # With no SDK installed (the default proxy provider) a span would be a no-op:
    # skip making one. The baggage below still works without an SDK.
    if not span.get_span_context().is_valid and _sdk_installed():
        own = _TRACER.start_span(f"{method} {path}", kind=SpanKind.SERVER)
        span = own
        ctx = trace.set_span_in_context(own, ctx)
    if span.is_recording():
        span.set_attributes(
            {REQUEST_ID: request_id, MODEL_NAME: model_name, MODEL_VERSION: model_version}
        )
    ctx = baggage.set_baggage(BAGGAGE_KEY, request_id, context=ctx)
    return context.attach(ctx), span, own


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


def leave(token: object, own: Span | None) -> None:
    """Detach the context and end the span predlog opened, if it opened one."""
    context.detach(token)  # type: ignore[arg-type]
    if own is not None:
        own.end()


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
