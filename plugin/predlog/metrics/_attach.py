"""Connecting a logger to the exporters: called once, as the logger starts, when the
``metrics`` setting is on (``PREDLOG_METRICS``)."""

from __future__ import annotations

import importlib.util

from predlog.metrics._health import HealthObserver, HealthSource
from predlog.metrics._latency import BatchLatency
from predlog.metrics._otel import track


def attach(source: HealthSource, latency: BatchLatency) -> list[HealthObserver]:
    """Report ``source`` through OpenTelemetry, and return the observers its flusher
    must keep current: a Prometheus exporter when prometheus_client is importable.

    prometheus_client is imported here, in the process that serves, and not when predlog
    is imported: it reads ``PROMETHEUS_MULTIPROC_DIR`` once, at its own import. With the
    ``metrics`` setting off, the logger does not call this, and neither is touched.
    """
    track(source)
    if importlib.util.find_spec("prometheus_client") is None:
        return []
    from predlog.metrics._prometheus import exporter_for  # noqa: PLC0415  # see above

    return [exporter_for(source.health, latency)]
