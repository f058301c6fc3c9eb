"""The Kafka offsets an Iceberg table holds, where ``predlog sink --table`` resumes
(:mod:`predlog.tools.sink`): snapshot summary properties, which compaction and expiry
keep (``OFFSETS_PREFIX``)."""

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
