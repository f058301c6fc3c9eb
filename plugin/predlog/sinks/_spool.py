"""A disk spool for records a sink could not deliver: a size-capped, checksummed segment log.

Layout: ``<dir>/<sequence>.seg`` files, appended in order, never rewritten. Each entry
is ``length (u32) | crc32 (u32) | key length (u16) | key | value``, little-endian, and a
batch of entries is fsynced before :meth:`Spool.append` returns. Replay reads
segments oldest first and yields entries in the order they were appended; a
consumed segment is deleted whole. An entry whose checksum does not match (a torn
write at a crash, a bad disk) ends that segment's replay and is counted as corrupt.

When appending would take the spool past ``max_bytes``, the entries are refused
and counted: the spool never grows without bound.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from predlog.errors import PredlogError

_HEAD = struct.Struct("<II")
_KEYLEN = struct.Struct("<H")


class SpoolFullError(PredlogError):
    """Appending would exceed the spool's size cap; nothing was written.

    A PredlogError, so that callers catching predlog's root catch a full spool too.
    """


class Spool:
    """Append-only segment log of (key, value) pairs, for replay in order."""

    def __init__(
        self, directory: str | os.PathLike[str], *, max_bytes: int, segment_bytes: int = 16 << 20
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes: must be positive, got {max_bytes!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.corrupt = 0
        self.refused = 0
        segments = self._segments()
        self._next = int(segments[-1].stem) + 1 if segments else 1
        self._bytes = sum(s.stat().st_size for s in segments)
        self._sealed: set[str] = set()

    @property
    def size(self) -> int:
        """Bytes on disk (a running total; exact after every call)."""
        return self._bytes

    def __bool__(self) -> bool:
        return self._bytes > 0

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.seg"), key=lambda p: int(p.stem))

    def append(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        """Write entries durably, in order. Raises SpoolFullError (writing nothing) at the cap."""
        if not entries:
            return
        blob = bytearray()
        for key, value in entries:
            payload = _KEYLEN.pack(len(key)) + key + value
            blob += _HEAD.pack(len(payload), zlib.crc32(payload))
            blob += payload
        if self._bytes + len(blob) > self.max_bytes:
            self.refused += len(entries)
            raise SpoolFullError(f"spool at {self._bytes} of {self.max_bytes} bytes")
        segments = self._segments()
        target = segments[-1] if segments else None
        if (
            target is None
            or target.name in self._sealed
            or target.stat().st_size >= self.segment_bytes
        ):
            target = self.directory / f"{self._next:012d}.seg"
            self._next += 1
        with target.open("ab") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        self._bytes += len(blob)

    def seal(self) -> None:
        """Close the current segment: later appends start a new one.

        Replay seals before reading, so it never deletes a segment that is still
        being appended to.
        """
        segments = self._segments()
        if segments:
            self._next = max(self._next, int(segments[-1].stem) + 1)
        self._sealed = {p.name for p in segments}

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        return self._segments()

    def read(self, segment: Path) -> Iterator[tuple[bytes, bytes]]:
        """Entries of one segment, in order, up to the first corrupt one."""
        data = segment.read_bytes()
        offset = 0
        while offset + _HEAD.size <= len(data):
            length, crc = _HEAD.unpack_from(data, offset)
            start = offset + _HEAD.size
            payload = data[start : start + length]
            if len(payload) < length or zlib.crc32(payload) != crc:
                self.corrupt += 1
                return
            (klen,) = _KEYLEN.unpack_from(payload)
            yield payload[2 : 2 + klen], payload[2 + klen :]
            offset = start + length

    def remove(self, segment: Path) -> None:
        """Forget a segment whose entries were all delivered."""
        size = segment.stat().st_size
        segment.unlink()
        self._bytes -= size
