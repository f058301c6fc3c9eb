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
from pathlib import Path


def append_whole(path: Path, data: bytes | bytearray) -> None:
    """Append ``data`` to ``path`` and fsync it, or leave the file as it was and raise."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


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
