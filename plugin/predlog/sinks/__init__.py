"""Where decoded batches go: the :class:`Sink` protocol and predlog's own sinks.

One module per sink: ``_parquet`` (the embedded default: files in a hive layout),
``_oplog`` (one structlog JSON line per prediction), ``kafka/`` (producer, wire
format, partitioner and the consumer behind ``predlog sink``) and ``iceberg/``. The
disk spool the Kafka and audit sinks fall back on is :mod:`predlog.storage`'s.

The seam (``_base``) is imported at once; each sink on first use (PEP 562). The
middleware names :class:`Sink` in every process that imports the service, and the
sinks bring pyarrow and their clients with them: they load in the process that
logs, when its logger makes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from predlog._lazy import attach
from predlog.sinks._base import (
    Backlog,
    ForkAware,
    Openable,
    Reporting,
    Sink,
    TakesNativeBatches,
    Ticking,
)

if TYPE_CHECKING:
    from predlog.sinks._oplog import OperationalLogSink, configure_logging
    from predlog.sinks._parquet import ParquetSink
    from predlog.sinks.kafka import KafkaSink

#: Where each sink lives, imported when first asked for.
_HOMES = {
    "OperationalLogSink": "predlog.sinks._oplog",
    "configure_logging": "predlog.sinks._oplog",
    "ParquetSink": "predlog.sinks._parquet",
    "KafkaSink": "predlog.sinks.kafka",
}


__getattr__, __dir__ = attach(__name__, globals(), _HOMES)


__all__ = [
    "Backlog",
    "ForkAware",
    "KafkaSink",
    "Openable",
    "OperationalLogSink",
    "ParquetSink",
    "Reporting",
    "Sink",
    "TakesNativeBatches",
    "Ticking",
    "configure_logging",
]
