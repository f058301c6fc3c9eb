"""ParquetSink: the embedded default, rolling Parquet files under a data directory.

Layout::

    <data_dir>/predictions/date=YYYY-MM-DD/part-<UTC start>-<host>-<pid>-<seq>.parquet

The date is the prediction's own UTC date (hive-style, so DuckDB and Spark prune
on it). Each process has its own writer and puts its host name and pid in every
file name, so the workers of one server never collide. A file is written under a
hidden temporary name and renamed into place only once complete and fsynced:
readers globbing ``*.parquet`` never see a partial file. Files roll by size, by
age, on ``flush()`` and at ``close()``.

Age ramps up: a sink's first file is published 2 s after it opened, each next one
may stay open twice as long as the one before, up to ``max_file_age_s``. Records
written right after a process starts (someone trying predlog, a deployment being
checked) are visible within seconds, while a server that runs for hours still writes
files of ``max_file_age_s`` each: the ramp adds about log2(max_file_age_s / 2) files
per process (8 for the default 300 s), and a record sent t seconds after the first
is visible by about 2t + 2 s (plus up to a flush interval to reach the sink).

A data directory on an object store (``s3://``, ``gs://``) gets the same layout and
names. Each file is written exactly as above, but in a local staging directory
(``<spool_dir>/parquet/predictions/...``), and publishing uploads the complete file
in one call (:meth:`Location.put_file`): the object appears whole or not at all.
Uploads run on a thread of their own (:class:`predlog.storage.Uploads`), so the flusher
never waits on the network. A file the store does not take stays staged, its rows
counted pending, and is retried with backoff, and on every ``flush()``; staged files
a dead process of this host left behind are uploaded when the next sink starts.
Staging is bounded by ``spool_max_bytes``: past it, new batches are refused (the
flusher counts them failed) rather than fill the disk while the store is down.

Batches come in either form the flusher builds (:mod:`predlog._table`). A
file is written by the extension (the ``parquet`` crate, no pyarrow in the process)
when its first batch is native and its codec is zstd or none, and by pyarrow
otherwise; a batch of the other form is converted to the file's. Both write the same
columns, the same row group per batch, the same dictionary and statistics columns.

Lifecycle: the constructor only checks its arguments and touches no file. ``open()``
(called by the logger before its flusher starts, or by the first ``export()`` or
``flush()`` of a sink used on its own) sweeps the temporary files dead writers of this
host left and hands their staged files to the upload thread, once. After ``fork()``
the child's flusher calls :meth:`ParquetSink.after_fork_in_child`: a sink used across
a fork without a logger must call it in the child itself. ``close()`` is safe twice; a
sink opened and dropped without it warns with :class:`ResourceWarning`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from predlog._record import FIELD_NAMES, JSON_COLUMNS, arrow_schema
from predlog._settings import DEFAULT_DATA_DIR, Settings, check_argument, read
from predlog._table import (
    as_arrow,
    as_native,
    by_day,
    has_record_schema,
    is_native,
    native_parquet_file,
)
from predlog.errors import SinkError
from predlog.storage import (
    Location,
    LocationDestination,
    Uploads,
    abandoned,
    fsync_dir,
    host_tag,
    locate,
    newest_first,
)

if TYPE_CHECKING:
    from predlog._table import Batch

#: Parquet codecs; zstd is the default for its ratio on repetitive JSON features.
Compression = Literal["zstd", "snappy", "lz4", "gzip", "brotli", "none"]

#: How long a sink's first file stays open (see the module docstring: the age ramp).
FIRST_FILE_AGE_S: Final = 2.0
#: The codecs the extension's Parquet writer is built with.
_NATIVE_CODECS: Final = ("zstd", "none")
#: Writers inherited across fork: kept referenced so they are never closed (which
#: would write a footer into the parent's file) and pointed at /dev/null.
_ORPHANS: list[Any] = []


#: A temporary file's name: ``.part-<stamp>-<host>-<pid>-<seq>.parquet.tmp``.
_TEMP_NAME: Final = re.compile(
    r"^\.part-\d{8}T\d{6}-(?P<host>.+)-(?P<pid>\d+)-\d{6,}\.parquet\.tmp$"
)
#: A complete file's name: ``part-<stamp>-<host>-<pid>-<seq>.parquet``.
_FILE_NAME: Final = re.compile(r"^part-\d{8}T\d{6}-(?P<host>.+)-(?P<pid>\d+)-\d{6,}\.parquet$")


#: Dictionary encoding only where values repeat: tried on ids and feature JSON, it
#: is built and then abandoned for every page. Writing is ~20% faster this way, and
#: files a little smaller (benchmarks/bench_capture.py).
_DICTIONARY_COLUMNS: Final = [
    "schema_version",
    "model_name",
    "model_version",
    "model_framework",
    "feature_store_snapshot_id",
    "decision",
    "decision_threshold",
    "model_confidence",
    "user_segment",
    "channel",
    "geographic_region",
    "sample_weight",
    "sampling_reason",
    "data_quality.list.element",
]
#: Min/max statistics serve predicate pushdown; over JSON text they serve nothing.
_STATISTICS_COLUMNS: Final = [name for name in FIELD_NAMES if name not in JSON_COLUMNS]


class _OpenFile:
    """One temporary file being written, where it will be published, and how long it
    may stay open (``max_age``, in seconds). ``native``: written by the extension."""

    __slots__ = ("file", "final", "max_age", "native", "opened", "rows", "temp", "writer")

    def __init__(
        self, final: Path, temp: Path, compression: Compression, max_age: float, *, native: bool
    ) -> None:
        self.max_age = max_age
        self.final = final
        self.temp = temp
        self.native = native
        self.file: Any = None
        try:
            if native:
                self.writer: Any = native_parquet_file(
                    temp,
                    compression,
                    dictionary=_DICTIONARY_COLUMNS,
                    statistics=_STATISTICS_COLUMNS,
                )
            else:
                import pyarrow as pa  # noqa: PLC0415  # only for files pyarrow writes
                import pyarrow.parquet as pq  # noqa: PLC0415

                self.file = pa.OSFile(str(temp), "wb")
                self.writer = pq.ParquetWriter(
                    self.file,
                    arrow_schema(),
                    compression=compression,
                    use_dictionary=_DICTIONARY_COLUMNS,  # type: ignore[arg-type]  # stubs: bool only
                    write_statistics=_STATISTICS_COLUMNS,
                )
        except BaseException:
            # The writer writes the file's first bytes at once: on a full disk it fails
            # here, and the temporary file must not stay behind (one per batch, forever).
            try:
                if self.file is not None:
                    self.file.close()
            finally:
                temp.unlink(missing_ok=True)
            raise
        self.opened = time.monotonic()
        self.rows = 0

    @property
    def size(self) -> int:
        return int(self.writer.size if self.native else self.file.tell())

    def fileno(self) -> int:
        return int(self.writer.fileno() if self.native else self.file.fileno())

    def write(self, batch: Batch) -> None:
        """One row group; a batch of the other form is converted to this file's."""
        if self.native:
            self.writer.write(as_native(batch))
        else:
            self.writer.write_batch(as_arrow(batch))

    def publish(self) -> Path:
        if self.native:
            self.writer.close()  # the footer, fsync and close, in the extension
        else:
            self.writer.close()
            os.fsync(self.file.fileno())
            self.file.close()
        os.replace(self.temp, self.final)
        # Published already: a directory that cannot be fsynced loses no reader.
        with contextlib.suppress(OSError):
            fsync_dir(self.final.parent)
        return self.final

    def abandon(self) -> None:
        """Stop writing and remove the temporary file (the rows in it are lost)."""
        try:
            if self.native:
                self.writer.abandon()
            else:
                # The file is being thrown away; a writer that cannot close cleanly is fine.
                with contextlib.suppress(Exception):
                    self.writer.close()
                self.file.close()
        finally:
            self.temp.unlink(missing_ok=True)


#: The sinks opened in this process, so that one never adopts another's staged files.
_LIVE: weakref.WeakSet[ParquetSink] = weakref.WeakSet()


def _destination_tag(url: str) -> str:
    """A short, stable directory name for one destination (a data_dir URL)."""
    return hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


class ParquetSink:
    """Writes prediction batches to rolling, atomically published Parquet files.

    ``data_dir`` is a local directory or an ``s3://``, ``gs://`` or ``file://`` URL.
    For an object store, ``spool_dir`` is the local staging directory (default: the
    ``spool_dir`` setting, else ``./predlog-spool``) and ``spool_max_bytes`` bounds the
    complete files that may wait there while the store is away; both are unused for a
    local data_dir, whose files are written in place. Each size and age is checked as
    the setting it stands for (``parquet_max_file_bytes``...) is.
    """

    # Class-level, so that __del__ of an instance whose constructor refused reads them.
    _opened = False
    _closed = False
    #: export() writes native batches without pyarrow (TakesNativeBatches).
    takes_native_batches = True

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        *,
        max_file_bytes: int = 128 << 20,
        max_file_age_s: float = 300.0,
        compression: Compression = "zstd",
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 1 << 30,
    ) -> None:
        check_argument("max_file_bytes", "parquet_max_file_bytes", max_file_bytes)
        check_argument("max_file_age_s", "parquet_max_file_age_s", max_file_age_s)
        check_argument("spool_max_bytes", "parquet_spool_max_bytes", spool_max_bytes)
        check_argument("data_dir", "data_dir", data_dir)
        #: Where the files are published: a local directory or an object store.
        self.location: Location = locate(data_dir)
        self._remote = not self.location.is_local
        #: The local directory files are written in: the data directory's
        #: ``predictions`` for a local one, the staging directory for an object store.
        if spool_dir is None:
            # As the logger's settings would have it: PREDLOG_SPOOL_DIR, or the default
            # for this data_dir (``predlog sink`` builds its sink with no settings).
            spool_dir = read("spool_dir") or Settings(data_dir=os.fspath(data_dir)).spool_path
        # Staging is per destination: a sink never adopts, and uploads to its own
        # bucket, the files another data_dir's sink left in a shared spool_dir.
        self.root = (
            Path(spool_dir) / "parquet" / _destination_tag(self.location.url)
            if self._remote
            else self.location.local_path
        ) / "predictions"
        self._max_bytes = max_file_bytes
        self._max_age = max_file_age_s
        #: The age the next file opened may reach: the ramp's current step.
        self._next_age = min(FIRST_FILE_AGE_S, max_file_age_s)
        self._compression = compression
        self._spool_max = spool_max_bytes
        self._host = host_tag()
        self._pid = os.getpid()
        self._seq = 0
        self._open: dict[int, _OpenFile] = {}
        #: The most recent files this sink published (bounded: a server runs for months),
        #: as paths or URLs, and how many it has published in all.
        self.published: deque[str] = deque(maxlen=1000)
        self.published_count = 0
        # Rows accepted earlier but lost when a failed write forced a file to be abandoned.
        self._lost_rows = 0
        self._refused = 0
        #: Complete files waiting for the object store (None for a local data_dir).
        self._uploads = (
            Uploads(LocationDestination(self.location, _weak(weakref.WeakMethod(self._published))))
            if self._remote
            else None
        )
        #: Temporary files of dead writers on this host removed when this sink opened.
        self.swept = 0

    def open(self) -> None:
        """Sweep what dead writers of this host left, and stage their complete files for
        upload; once (a closed sink stays closed). Raises nothing for a store that is
        down: the adopted files wait for it like the sink's own."""
        if self._opened or self._closed:
            return
        self._opened = True
        _LIVE.add(self)
        self.swept = self._sweep()
        if self._uploads is not None:
            self._adopt(self._uploads)

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        # Like aiokafka's producer: say so, never close from a finaliser (that would
        # publish files from whatever thread the collector runs on).
        if self._opened and not self._closed:
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)

    @property
    def host(self) -> str:
        """This host's name as file names carry it (with the writer's pid), so that
        writers on several hosts can share one directory."""
        return self._host

    def _sweep(self) -> int:
        """Remove the temporary files that writers on this host left when they died.

        A writer killed (SIGKILL, OOM) leaves its open files under hidden names no
        reader globs and nobody will publish; without this they pile up with every
        crash. A file is removed only when it is named for exactly this host, its pid
        is not running here, and nothing has written to it for twice the file age (a
        live writer publishes sooner): never a live writer's, nor another host's on a
        shared volume, even one whose pids this host cannot see.
        """
        stale_before = time.time() - 2 * self._max_age
        swept = 0
        for temp in self.root.glob("date=*/.part-*.parquet.tmp"):
            match = _TEMP_NAME.match(temp.name)
            if match is None or not abandoned(match["host"], int(match["pid"]), shared=True):
                continue
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < stale_before:
                    temp.unlink()
                    swept += 1
        return swept

    def _adopt(self, uploads: Uploads) -> None:
        """Upload the complete staged files that dead writers of this host left behind.

        Unlike a temporary file, a staged file is whole and its records were taken: it
        is uploaded, never deleted unread. Two sinks starting at once may both upload
        one; it is the same bytes under the same name, so readers still see it once.
        A file named with this very pid is a dead predecessor's (a container restarted
        after a crash is pid 1 again) unless another live sink of this process stages
        in the same directory. The upload thread takes them at once; a caller that
        must see them published (``predlog sink`` restarting) calls ``flush()``.
        """
        shared = any(other.root == self.root for other in _LIVE if other is not self)
        for path in sorted(self.root.glob("date=*/part-*.parquet")):
            match = _FILE_NAME.match(path.name)
            if match is None or not abandoned(match["host"], int(match["pid"]), shared=shared):
                continue
            import pyarrow as pa  # noqa: PLC0415  # an object store's sink loads it anyway
            import pyarrow.parquet as pq  # noqa: PLC0415

            try:
                rows = pq.ParquetFile(path).metadata.num_rows
                uploads.add(path, self._key(path), rows, own=False)
            except (OSError, pa.ArrowException):
                continue  # gone meanwhile (another sink took it), or not ours to send

    def export(self, batch: Batch) -> None:
        if self._closed:
            raise SinkError("ParquetSink is closed")
        self.open()
        if batch.num_rows == 0:
            return
        if not has_record_schema(batch):
            # Refuse before touching any file: the open file and its rows stay intact.
            raise SinkError("batch does not have the prediction record schema")
        if self._uploads is not None and self._uploads.staged_bytes >= self._spool_max:
            # The store has been down long enough to fill the staging bound: the new
            # records are refused (counted failed), the waiting ones kept.
            self._refused += batch.num_rows
            raise SinkError(
                f"{self._uploads.staged_bytes} bytes already wait for {self.location.url} "
                f"(spool_max_bytes {self._spool_max}): batch refused"
            )
        # Rows each open file held before this batch: if rolling one fails below, only
        # those count as lost; this batch's rows the flusher counts failed.
        held = {day: handle.rows for day, handle in self._open.items()}
        for day, rows in by_day(batch, "timestamp_utc"):
            self._write(day, rows)
        for day, handle in list(self._open.items()):
            if handle.size >= self._max_bytes:
                self._publish(day, fresh=handle.rows - held.get(day, 0))

    @property
    def unpublished_rows(self) -> int:
        """Rows taken but in files not yet published: no reader sees them, and a crash
        would lose them (or, staged for an object store, delay them until a restart).
        The logger counts them pending, not delivered."""
        staged = 0 if self._uploads is None else self._uploads.own_rows
        return staged + sum(handle.rows for handle in self._open.values())

    @property
    def lost_rows(self) -> int:
        """Rows accepted earlier but lost: in a file a failed write forced to be
        abandoned, or in a staged file that vanished before its upload."""
        staged = 0 if self._uploads is None else self._uploads.lost_rows
        return self._lost_rows + staged

    @lost_rows.setter
    def lost_rows(self, value: int) -> None:
        self._lost_rows = value

    def stats(self) -> dict[str, int]:
        """The sink's own figures: files published in all; for an object store, the
        bytes staged (a level, ``predlog_spool_bytes``) and running totals of uploads,
        failed attempts, files adopted from dead writers and rows refused at the bound."""
        figures = {"published": self.published_count}
        if self._uploads is not None:
            figures.update(
                spool_bytes=self._uploads.staged_bytes,
                refused=self._refused,
                **self._uploads.figures,
            )
        return figures

    def published_files(self) -> Iterator[str]:
        """Every published file, as a path in ``self.location.filesystem``: newest
        date partition first, newest file first within one (see
        :func:`~predlog.storage.newest_first`). Open one with
        ``pq.read_table(path, filesystem=sink.location.filesystem)``. Lists lazily,
        one partition at a time, so reading the latest files never lists them all."""
        for info in newest_first(self.location, self.location.join("predictions")):
            yield info.path

    def tick(self, now: float) -> None:
        """Publish files that have been open for their age (``max_file_age_s``, less
        while the age ramps up) at ``now`` (``time.monotonic()``); raise the last
        background upload failure, once, so that it is counted and reported."""
        for day, handle in list(self._open.items()):
            if now - handle.opened >= handle.max_age:
                self._publish(day)
        failure = None if self._uploads is None else self._uploads.take_failure()
        if failure is not None:
            raise failure

    def flush(self) -> None:
        """Publish every open file; with an object store, upload everything staged, or
        raise :class:`SinkError` saying how much still waits (so that a caller which
        must know, like ``predlog sink`` before committing offsets, does). A sink used
        on its own opens here if it has not yet: its first flush uploads what dead
        writers staged (``predlog sink`` restarting)."""
        self.open()
        for day in list(self._open):
            self._publish(day)
        if self._uploads is not None:
            self._uploads.drain()

    def close(self) -> None:
        """Flush, then stop the upload thread (what it could not upload stays staged for
        the next sink). Safe twice, and on a sink never opened."""
        if self._closed:
            return
        try:
            if self._opened:  # a sink never opened holds nothing, and must not open now
                self.flush()
        finally:
            self._closed = True
            _LIVE.discard(self)
            if self._uploads is not None:
                self._uploads.close()

    def _write(self, day: int, batch: Batch) -> None:
        handle = self._open.get(day)
        if handle is None:
            handle = self._open[day] = self._new_file(day, native=is_native(batch))
        try:
            handle.write(batch)
        except Exception as exc:
            # A write that failed part-way (disk full, I/O error) may leave the file
            # unreadable: abandon it so no broken file is ever published. Its earlier
            # rows are lost with it, and counted as such; this batch's rows are
            # counted failed by the flusher.
            del self._open[day]
            self._lost_rows += handle.rows
            handle.abandon()
            raise SinkError(f"Parquet write failed, file abandoned: {exc!r}") from exc
        handle.rows += batch.num_rows

    def _new_file(self, day: int, *, native: bool) -> _OpenFile:
        date = datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%d")
        directory = self.root / f"date={date}"
        directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = datetime.now(tz=timezone.utc).strftime("%Y%m%dT%H%M%S")
        name = f"part-{stamp}-{self._host}-{self._pid}-{self._seq:06d}.parquet"
        handle = _OpenFile(
            directory / name,
            directory / f".{name}.tmp",
            self._compression,
            self._next_age,
            native=native and self._compression in _NATIVE_CODECS,
        )
        self._next_age = min(2 * self._next_age, self._max_age)
        return handle

    def _publish(self, day: int, *, fresh: int = 0) -> None:
        """Publish the file of ``day``. ``fresh`` of its rows belong to a batch whose
        export is still under way: if publishing fails, they are that batch's failure,
        not rows lost after being taken."""
        handle = self._open.pop(day)
        try:
            path = handle.publish()
        except Exception as exc:
            # Closing writes the footer, which a full disk refuses: abandon the file as
            # a failed write does, so no temporary file stays behind, and count its rows.
            self._lost_rows += handle.rows - fresh
            handle.abandon()
            raise SinkError(f"Parquet publish failed, file abandoned: {exc!r}") from exc
        if self._uploads is None:
            self._published(str(path))
        else:
            # Staged whatever the store says: the upload thread takes it from here.
            self._uploads.add(path, self._key(path), handle.rows)

    def _published(self, where: str) -> None:
        """A file is where readers see it (called by the upload thread too)."""
        self.published.append(where)
        self.published_count += 1

    def _key(self, staged: Path) -> str:
        """A staged file's path relative to the data directory."""
        return f"predictions/{staged.parent.name}/{staged.name}"

    def after_fork_in_child(self) -> None:
        """In a forked child: the open and staged files belong to the parent. Never
        touch them; start afresh with the child's pid in file names."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            for handle in self._open.values():
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(devnull, handle.fileno())
                _ORPHANS.append(handle)
        finally:
            os.close(devnull)
        self._open = {}
        if self._uploads is not None:
            self._uploads.forget_inherited()
        self._pid = os.getpid()
        self._seq = 0
        # A new process: its first records are visible within seconds, like the parent's.
        self._next_age = min(FIRST_FILE_AGE_S, self._max_age)
        # The parent's losses are the parent's to count (the child's flusher starts at 0).
        self._lost_rows = 0
        self._refused = 0
        self.published = deque(maxlen=1000)
        self.published_count = 0


def _weak(method: weakref.WeakMethod[Callable[[str], None]]) -> Callable[[str], None]:
    """A callback that does not keep its sink alive (the upload thread outlives no one)."""

    def call(where: str) -> None:
        bound = method()
        if bound is not None:
            bound(where)

    return call
