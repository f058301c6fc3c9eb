from __future__ import annotations

import http.server
import os
import threading
import time
from itertools import pairwise

import httpx
import pyarrow as pa
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import predlog
from predlog.audit import AuditLog, AuditSink, ReasonTable
from predlog.flush import BatchBuilder, Flusher
from predlog.sinks import KafkaSink, ParquetSink, Sink
from predlog.testing import CAPTURE_FIELDS, ErrorReporter, MemorySink, RingBuffer, resolve
from tests.helpers import BlockedSink, FailingSink

WAIT_S = 5.0


def capture(request_id: str):
    values = {"timestamp_ns": time.time_ns(), "request_id": request_id, "score": 0.1}
    values["features"] = {"i": 1}
    return tuple(values.get(name) for name in CAPTURE_FIELDS)


def make_builder(reporter, builder_class=BatchBuilder, **settings):
    return builder_class.from_settings(resolve(settings), reporter=reporter)


def wait_until(condition, timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class Recorder(MemorySink):
    """Keeps the size of every batch, each close() call, and each tick()."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.closes = 0
        self.ticks: list[float] = []

    def export(self, batch: pa.RecordBatch) -> None:
        super().export(batch)
        self.sizes.append(batch.num_rows)

    def close(self) -> None:
        super().close()
        self.closes += 1

    def tick(self, now: float) -> None:
        self.ticks.append(now)


class Pipeline:
    """A ring, a builder, a reporter and a flusher over the given sinks."""

    def __init__(self, sinks, *, batch_size=100, interval_s=60.0, capacity=1000, **settings):
        self.ring = RingBuffer(capacity)
        self.reporter = ErrorReporter()
        self.flusher = Flusher(
            self.ring,
            make_builder(self.reporter, **settings),
            sinks,
            batch_size=batch_size,
            interval_s=interval_s,
            reporter=self.reporter,
            poll_s=0.01,
        )

    def put(self, n: int, prefix: str = "r") -> None:
        for i in range(n):
            assert self.ring.put(capture(f"{prefix}{i}"))


@pytest.fixture
def pipelines():
    made: list[tuple[Pipeline, list]] = []

    def make(*sinks, **options):
        pipeline = Pipeline(list(sinks), **options)
        made.append((pipeline, list(sinks)))
        return pipeline

    yield make
    for pipeline, sinks in made:
        for sink in sinks:
            if isinstance(sink, BlockedSink):
                sink.release.set()
        pipeline.flusher.shutdown(WAIT_S)


class TestFlusher:
    def test_full_batches_are_sent_without_waiting_for_the_interval(self, pipelines):
        """With batch_size records in the ring, they go out long before the interval."""
        sink = Recorder()
        p = pipelines(sink, batch_size=10, interval_s=60.0)
        p.put(25)
        p.flusher.start()
        assert wait_until(lambda: len(sink.records) == 25)
        assert sink.sizes == [10, 10, 5]
        assert [r["request_id"] for r in sink.records] == [f"r{i}" for i in range(25)]
        assert p.flusher.counts() == (0, 25, 0, 0)

    def test_partial_batch_waits_for_the_interval(self, pipelines):
        """Fewer than batch_size records are sent once the interval has passed, not before."""
        sink = Recorder()
        p = pipelines(sink, batch_size=1000, interval_s=0.3)
        started = time.monotonic()
        p.put(3)
        p.flusher.start()
        assert wait_until(lambda: len(sink.records) == 3)
        assert time.monotonic() - started >= 0.3
        assert sink.sizes == [3]

    def test_partial_batch_is_held_within_the_interval(self, pipelines):
        """Below batch_size and inside the interval, records stay pending in the ring."""
        sink = Recorder()
        p = pipelines(sink, batch_size=1000, interval_s=60.0)
        p.put(5)
        p.flusher.start()
        time.sleep(0.2)
        assert sink.records == []
        assert p.flusher.counts() == (0, 0, 0, 5)

    def test_force_flush_delivers_and_flushes_sinks(self, pipelines):
        """force_flush() sends everything captured so far and flushes every sink."""
        sink = Recorder()
        p = pipelines(sink, batch_size=1000, interval_s=60.0)
        p.flusher.start()
        p.put(7)
        assert p.flusher.force_flush(WAIT_S) is True
        assert len(sink.records) == 7
        assert sink.flushes >= 1
        assert p.flusher.counts() == (0, 7, 0, 0)

    def test_force_flush_without_a_thread_does_the_work_itself(self, pipelines):
        """A flusher never started still flushes when asked, on the caller's thread."""
        sink = Recorder()
        p = pipelines(sink)
        p.put(4)
        assert p.flusher.force_flush(WAIT_S) is True
        assert len(sink.records) == 4

    def test_force_flush_gives_up_at_its_timeout_when_a_sink_stalls(self, pipelines):
        """A stalled sink makes force_flush() return False at its timeout, not hang."""
        sink = BlockedSink()
        p = pipelines(sink, batch_size=1000, interval_s=60.0)
        p.flusher.start()
        p.put(1)
        started = time.monotonic()
        assert p.flusher.force_flush(0.2) is False
        assert time.monotonic() - started < 2.0
        assert sink.entered.is_set()
        sink.release.set()
        assert p.flusher.force_flush(WAIT_S) is True
        assert len(sink.records) == 1

    def test_shutdown_gives_up_at_its_timeout_when_a_sink_stalls(self, pipelines):
        """shutdown() with a stalled sink returns False at its timeout, and can be retried."""
        sink = BlockedSink()
        p = pipelines(sink, batch_size=1, interval_s=60.0)
        p.put(1)
        p.flusher.start()
        assert sink.entered.wait(WAIT_S)
        started = time.monotonic()
        assert p.flusher.shutdown(0.2) is False
        assert time.monotonic() - started < 2.0
        assert not sink.closed
        sink.release.set()
        assert p.flusher.shutdown(WAIT_S) is True
        assert sink.closed
        assert p.flusher.counts() == (0, 1, 0, 0)

    def test_in_hand_counts_what_a_stalled_sink_holds(self, pipelines):
        """While a sink stalls, its batch is pending as in hand: out of the ring, not lost."""
        sink = BlockedSink()
        p = pipelines(sink, batch_size=10, interval_s=60.0)
        p.put(10)
        p.flusher.start()
        assert sink.entered.wait(WAIT_S)
        assert len(p.ring) == 0
        assert p.flusher.in_hand == 10
        p.put(3, prefix="late")
        assert p.flusher.counts() == (0, 0, 0, 13)
        sink.release.set()
        assert p.flusher.force_flush(WAIT_S) is True
        assert p.flusher.in_hand == 0
        assert p.flusher.counts() == (0, 13, 0, 0)

    def test_raising_sink_is_isolated(self, pipelines):
        """A sink that raises is counted and reported; the other sinks still get the batch."""
        failing, healthy = FailingSink(), Recorder()
        p = pipelines(failing, healthy, batch_size=1000)
        p.flusher.start()
        p.put(4)
        assert p.flusher.force_flush(WAIT_S) is True
        assert len(healthy.records) == 4
        bad, good = p.flusher.sinks
        assert (bad.delivered, bad.failed, bad.errors) == (0, 4, {"OSError": 1})
        assert (good.delivered, good.failed, good.errors) == (4, 0, {})
        assert p.flusher.counts() == (0, 0, 4, 0)
        assert p.reporter.counts() == {"sink_export_failed:FailingSink[0]": 1}
        assert p.flusher.running

    def test_raising_flush_and_close_are_isolated(self, pipelines):
        """A sink whose flush() and close() raise does not stop the others being closed."""

        class Unflushable(Recorder):
            def flush(self) -> None:
                raise RuntimeError("flush bug")

            def close(self) -> None:
                raise RuntimeError("close bug")

        broken, healthy = Unflushable(), Recorder()
        p = pipelines(broken, healthy)
        p.flusher.start()
        p.put(2)
        assert p.flusher.shutdown(WAIT_S) is True
        assert healthy.closed and healthy.flushes >= 1
        assert len(broken.records) == len(healthy.records) == 2
        counts = p.reporter.counts()
        assert counts["sink_flush_failed:Unflushable[0]"] >= 1
        assert counts["sink_close_failed:Unflushable[0]"] == 1

    def test_shutdown_drains_closes_and_is_safe_twice(self, pipelines):
        """shutdown() delivers what is pending, closes each sink once, and may be repeated."""
        sink = Recorder()
        p = pipelines(sink, batch_size=1000, interval_s=60.0)
        p.flusher.start()
        p.put(6)
        assert p.flusher.shutdown(WAIT_S) is True
        assert not p.flusher.running
        assert len(sink.records) == 6
        assert sink.closes == 1
        assert p.flusher.shutdown(WAIT_S) is True
        assert sink.closes == 1

    def test_idle_sinks_are_ticked(self, pipelines):
        """With nothing to send, each sink's tick() is called about once per interval."""
        ticking, plain = Recorder(), MemorySink()
        p = pipelines(ticking, plain, interval_s=0.05)
        p.flusher.start()
        assert wait_until(lambda: len(ticking.ticks) >= 3)
        assert ticking.ticks == sorted(ticking.ticks)
        assert all(b - a >= 0.05 for a, b in pairwise(ticking.ticks))
        assert abs(ticking.ticks[-1] - time.monotonic()) < 1.0
        assert p.reporter.counts() == {}

    def test_busy_sinks_are_ticked(self, pipelines):
        """Under steady traffic the ring is never empty at a poll; ticks (which publish
        files that are due) must come anyway, or a file waits for a quiet moment."""

        class SlowRecorder(Recorder):
            def export(self, batch: pa.RecordBatch) -> None:
                time.sleep(0.005)  # longer than between two requests: never caught up
                super().export(batch)

        ticking = SlowRecorder()
        p = pipelines(ticking, interval_s=0.05, batch_size=1000, capacity=10_000)
        p.flusher.start()
        stop = time.monotonic() + 1.0
        n = 0
        while time.monotonic() < stop:
            p.ring.put(capture(f"busy{n}"))
            n += 1
            time.sleep(0.0005)
        assert len(ticking.records) > 0
        assert len(ticking.ticks) >= 5, f"{len(ticking.ticks)} ticks in 1 s of traffic"

    def test_raising_tick_is_reported_and_ticking_goes_on(self, pipelines):
        """A tick() that raises is reported against its sink; later ticks still happen."""
        calls = []

        class BadTick(MemorySink):
            def tick(self, now: float) -> None:
                calls.append(now)
                raise OSError("cannot roll")

        p = pipelines(BadTick(), interval_s=0.05)
        p.flusher.start()
        assert wait_until(lambda: len(calls) >= 2)
        assert p.reporter.counts()["sink_tick_failed:BadTick[0]"] >= 2
        assert p.flusher.running

    def test_builder_failure_loses_only_its_batch(self, pipelines):
        """A builder that raises has its batch counted failed; the next batch still goes out."""

        class FailsOnce(BatchBuilder):
            calls = 0

            def build(self, captures):
                FailsOnce.calls += 1
                if FailsOnce.calls == 1:
                    raise RuntimeError("builder bug")
                return super().build(captures)

        sink = Recorder()
        p = pipelines(sink, batch_size=1000, builder_class=FailsOnce)
        p.flusher.start()
        p.put(3)
        assert p.flusher.force_flush(WAIT_S) is True
        p.put(2, prefix="next")
        assert p.flusher.force_flush(WAIT_S) is True
        assert [r["request_id"] for r in sink.records] == ["next0", "next1"]
        assert p.flusher.counts() == (0, 2, 3, 0)
        assert p.reporter.counts() == {"batch_invalid": 1}

    def test_sampled_out_records_are_counted(self, pipelines):
        """Records the sample drops are counted sampled_out, never sent."""
        sink = Recorder()
        p = pipelines(sink, sample_rate=0.0, new_version_window_s=0)
        p.flusher.start()
        p.put(5)
        assert p.flusher.force_flush(WAIT_S) is True
        assert sink.records == []
        assert p.flusher.counts() == (5, 0, 0, 0)

    def test_counts_always_add_up_while_records_move(self, pipelines):
        """At every instant, sampled_out + delivered + failed + pending is what was put."""
        sink = Recorder()
        p = pipelines(sink, FailingSink(), batch_size=16, interval_s=0.01, capacity=100_000)
        p.flusher.start()
        stop = threading.Event()
        started, finished = [0], [0]

        def produce() -> None:
            while not stop.is_set() and started[0] < 20_000:
                started[0] += 1
                assert p.ring.put(capture(f"r{started[0]}"))
                finished[0] += 1

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            for _ in range(200):
                low = finished[0]
                total = sum(p.flusher.counts())
                high = started[0]
                assert low <= total <= high
        finally:
            stop.set()
            producer.join()
        assert p.flusher.force_flush(WAIT_S) is True
        assert p.flusher.counts() == (0, 0, finished[0], 0)


class TestInstrumentationSuppressed:
    def test_sink_client_calls_make_no_spans(self):
        """An instrumented HTTP client used by a sink creates no spans for predlog's own
        writes: the flusher suppresses instrumentation while sinks run."""

        class Quiet(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # the name http.server calls
                self.rfile.read(int(self.headers["content-length"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        client = httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}")
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)

        class HttpSink(MemorySink):
            def export(self, batch):
                client.post("/ingest", content=b"x" * batch.num_rows)
                super().export(batch)

        try:
            client.post("/outside")  # the same client, outside predlog: one span
            assert len(exporter.get_finished_spans()) == 1
            sink = HttpSink()
            with predlog.PredictionLogger(sinks=[sink], install_signal_handlers=False) as log:
                for i in range(10):
                    log.log(request_id=f"r{i}", score=0.5)
            assert len(sink.records) == 10
            assert len(exporter.get_finished_spans()) == 1
        finally:
            client.close()
            server.shutdown()


class Capable(MemorySink):
    """A sink with every capability the flusher knows; it notes each call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def open(self) -> None:
        self.calls.append("open")

    def tick(self, now: float) -> None:
        self.calls.append("tick")

    @property
    def unpublished_rows(self) -> int:
        return 2

    @property
    def lost_rows(self) -> int:
        return 1

    def stats(self) -> dict[str, int]:
        return {"own_figure": 7}

    def after_fork_in_child(self) -> None:
        self.calls.append("after_fork_in_child")


class TestSinkCapabilities:
    def test_each_capability_is_used_and_a_plain_sink_is_asked_for_none(self, pipelines):
        """A sink with open, tick, backlog and fork hook gets each call; a plain Sink,
        which has none of them, is never asked (asking would be reported as a failure)."""
        capable, plain = Capable(), MemorySink()
        assert isinstance(capable, Sink) and isinstance(plain, Sink)
        p = pipelines(capable, plain, interval_s=0.05)
        p.flusher.open_sinks()
        assert capable.calls == ["open"]
        p.flusher.start()
        assert wait_until(lambda: "tick" in capable.calls)
        p.put(5)
        assert p.flusher.force_flush(WAIT_S) is True
        # Of 5 records every sink took, 2 are held where no reader sees them (pending)
        # and 1 was lost after it was taken (failed).
        assert p.flusher.counts() == (0, 2, 1, 2)
        p.flusher.after_fork_in_child(RingBuffer(1000))
        assert capable.calls.count("after_fork_in_child") == 1
        assert len(plain.records) == 5
        assert p.reporter.counts() == {}

    def test_the_logger_shows_a_reporting_sinks_own_figures(self):
        """sink_stats() carries stats() of a sink that has it, and nothing for one
        that has not."""
        capable, plain = Capable(), MemorySink()
        with predlog.PredictionLogger(sinks=[capable, plain], install_signal_handlers=False) as log:
            shown = log.sink_stats()
        assert shown["Capable[0]"]["own"] == {"own_figure": 7}
        assert "own" not in shown["MemorySink[1]"]
        assert log.errors() == {}

    def test_sinks_register_no_fork_hook_of_their_own(self, tmp_path, monkeypatch):
        """Making and opening sinks registers no at-fork hook: a hook can never be
        removed, so one per sink would grow with every sink ever made. The logger's
        one hook reaches them through the flusher."""
        registered: list[dict[str, object]] = []
        monkeypatch.setattr(os, "register_at_fork", lambda **hooks: registered.append(hooks))
        for _ in range(1000):
            ParquetSink(tmp_path / "many")
        sinks = [
            ParquetSink(tmp_path / "data"),
            KafkaSink(bootstrap_servers="127.0.0.1:9", topic="t", spool_dir=tmp_path / "spool"),
            AuditSink(
                AuditLog(tmp_path / "audit", signing_key=bytes(range(32))),
                reasons=ReasonTable({"x": "X"}, features=["x"]),
            ),
        ]
        for sink in sinks:
            sink.open()
        for sink in sinks:
            sink.close()
        assert registered == []
