"""predlog's own metrics: the health snapshot, Prometheus and OpenTelemetry exports."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pyarrow as pa
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import REGISTRY

import predlog
from predlog.metrics import BatchLatency, instrument
from predlog.testing import MemorySink
from tests.helpers import BlockedSink, FailingSink


def _logger(model: str, **options: Any) -> predlog.PredictionLogger:
    options.setdefault("sinks", [MemorySink()])
    options.setdefault("flush_interval_s", 0.05)
    return predlog.PredictionLogger(model_name=model, install_signal_handlers=False, **options)


def _model() -> str:
    """A model label no other test uses: the default registry is shared by the process."""
    return f"m-{uuid.uuid4().hex[:8]}"


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _log(log: predlog.PredictionLogger, n: int) -> None:
    for i in range(n):
        log.log(request_id=f"r{i}", features={"x": float(i)}, score=0.5)


class SpoolingSink(MemorySink):
    """A sink with figures of its own, like KafkaSink's."""

    def stats(self) -> dict[str, int]:
        return {"sent": len(self.records), "spool_bytes": 4096, "queue_bytes": 10}


class TestBatchLatency:
    def test_buckets_count_and_sum(self):
        """Each observation lands in the first bucket whose bound is not below it."""
        latency = BatchLatency((0.1, 1.0))
        for seconds in (0.05, 0.1, 0.5, 3.0):
            latency.observe(seconds)
        snap = latency.snapshot()
        assert (snap.count, snap.buckets) == (4, (2, 1, 1))
        assert snap.sum == pytest.approx(3.65)

    def test_since_returns_only_new_observations(self):
        """A reader gets each observation once, and at most as many as are held."""
        latency = BatchLatency((1.0,), recent=2)
        latency.observe(0.1)
        assert latency.since(0) == (1, [0.1])
        latency.observe(0.2)
        latency.observe(0.3)
        latency.observe(0.4)
        assert latency.since(1) == (4, [0.3, 0.4])
        assert latency.since(4) == (4, [])


class RecordingObserver:
    """Counts how the flusher calls it; raises on update when told to."""

    def __init__(self, *, fail: bool = False) -> None:
        self.updates = 0
        self.closes = 0
        self.fail = fail

    def update(self) -> None:
        self.updates += 1
        if self.fail:
            raise RuntimeError("exporter down")

    def close(self) -> None:
        self.closes += 1


class TestFlusherObservers:
    @staticmethod
    def _pipeline(observer: RecordingObserver) -> tuple[Any, MemorySink, Any, Any]:
        from predlog.flush import Flusher
        from predlog.testing import ErrorReporter, RingBuffer
        from tests.test_flusher import capture, make_builder

        ring: RingBuffer[Any] = RingBuffer(1000)
        reporter = ErrorReporter()
        sink = MemorySink()
        flusher = Flusher(
            ring, make_builder(reporter), [sink], batch_size=10, interval_s=60, reporter=reporter
        )
        flusher.add_observer(observer)
        flusher.start()
        for i in range(35):
            ring.put(capture(f"r{i}"))
        return flusher, sink, reporter, ring

    def test_updated_on_flush_closed_on_shutdown_and_batches_timed(self):
        """Each flush updates the observers before it answers; shutdown closes them once."""
        observer = RecordingObserver()
        flusher, sink, _, _ = self._pipeline(observer)
        assert flusher.force_flush(10)
        assert observer.updates >= 1 and observer.closes == 0
        assert flusher.latency.snapshot().count == 4
        assert flusher.shutdown(10)
        assert observer.closes == 1 and len(sink.records) == 35

    def test_a_failing_observer_is_counted_and_the_flusher_carries_on(self):
        """An exporter that raises is an error of kind metrics_failed, never a lost batch."""
        observer = RecordingObserver(fail=True)
        flusher, sink, reporter, _ = self._pipeline(observer)
        assert flusher.force_flush(10)
        assert reporter.counts()["metrics_failed"] >= 1
        assert flusher.shutdown(10)
        assert len(sink.records) == 35


class TestHealth:
    def test_snapshot_matches_stats_and_counts_batches(self):
        """health() carries stats(), errors(), ring size, sink figures and batch latency."""
        log = _logger(_model(), sinks=[SpoolingSink()], ring_capacity=1024)
        _log(log, 10)
        assert log.flush(10)
        health = log.health()
        assert dict(health.records) == log.stats()
        assert health.records["delivered"] == 10
        assert health.ring_capacity == 1024 and health.ring_fill_ratio == 0.0
        assert health.batches.count >= 1 and sum(health.batches.buckets) == health.batches.count
        sink = health.sinks["SpoolingSink[0]"]
        assert (sink.delivered, sink.figures["spool_bytes"], sink.figures["sent"]) == (10, 4096, 10)
        log.close()

    def test_a_sink_whose_stats_raise_is_marked_not_counted(self):
        """The health path marks a failing stats() instead of counting it every second."""

        class Broken(MemorySink):
            def stats(self) -> dict[str, int]:
                raise RuntimeError("no figures")

        log = _logger(_model(), sinks=[Broken()])
        _log(log, 3)
        assert log.flush(10)
        health = log.health()
        assert health.sinks["Broken[0]"].figures == {}
        assert "no figures" in (health.sinks["Broken[0]"].figures_error or "")
        assert "sink_stats_failed" not in log.errors()
        log.close()


class TestPrometheus:
    def test_records_and_batches_move(self):
        """Captured and delivered counters and the batch histogram follow the logger."""
        model = _model()
        log = _logger(model)
        _log(log, 25)
        assert log.flush(10)
        assert _sample("predlog_records_captured_total", model=model) == 25
        assert _sample("predlog_records_total", model=model, outcome="delivered") == 25
        assert _sample("predlog_records_total", model=model, outcome="dropped") == 0
        assert _sample("predlog_records_pending", model=model) == 0
        count = _sample("predlog_flusher_batch_seconds_count", model=model)
        assert count == log.health().batches.count >= 1
        _log(log, 5)
        assert log.flush(10)
        assert _sample("predlog_records_total", model=model, outcome="delivered") == 30
        log.close()

    def test_the_metrics_setting_turns_publishing_off(self, monkeypatch):
        """With PREDLOG_METRICS=false a logger publishes no series at all."""
        monkeypatch.setenv("PREDLOG_METRICS", "false")
        model = _model()
        log = _logger(model)
        _log(log, 3)
        assert log.flush(10)
        log.close()
        assert log.settings.metrics is False
        assert _sample("predlog_records_captured_total", model=model) is None

    def test_drops_after_overflow_are_counted(self):
        """A stalled sink fills a tiny ring; the drops show once the flusher moves again."""
        model = _model()
        sink = BlockedSink()
        log = _logger(model, sinks=[sink], ring_capacity=8, batch_size=4)
        _log(log, 1)
        assert sink.entered.wait(10)
        _log(log, 50)
        sink.release.set()
        assert log.flush(10)
        dropped = log.stats()["dropped"]
        assert dropped >= 40
        assert _sample("predlog_records_total", model=model, outcome="dropped") == dropped
        assert _sample("predlog_records_captured_total", model=model) == 51
        log.close()

    def test_errors_by_kind_and_per_sink(self):
        """A failing sink shows as failed records, an error kind, and a sink error."""
        model = _model()
        log = _logger(model, sinks=[FailingSink()])
        _log(log, 7)
        assert log.flush(10)
        assert _sample("predlog_records_total", model=model, outcome="failed") == 7
        kind = "sink_export_failed:FailingSink[0]"
        assert _sample("predlog_errors_total", model=model, kind=kind) == log.errors()[kind]
        labels = {"model": model, "sink": "FailingSink[0]"}
        assert _sample("predlog_sink_errors_total", kind="OSError", **labels) >= 1
        assert _sample("predlog_sink_records_total", outcome="failed", **labels) == 7
        log.close()

    def test_sink_figures_ring_gauges_and_close(self):
        """A sink's own figures are exported; closing withdraws the logger's gauges."""
        model = _model()
        log = _logger(model, sinks=[SpoolingSink()], ring_capacity=64)
        _log(log, 3)
        assert log.flush(10)
        labels = {"model": model, "sink": "SpoolingSink[0]"}
        assert _sample("predlog_spool_bytes", **labels) == 4096
        assert _sample("predlog_sink_level", figure="queue_bytes", **labels) == 10
        assert _sample("predlog_sink_events_total", event="sent", **labels) == 3
        assert _sample("predlog_ring_capacity", model=model) == 64
        assert _sample("predlog_ring_fill_ratio", model=model) == 0.0
        log.close()
        assert _sample("predlog_ring_capacity", model=model) == 0
        assert _sample("predlog_spool_bytes", **labels) == 0
        assert _sample("predlog_records_total", model=model, outcome="delivered") == 3

    def test_two_loggers_of_one_model_add_up(self):
        """Several loggers with one model name add their counts instead of overwriting."""
        model = _model()
        first, second = _logger(model, ring_capacity=64), _logger(model, ring_capacity=64)
        _log(first, 4)
        _log(second, 6)
        assert first.flush(10) and second.flush(10)
        assert _sample("predlog_records_total", model=model, outcome="delivered") == 10
        assert _sample("predlog_ring_capacity", model=model) == 128
        first.close()
        second.close()

    def test_ring_fill_ratio_between_two_stalls(self):
        """The flusher publishes a full ring after one batch, before it takes the next."""
        model = _model()
        sink = SteppedSink()
        log = _logger(model, sinks=[sink], ring_capacity=8, batch_size=8)
        _log(log, 1)
        assert sink.entered[0].wait(10)
        _log(log, 8)
        sink.gates[0].set()
        assert sink.entered[1].wait(10)
        assert _sample("predlog_ring_fill_ratio", model=model) == 1.0
        assert _sample("predlog_records_pending", model=model) == 8
        sink.gates[1].set()
        assert log.flush(10)
        assert _sample("predlog_ring_fill_ratio", model=model) == 0.0
        log.close()


class SteppedSink(MemorySink):
    """Holds its first two exports until their gates open."""

    def __init__(self) -> None:
        super().__init__()
        self.gates = [threading.Event(), threading.Event()]
        self.entered = [threading.Event(), threading.Event()]
        self.calls = 0

    def export(self, batch: pa.RecordBatch) -> None:
        call, self.calls = self.calls, self.calls + 1
        if call < 2:
            self.entered[call].set()
            self.gates[call].wait(10)
        super().export(batch)


class TestOpenTelemetry:
    @pytest.fixture
    def reader(self) -> InMemoryMetricReader:
        reader = InMemoryMetricReader()
        instrument(MeterProvider(metric_readers=[reader]).get_meter("predlog"))
        return reader

    @staticmethod
    def _points(reader: InMemoryMetricReader, name: str, model: str) -> dict[Any, float]:
        data = reader.get_metrics_data()
        points: dict[Any, float] = {}
        if data is None:
            return points
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        attributes = dict(point.attributes or {})
                        if attributes.pop("model", None) == model:
                            points[tuple(sorted(attributes.items()))] = point.value
        return points

    def test_records_errors_and_batches_are_observed(self, reader):
        """The observable instruments read the snapshot: outcomes, errors, batch count."""
        model = _model()
        log = _logger(model, sinks=[MemorySink(), FailingSink()])
        _log(log, 12)
        assert log.flush(10)
        records = self._points(reader, "predlog.records", model)
        assert records[(("outcome", "failed"),)] == 12
        assert records[(("outcome", "dropped"),)] == 0
        errors = self._points(reader, "predlog.errors", model)
        assert errors[(("kind", "sink_export_failed:FailingSink[1]"),)] >= 1
        batches = self._points(reader, "predlog.flusher.batches", model)
        assert batches[()] == log.health().batches.count >= 1
        log.close()

    def test_loggers_of_one_model_add_up(self, reader):
        """Two loggers with one model name report their sum, and the fuller ring."""
        model = _model()
        first, second = _logger(model), _logger(model)
        _log(first, 3)
        _log(second, 4)
        assert first.flush(10) and second.flush(10)
        assert self._points(reader, "predlog.records", model)[(("outcome", "delivered"),)] == 7
        assert self._points(reader, "predlog.ring.fill_ratio", model) == {(): 0.0}
        first.close()
        second.close()

    def test_closed_loggers_are_not_observed(self, reader):
        """A closed logger no longer reports."""
        model = _model()
        log = _logger(model)
        _log(log, 2)
        log.close()
        assert self._points(reader, "predlog.records", model) == {}
