"""Durable writes: whole appends, and directory entries that survive a crash.

After a failed append a file is as it was before it.

The audit store and the Kafka spool both append length- and checksum-framed records
to files that a reader scans from the start, and stops at the first damage. A full
disk cuts a write short without an error (the kernel writes what fits) and refuses
the rest with ENOSPC; bytes left by such a write would sit under the next record,
which no reader could then tell from damage. So the write is undone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def append_whole(path: Path, data: bytes | bytearray | Iterable[bytes | bytearray]) -> int:
    """Append ``data`` to ``path`` and fsync it, or leave the file as it was and raise.

    ``data`` may be an iterable of pieces, each written as soon as it is made and let
    go, so that a large append never exists whole in memory; it is one append all the
    same (one fsync at the end; any failure, the iterable's own included, undoes every
    piece). The file is created at the first piece. Returns the bytes appended.
    """
    pieces = [data] if isinstance(data, (bytes, bytearray)) else data
    fd = -1
    start = written = 0
    try:
        for piece in pieces:
            if fd < 0:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                start = os.fstat(fd).st_size
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]
            written += len(piece)
            del view, piece  # the next piece is made without this one alive
        if fd >= 0:
            os.fsync(fd)
    except BaseException:
        if fd >= 0:
            os.ftruncate(fd, start)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    return written


def fsync_dir(path: Path) -> None:
    """Make the directory's entries durable (a file just created or renamed into it).

    A rename is in the directory, not in the file: without this, a crash right after
    ``os.replace`` may come back to the old name. Raises OSError; a caller for whom
    the entry is already visible and merely not yet durable may ignore it.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
