"""Where decoded batches go: the :class:`Sink` protocol and predlog's own sinks.

One module per sink: ``_parquet`` (the embedded default: files in a hive layout),
``_oplog`` (one structlog JSON line per prediction), ``kafka/`` (producer, wire
format, partitioner and the consumer behind ``predlog sink``), and ``_spool``, the
disk spool the Kafka and audit sinks fall back on when their store is away.
"""

from __future__ import annotations

from predlog.sinks._base import Backlog, ForkAware, Openable, Reporting, Sink, Ticking
from predlog.sinks._oplog import OperationalLogSink, configure_logging
from predlog.sinks._parquet import ParquetSink
from predlog.sinks.kafka import KafkaSink

__all__ = [
    "Backlog",
    "ForkAware",
    "KafkaSink",
    "Openable",
    "OperationalLogSink",
    "ParquetSink",
    "Reporting",
    "Sink",
    "Ticking",
    "configure_logging",
]
