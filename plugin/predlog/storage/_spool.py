"""A disk spool for records a sink could not deliver: a size-capped, checksummed segment log.

Layout: ``<dir>/<sequence>.seg`` files, appended in order, never rewritten. Each entry
is ``length (u32) | crc32 (u32) | key length (u16) | key | value``, little-endian, and a
batch of entries is fsynced before :meth:`Spool.append` returns. A batch may also come
in chunks (:meth:`Spool.append_chunks`), each written as soon as it is made, so that a
large batch never exists whole in memory as spool entries; it is still one append, all
of it or none. Replay reads segments oldest first and yields entries in the order they
were appended; a consumed segment is deleted whole. An entry whose checksum does not
match (a torn write at a crash, a bad disk) ends that segment's replay and is counted
as corrupt.

When appending would take the spool past ``max_bytes``, the entries are refused
and counted: the spool never grows without bound.

An *exclusive* spool (``exclusive=True``, as :class:`~predlog.KafkaSink` opens its
own) holds an ``fcntl.flock`` on ``<dir>/spool.lock`` for as long as it is open.
The kernel drops that lock when its process dies, however it dies, so a spool
directory whose lock can be taken belongs to nobody: :func:`adoptable` lists such
directories beside one's own, and whoever takes a directory's lock is its one
owner. Nothing here ever removes a segment that was not replayed, nor a directory
that still holds one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import weakref
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

from predlog.errors import ConfigError, PredlogError
from predlog.storage._durable import append_whole

_HEAD = struct.Struct("<II")
_KEYLEN = struct.Struct("<H")
#: The lock file of an exclusive spool; its presence marks a directory as one.
LOCK_FILE: Final = "spool.lock"
#: How many times a lock file that vanished under us is made again before giving up.
_LOCK_ATTEMPTS: Final = 10


class SpoolFullError(PredlogError):
    """Appending would exceed the spool's size cap; nothing was written.

    A PredlogError, so that callers catching predlog's root catch a full spool too.
    """


class SpoolLockedError(PredlogError):
    """Another live owner holds the spool directory's lock; nothing was opened."""


class Spool:
    """Append-only segment log of (key, value) pairs, for replay in order."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int,
        segment_bytes: int = 16 << 20,
        exclusive: bool = False,
    ) -> None:
        if max_bytes <= 0:
            raise ConfigError("max_bytes", f"must be positive, got {max_bytes!r}")
        if segment_bytes <= 0:
            raise ConfigError("segment_bytes", f"must be positive, got {segment_bytes!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        self._release: weakref.finalize[[int], Spool] | None = None
        if exclusive:
            fd = _lock(self.directory)
            self._lock_fd = fd
            # An exclusive spool dropped without close() still lets its lock go.
            self._release = weakref.finalize(self, os.close, fd)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.corrupt = 0
        self.refused = 0
        segments = self._segments()
        self._next = int(segments[-1].stem) + 1 if segments else 1
        self._bytes = sum(s.stat().st_size for s in segments)
        # Segments an earlier process wrote may end in a torn entry, and replay stops at
        # the first bad checksum of a segment: appending after one would hide every
        # entry appended there. So this process never appends to a segment it found.
        self._sealed: set[str] = {p.name for p in segments}

    @property
    def size(self) -> int:
        """Bytes on disk (a running total; exact after every call)."""
        return self._bytes

    @property
    def exclusive(self) -> bool:
        """Whether this spool holds its directory's lock (until :meth:`close`)."""
        return self._lock_fd is not None

    def __bool__(self) -> bool:
        return self._bytes > 0

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.seg"), key=lambda p: int(p.stem))

    def append(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        """Write entries durably, in order. Raises SpoolFullError (writing nothing) at the cap."""
        self.append_chunks([entries])

    def append_chunks(self, chunks: Iterable[Sequence[tuple[bytes, bytes]]]) -> int:
        """Write the entries of ``chunks`` durably, in order, as one append; how many.

        Each chunk is written as soon as the iterable yields it, and let go, so a caller
        that makes its entries chunk by chunk (a generator) holds one chunk at a time,
        never the whole batch. It is one append all the same: the batch is fsynced once,
        at the end, and when any chunk would take the spool past its cap, or anything
        fails, the segment is cut back to where the append began and nothing of it
        stays. A SpoolFullError counts in ``refused`` the entries of the chunks taken
        so far; chunks the iterable had not made yet are the caller's to count.
        """
        count = taken = 0

        def pieces() -> Iterator[bytearray]:
            nonlocal count, taken
            for chunk in chunks:
                if not chunk:
                    continue
                blob = _blob(chunk)
                count += len(chunk)
                if self._bytes + taken + len(blob) > self.max_bytes:
                    self.refused += count
                    raise SpoolFullError(f"spool at {self._bytes} of {self.max_bytes} bytes")
                taken += len(blob)
                yield blob

        # A torn entry left by a full disk would end replay of this segment, losing
        # every entry after it: the append goes in whole or not at all.
        written = append_whole(self._target(), pieces())
        self._bytes += written
        return count

    def _target(self) -> Path:
        """The segment the next append goes to: the newest, unless sealed or full."""
        segments = self._segments()
        target = segments[-1] if segments else None
        if (
            target is None
            or target.name in self._sealed
            or target.stat().st_size >= self.segment_bytes
        ):
            target = self.directory / f"{self._next:012d}.seg"
            self._next += 1
        return target

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
            # A checksum that holds over a payload too short for its key (eight zero
            # bytes do: crc32 of nothing is 0) is no entry append wrote.
            klen = _KEYLEN.unpack_from(payload)[0] if length >= _KEYLEN.size else length
            if _KEYLEN.size + klen > length:
                self.corrupt += 1
                return
            yield payload[2 : 2 + klen], payload[2 + klen :]
            offset = start + length
        if offset < len(data):
            self.corrupt += 1  # a header torn short

    def remove(self, segment: Path) -> None:
        """Forget a segment whose entries were all delivered."""
        size = segment.stat().st_size
        segment.unlink()
        self._bytes -= size

    def close(self, *, remove_if_empty: bool = False) -> None:
        """Let the directory go: an exclusive spool releases its lock. Safe twice.

        With ``remove_if_empty``, an exclusive spool with no segment left deletes its
        lock file and then its directory first, while it still holds the lock, so no
        one adopts a directory half removed. A directory that something else has
        entered meanwhile (a new owner's lock file) is left where it is.

        In a forked child this closes only the child's copy of the lock's descriptor:
        an ``flock`` belongs to the open file, which the parent still holds, so the
        parent keeps its lock.
        """
        release, self._release = self._release, None
        if release is None:
            return
        try:
            if remove_if_empty and not self._segments():
                (self.directory / LOCK_FILE).unlink(missing_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    _remove_empty_dir(self.directory)
        finally:
            self._lock_fd = None
            release()


def _blob(entries: Sequence[tuple[bytes, bytes]]) -> bytearray:
    """Entries in the segment format, checksummed, ready to append."""
    blob = bytearray()
    for key, value in entries:
        payload = _KEYLEN.pack(len(key)) + key + value
        blob += _HEAD.pack(len(payload), zlib.crc32(payload))
        blob += payload
    return blob


def adoptable(directory: str | os.PathLike[str]) -> list[Path]:
    """Spool directories beside ``directory`` (same parent) that an exclusive spool made.

    Oldest first, by their oldest segment. Whether one is orphaned is not known until
    its lock is tried: open it with ``Spool(path, exclusive=True, ...)``, which raises
    :class:`SpoolLockedError` while its owner lives. Directories without the lock file
    (other spools, anything else) are never listed.
    """
    own = Path(directory)
    try:
        siblings = [p for p in own.parent.iterdir() if p.name != own.name]
    except FileNotFoundError:
        return []
    found = [p for p in siblings if (p / LOCK_FILE).is_file()]
    return sorted(found, key=_age)


def claim(directory: str | os.PathLike[str], *, max_bytes: int, attempts: int = 100) -> Spool:
    """An exclusive spool in ``directory``, or, while another owner holds it, in the first
    free ``<directory>-<n>`` beside it (n from 2): two sinks never share a spool."""
    preferred = Path(directory)
    candidates = [preferred] + [
        preferred.with_name(f"{preferred.name}-{n}") for n in range(2, attempts + 1)
    ]
    for candidate in candidates:
        with contextlib.suppress(SpoolLockedError):
            return Spool(candidate, max_bytes=max_bytes, exclusive=True)
    raise SpoolLockedError(f"{preferred} and {attempts - 1} directories beside it are all held")


def _lock(directory: Path) -> int:
    """Take ``directory``'s lock without waiting; the descriptor holding it.

    An owner that removes its empty directory deletes the lock file while holding the
    lock, so a lock taken on a file no longer at its path is worth nothing: the
    directory is made again and the lock taken anew.
    """
    path = directory / LOCK_FILE
    for _ in range(_LOCK_ATTEMPTS):
        directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue  # removed by its last owner between the two calls
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLockedError(f"{directory} is held by another owner") from None
        except BaseException:
            os.close(fd)
            raise
        if _still_linked(fd, path):
            return fd
        os.close(fd)
    raise SpoolLockedError(f"{directory} kept vanishing while its lock was taken")


def _still_linked(fd: int, path: Path) -> bool:
    try:
        linked = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (linked.st_dev, linked.st_ino)


def _remove_empty_dir(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


def _age(directory: Path) -> tuple[float, str]:
    """Sort key: the oldest segment's modification time, then the name."""
    times = []
    for segment in directory.glob("*.seg"):
        with contextlib.suppress(FileNotFoundError):
            times.append(segment.stat().st_mtime)
    return (min(times, default=float("inf")), directory.name)
