"""Prediction records through Kafka: the producer sink, its wire format, and the way back.

``_producer`` holds :class:`KafkaSink`; ``_wire`` the message format (predlog record
JSON v1, its timestamp and headers), made column-wise by ``_values`` (the JSON
values) and ``_rfc3339`` (the times as text); ``_spooled`` a message as a spool entry;
``_trim`` gives memory back while spooling;
``_murmur2`` the partitioner hash, the Java client's. ``predlog sink``, the consumer
that reads the topic back, is :mod:`predlog.tools.sink`. aiokafka is imported only when
a producer is started (``pip install predlog[kafka]``).

The wire format is a contract with every reader of the topic, so it is public:
:func:`encode` (a record batch as messages), :func:`decode` (message values back into a
batch) and :data:`HEADERS` (the format's own headers, first on every message).
"""

from __future__ import annotations

from predlog.sinks.kafka._producer import KafkaSink
from predlog.sinks.kafka._wire import HEADERS, decode, encode

__all__ = [
    "HEADERS",
    "KafkaSink",
    "decode",
    "encode",
]
