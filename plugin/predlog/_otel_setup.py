"""A tracer provider from the standard OpenTelemetry variables, for an app that has none.

Why this exists: ``OTEL_EXPORTER_OTLP_ENDPOINT`` and ``OTEL_SERVICE_NAME`` do nothing by
themselves. Only ``opentelemetry-instrument`` or the application's own code turns them
into a tracer provider, so a FastAPI app under plain uvicorn with the variables set
exported nothing and its records had no ``trace_id``. :func:`predlog.instrument` calls
:func:`install_from_environment` once, at start-up, and the SDK's own pieces do the
rest: ``Resource.create()`` reads ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``,
the exporter reads its endpoint, headers and timeout, the provider its sampler, and the
batch processor its queue settings and re-starts its thread in a forked worker. What
the SDK does not do, export its queue when uvicorn's SIGTERM ends the process, is added.

What it must never do: replace a provider someone else set (the application's,
``opentelemetry-instrument``'s), or touch BentoML's, which BentoML builds from its own
tracing configuration and gives to its middleware only (``instrument`` does not call
this for a BentoML service). Nothing here runs per request.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Final

from opentelemetry import trace

from predlog.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

#: How long SIGTERM waits for queued spans to be exported before shutdown goes on.
_FLUSH_TIMEOUT_MS: Final = 5000


def _first(*names: str) -> tuple[str, str]:
    """The first of ``names`` set to something, and its value (the last name and "")."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return name, value
    return names[-1], ""


def wanted() -> bool:
    """Whether the variables ask for OTLP traces: an endpoint is set, and neither the SDK
    nor the traces exporter is switched off."""
    if not _first("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")[1]:
        return False
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    # A comma-separated list in the specification ("otlp,console").
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    exporters = {part.strip() for part in raw.split(",") if part.strip()}
    if exporters <= {"none"}:
        return False
    if "otlp" not in exporters:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER",
            f"predlog sets up the otlp exporter only, not {raw!r}; configure a tracer "
            "provider yourself, or run under opentelemetry-instrument",
        )
    return True


def _exporter() -> SpanExporter:
    """The OTLP span exporter for the protocol asked: http/protobuf (the specification's
    default), or grpc when its package is installed."""
    name, protocol = _first("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol in ("", "http/protobuf"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        return OTLPSpanExporter()
    if protocol == "grpc":
        try:  # an optional package, with grpcio
            grpc = importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
        except ImportError:
            raise ConfigError(
                name, "grpc needs pip install opentelemetry-exporter-otlp-proto-grpc"
            ) from None
        exporter: SpanExporter = grpc.OTLPSpanExporter()
        return exporter
    raise ConfigError(name, f"must be http/protobuf or grpc, got {protocol!r}")


def provider_from_environment() -> TracerProvider:
    """The SDK's tracer provider, resource and OTLP exporter behind a batch processor,
    each configured by the variables; not installed anywhere."""
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415  # start-up only
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    exporter = _exporter()  # a bad protocol is refused before anything starts
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def install_from_environment() -> bool:
    """Make the SDK's tracer provider the global one when the variables ask for traces and
    none is set yet; True when it did. Raises :class:`ConfigError` for a variable it
    cannot honour."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # The application's, or opentelemetry-instrument's: theirs to keep, and the
        # variables theirs to read (OTEL_TRACES_EXPORTER=console included).
        return False
    if not wanted():
        return False
    provider = provider_from_environment()
    trace.set_tracer_provider(provider)
    _flush_on_sigterm(provider)
    return True


def _flush_on_sigterm(provider: TracerProvider) -> None:
    """Export the spans still queued when SIGTERM arrives.

    The SDK exports them at exit (atexit), but uvicorn ends a graceful shutdown by
    raising SIGTERM again under the handler it found at start-up, by default the default
    action, which ends the process before atexit runs: the last seconds of spans were
    lost. As predlog's loggers do, only from the main thread, and only over the default
    action or a Python handler, which is then chained.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_IGN, None):
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            provider.force_flush(_FLUSH_TIMEOUT_MS)
            previous(signum, frame)
            return
        provider.shutdown()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
