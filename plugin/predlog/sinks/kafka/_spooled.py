"""A Kafka message as a spool entry, so a record replayed after an outage is the message
it would have been: same timestamp, same headers.

The spool (:class:`predlog.storage.Spool`) stores (key, value) pairs. The key is the
message key; the value it stores, format 2, is::

    b"\\x00PL\\x02" | timestamp ms (i64, -1 for none) | header count (u16)
    | per header: name length (u16) | name | value length (u32) | value
    | the message value

little-endian. Format 1, which spools written before held, is the message value alone:
a predlog record JSON object, so it starts with ``{`` and never with format 2's zero
byte. A format 1 entry is rebuilt from its record (time, prediction id, model, trace),
which gives the timestamp and headers it would have been sent with.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

import orjson

from predlog.sinks.kafka._wire import HEADERS, Message, headers_for, source_for

MAGIC: Final = b"\x00PL\x02"
_HEAD: Final = struct.Struct("<qH")
_NAME: Final = struct.Struct("<H")
_VALUE: Final = struct.Struct("<I")
_EPOCH: Final = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
_MILLISECOND: Final = timedelta(milliseconds=1)


def pack(messages: Iterable[Message]) -> list[tuple[bytes, bytes]]:
    """Spool entries (format 2) for ``messages``, in order."""
    entries = []
    for key, value, timestamp, headers in messages:
        parts = [MAGIC, _HEAD.pack(-1 if timestamp is None else timestamp, len(headers))]
        for name, header in headers:
            raw = name.encode()
            parts += [_NAME.pack(len(raw)), raw, _VALUE.pack(len(header)), header]
        parts.append(value)
        entries.append((key, b"".join(parts)))
    return entries


def unpack(entries: Iterable[tuple[bytes, bytes]]) -> tuple[list[Message], int]:
    """The messages of spool entries of either format, and how many entries were not one.

    An entry that starts like format 2 but does not parse is counted and left out: its
    checksum held, so it is no torn write, and sending its bytes as a value would put
    something on the topic that no consumer can read.
    """
    messages: list[Message] = []
    bad = 0
    for key, stored in entries:
        if not stored.startswith(MAGIC):
            messages.append(_from_record(key, stored))
            continue
        try:
            messages.append(_parse(key, stored))
        except (struct.error, UnicodeDecodeError, ValueError):
            bad += 1
    return messages, bad


def _parse(key: bytes, stored: bytes) -> Message:
    timestamp, count = _HEAD.unpack_from(stored, len(MAGIC))
    offset = len(MAGIC) + _HEAD.size
    headers: list[tuple[str, bytes]] = []
    for _ in range(count):
        (length,) = _NAME.unpack_from(stored, offset)
        offset += _NAME.size
        name = stored[offset : offset + length].decode()
        offset += length
        (length,) = _VALUE.unpack_from(stored, offset)
        offset += _VALUE.size
        if offset + length > len(stored):
            raise ValueError("a header runs past the entry")
        headers.append((name, stored[offset : offset + length]))
        offset += length
    return key, stored[offset:], None if timestamp < 0 else timestamp, headers


def _from_record(key: bytes, value: bytes) -> Message:
    """A format 1 entry as the message it is now: timestamp and headers from its record.

    A value that is no predlog record (it would not be in a spool KafkaSink wrote) goes
    as it was sent before, with the format's own headers and the producer's clock.
    """
    try:
        row = orjson.loads(value)
        time_text = row["timestamp_utc"]
        timestamp = (datetime.fromisoformat(time_text) - _EPOCH) // _MILLISECOND
        headers = headers_for(
            row["prediction_id"],
            time_text,
            source_for(row["model_name"]),
            row.get("trace_id"),
            row.get("span_id"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return key, value, None, list(HEADERS)
    return key, value, timestamp, headers
