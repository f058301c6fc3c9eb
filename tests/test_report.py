from __future__ import annotations

import logging
import threading

import pytest

from predlog.testing import ErrorReporter
from tests.helpers import Collect


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Broken(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("log handler bug")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def lines():
    return Collect()


def reporter_logging_to(handler: logging.Handler, clock: Clock, interval_s: float = 60.0):
    log = logging.Logger("test_report")
    log.addHandler(handler)
    return ErrorReporter(interval_s=interval_s, clock=clock, log=log)


class TestErrorReporter:
    def test_counts_every_error_by_kind(self, clock, lines):
        """Every report is counted under its kind, whether it was logged or not."""
        reporter = reporter_logging_to(lines, clock)
        for _ in range(3):
            reporter.report("sink_export_failed", "disk full")
        reporter.report("extractor_failed", "bad body")
        assert reporter.counts() == {"sink_export_failed": 3, "extractor_failed": 1}

    def test_logs_a_kind_at_most_once_per_interval(self, clock, lines):
        """Within interval_s of a kind's last line, further reports of it are not logged."""
        reporter = reporter_logging_to(lines, clock, interval_s=60.0)
        reporter.report("sink_export_failed", "first")
        clock.now += 30.0
        reporter.report("sink_export_failed", "second")
        clock.now += 29.9
        reporter.report("sink_export_failed", "third")
        assert [r.getMessage() for r in lines.records] == ["sink_export_failed: first"]

    def test_logs_again_after_the_interval_with_the_number_suppressed(self, clock, lines):
        """The first line after the interval says how many reports were held back."""
        reporter = reporter_logging_to(lines, clock, interval_s=60.0)
        reporter.report("sink_export_failed", "first")
        for _ in range(4):
            clock.now += 1.0
            reporter.report("sink_export_failed", "again")
        clock.now += 60.0
        reporter.report("sink_export_failed", "later")
        clock.now += 60.0
        reporter.report("sink_export_failed", "much later")
        assert [r.getMessage() for r in lines.records] == [
            "sink_export_failed: first",
            "sink_export_failed: later (4 more since last report)",
            "sink_export_failed: much later",
        ]

    def test_each_kind_has_its_own_limit(self, clock, lines):
        """A noisy kind does not silence a different kind."""
        reporter = reporter_logging_to(lines, clock)
        reporter.report("sink_export_failed", "a")
        reporter.report("sink_export_failed", "b")
        reporter.report("extractor_failed", "c")
        assert [r.getMessage() for r in lines.records] == [
            "sink_export_failed: a",
            "extractor_failed: c",
        ]

    def test_line_carries_kind_and_exception(self, clock, lines):
        """A logged line is at ERROR, names its kind in extra, and carries the traceback."""
        reporter = reporter_logging_to(lines, clock)
        try:
            raise OSError("disk on fire")
        except OSError as exc:
            reporter.report("sink_export_failed", "export raised", exc=exc)
        (record,) = lines.records
        assert record.levelno == logging.ERROR
        assert record.predlog_error_kind == "sink_export_failed"
        assert record.exc_info is not None
        assert record.exc_info[0] is OSError
        assert record.exc_info[2] is not None

    def test_survives_a_raising_log_handler(self, clock):
        """A log handler that raises never reaches the caller, and the error is still counted."""
        reporter = reporter_logging_to(Broken(), clock)
        reporter.report("sink_export_failed", "disk full", exc=OSError("x"))
        clock.now += 120.0
        reporter.report("sink_export_failed", "disk full")
        assert reporter.counts() == {"sink_export_failed": 2}

    def test_concurrent_reports_are_all_counted_and_logged_once(self, clock, lines):
        """Reports from many threads at once lose no count and still log a kind only once."""
        reporter = reporter_logging_to(lines, clock)
        start = threading.Barrier(8)

        def burst() -> None:
            start.wait()
            for _ in range(1000):
                reporter.report("sink_export_failed", "x")

        threads = [threading.Thread(target=burst) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert reporter.counts() == {"sink_export_failed": 8000}
        assert len(lines.records) == 1


@pytest.fixture
def root_handler():
    """An application's own handler on the root logger, removed afterwards."""
    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


class TestThroughTheApplicationsLogging:
    def test_default_logger_reaches_the_root_handler_with_traceback(self, clock, root_handler):
        """By default the reporter logs on "predlog", which propagates to the application's
        root handler: once per interval, and formatted with the exception's traceback."""
        reporter = ErrorReporter(interval_s=60.0, clock=clock)

        def fail(n: int) -> None:
            try:
                raise OSError(f"disk on fire {n}")
            except OSError as exc:
                reporter.report("sink_export_failed", "export raised", exc=exc)

        for n in range(3):
            fail(n)
        clock.now += 61.0
        fail(3)
        ours = [r for r in root_handler.records if r.name == "predlog"]
        assert [r.getMessage() for r in ours] == [
            "sink_export_failed: export raised",
            "sink_export_failed: export raised (2 more since last report)",
        ]
        text = logging.Formatter().format(ours[0])
        assert "Traceback (most recent call last)" in text
        assert "in fail" in text
        assert "OSError: disk on fire 0" in text
