"""predlog's own health, for scraping: what it captured, delivered and lost, and how fast.

:meth:`predlog.PredictionLogger.health` gives a :class:`Health` snapshot. Every logger is
also reported, with no cost on the request path, through

- prometheus_client metric objects on the default registry (``predlog_*``), kept
  current by the logger's flusher, when prometheus_client is importable;
- OpenTelemetry observable instruments on ``get_meter("predlog")``, read when a metric
  reader collects (no-ops until a MeterProvider is installed); :func:`instrument`
  puts them on a meter of your choice.

``predlog sink`` reports its own figures (:class:`ConsumerMetrics`) and serves them
(:class:`MetricsServer`); both are imported on first use, since they import
prometheus_client, which a serving process must import only when it starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from predlog.metrics._attach import attach
from predlog.metrics._health import OUTCOMES, Health, HealthObserver, HealthSource, SinkHealth
from predlog.metrics._latency import LATENCY_BUCKETS, BatchLatency, LatencySnapshot
from predlog.metrics._otel import instrument

if TYPE_CHECKING:
    from predlog.metrics._consumer import ConsumerMetrics, MetricsServer

__all__ = [
    "LATENCY_BUCKETS",
    "OUTCOMES",
    "BatchLatency",
    "ConsumerMetrics",
    "Health",
    "HealthObserver",
    "HealthSource",
    "LatencySnapshot",
    "MetricsServer",
    "SinkHealth",
    "attach",
    "instrument",
]

#: Names imported on first use, from the module that needs prometheus_client.
_LAZY = frozenset({"ConsumerMetrics", "MetricsServer"})


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}._consumer"), name)
