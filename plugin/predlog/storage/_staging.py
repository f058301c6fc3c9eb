"""Complete files staged on local disk, uploaded to an object store in the background.

:class:`~predlog.sinks._parquet.ParquetSink` writes each file locally, exactly as for
a local data directory, and hands the complete file here. A thread of its own uploads
the files oldest first, each in one call (:meth:`Location.put_file`), so that the
flusher never waits on the network: an upload of a 128 MiB file takes seconds, and
while the flusher waits the ring fills. When the store refuses or does not answer,
the files wait and the thread tries again with backoff (1 s doubling to 1 min), so an
outage of hours costs a try a minute. :meth:`Uploads.drain` uploads in the caller's
thread instead, for a caller that must know (``flush()``: ``predlog sink`` commits its
offsets only after it).

A file's rows count as not yet delivered until its upload completes; a staged file
that disappears before it could be uploaded is counted lost, never silently gone.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pyarrow as pa

from predlog.errors import SinkError
from predlog.storage._location import Location

_BACKOFF_FIRST_S: Final = 1.0
_BACKOFF_MAX_S: Final = 60.0


class _Staged:
    """A complete file in the staging directory, waiting for the object store.

    ``own`` files hold rows this process took (counted pending by its logger); the
    others were left by a dead process, whose counts died with it.
    """

    __slots__ = ("key", "local", "own", "rows", "size")

    def __init__(self, local: Path, key: str, rows: int, *, own: bool) -> None:
        self.local = local
        self.key = key
        self.rows = rows
        self.own = own
        self.size = local.stat().st_size


class Uploads:
    """The staged files of one sink and the thread that uploads them.

    ``on_published`` is told each uploaded file's URL, from whichever thread uploaded.
    """

    def __init__(self, location: Location, on_published: Callable[[str], None]) -> None:
        self._location = location
        self._on_published = on_published
        self._queue: deque[_Staged] = deque()
        # Guards the queue and the figures (read by the flusher's thread); never held
        # during an upload.
        self._lock = threading.Lock()
        # One upload at a time, by the thread or by drain(): never the same file twice.
        self._uploading = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._retry_at = 0.0
        self._backoff = 0.0
        self._failure: SinkError | None = None
        #: Rows of own files that vanished before they could be uploaded.
        self.lost_rows = 0
        self.figures = {"uploaded": 0, "upload_failures": 0, "adopted": 0}

    def add(self, local: Path, key: str, rows: int, *, own: bool = True) -> None:
        """Stage a complete local file for ``<data_dir>/<key>``; the thread uploads it."""
        staged = _Staged(local, key, rows, own=own)
        with self._lock:
            self._queue.append(staged)
            if not own:
                self.figures["adopted"] += 1
        self._start()
        self._wake.set()

    @property
    def own_rows(self) -> int:
        """Rows of this process's files still waiting."""
        with self._lock:
            return sum(entry.rows for entry in self._queue if entry.own)

    @property
    def staged_bytes(self) -> int:
        with self._lock:
            return sum(entry.size for entry in self._queue)

    def take_failure(self) -> SinkError | None:
        """The last background upload failure not yet reported, once."""
        with self._lock:
            failure, self._failure = self._failure, None
        return failure

    def drain(self) -> None:
        """Upload every staged file now, in this thread, whatever the backoff; raise
        :class:`SinkError` if one fails (it and the rest stay staged)."""
        with self._uploading:
            failure = self._upload_all()
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Stop the thread (what is staged stays on disk for the next process)."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)

    def forget_inherited(self) -> None:
        """In a forked child: the staged files are the parent's, and the thread did not
        survive the fork. Start empty, with fresh locks."""
        self._queue = deque()
        self._lock = threading.Lock()
        self._uploading = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._failure = None
        self.lost_rows = 0
        self.figures = dict.fromkeys(self.figures, 0)

    def _start(self) -> None:
        if self._stopping or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._run, name="predlog-upload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            with self._lock:
                waiting = bool(self._queue)
                delay = max(0.0, self._retry_at - time.monotonic()) if waiting else None
            if delay is None or delay > 0:
                self._wake.wait(delay)
                self._wake.clear()
                continue
            with self._uploading:
                failure = self._upload_all()
            if failure is not None:
                with self._lock:
                    self._failure = failure

    def _upload_all(self) -> SinkError | None:
        """Upload oldest first until the queue is empty (None) or one fails (its error,
        after scheduling the next try). Holds ``_uploading``."""
        while True:
            with self._lock:
                if not self._queue:
                    return None
                entry = self._queue[0]
            target = self._location.join(entry.key)
            if not entry.local.exists():
                # Removed under us (by hand, or another process adopted it first): its
                # rows cannot be vouched for, so they are counted lost.
                with self._lock:
                    self._queue.popleft()
                    if entry.own:
                        self.lost_rows += entry.rows
                continue
            try:
                self._location.put_file(entry.local, target)
            except (OSError, pa.ArrowException) as exc:
                with self._lock:
                    self.figures["upload_failures"] += 1
                    self._backoff = min(max(self._backoff * 2, _BACKOFF_FIRST_S), _BACKOFF_MAX_S)
                    self._retry_at = time.monotonic() + self._backoff
                    waiting = len(self._queue)
                    size = sum(e.size for e in self._queue)
                return SinkError(
                    f"upload to {self._location.uri(target)} failed, {waiting} files "
                    f"({size} bytes) wait in {entry.local.parent.parent}: {exc}"
                )
            with contextlib.suppress(OSError):
                entry.local.unlink()
            with self._lock:
                self._queue.popleft()
                self._backoff = self._retry_at = 0.0
                self.figures["uploaded"] += 1
            self._on_published(self._location.uri(target))
