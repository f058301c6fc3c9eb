"""The local append-only audit store: segment files, fsynced before an entry counts.

Layout under the log's directory::

    entries/000000000001.seg   records, appended, never rewritten
    checkpoints.jsonl          signed checkpoints, one JSON object a line

A record is ``length (u32) | index (u64) | leaf hash (32 bytes) | data``, where data
is the entry's canonical JSON and the leaf hash is its RFC 9162 leaf hash. Carrying
the index and the hash in every record lets ``verify`` name the exact entry that
was edited, deleted or moved, not just the checkpoint that no longer matches.

``append`` returns only after the bytes are fsynced. On opening, a torn record at
the very end of the last segment (the process died mid-write, so the entry was
never acknowledged) is cut off; nothing else is ever changed.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HEAD = struct.Struct("<IQ32s")
SEGMENT_BYTES = 64 << 20


@dataclass(frozen=True)
class Record:
    position: int
    index: int
    leaf_hash: bytes
    data: bytes


class UnreadableError(Exception):
    """A record's framing is broken at ``position``."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"entry {position}: {reason}")
        self.position = position


class LocalStore:
    """Entries and checkpoints of one audit log on the local filesystem."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.entries_dir = self.path / "entries"
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoints_path = self.path / "checkpoints.jsonl"
        self._recover()

    def segments(self) -> list[Path]:
        return sorted(self.entries_dir.glob("*.seg"), key=lambda p: int(p.stem))

    def _recover(self) -> None:
        segments = self.segments()
        if not segments:
            return
        last = segments[-1]
        data = last.read_bytes()
        offset = 0
        while offset + HEAD.size <= len(data):
            (length, _, _) = HEAD.unpack_from(data, offset)
            end = offset + HEAD.size + length
            if end > len(data):
                break
            offset = end
        if offset < len(data):
            # Only an unacknowledged, half-written record can sit past the last whole one.
            with last.open("r+b") as f:
                f.truncate(offset)
                f.flush()
                os.fsync(f.fileno())

    def append(self, records: Sequence[tuple[int, bytes, bytes]]) -> None:
        """Write (index, leaf hash, data) records durably, in order."""
        if not records:
            return
        blob = bytearray()
        for index, leaf, data in records:
            blob += HEAD.pack(len(data), index, leaf)
            blob += data
        segments = self.segments()
        target = segments[-1] if segments else None
        if target is None or target.stat().st_size >= SEGMENT_BYTES:
            sequence = int(target.stem) + 1 if target is not None else 1
            target = self.entries_dir / f"{sequence:012d}.seg"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, bytes(blob))
            os.fsync(fd)
        finally:
            os.close(fd)
        if len(segments) == 0 or target != segments[-1]:
            _fsync_dir(self.entries_dir)

    def records(self) -> Iterator[Record]:
        """Every record in order; raises UnreadableError where the framing breaks."""
        position = 0
        for segment in self.segments():
            for record in parse_records(segment.read_bytes(), position, segment.name):
                yield record
                position += 1

    def append_checkpoint(self, line: bytes) -> None:
        fd = os.open(self.checkpoints_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.rstrip(b"\n") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def checkpoint_lines(self) -> list[bytes]:
        if not self.checkpoints_path.exists():
            return []
        return [line for line in self.checkpoints_path.read_bytes().splitlines() if line]


def parse_records(data: bytes, position: int, name: str) -> Iterator[Record]:
    """The records of one segment's bytes; ``position`` is the first one's place in the log."""
    offset = 0
    while offset < len(data):
        if offset + HEAD.size > len(data):
            raise UnreadableError(position, f"truncated record header in {name}")
        length, index, leaf = HEAD.unpack_from(data, offset)
        start = offset + HEAD.size
        if start + length > len(data):
            raise UnreadableError(position, f"truncated record in {name}")
        yield Record(position, index, leaf, data[start : start + length])
        position += 1
        offset = start + length


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
