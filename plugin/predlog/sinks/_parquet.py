"""ParquetSink: the embedded default, rolling Parquet files under a data directory.

Layout::

    <data_dir>/predictions/date=YYYY-MM-DD/part-<UTC start>-<host>-<pid>-<seq>.parquet

The date is the prediction's own UTC date (hive-style, so DuckDB and Spark prune
on it). Each process has its own writer and puts its host name and pid in every
file name, so the workers of one server never collide. A file is written under a
hidden temporary name and renamed into place only once complete and fsynced:
readers globbing ``*.parquet`` never see a partial file. Files roll by size, by
age, on ``flush()`` and at ``close()``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import time
import weakref
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from predlog._record import JSON_COLUMNS, arrow_schema
from predlog._settings import DEFAULT_DATA_DIR
from predlog.errors import ConfigError, SinkError

#: Parquet codecs; zstd is the default for its ratio on repetitive JSON features.
Compression = Literal["zstd", "snappy", "lz4", "gzip", "brotli", "none"]

_US_PER_DAY: Final = 86_400_000_000
_SCHEMA: Final = arrow_schema()
#: Writers inherited across fork: kept referenced so they are never closed (which
#: would write a footer into the parent's file) and pointed at /dev/null.
_ORPHANS: list[Any] = []


def _host() -> str:
    """This host's name as file names carry it: safe characters, at most 32 of them. A
    longer name (Kubernetes pods of one deployment share a long prefix) keeps a hash of
    the whole, so that two hosts never carry the same tag."""
    name = socket.gethostname().split(".")[0] or "host"
    safe = "".join(ch if ch.isalnum() or ch == "-" else "_" for ch in name)
    if len(safe) <= 32:
        return safe
    return f"{safe[:23]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


#: A temporary file's name: ``.part-<stamp>-<host>-<pid>-<seq>.parquet.tmp``.
_TEMP_NAME: Final = re.compile(
    r"^\.part-\d{8}T\d{6}-(?P<host>.+)-(?P<pid>\d+)-\d{6}\.parquet\.tmp$"
)


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
_STATISTICS_COLUMNS: Final = [name for name in _SCHEMA.names if name not in JSON_COLUMNS]


class _OpenFile:
    """One temporary file being written, and where it will be published."""

    __slots__ = ("file", "final", "opened", "rows", "temp", "writer")

    def __init__(self, final: Path, temp: Path, compression: Compression) -> None:
        self.final = final
        self.temp = temp
        self.file = pa.OSFile(str(temp), "wb")
        try:
            self.writer = pq.ParquetWriter(
                self.file,
                _SCHEMA,
                compression=compression,
                use_dictionary=_DICTIONARY_COLUMNS,  # type: ignore[arg-type]  # stubs: bool only
                write_statistics=_STATISTICS_COLUMNS,
            )
        except BaseException:
            # The writer writes the file's first bytes at once: on a full disk it fails
            # here, and the temporary file must not stay behind (one per batch, forever).
            try:
                self.file.close()
            finally:
                temp.unlink(missing_ok=True)
            raise
        self.opened = time.monotonic()
        self.rows = 0

    @property
    def size(self) -> int:
        return int(self.file.tell())

    def publish(self) -> Path:
        self.writer.close()
        fd = self.file.fileno()
        os.fsync(fd)
        self.file.close()
        os.replace(self.temp, self.final)
        _fsync_dir(self.final.parent)
        return self.final

    def abandon(self) -> None:
        """Stop writing and remove the temporary file (the rows in it are lost)."""
        # The file is being thrown away; a writer that cannot close cleanly is fine.
        with contextlib.suppress(Exception):
            self.writer.close()
        try:
            self.file.close()
        finally:
            self.temp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ParquetSink:
    """Writes prediction batches to rolling, atomically published Parquet files."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        *,
        max_file_bytes: int = 128 << 20,
        max_file_age_s: float = 300.0,
        compression: Compression = "zstd",
    ) -> None:
        if max_file_bytes <= 0:
            raise ConfigError("max_file_bytes", f"must be positive, got {max_file_bytes!r}")
        if max_file_age_s <= 0:
            raise ConfigError("max_file_age_s", f"must be positive, got {max_file_age_s!r}")
        self.root = Path(data_dir) / "predictions"
        self._max_bytes = max_file_bytes
        self._max_age = max_file_age_s
        self._compression = compression
        self._host = _host()
        self._pid = os.getpid()
        self._seq = 0
        self._open: dict[int, _OpenFile] = {}
        self._closed = False
        #: The most recent files this sink published (bounded: a server runs for months),
        #: and how many it has published in all.
        self.published: deque[Path] = deque(maxlen=1000)
        self.published_count = 0
        #: Rows accepted earlier but lost when a failed write forced a file to be abandoned.
        self.lost_rows = 0
        #: Temporary files of dead writers on this host removed when this sink started.
        self.swept = self._sweep()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

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
            if match is None or match["host"] != self._host:
                continue
            pid = int(match["pid"])
            if pid == self._pid or _running(pid):
                continue
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < stale_before:
                    temp.unlink()
                    swept += 1
        return swept

    def export(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise SinkError("ParquetSink is closed")
        if batch.num_rows == 0:
            return
        if not batch.schema.equals(_SCHEMA, check_metadata=False):
            # Refuse before touching any file: the open file and its rows stay intact.
            raise SinkError("batch does not have the prediction record schema")
        micros = batch.column("timestamp_utc").cast(pa.int64()).to_numpy()
        days = micros // _US_PER_DAY
        first, last = int(days.min()), int(days.max())
        # Rows each open file held before this batch: if rolling one fails below, only
        # those count as lost; this batch's rows the flusher counts failed.
        held = {day: handle.rows for day, handle in self._open.items()}
        if first == last:
            self._write(first, batch)
        else:
            for day in np.unique(days):
                self._write(int(day), batch.filter(pa.array(days == day)))
        for day, handle in list(self._open.items()):
            if handle.size >= self._max_bytes:
                self._publish(day, fresh=handle.rows - held.get(day, 0))

    @property
    def unpublished_rows(self) -> int:
        """Rows taken but in files not yet published: no reader sees them, and a crash
        would lose them. The logger counts them pending, not delivered."""
        return sum(handle.rows for handle in self._open.values())

    def tick(self, now: float | None = None) -> None:
        """Publish files that have been open longer than ``max_file_age_s``."""
        current = time.monotonic() if now is None else now
        for day, handle in list(self._open.items()):
            if current - handle.opened >= self._max_age:
                self._publish(day)

    def flush(self) -> None:
        for day in list(self._open):
            self._publish(day)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True

    def _write(self, day: int, batch: pa.RecordBatch) -> None:
        handle = self._open.get(day)
        if handle is None:
            handle = self._open[day] = self._new_file(day)
        try:
            handle.writer.write_batch(batch)
        except Exception as exc:
            # A write that failed part-way (disk full, I/O error) may leave the file
            # unreadable: abandon it so no broken file is ever published. Its earlier
            # rows are lost with it, and counted as such; this batch's rows are
            # counted failed by the flusher.
            del self._open[day]
            self.lost_rows += handle.rows
            handle.abandon()
            raise SinkError(f"Parquet write failed, file abandoned: {exc!r}") from exc
        handle.rows += batch.num_rows

    def _new_file(self, day: int) -> _OpenFile:
        date = datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%d")
        directory = self.root / f"date={date}"
        directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = datetime.now(tz=timezone.utc).strftime("%Y%m%dT%H%M%S")
        name = f"part-{stamp}-{self._host}-{self._pid}-{self._seq:06d}.parquet"
        return _OpenFile(directory / name, directory / f".{name}.tmp", self._compression)

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
            self.lost_rows += handle.rows - fresh
            handle.abandon()
            raise SinkError(f"Parquet publish failed, file abandoned: {exc!r}") from exc
        self.published.append(path)
        self.published_count += 1

    def _forget_inherited(self) -> None:
        """In a forked child: the open files belong to the parent. Never touch them."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            for handle in self._open.values():
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(devnull, handle.file.fileno())
                _ORPHANS.append(handle)
        finally:
            os.close(devnull)
        self._open = {}
        self._pid = os.getpid()
        self._seq = 0
        # The parent's losses are the parent's to count (the child's flusher starts at 0).
        self.lost_rows = 0
        self.published = deque(maxlen=1000)
        self.published_count = 0


def _after_fork(ref: weakref.ref[ParquetSink]) -> None:
    sink = ref()
    if sink is not None:
        sink._forget_inherited()  # the hook is part of the class's contract
