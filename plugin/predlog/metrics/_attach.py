"""Connecting a logger to the exporters: called once, as the logger starts."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from predlog.metrics._health import HealthObserver
from predlog.metrics._latency import BatchLatency
from predlog.metrics._otel import track

if TYPE_CHECKING:
    from predlog._logger import PredictionLogger


def attach(logger: PredictionLogger, latency: BatchLatency) -> list[HealthObserver]:
    """Report ``logger`` through OpenTelemetry, and return the observers its flusher
    must keep current: a Prometheus exporter when prometheus_client is importable.

    prometheus_client is imported here, in the process that serves, and not when predlog
    is imported: it reads ``PROMETHEUS_MULTIPROC_DIR`` once, at its own import. With the
    ``metrics`` setting off (``PREDLOG_METRICS=false``), neither is touched.
    """
    if not logger.settings.metrics:
        return []
    track(logger)
    if importlib.util.find_spec("prometheus_client") is None:
        return []
    from predlog.metrics._prometheus import exporter_for  # noqa: PLC0415  # see above

    return [exporter_for(logger.health, latency)]
