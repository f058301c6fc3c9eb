"""``predlog sink``: the Kafka topic back into records, as a process of its own.

One consumer loop (``_loop``: poll, batch, hand over, commit, report) and the
:class:`Destination` seam it writes through; two destinations: the Parquet layout
(``_to_parquet``, at least once, offsets in the consumer group) and an Iceberg table
(``_to_table``, exactly once, offsets in the table's commits). It never runs inside a
model server; it reads what :class:`~predlog.KafkaSink` wrote there. Needs
``predlog[kafka]`` (and ``predlog[iceberg]`` for a table); aiokafka and pyiceberg are
imported only when a consumer starts.
"""

from __future__ import annotations

from predlog.tools.sink._loop import (
    Batch,
    ConsumerLoop,
    ConsumerStats,
    Destination,
    OnCommit,
    consume,
    consume_until_signalled,
)
from predlog.tools.sink._to_parquet import ParquetDestination
from predlog.tools.sink._to_table import TableDestination

__all__ = [
    "Batch",
    "ConsumerLoop",
    "ConsumerStats",
    "Destination",
    "OnCommit",
    "ParquetDestination",
    "TableDestination",
    "consume",
    "consume_until_signalled",
]
