"""Helpers for testing code that uses predlog: an in-memory sink and a capture helper.

For unit tests only. A real deployment writes to :class:`predlog.ParquetSink` or a
Kafka sink; tests of those sinks talk to real files and real brokers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from services.bentoserve import BentoServer, free_port

from predlog._logger import PredictionLogger

__all__ = ["BentoServer", "MemorySink", "capture_records", "free_port"]


class MemorySink:
    """Keeps every exported record as a dict keyed by the schema's field names."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self.batches = 0
        self.flushes = 0
        self.closed = False

    def export(self, batch: pa.RecordBatch) -> None:
        rows = batch.to_pylist()
        with self._lock:
            self.records.extend(rows)
            self.batches += 1

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


@contextmanager
def capture_records(**settings: Any) -> Iterator[tuple[PredictionLogger, MemorySink]]:
    """A logger writing to a fresh :class:`MemorySink`; closed (and so drained) on exit.

    Signal handlers are left alone unless ``install_signal_handlers`` is passed.
    """
    sink = MemorySink()
    settings.setdefault("install_signal_handlers", False)
    logger = PredictionLogger(sinks=[sink], **settings)
    try:
        yield logger, sink
    finally:
        logger.close()
