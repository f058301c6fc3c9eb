"""predlog's own health, for scraping: what it captured, delivered and lost, and how fast.

:meth:`predlog.PredictionLogger.health` gives a :class:`Health` snapshot. Every logger is
also reported, with no cost on the request path, through

- prometheus_client metric objects on the default registry (``predlog_*``), kept
  current by the logger's flusher, when prometheus_client is importable;
- OpenTelemetry observable instruments on ``get_meter("predlog")``, read when a metric
  reader collects (no-ops until a MeterProvider is installed); :func:`instrument`
  puts them on a meter of your choice.
"""

from __future__ import annotations

from predlog.metrics._attach import attach
from predlog.metrics._health import OUTCOMES, Health, HealthObserver, HealthSource, SinkHealth
from predlog.metrics._latency import LATENCY_BUCKETS, BatchLatency, LatencySnapshot
from predlog.metrics._otel import instrument

__all__ = [
    "LATENCY_BUCKETS",
    "OUTCOMES",
    "BatchLatency",
    "Health",
    "HealthObserver",
    "HealthSource",
    "LatencySnapshot",
    "SinkHealth",
    "attach",
    "instrument",
]
