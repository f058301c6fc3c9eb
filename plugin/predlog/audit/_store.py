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
it; the writer, holding the lock, cuts it off.

Because skipping or cutting bytes would lose acknowledged entries if those bytes were
damage instead, what follows the last whole record counts as a torn tail only when
it could be the first bytes of the next record exactly as ``append`` writes it
(:func:`examine_tail`, the one rule readers and the writer share):

* the header, as far as it is there, carries the next index: the number of whole
  records before it in the log;
* its length, if all four bytes are there, is at most :data:`MAX_RECORD_BYTES`;
* its data, as far as it is there, holds no byte below 0x20. Canonical JSON escapes
  every control character, while every record header holds zero bytes, so data that
  does has run into the records after it (a length field that grew);
* its data is not already the whole entry its header's leaf hash names (the length
  field of a finished last record grew past the end);
* the whole record before it in the segment matches its leaf hash (otherwise that
  record's length field may have shrunk, leaving its own last bytes behind).

Anything else there, and broken framing anywhere else, is damage: readers raise
:class:`UnreadableError` at that entry, and the writer refuses to open the log, naming
the segment and byte, and cuts nothing, so that someone can look before anything is
lost.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from predlog.audit._merkle import leaf_hash
from predlog.errors import ConfigError, PredlogError
from predlog.storage import append_whole, fsync_dir

HEAD = struct.Struct("<IQ32s")
SEGMENT_BYTES = 64 << 20
#: The longest record ``append`` writes, so the longest a torn record can claim to be.
MAX_RECORD_BYTES = SEGMENT_BYTES
_LENGTH = struct.Struct("<I")
_INDEX = struct.Struct("<Q")
_CONTROL_BYTE = re.compile(rb"[\x00-\x1f]")


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

        A torn tail is skipped: it is not an entry (see the module docstring). Anything
        else that is not a whole record raises UnreadableError, after the whole records
        before it.
        """
        segments = self.segments()
        position = 0
        for number, segment in enumerate(segments):
            data = segment.read_bytes()
            last = number == len(segments) - 1
            tail = examine_tail(data, position, segment.name) if last else None
            if tail is not None:
                data = data[: tail.offset]
            for record in parse_records(data, position, segment.name):
                yield record
                position += 1
            if tail is not None and tail.damage is not None:
                raise UnreadableError(tail.position, tail.problem())

    def tail(self) -> Tail:
        """What follows the last whole record of the last segment, judged by
        :func:`examine_tail`. The earlier segments are counted to know which entry a
        torn record would be; one that does not end on a record boundary raises
        UnreadableError."""
        segments = self.segments()
        if not segments:
            return Tail("", 0, 0, 0, 0)
        first = 0
        for segment in segments[:-1]:
            data = segment.read_bytes()
            count, end, _ = _whole_records(data)
            if end != len(data):
                raise UnreadableError(first + count, f"truncated record in {segment.name}")
            first += count
        return examine_tail(segments[-1].read_bytes(), first, segments[-1].name)

    def torn_tail(self) -> int:
        """How many bytes of a torn tail the last segment ends in (0 when none, or when
        what follows the whole records is damage rather than a torn tail)."""
        try:
            tail = self.tail()
        except UnreadableError:
            return 0
        return tail.size if tail.damage is None else 0

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
        """Cut the last segment back to its last whole record; only ever under the lock.

        Bytes there that are not a torn tail are damage, possibly over acknowledged
        entries: the writer refuses to open rather than cut them.
        """
        tail = self.tail()
        if tail.damage is not None:
            raise UnreadableError(
                tail.position,
                f"{tail.problem()}; the writer cut nothing and will not open this log "
                "until the segment is looked at",
            )
        if tail.size:
            with (self.entries_dir / tail.segment).open("r+b") as f:
                f.truncate(tail.offset)
                f.flush()
                os.fsync(f.fileno())

    def append(self, records: Sequence[tuple[int, bytes, bytes]]) -> None:
        """Write (index, leaf hash, data) records durably, in order."""
        if not records:
            return
        blob = bytearray()
        for index, leaf, data in records:
            if len(data) > MAX_RECORD_BYTES:
                raise ValueError(
                    f"entry {index}: {len(data)} bytes, over the {MAX_RECORD_BYTES} a record "
                    "may have (a longer one could not be told from damage after a crash)"
                )
            blob += HEAD.pack(len(data), index, leaf)
            blob += data
        segments = self.segments()
        target = segments[-1] if segments else None
        if target is None or target.stat().st_size >= SEGMENT_BYTES:
            sequence = int(target.stem) + 1 if target is not None else 1
            target = self.entries_dir / f"{sequence:012d}.seg"
        append_whole(target, bytes(blob))
        if len(segments) == 0 or target != segments[-1]:
            fsync_dir(self.entries_dir)

    def append_checkpoint(self, line: bytes) -> None:
        append_whole(self.checkpoints_path, line.rstrip(b"\n") + b"\n")

    def close(self) -> None:
        """Release the writer lock (entries are already durable). Safe to call twice."""
        handle, self._writer_lock = self._writer_lock, None
        if handle is not None:
            handle.close()


@dataclass(frozen=True)
class Tail:
    """What follows the whole records of a log's last segment.

    ``offset`` is where the whole records end and ``size`` how many bytes follow them.
    ``damage`` is None when those bytes are a torn tail (or there are none); then
    ``position`` is the entry a torn record there would have been. Otherwise
    ``damage`` says why they cannot be one, and ``position`` and ``at`` are the entry
    concerned and the byte its record starts at.
    """

    segment: str
    offset: int
    size: int
    position: int
    at: int
    damage: str | None = None

    def problem(self) -> str:
        """The damage, placed: which segment, which byte."""
        return f"damaged record in {self.segment} at byte {self.at}: {self.damage}"


def examine_tail(data: bytes, first: int, name: str) -> Tail:
    """Split the last segment's bytes into whole records and what follows them, and
    judge whether that is a torn tail (see the module docstring). ``first`` is the
    position of the segment's first record in the log.

    Readers and the writer both decide through this one function, so that what a
    reader skips as a torn tail is exactly what the writer will cut, and nothing more.
    """
    count, end, previous = _whole_records(data)
    position = first + count
    tail = Tail(name, end, len(data) - end, position, end)
    if not tail.size:
        return tail
    if previous is not None and not _intact(data[previous:end]):
        return replace(
            tail,
            position=position - 1,
            at=previous,
            damage="the whole record before the unfinished bytes does not match its hash",
        )
    return replace(tail, damage=_tail_damage(data[end:], position))


def _intact(record: bytes) -> bool:
    """Whether one whole record's data matches the leaf hash in its header."""
    leaf: bytes = HEAD.unpack_from(record)[2]
    return leaf_hash(record[HEAD.size :]) == leaf


def _tail_damage(tail: bytes, expected: int) -> str | None:
    """Why ``tail`` cannot be the first bytes of record ``expected`` as ``append``
    writes it, or None when it can."""
    if len(tail) >= _LENGTH.size:
        (length,) = _LENGTH.unpack_from(tail)
        if length > MAX_RECORD_BYTES:
            return f"its header claims {length} bytes, more than any record has"
    index = tail[_LENGTH.size : _LENGTH.size + _INDEX.size]
    if index != _INDEX.pack(expected)[: len(index)]:
        return f"its header does not carry the next index, {expected}"
    if _CONTROL_BYTE.search(tail, HEAD.size):
        return "its data holds a control byte, as no canonical JSON does"
    if len(tail) >= HEAD.size and _intact(tail):
        return "its data is already the whole entry its hash names; its length is wrong"
    return None


def _whole_records(data: bytes) -> tuple[int, int, int | None]:
    """How many whole records a segment's bytes start with, where they end, and where
    the last of them starts (None when there is none)."""
    count = offset = 0
    previous: int | None = None
    while offset + HEAD.size <= len(data):
        (length, _, _) = HEAD.unpack_from(data, offset)
        end = offset + HEAD.size + length
        if end > len(data):
            break
        previous, offset = offset, end
        count += 1
    return count, offset, previous


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
