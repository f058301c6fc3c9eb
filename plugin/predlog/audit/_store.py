"""The local append-only audit store: segment files, fsynced before an entry counts.

Layout under the log's directory::

    entries/000000000001.seg   records, appended, never rewritten
    checkpoints.jsonl          signed checkpoints, one JSON object a line
    writer.lock                held (flock) by the one writer while it is open

A record is ``length (u32) | index (u64) | leaf hash (32 bytes) | data``, where data
is the entry's canonical JSON and the leaf hash is its RFC 9162 leaf hash. Carrying
the index and the hash in every record lets ``verify`` name the exact entry that
was edited, deleted or moved, not just the checkpoint that no longer matches.

Two ways in, and only one of them may change anything:

* :class:`ReadOnlyStore` is for everyone who only reads (``verify``, ``predlog audit
  show/prove``, ``investigate``). It makes no directory, takes no lock and never
  writes or cuts a byte, so reading a live log cannot harm it.
* :class:`LocalStore` is the writer's. Opening one takes the directory's writer lock
  first, and only then cuts a torn tail.

A torn tail is a partial record at the very end of the last segment: a write still in
progress, or one the writer died in. ``append`` returns only after the bytes are
fsynced, so such a record was never acknowledged and is not an entry. Readers skip
it; the writer, holding the lock, cuts it off. Broken framing anywhere else is
damage, and reading it raises :class:`UnreadableError`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from predlog.errors import ConfigError, PredlogError

HEAD = struct.Struct("<IQ32s")
SEGMENT_BYTES = 64 << 20


@dataclass(frozen=True)
class Record:
    position: int
    index: int
    leaf_hash: bytes
    data: bytes


class UnreadableError(PredlogError):
    """A record's framing is broken at ``position``."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"entry {position}: {reason}")
        self.position = position


class ReadOnlyStore:
    """Entries and checkpoints of one audit log, read as they are on disk.

    Nothing here creates, locks, cuts or writes anything: a reader may open a log
    while its writer is appending, or point at a directory that does not exist (it
    then holds no entries and no checkpoints).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.entries_dir = self.path / "entries"
        self.checkpoints_path = self.path / "checkpoints.jsonl"

    def segments(self) -> list[Path]:
        if not self.entries_dir.is_dir():
            return []
        return sorted(self.entries_dir.glob("*.seg"), key=lambda p: int(p.stem))

    def records(self) -> Iterator[Record]:
        """Every entry's record in order.

        A torn tail is skipped: it is not an entry (see the module docstring). Broken
        framing anywhere else raises UnreadableError.
        """
        segments = self.segments()
        position = 0
        for number, segment in enumerate(segments):
            data = segment.read_bytes()
            if number == len(segments) - 1:
                data = data[: whole_records_end(data)]
            for record in parse_records(data, position, segment.name):
                yield record
                position += 1

    def torn_tail(self) -> int:
        """How many bytes of a torn tail the last segment ends in (0 when none)."""
        segments = self.segments()
        if not segments:
            return 0
        data = segments[-1].read_bytes()
        return len(data) - whole_records_end(data)

    def checkpoint_lines(self) -> list[bytes]:
        if not self.checkpoints_path.exists():
            return []
        return [line for line in self.checkpoints_path.read_bytes().splitlines() if line]


class LocalStore(ReadOnlyStore):
    """The one writer's store: holds the directory's writer lock until ``close()``.

    The lock is taken before anything in the log is changed, so a second writer fails
    (ConfigError) without having cut the torn tail of a record the first writer may
    be finishing at that moment.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._writer_lock: IO[str] | None = _lock_writer(self.path)
        try:
            self.entries_dir.mkdir(exist_ok=True)
            self._cut_torn_tail()
        except BaseException:
            self.close()
            raise

    def _cut_torn_tail(self) -> None:
        """Cut the last segment back to its last whole record; only ever under the lock."""
        segments = self.segments()
        if not segments:
            return
        last = segments[-1]
        data = last.read_bytes()
        end = whole_records_end(data)
        if end < len(data):
            with last.open("r+b") as f:
                f.truncate(end)
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

    def append_checkpoint(self, line: bytes) -> None:
        fd = os.open(self.checkpoints_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.rstrip(b"\n") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the writer lock (entries are already durable). Safe to call twice."""
        handle, self._writer_lock = self._writer_lock, None
        if handle is not None:
            handle.close()


def whole_records_end(data: bytes) -> int:
    """Where the last whole record in a segment's bytes ends; a torn tail follows it."""
    offset = 0
    while offset + HEAD.size <= len(data):
        (length, _, _) = HEAD.unpack_from(data, offset)
        end = offset + HEAD.size + length
        if end > len(data):
            break
        offset = end
    return offset


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


def _lock_writer(path: Path) -> IO[str]:
    """Hold an exclusive lock on the directory: two writers would fork the tree."""
    import fcntl  # noqa: PLC0415  # POSIX only, and only for writers

    handle = (path / "writer.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(
            "audit_dir", f"another process is writing the audit log in {path}"
        ) from None
    return handle


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
