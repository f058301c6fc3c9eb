"""IcebergSink: prediction records into an Iceberg table, with one committer per box.

The path of a record, and why each step is where it is:

1. **Staged** (flusher thread, local disk only). Every process writes its own Parquet
   data files (one per partition, rolled by size and at least once per commit
   interval) under ``<spool_dir>/iceberg/<table>/`` (``_files.StagingWriter``). The
   flusher never waits on the object store or the catalog.
2. **Published** (upload thread, :class:`predlog.storage.Uploads`). Each complete file
   is uploaded whole into the table's data location, then noted for the committer
   (``_publish``). While the store or the catalog does not answer, files wait on local
   disk, retried with backoff, bounded by ``spool_max_bytes``: past it new batches are
   refused (counted failed), never silently dropped. Complete files a dead process of
   this host left behind are adopted by the next sink's ``open()`` and published with
   their own file ids, so the committer adds each once.
3. **Committed** (committer thread, ``_duty``): by the one process of the box that
   holds the commit lock, unless ``commit=False`` leaves it to a central committer.

A record is "unpublished" (the flusher counts it pending, not delivered) from the
moment it is taken until its file is committed. The constructor only validates;
``open()`` opens the table, and a catalog that does not answer then is not a refusal.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.parquet as pq

from predlog._record import arrow_schema
from predlog._settings import check_argument
from predlog.errors import ConfigError, SinkError
from predlog.sinks.iceberg._catalog import iceberg_arrow_schema, open_table, parse_table_name
from predlog.sinks.iceberg._commit import Committer
from predlog.sinks.iceberg._duty import CommitDuty
from predlog.sinks.iceberg._files import (
    StagedFile,
    StagingWriter,
    file_schema,
    parse_name,
    split,
)
from predlog.sinks.iceberg._lock import CommitLock
from predlog.sinks.iceberg._publish import TablePublisher
from predlog.storage import Uploads, abandoned

if TYPE_CHECKING:
    from pyiceberg.table import Table

_log = logging.getLogger("predlog.iceberg")
_SCHEMA: Final = arrow_schema()
#: Open files inherited across fork: referenced forever so that they are never
#: finished by the child (they are the parent's; no note ever names them).
_ORPHANS: list[StagedFile] = []
#: The sinks alive in this process, so that one never adopts another's staged files.
_LIVE: weakref.WeakSet[IcebergSink] = weakref.WeakSet()


def staging_root(spool_dir: Path, table: str, data_dir: str) -> Path:
    """``<spool_dir>/iceberg/<hash>``: one staging directory per table (a table of the
    embedded catalog is one per data_dir), so that a sink only ever adopts files that
    belong to its own table."""
    catalog, _, _ = parse_table_name(table)
    identity = table if catalog is not None else f"{Path(data_dir).absolute()}|{table}"
    return spool_dir / "iceberg" / hashlib.sha256(identity.encode()).hexdigest()[:16]


class IcebergSink:
    """Writes prediction batches as Iceberg data files; one process per box commits."""

    def __init__(
        self,
        table: str,
        *,
        data_dir: str | os.PathLike[str],
        spool_dir: str | os.PathLike[str],
        commit_interval_s: float = 10.0,
        max_file_bytes: int = 128 << 20,
        spool_max_bytes: int = 1 << 30,
        commit: bool = True,
    ) -> None:
        # First, so that __del__ of a sink whose checks refused it has it to read.
        self._opened = False
        check_argument("commit_interval_s", "iceberg_commit_interval_s", commit_interval_s)
        check_argument("max_file_bytes", "parquet_max_file_bytes", max_file_bytes)
        check_argument("spool_max_bytes", "parquet_spool_max_bytes", spool_max_bytes)
        check_argument("table", "iceberg_table", table)
        self.table_name = table
        self._data_dir = os.fspath(data_dir)
        self.root = staging_root(Path(spool_dir), table, self._data_dir)
        self._interval = commit_interval_s
        self._max_bytes = max_file_bytes
        self._spool_max = spool_max_bytes
        self._writer = StagingWriter(self.root, iceberg_arrow_schema())
        self._duty = CommitDuty(
            table,
            data_dir=self._data_dir,
            lock=CommitLock(Path(spool_dir), table),
            interval_s=commit_interval_s,
            commit=commit,
        )
        self._destination = TablePublisher(self._load_table, self._duty.noted)
        self._uploads = Uploads(self._destination)
        self._open: dict[tuple[int, str], StagedFile] = {}
        self._closed = False
        self._lost_rows = 0
        self._refused = 0

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Open the table, and adopt what dead writers of this host left staged.

        A misconfigured catalog raises :class:`ConfigError`; one that does not answer
        is logged, and the upload thread opens the table when it does.
        """
        if self._opened:
            return
        try:
            self._use(open_table(self.table_name, data_dir=self._data_dir))
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001  # not answering yet: records are staged
            _log.warning(
                "Iceberg table %s could not be opened, records are staged in %s until it can: %r",
                self.table_name,
                self.root,
                exc,
            )
        self._opened = True
        _LIVE.add(self)
        self._sweep_and_adopt()
        self._duty.start()

    def __del__(self) -> None:
        if self._opened and not self._closed:
            warnings.warn(
                f"IcebergSink for {self.table_name} was opened and never closed",
                ResourceWarning,
                stacklevel=2,
            )

    def after_fork_in_child(self) -> None:
        """Forget the parent's open and staged files, threads, notes and table: the
        child starts as a fresh writer, with its own pid in its files' names."""
        for handle in self._open.values():
            handle.orphan()
            _ORPHANS.append(handle)
        self._open = {}
        self._uploads.forget_inherited()
        self._destination.forget()
        self._duty.forget_inherited()
        self._lost_rows = self._refused = 0

    # -- the Sink protocol ---------------------------------------------------------

    def export(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise SinkError("IcebergSink is closed")
        if batch.num_rows == 0:
            return
        if not batch.schema.equals(_SCHEMA, check_metadata=False):
            raise SinkError("batch does not have the prediction record schema")
        self.open()
        if self._uploads.staged_bytes >= self._spool_max:
            # The store has been away long enough to fill the bound: the new records
            # are refused (counted failed), the waiting ones kept.
            self._refused += batch.num_rows
            raise SinkError(
                f"{self._uploads.staged_bytes} bytes already wait in {self.root} "
                f"(spool_max_bytes {self._spool_max}): batch refused"
            )
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
                    del self._open[key]
                    self._lost_rows += held.get(key, 0)
                    handle.abandon()
                raise SinkError(f"Iceberg data file write failed: {exc!r}") from exc
        for key, handle in list(self._open.items()):
            if handle.size >= self._max_bytes:
                self._finish(key, fresh=handle.rows - held.get(key, 0))

    @property
    def unpublished_rows(self) -> int:
        """Rows in open or staged files, or in noted files not yet seen committed."""
        held = self._duty.noted_rows + self._uploads.own_rows
        return held + sum(handle.rows for handle in self._open.values())

    @property
    def lost_rows(self) -> int:
        """Rows taken and then lost: in a file that could not be finished on local disk,
        or in a staged file that vanished before it was published."""
        return self._lost_rows + self._uploads.lost_rows

    def stats(self) -> dict[str, int]:
        """Bytes staged (a level), and running totals of files published, failed
        attempts, files adopted from dead writers, rows refused at the bound, commits
        made by this process and commits that failed (each retried)."""
        committer = self._duty.committer
        return {
            "spool_bytes": self._uploads.staged_bytes,
            "refused": self._refused,
            **self._uploads.figures,
            "commits": 0 if committer is None else committer.stats.commits,
            "commit_errors": self._duty.errors,
        }

    def tick(self, now: float | None = None) -> None:
        """Finish files open for a commit interval (they are staged for upload); keep
        the committer thread running; raise the last background upload failure, once,
        so that it is counted and reported."""
        current = time.monotonic() if now is None else now
        for key, handle in list(self._open.items()):
            if current - handle.opened >= self._interval:
                self._finish(key)
        if self._opened:
            self._duty.start()
        failure = self._uploads.take_failure()
        if failure is not None:
            raise failure

    def flush(self) -> None:
        """Finish every open file and publish everything staged, in this thread; commit
        now if this process is the committer, else learn what the committer has taken.
        Raise :class:`SinkError` saying how much still waits when the store or the
        catalog does not answer. A sink used on its own opens here first; a closed sink
        does nothing (it let go of the commit lock, and must not take it again)."""
        if self._closed:
            return
        self.open()
        for key in list(self._open):
            self._finish(key)
        try:
            self._uploads.drain()
        finally:
            self._duty.flush()

    def close(self) -> None:
        """Finish, publish and commit what can be; what the store does not take stays
        staged for the next process. Returns within seconds when the store is away."""
        if self._closed:
            return
        self._closed = True
        failure: SinkError | None = None
        for key in list(self._open):
            try:
                self._finish(key)
            except SinkError as exc:
                failure = exc
        try:
            self._uploads.drain()
        except SinkError as exc:
            failure = failure or exc
        self._duty.close()
        self._uploads.close()
        _LIVE.discard(self)
        if failure is not None:
            raise failure

    # -- files and notes -------------------------------------------------------------

    def _finish(self, key: tuple[int, str], *, fresh: int = 0) -> None:
        """Complete an open file on local disk and stage it for upload."""
        handle = self._open.pop(key)
        try:
            handle.close()
        except Exception as exc:
            self._lost_rows += handle.rows - fresh
            handle.abandon()
            raise SinkError(f"Iceberg data file could not be finished: {exc!r}") from exc
        self._uploads.add(handle.path, handle.key, handle.rows)

    def _sweep_and_adopt(self) -> None:
        """Remove dead writers' temporary files (never complete, never noted) and stage
        their complete files for upload: their records were taken, and are published
        under the file ids their names carry."""
        shared = any(other.root == self.root for other in _LIVE if other is not self)
        for temp in self._writer.temporary_files():
            name = parse_name(temp.name[1 : -len(".tmp")])
            if name is not None and abandoned(name.host, name.pid, shared=shared):
                temp.unlink(missing_ok=True)
        for path in self._writer.complete_files():
            name = parse_name(path.name)
            if name is None or not abandoned(name.host, name.pid, shared=shared):
                continue
            try:
                rows = pq.ParquetFile(path).metadata.num_rows
            except (OSError, pa.ArrowException):
                continue  # gone meanwhile (another sink took it), or not a file of ours
            self._uploads.add(path, self._writer.key_of(path), rows, own=False)

    def _use(self, table: Table) -> None:
        """Publish into ``table``, and write files in its schema from now on."""
        self._writer.schema = file_schema(table)
        self._destination.use(table)

    def _load_table(self) -> Table:
        """The table, opened on the upload thread when ``open()`` could not."""
        table = open_table(self.table_name, data_dir=self._data_dir)
        self._writer.schema = file_schema(table)
        return table

    @property
    def committer(self) -> Committer | None:
        """This process's committer, once the table has been opened for it."""
        return self._duty.committer
