"""predlog's figures as prometheus_client metrics, on the default registry.

The metric objects are created once per process and written only by each logger's
flusher, after a drain or an idle tick: the request path never touches them. They are
ordinary Counter, Gauge and Histogram objects rather than a custom collector because
under prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, which
BentoML sets for its workers) only metric objects reach the server's ``/metrics``:
each writes its own mmap file and the scraping process sums them.

Counters are advanced by the difference since the last update, gauges that add up
across loggers and workers by theirs, so that several loggers with the same model
name in one process (and several workers) add up instead of overwriting each other.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from prometheus_client import Counter, Gauge, Histogram

from predlog.metrics._health import OUTCOMES, Health, SinkHealth
from predlog.metrics._latency import LATENCY_BUCKETS, BatchLatency
from predlog.metrics._once import OncePerProcess

_Labels: TypeAlias = tuple[str, ...]
#: A sink's own figures that are levels, not running totals.
_LEVELS = frozenset({"spool_bytes", "adopted_bytes", "queue_bytes", "accepting"})


@dataclass(frozen=True)
class _Metrics:
    captured: Counter
    records: Counter
    errors: Counter
    pending: Gauge
    capacity: Gauge
    fill: Gauge
    sink_records: Counter
    sink_errors: Counter
    sink_events: Counter
    sink_levels: Gauge
    spool_bytes: Gauge
    batch_seconds: Histogram


def _create() -> _Metrics:
    model = ("model",)
    sink = ("model", "sink")
    return _Metrics(
        captured=Counter("predlog_records_captured", "Predictions captured by log().", model),
        records=Counter(
            "predlog_records",
            "Captured records by outcome; captured = sum over outcomes + pending.",
            (*model, "outcome"),
        ),
        errors=Counter("predlog_errors", "Errors predlog caught, by kind.", (*model, "kind")),
        pending=Gauge(
            "predlog_records_pending",
            "Records in the ring or in the flusher's hands.",
            model,
            multiprocess_mode="livesum",
        ),
        capacity=Gauge("predlog_ring_capacity", "Ring slots.", model, multiprocess_mode="livesum"),
        fill=Gauge(
            "predlog_ring_fill_ratio",
            "Fullest ring, 0 to 1; at 1 new captures are dropped.",
            model,
            multiprocess_mode="livemax",
        ),
        sink_records=Counter(
            "predlog_sink_records", "Records per sink by outcome.", (*sink, "outcome")
        ),
        sink_errors=Counter("predlog_sink_errors", "Sink errors by kind.", (*sink, "kind")),
        sink_events=Counter(
            "predlog_sink_events", "A sink's own running totals.", (*sink, "event")
        ),
        sink_levels=Gauge(
            "predlog_sink_level",
            "A sink's own levels.",
            (*sink, "figure"),
            multiprocess_mode="livesum",
        ),
        spool_bytes=Gauge(
            "predlog_spool_bytes",
            "Bytes a sink holds on disk for later delivery.",
            sink,
            multiprocess_mode="livesum",
        ),
        batch_seconds=Histogram(
            "predlog_flusher_batch_seconds",
            "Seconds from a batch's build start to its last sink's return.",
            model,
            buckets=LATENCY_BUCKETS,
        ),
    )


_lock = threading.Lock()
#: Ring fill per model label, one entry per live exporter: the gauge shows the fullest.
_fills: dict[str, dict[int, float]] = {}


#: The metric objects, registered on the default registry the first time only.
_process_metrics: Final = OncePerProcess(_create)


class PrometheusExporter:
    """Publishes one logger's :class:`Health` to the process's metric objects."""

    def __init__(self, health: Callable[[], Health | None], latency: BatchLatency) -> None:
        self._health = health
        self._latency = latency
        self._metrics = _process_metrics()
        self._pid = os.getpid()
        self._model: str | None = None
        self._totals: dict[tuple[Counter, _Labels], float] = {}
        self._levels: dict[tuple[Gauge, _Labels], float] = {}
        self._batches = 0

    def update(self) -> None:
        """Advance every metric by what changed since the last update."""
        if os.getpid() != self._pid:
            # A forked child: under multiprocess mode its metrics start from zero.
            self._pid = os.getpid()
            self._totals.clear()
            self._levels.clear()
            self._batches = 0
        health = self._health()
        if health is None:
            return
        m, model = self._metrics, health.model
        self._model = model
        self._total(m.captured, (model,), health.records.get("captured", 0))
        for outcome in OUTCOMES:
            self._total(m.records, (model, outcome), health.records.get(outcome, 0))
        for kind, count in health.errors.items():
            self._total(m.errors, (model, kind), count)
        self._level(m.pending, (model,), health.records.get("pending", 0))
        self._level(m.capacity, (model,), health.ring_capacity)
        self._set_fill(model, health.ring_fill_ratio)
        for name, sink in health.sinks.items():
            self._update_sink((model, name), sink)
        self._batches, new = self._latency.since(self._batches)
        histogram = m.batch_seconds.labels(model)
        for seconds in new:
            histogram.observe(seconds)

    def _update_sink(self, labels: _Labels, sink: SinkHealth) -> None:
        m = self._metrics
        self._total(m.sink_records, (*labels, "delivered"), sink.delivered)
        self._total(m.sink_records, (*labels, "failed"), sink.failed)
        for kind, count in sink.errors.items():
            self._total(m.sink_errors, (*labels, kind), count)
        for figure, value in sink.figures.items():
            if figure == "spool_bytes":
                self._level(m.spool_bytes, labels, value)
            elif figure in _LEVELS:
                self._level(m.sink_levels, (*labels, figure), value)
            else:
                self._total(m.sink_events, (*labels, figure), value)

    def close(self) -> None:
        """Withdraw this logger's share of the level gauges; its counters stay counted."""
        for (gauge, labels), value in self._levels.items():
            gauge.labels(*labels).dec(value)
        self._levels.clear()
        if self._model is not None:
            self._set_fill(self._model, None)

    def _total(self, counter: Counter, labels: _Labels, total: float) -> None:
        key = (counter, labels)
        delta = total - self._totals.get(key, 0)
        # Every series exists from the first update, at zero if need be, so that its first
        # rise is a rate; a total that went down was reset (a sink restarted): count on.
        if delta > 0 or key not in self._totals:
            counter.labels(*labels).inc(max(delta, 0))
        self._totals[key] = total

    def _level(self, gauge: Gauge, labels: _Labels, value: float) -> None:
        key = (gauge, labels)
        delta = value - self._levels.get(key, 0)
        if delta or key not in self._levels:
            gauge.labels(*labels).inc(delta)
        self._levels[key] = value

    def _set_fill(self, model: str, ratio: float | None) -> None:
        with _lock:
            fills = _fills.setdefault(model, {})
            if ratio is None:
                fills.pop(id(self), None)
            else:
                fills[id(self)] = ratio
            self._metrics.fill.labels(model).set(max(fills.values(), default=0.0))


def exporter_for(health: Callable[[], Health], latency: BatchLatency) -> PrometheusExporter:
    """An exporter that holds the logger's ``health`` method weakly: metrics never keep
    a logger alive (its flusher thread holds the exporter)."""
    method = weakref.WeakMethod(health)

    def current() -> Health | None:
        bound = method()
        return bound() if bound is not None else None

    return PrometheusExporter(current, latency)
