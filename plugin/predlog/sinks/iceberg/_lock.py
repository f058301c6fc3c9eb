"""Who commits on this box: whoever holds an exclusive lock on one file.

The workers of one ``bentoml serve``, or several servers on one machine, share the
spool directory; the first to take the lock commits for all of them, and when it
exits the kernel releases the lock and the next one to try takes over. POSIX record
locks (``lockf``) are owned by a process and not inherited across fork, so a forked
worker never believes it holds its parent's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from pathlib import Path


class CommitLock:
    """A non-blocking exclusive lock on ``<directory>/iceberg-<table>.commit.lock``."""

    def __init__(self, directory: Path, table_name: str) -> None:
        digest = hashlib.sha256(table_name.encode()).hexdigest()[:12]
        self.path = directory / f"iceberg-{digest}.commit.lock"
        self._fd: int | None = None
        self._pid = os.getpid()

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._fd is not None and self._pid == os.getpid()

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""
        if self._pid != os.getpid():
            # A forked child: the descriptor is the parent's, the lock never was ours.
            self._fd, self._pid = None, os.getpid()
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def acquire(self, timeout_s: float) -> bool:
        """Take the lock, waiting up to ``timeout_s`` for its holder to let go."""
        deadline = time.monotonic() + timeout_s
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def release(self) -> None:
        """Let go (closing the descriptor releases the lock)."""
        if self.held and self._fd is not None:
            os.close(self._fd)
        self._fd = None
