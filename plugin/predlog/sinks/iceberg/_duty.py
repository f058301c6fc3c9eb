"""A writing process's part in committing: commit when elected, and know when the
files it noted are committed.

Which process of a box commits is decided by the lock under the spool directory
(``_lock``): in a ``bentoml serve`` with N workers exactly one commits, from a thread
of its own, once per interval; the others never do, and with ``commit=False`` (the
``iceberg_commit`` setting) none does, for a central ``predlog commit``. A process
that is closing commits what is left first, taking the lock once its holder lets go,
so a clean shutdown with the store up leaves nothing pending.

Every process keeps the rows of its own noted files until it sees them committed (by
itself, or gone from the pending notes): until then they count as unpublished. All of
this talks to the catalog and the store, so none of it runs in the flusher's thread
except an explicit ``flush()`` or ``close()``.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from predlog.sinks.iceberg._catalog import open_table
from predlog.sinks.iceberg._commit import Committer
from predlog.sinks.iceberg._lock import CommitLock
from predlog.sinks.iceberg._notes import Note

_log = logging.getLogger("predlog.iceberg")
#: How long a closing process waits for the committer to let go of the lock.
_CLOSE_WAIT_S: Final = 5.0


class CommitDuty:
    """Commits a table's pending notes when this process holds the box's lock, and
    tracks this process's own noted files until they are committed."""

    def __init__(
        self, table: str, *, data_dir: str, lock: CommitLock, interval_s: float, commit: bool
    ) -> None:
        self._table = table
        self._data_dir = data_dir
        self._lock = lock
        self._interval = interval_s
        self._commit = commit
        #: Rows of this process's noted files not yet known to be committed, by file id.
        self._noted: dict[str, int] = {}
        #: Whether files adopted from a dead writer were noted (their rows are not
        #: counted here, but a closing process still commits them).
        self._noted_adopted = False
        self._noted_lock = threading.Lock()
        self._committer: Committer | None = None
        # One commit at a time: the thread's, flush()'s and close()'s.
        self._committing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Commit failures (each retried at the next interval; nothing is dropped).
        self.errors = 0

    @property
    def committer(self) -> Committer | None:
        """This process's committer, once the table has been opened for it."""
        return self._committer

    @property
    def noted_rows(self) -> int:
        """Rows of own noted files not yet seen committed."""
        with self._noted_lock:
            return sum(self._noted.values())

    def noted(self, note: Note, own: bool) -> None:
        """A file was noted (by the upload thread); ``own`` rows count until committed."""
        if not own:
            self._noted_adopted = True
            return
        with self._noted_lock:
            self._noted[note.file_id] = note.rows

    def start(self) -> None:
        """Start the thread that commits each interval (again after a fork)."""
        if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(
            target=self._run, name="predlog-iceberg-commit", daemon=True
        )
        self._thread.start()

    def flush(self) -> None:
        """Commit now if this process is, or can at once become, the committer; else
        learn what the committer has taken."""
        if self._commit and self._lock.try_acquire():
            self._commit_now()
        else:
            self._forget_committed()

    def close(self) -> None:
        """Stop the thread; commit what is left when this process may and can take the
        lock within seconds (else the holder will); let go of the lock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._commit and (self._lock.held or self._noted or self._noted_adopted):
            if self._lock.acquire(_CLOSE_WAIT_S):
                # The committer, or the last to close, commits what is left (its own
                # notes and anyone's).
                self._commit_now()
            else:
                self._forget_committed()  # what the committer took is not pending
        self._lock.release()

    def forget_inherited(self) -> None:
        """In a forked child: the notes, thread and committer are the parent's."""
        self._noted = {}
        self._noted_adopted = False
        self._noted_lock = threading.Lock()
        self._committer = None
        self._committing = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self.errors = 0

    def _run(self) -> None:
        """Each interval: commit everyone's notes if this process holds the lock, and
        learn which of its own notes another process has committed."""
        while not self._stop.wait(self._interval):
            if self._commit and self._lock.try_acquire():
                self._commit_now()
            self._forget_committed()

    def _get_committer(self) -> Committer:
        """The committer (and the notes it reads), on a table object of its own, which
        its commits refresh; opened on first use. Hold ``_committing``."""
        if self._committer is None:
            committer = Committer(open_table(self._table, data_dir=self._data_dir))
            committer.on_commit = self._committed
            self._committer = committer
        return self._committer

    def _commit_now(self) -> None:
        try:
            with self._committing:
                self._get_committer().commit_pending()
        except Exception as exc:  # noqa: BLE001  # retried next interval; nothing dropped
            self.errors += 1
            _log.warning("Iceberg commit failed, retried next interval: %r", exc)

    def _forget_committed(self) -> None:
        """Drop own notes that are no longer pending (another process committed them).

        Only notes known before the listing: one written meanwhile is not in it.
        """
        with self._noted_lock:
            known = set(self._noted)
        if not known:
            return
        try:
            with self._committing:
                notes = self._get_committer().notes
            pending = notes.ids()
        except Exception:  # noqa: BLE001  # store or catalog away: asked again later
            return
        with self._noted_lock:
            for file_id in known - pending:
                self._noted.pop(file_id, None)

    def _committed(self, file_ids: list[str]) -> None:
        with self._noted_lock:
            for file_id in file_ids:
                self._noted.pop(file_id, None)
