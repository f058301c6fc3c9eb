"""Helpers for testing code that uses predlog: an in-memory sink, a capture helper,
a record batch builder for testing sinks without a running logger, and ``paused`` to
hold a logger's flusher back while a test or benchmark fills its ring.

A test of the flush side on its own builds what a logger would hand it: capture tuples
(:data:`CAPTURE_FIELDS` in order, an :class:`Exchange` in ``features`` for a middleware
capture), the :class:`RingBuffer` they wait in, the :class:`ErrorReporter` that counts
what failed, and settings from keyword options (:func:`resolve`).

For unit tests only. A real deployment writes to :class:`predlog.ParquetSink` or a
Kafka sink; tests of those sinks talk to real files and real brokers.

Importing this module loads no more than ``import predlog.middleware`` does: pyarrow
and the batch builder load when a batch is first built, as in a logger.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from time import time_ns
from typing import TYPE_CHECKING, Any, Final

from typing_extensions import Unpack

from predlog._capture import CAPTURE_FIELDS, Capture, epoch_ns
from predlog._exchange import Exchange
from predlog._logger import PredictionLogger, paused
from predlog._record import arrow_schema
from predlog._report import ErrorReporter
from predlog._ring import RingBuffer
from predlog._settings import LoggerOptions, resolve
from predlog.flush._decode import Extractor, json_extractor

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CAPTURE_FIELDS",
    "ErrorReporter",
    "Exchange",
    "MemorySink",
    "RingBuffer",
    "build_batch",
    "capture_records",
    "paused",
    "resolve",
]

#: Capture positions filled by something other than a ``log()`` argument of the same name.
_DERIVED: Final = frozenset({"timestamp_ns", "extra", "flags"})
#: The ``log()`` keyword arguments that have a capture position of their own.
_LOG_ARGUMENTS: Final = (
    "timestamp",
    *(name for name in CAPTURE_FIELDS if name not in _DERIVED),
)


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


def build_batch(
    records: Iterable[Mapping[str, Any]],
    *,
    feature_names: Sequence[str] = (),
    extractor: Extractor = json_extractor,
    **settings: Unpack[LoggerOptions],
) -> pa.RecordBatch:
    """One record batch in :func:`predlog.arrow_schema`, built as a logger's flusher would.

    Each mapping holds the keyword arguments of one :meth:`PredictionLogger.log` call
    (``request_id``, ``features``, ``score``, ``decision``, ``timestamp``...; any other
    key goes to the record's ``extra`` map). ``settings``, ``feature_names`` and
    ``extractor`` mean what they mean to :class:`PredictionLogger`, and settings not
    given are read from ``PREDLOG_*`` variables as the logger reads them. Records the
    sample leaves out are not in the batch. Raises :class:`ValueError` if a record
    cannot be built at all.
    """
    import pyarrow as pa  # noqa: PLC0415  # see the module docstring

    from predlog.flush import BatchBuilder, as_arrow  # noqa: PLC0415

    s = resolve(settings)
    reporter = ErrorReporter()
    builder = BatchBuilder.from_settings(
        s, reporter=reporter, feature_names=feature_names, extractor=extractor
    )
    captures = [_capture(record) for record in records]
    result = builder.build(captures)
    if result.failed:
        raise ValueError(
            f"{result.failed} of {len(captures)} records could not be built: {reporter.counts()}"
        )
    if result.batch is None:
        return pa.RecordBatch.from_pylist([], schema=arrow_schema())
    return as_arrow(result.batch)


def _capture(record: Mapping[str, Any]) -> Capture:
    """The capture tuple ``log(**record)`` would put in the ring."""
    extra = {key: value for key, value in record.items() if key not in _LOG_ARGUMENTS}
    timestamp = record.get("timestamp")
    values: dict[str, Any] = {
        **{name: record.get(name) for name in CAPTURE_FIELDS if name not in _DERIVED},
        "timestamp_ns": time_ns() if timestamp is None else epoch_ns(timestamp),
        "extra": extra,
        "flags": None,
    }
    return tuple(values[name] for name in CAPTURE_FIELDS)
