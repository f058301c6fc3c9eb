"""IcebergSink: prediction records into an Iceberg table, with one committer per box.

Every process writes its own Parquet data files (one per partition, rolled by size
and at least once per commit interval) and notes each finished file for the committer
(see ``_notes``). Which process commits is decided by a lock under the spool
directory (see ``_lock``): in a ``bentoml serve`` with N workers exactly one of them
commits, from a thread of its own, once per ``iceberg_commit_interval_s``; the others
never commit. A process that is closing commits what it can first (taking the lock
once its holder lets go), so a clean shutdown leaves nothing pending.

A record is "unpublished" (the flusher counts it pending, not delivered) while it is
in a file still open or noted but not yet committed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from predlog._record import arrow_schema
from predlog.errors import ConfigError, SinkError
from predlog.sinks.iceberg._catalog import open_table
from predlog.sinks.iceberg._commit import Committer
from predlog.sinks.iceberg._files import FileWriter, OpenFile, split, writer_tag
from predlog.sinks.iceberg._lock import CommitLock
from predlog.sinks.iceberg._notes import Notes

_log = logging.getLogger("predlog.iceberg")
_SCHEMA: Final = arrow_schema()
#: Open files inherited across fork: referenced forever so that they are never
#: finished by the child (they are the parent's; no note ever names them).
_ORPHANS: list[Any] = []
#: How long a closing process waits for the committer to let go of the lock.
_CLOSE_WAIT_S: Final = 5.0


class IcebergSink:
    """Writes prediction batches as Iceberg data files; one process per box commits."""

    def __init__(
        self,
        table: str,
        *,
        data_dir: str | os.PathLike[str],
        lock_dir: str | os.PathLike[str],
        commit_interval_s: float = 10.0,
        max_file_bytes: int = 128 << 20,
        commit: bool = True,
    ) -> None:
        if commit_interval_s <= 0:
            raise ConfigError(
                "iceberg_commit_interval_s", f"must be positive, got {commit_interval_s!r}"
            )
        self.table_name = table
        self._data_dir = os.fspath(data_dir)
        self.table = open_table(table, data_dir=self._data_dir)
        self._writer = FileWriter(self.table)
        self._notes = Notes(self.table)
        self._interval = commit_interval_s
        self._max_bytes = max_file_bytes
        self._commit = commit
        self._lock = CommitLock(Path(lock_dir), table)
        self._open: dict[tuple[int, str], OpenFile] = {}
        #: Rows of this process's noted files not yet known to be committed, by file id.
        self._noted: dict[str, int] = {}
        self._noted_lock = threading.Lock()
        self._last_check = time.monotonic()
        self._closed = False
        self._pid = os.getpid()
        self._committer: Committer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Rows taken and then lost (a file that could not be finished).
        self.lost_rows = 0
        #: Commit failures (each retried at the next interval; nothing is dropped).
        self.commit_errors = 0
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    # -- the Sink protocol ---------------------------------------------------------

    def export(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise SinkError("IcebergSink is closed")
        if batch.num_rows == 0:
            return
        if not batch.schema.equals(_SCHEMA, check_metadata=False):
            raise SinkError("batch does not have the prediction record schema")
        parts = split(batch)
        held = {key: handle.rows for key, handle in self._open.items()}
        for key, part in parts.items():
            handle = self._open.get(key)
            try:
                if handle is None:
                    handle = self._open[key] = self._writer.open(*key)
                handle.write(part)
            except Exception as exc:
                if handle is not None:
                    self._abandon(key, handle, held.get(key, 0))
                raise SinkError(f"Iceberg data file write failed: {exc!r}") from exc
        for key, handle in list(self._open.items()):
            if handle.size >= self._max_bytes:
                self._finish(key, fresh=handle.rows - held.get(key, 0))

    @property
    def unpublished_rows(self) -> int:
        """Rows in open files, or in noted files not yet seen committed."""
        with self._noted_lock:
            noted = sum(self._noted.values())
        return noted + sum(handle.rows for handle in self._open.values())

    def tick(self, now: float | None = None) -> None:
        """Finish files open for a commit interval; start the committer thread; forget
        this process's notes that the committer has taken."""
        current = time.monotonic() if now is None else now
        for key, handle in list(self._open.items()):
            if current - handle.opened >= self._interval:
                self._finish(key)
        if self._commit:
            self._start_committer()
        if current - self._last_check >= self._interval:
            self._last_check = current
            self._forget_committed()

    def flush(self) -> None:
        """Finish and note every open file; commit now if this process is the committer."""
        for key in list(self._open):
            self._finish(key)
        if self._commit and self._lock.held:
            self._commit_now()

    def close(self) -> None:
        if self._closed:
            return
        try:
            for key in list(self._open):
                self._finish(key)
        finally:
            self._closed = True
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=30)
            if self._commit and self._noted:
                if self._lock.acquire(_CLOSE_WAIT_S):
                    # The last to close commits what is left (its own notes and anyone's).
                    self._commit_now()
                else:
                    self._forget_committed()  # what the committer took is not pending
            self._lock.release()

    # -- files and notes -------------------------------------------------------------

    def _finish(self, key: tuple[int, str], *, fresh: int = 0) -> None:
        handle = self._open.pop(key)
        try:
            data_file = handle.close()
            note = self._notes.write(data_file, writer_tag())
        except Exception as exc:
            self.lost_rows += handle.rows - fresh
            handle.abandon()
            raise SinkError(f"Iceberg data file could not be finished: {exc!r}") from exc
        with self._noted_lock:
            self._noted[note.file_id] = note.rows

    def _abandon(self, key: tuple[int, str], handle: OpenFile, earlier_rows: int) -> None:
        del self._open[key]
        self.lost_rows += earlier_rows
        handle.abandon()

    def _forget_committed(self) -> None:
        """Drop own notes that are no longer pending (another process committed them)."""
        with self._noted_lock:
            if not self._noted:
                return
        try:
            pending = self._notes.ids()
        except OSError:
            return
        with self._noted_lock:
            for file_id in [f for f in self._noted if f not in pending]:
                del self._noted[file_id]

    def _committed(self, file_ids: list[str]) -> None:
        with self._noted_lock:
            for file_id in file_ids:
                self._noted.pop(file_id, None)

    # -- committing --------------------------------------------------------------------

    def _get_committer(self) -> Committer:
        if self._committer is None:
            # A table object of its own: the committer thread refreshes it while the
            # flusher thread writes files.
            self._committer = Committer(open_table(self.table_name, data_dir=self._data_dir))
            self._committer.on_commit = self._committed
        return self._committer

    @property
    def committer(self) -> Committer | None:
        """This process's committer, once it has been the one committing."""
        return self._committer

    def _commit_now(self) -> None:
        try:
            self._get_committer().commit_pending()
        except Exception as exc:  # noqa: BLE001  # retried next interval; nothing dropped
            self.commit_errors += 1
            _log.warning("Iceberg commit failed, retried next interval: %r", exc)

    def _start_committer(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        if self._stop.is_set():
            return
        self._thread = threading.Thread(
            target=self._run_committer, name="predlog-iceberg-commit", daemon=True
        )
        self._thread.start()

    def _run_committer(self) -> None:
        while not self._stop.wait(self._interval):
            if self._lock.try_acquire():
                self._commit_now()

    def _forget_inherited(self) -> None:
        """In a forked child: open files, the committer thread and the lock are the
        parent's. Never finish those files; elect afresh."""
        _ORPHANS.extend(self._open.values())
        self._open = {}
        self._noted = {}
        self._noted_lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self._committer = None
        self.lost_rows = 0
        self.commit_errors = 0
        self._pid = os.getpid()
        self._writer = FileWriter(self.table)


def _after_fork(ref: weakref.ref[IcebergSink]) -> None:
    sink = ref()
    if sink is not None:
        sink._forget_inherited()  # the hook is part of the class's contract
