"""The Kafka offsets an Iceberg table holds: where ``predlog sink --table`` resumes.

The consumer (:class:`predlog.tools.sink.TableDestination`) puts the offsets it consumed
into the same Iceberg commit as the data files they produced, as snapshot summary
properties (``predlog.kafka.offsets.<topic>.<group>`` = JSON of partition -> next
offset), as Iceberg's Kafka Connect sink does, and resumes from them. They are the
table's: compaction and expiry keep them (``OFFSETS_PREFIX``), and every reader of the
table can tell how far a group's consumer got.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

from predlog.sinks.iceberg._commit import ancestors, summary_value

if TYPE_CHECKING:
    from pyiceberg.table import Table

OFFSETS_PREFIX: Final = "predlog.kafka.offsets"


def offsets_key(topic: str, group: str) -> str:
    """The snapshot summary key of a topic's offsets for one consumer group."""
    return f"{OFFSETS_PREFIX}.{topic}.{group}"


def table_offsets(table: Table, topic: str, group: str) -> dict[int, int]:
    """Next offset per partition stored in the table (per partition, newest wins)."""
    key = offsets_key(topic, group)
    found: dict[int, int] = {}
    for snapshot in ancestors(table):
        value = summary_value(snapshot, key)
        if value:
            for partition, offset in json.loads(value).items():
                found.setdefault(int(partition), int(offset))
    return found
