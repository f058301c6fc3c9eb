"""Complete files staged on local disk, published to a store in the background.

A writer (the Parquet layout's sink, the Iceberg sink) writes each file locally, whole,
and hands it here with the key it will have at its destination. A thread of its own
publishes the files oldest first, so that the flusher never waits on the network: an
upload of a 128 MiB file takes seconds, and while the flusher waits the ring fills.
What publishing means is the :class:`Destination`'s business (one upload for a data
directory, an upload and a pending note for a table): nothing here knows which. When
the destination fails, the file stays and the thread tries again with backoff (1 s
doubling to 1 min), so an outage of hours costs a try a minute. :meth:`Uploads.drain`
publishes in the caller's thread instead, for a caller that must know (``flush()``:
``predlog sink`` commits its offsets only after it).

A file's rows count as not yet delivered until it is published; a staged file that
disappears before that is counted lost, never silently gone. Files are named for the
host and process that wrote them, so that the next process on the host can tell a
dead writer's files (:func:`abandoned`) and adopt them (``add(..., own=False)``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

from predlog.errors import SinkError
from predlog.storage._location import Location

_BACKOFF_FIRST_S: Final = 1.0
_BACKOFF_MAX_S: Final = 60.0


class Staged:
    """A complete file in a staging directory, waiting to be published at ``key``.

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


class Destination(Protocol):
    """Where staged files go, and what publishing one there means.

    Called from the upload thread, or from :meth:`Uploads.drain`'s caller, one file at
    a time and never two at once.
    """

    def publish(self, staged: Staged) -> None:
        """Put the complete file where readers see it; raise to leave it staged (it is
        tried again, with backoff). Must be safe to repeat: a process that died after
        publishing, before unstaging, has the file published again by whoever adopts
        it."""


class LocationDestination:
    """A data directory (:class:`Location`): each file uploaded whole to ``<base>/<key>``,
    then ``on_published`` told its URL."""

    def __init__(self, location: Location, on_published: Callable[[str], None]) -> None:
        self._location = location
        self._on_published = on_published

    def publish(self, staged: Staged) -> None:
        target = self._location.join(staged.key)
        self._location.put_file(staged.local, target)
        self._on_published(self._location.uri(target))


def host_tag() -> str:
    """This host's name as staged file names carry it: safe characters, at most 32 of
    them. A longer name (Kubernetes pods of one deployment share a long prefix) keeps a
    hash of the whole, so that two hosts never carry the same tag."""
    name = socket.gethostname().split(".")[0] or "host"
    safe = "".join(ch if ch.isalnum() or ch == "-" else "_" for ch in name)
    if len(safe) <= 32:
        return safe
    return f"{safe[:23]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def running(pid: int) -> bool:
    """Whether a process with this pid exists here (one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def abandoned(host: str, pid: int, *, shared: bool) -> bool:
    """Whether a file named for writer ``host``-``pid`` was left by a dead process of
    this host, so that this process may adopt it.

    Never another host's (its pids mean nothing here), never a live process's. A file
    named with this very pid is a dead predecessor's (a container restarted after a
    crash is pid 1 again) unless another writer of this process stages in the same
    directory (``shared``).
    """
    if host != host_tag():
        return False
    if pid == os.getpid():
        return not shared
    return not running(pid)


class Uploads:
    """The staged files of one writer and the thread that publishes them."""

    def __init__(self, destination: Destination) -> None:
        self._destination = destination
        self._queue: deque[Staged] = deque()
        # Guards the queue and the figures (read by the flusher's thread); never held
        # while publishing.
        self._lock = threading.Lock()
        # One publish at a time, by the thread or by drain(): never the same file twice.
        self._uploading = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._retry_at = 0.0
        self._backoff = 0.0
        self._failure: SinkError | None = None
        #: Rows of own files that vanished before they could be published.
        self.lost_rows = 0
        self.figures = {"uploaded": 0, "upload_failures": 0, "adopted": 0}

    def add(self, local: Path, key: str, rows: int, *, own: bool = True) -> None:
        """Stage a complete local file to be published at ``key``; the thread does it."""
        staged = Staged(local, key, rows, own=own)
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
        """The last background publishing failure not yet reported, once."""
        with self._lock:
            failure, self._failure = self._failure, None
        return failure

    def drain(self) -> None:
        """Publish every staged file now, in this thread, whatever the backoff; raise
        :class:`SinkError` if one fails (it and the rest stay staged)."""
        with self._uploading:
            failure = self._upload_all()
        if failure is not None:
            raise failure

    def close(self, timeout: float = 60.0) -> None:
        """Stop the thread (what is staged stays on disk for the next process)."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

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
        """Publish oldest first until the queue is empty (None) or one fails (its error,
        after scheduling the next try). Holds ``_uploading``."""
        while True:
            with self._lock:
                if not self._queue:
                    return None
                entry = self._queue[0]
            if not entry.local.exists():
                # Removed under us (by hand, or another process adopted it first): its
                # rows cannot be vouched for, so they are counted lost.
                with self._lock:
                    self._queue.popleft()
                    if entry.own:
                        self.lost_rows += entry.rows
                continue
            try:
                self._destination.publish(entry)
            except Exception as exc:  # noqa: BLE001  # any failure: the file waits, retried
                with self._lock:
                    self.figures["upload_failures"] += 1
                    self._backoff = min(max(self._backoff * 2, _BACKOFF_FIRST_S), _BACKOFF_MAX_S)
                    self._retry_at = time.monotonic() + self._backoff
                    waiting = len(self._queue)
                    size = sum(e.size for e in self._queue)
                return SinkError(
                    f"{entry.key} could not be published ({exc}); {waiting} files "
                    f"({size} bytes) wait in {entry.local.parent}"
                )
            with contextlib.suppress(OSError):
                entry.local.unlink()
            with self._lock:
                self._queue.popleft()
                self._backoff = self._retry_at = 0.0
                self.figures["uploaded"] += 1
