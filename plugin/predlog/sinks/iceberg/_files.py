"""Data files: prediction batches as Parquet files for the table's data location.

Each file holds a single partition, one day of ``timestamp_utc`` and one
``model_name``, so that the committer's ``add_files`` infers the partition from the
file's own column statistics. Files carry no Parquet field ids (pyiceberg's
``add_files`` refuses files that do): readers map columns by name through the table's
name mapping, which ``add_files`` sets.

A file's key under the table's location is
``data/timestamp_utc_day=<date>/model_name=<model>/<stamp>-<host>-<pid>-<seq>-<id>.parquet``:
the name says when and by whom it was started and carries the file id the pending
note and the commit's summary name, so the id survives whatever happens to the writer.

Two writers, one key layout:

* :class:`StagingWriter` (the sink's): a file is written on local disk under a hidden
  temporary name, and renamed to its key, complete and fsynced, under the staging
  directory; :class:`predlog.storage.Uploads` publishes it from there. The flusher
  never waits on the object store, and a dead writer's complete files are adopted by
  the next process (:func:`parse_name` reads host, pid and id back).
* :class:`FileWriter` (the Kafka consumer's and compaction's, which commit what they
  wrote at once): written through the table's own filesystem. On an object store the
  upload completes in one call at close, so no reader ever sees part of an object.
  A closed file keeps its footer and size (:class:`DataFile`), so that its commit
  describes it to Iceberg without reading it back from the store.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from predlog.sinks.iceberg._catalog import filesystem
from predlog.storage import fsync_dir, host_tag

if TYPE_CHECKING:
    from pyiceberg.table import Table

_US_PER_DAY: Final = 86_400_000_000
_STAMP: Final = "%Y%m%dT%H%M%S"
#: A data file's name, as :func:`file_name` makes it (the sequence number is at least six
#: digits: a writer rolling a file per partition each commit interval passes 999999).
_NAME: Final = re.compile(
    r"^(?P<stamp>\d{8}T\d{6})-(?P<host>.+)-(?P<pid>\d+)-\d{6,}-(?P<id>[0-9a-f]{16})\.parquet$"
)
Codec = Literal["zstd", "snappy", "lz4", "gzip", "brotli", "none"]


def writer_tag() -> str:
    """``<host>-<pid>``: who wrote a file or made a commit, as names and summaries say."""
    return f"{host_tag()}-{os.getpid()}"


@dataclass(frozen=True)
class DataFile:
    """One complete data file: its full location (as the table names files) and rows."""

    location: str
    rows: int
    #: A short unique id; the pending note and the commit's summary carry it.
    file_id: str
    #: The file's size and footer, when this process wrote it: what a commit takes its
    #: statistics from instead of reading the file back (None: read it back).
    size: int = 0
    footer: pq.FileMetaData | None = None


@dataclass(frozen=True)
class FileName:
    """What a data file's name says: who started it, when, and its file id."""

    host: str
    pid: int
    file_id: str
    started_ms: int

    @property
    def writer(self) -> str:
        return f"{self.host}-{self.pid}"


def file_name(seq: int) -> tuple[str, str]:
    """A fresh (file id, file name) for this process's ``seq``-th file."""
    file_id = secrets.token_hex(8)
    stamp = time.strftime(_STAMP, time.gmtime())
    return file_id, f"{stamp}-{writer_tag()}-{seq:06d}-{file_id}.parquet"


def parse_name(name: str) -> FileName | None:
    """The parts of a data file's name, or None for any other name."""
    match = _NAME.match(name)
    if match is None:
        return None
    started = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=timezone.utc)
    return FileName(match["host"], int(match["pid"]), match["id"], int(started.timestamp() * 1000))


def data_key(day: int, model: str, name: str) -> str:
    """A file's key under the table's location: its partition's directory and name."""
    date = datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%d")
    return f"data/timestamp_utc_day={date}/model_name={quote(model, safe='')}/{name}"


def file_schema(table: Table) -> pa.Schema:
    """The Arrow schema of the table's current schema, without field ids."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow  # noqa: PLC0415  # optional dependency

    return schema_to_pyarrow(table.schema(), include_field_ids=False)


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly the table's columns and types: columns the table has and
    the batch lacks (added by a newer writer) are null, types are cast (int16 to int)."""
    columns = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column: Any = batch.column(index)
        if column.type != field.type:
            if isinstance(column.type, pa.ExtensionType):
                column = column.storage
            column = column.cast(field.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def split(batch: pa.RecordBatch) -> dict[tuple[int, str], pa.RecordBatch]:
    """The batch cut into partitions: (day since the epoch, model name) -> rows."""
    micros = batch.column("timestamp_utc").cast(pa.int64()).to_numpy()
    days = micros // _US_PER_DAY
    models = batch.column("model_name")
    first_model = models[0].as_py()
    if days.min() == days.max() and pc.all(pc.equal(models, first_model)).as_py():
        return {(int(days[0]), first_model): batch}
    out: dict[tuple[int, str], pa.RecordBatch] = {}
    names = np.asarray(models.to_pylist(), dtype=object)
    for day in np.unique(days):
        on_day = days == day
        for model in set(names[on_day]):
            mask = on_day & (names == model)
            out[(int(day), str(model))] = batch.filter(pa.array(mask))
    return out


class FileWriter:
    """Writes Parquet data files straight into one table's data location."""

    def __init__(self, table: Table, *, compression: Codec = "zstd") -> None:
        self.schema = file_schema(table)
        self._base = table.location().rstrip("/")
        self._fs, _ = filesystem(table, self._base)
        self._table = table
        self._compression = compression
        self._seq = 0

    def location_for(self, day: int, model: str) -> tuple[str, str]:
        """A fresh (file id, full location) in the partition's directory."""
        self._seq += 1
        file_id, name = file_name(self._seq)
        return file_id, f"{self._base}/{data_key(day, model, name)}"

    def open(self, day: int, model: str) -> OpenFile:
        """Start a file for one partition; write batches to it, then ``close`` it."""
        file_id, location = self.location_for(day, model)
        _, path = filesystem(self._table, location)
        if isinstance(self._fs, pafs.LocalFileSystem):
            # An object store has no directories: making one is a request per file
            # (about 40 ms on S3-compatible stores) for an empty marker nobody reads.
            with contextlib.suppress(OSError):
                self._fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        stream = self._fs.open_output_stream(path)
        return OpenFile(stream, file_id, location, self.schema, self._compression)

    def write(self, day: int, model: str, batch: pa.RecordBatch | pa.Table) -> DataFile:
        """Write one complete file of ``batch`` (one partition's rows) and return it."""
        handle = self.open(day, model)
        try:
            handle.write(batch)
        except BaseException:
            handle.abandon()
            raise
        return handle.close()


class OpenFile:
    """One data file being written."""

    def __init__(
        self, stream: Any, file_id: str, location: str, schema: pa.Schema, compression: Codec
    ) -> None:
        self.file_id = file_id
        self.location = location
        self.rows = 0
        self.opened = time.monotonic()
        self._schema = schema
        self._stream = stream
        self._writer = pq.ParquetWriter(stream, schema, compression=compression)

    @property
    def size(self) -> int:
        """Bytes written so far (the footer not included)."""
        return int(self._stream.tell())

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Append rows (conformed to the table's schema here)."""
        if isinstance(batch, pa.Table):
            for part in batch.to_batches():
                self.write(part)
            return
        self._writer.write_batch(conform(batch, self._schema))
        self.rows += batch.num_rows

    def close(self) -> DataFile:
        """Finish the file: footer written, object (or file) complete."""
        self._writer.close()
        size = int(self._stream.tell())
        self._stream.close()
        return DataFile(self.location, self.rows, self.file_id, size, self._writer.writer.metadata)

    def abandon(self) -> None:
        """Stop writing; the partial file is never noted, so never committed."""
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._stream.close()


class StagedFile(OpenFile):
    """A data file being written on local disk, under a hidden temporary name until
    :meth:`close` renames it, complete and fsynced, to its key under the staging root."""

    def __init__(
        self, root: Path, key: str, file_id: str, schema: pa.Schema, compression: Codec
    ) -> None:
        self.key = key
        self.path = root / key
        self.temp = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stream = pa.OSFile(str(self.temp), "wb")
        try:
            super().__init__(stream, file_id, str(self.path), schema, compression)
        except BaseException:
            # The writer writes the file's first bytes at once: on a full disk it fails
            # here, and the temporary file must not stay behind.
            try:
                stream.close()
            finally:
                self.temp.unlink(missing_ok=True)
            raise

    def close(self) -> DataFile:
        """Finish the file and put it under its key: complete, or not there at all."""
        self._writer.close()
        os.fsync(self._stream.fileno())
        self._stream.close()
        os.replace(self.temp, self.path)
        with contextlib.suppress(OSError):  # renamed already: nothing is lost
            fsync_dir(self.path.parent)
        return DataFile(self.location, self.rows, self.file_id)

    def abandon(self) -> None:
        """Stop writing and remove the temporary file (its rows are lost)."""
        super().abandon()
        self.temp.unlink(missing_ok=True)

    def orphan(self) -> None:
        """In a forked child: the file is the parent's. Point the descriptor at
        /dev/null, so that nothing the child does (a finaliser) writes into it."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            with contextlib.suppress(OSError, ValueError):
                os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)


class StagingWriter:
    """Writes data files into a local staging directory, each under the key the table
    will know it by (see the module docstring). Touches no table and no network."""

    def __init__(self, root: Path, schema: pa.Schema, *, compression: Codec = "zstd") -> None:
        self.root = root
        #: The table's columns as files carry them; set again once the table is known.
        self.schema = schema
        self._compression = compression
        self._seq = 0

    def open(self, day: int, model: str) -> StagedFile:
        """Start a staged file for one partition."""
        self._seq += 1
        file_id, name = file_name(self._seq)
        return StagedFile(
            self.root, data_key(day, model, name), file_id, self.schema, self._compression
        )

    def temporary_files(self) -> list[Path]:
        """Every hidden temporary file under the root (any writer's)."""
        return list(self.root.glob("data/*/*/.*.parquet.tmp"))

    def complete_files(self) -> list[Path]:
        """Every complete staged file under the root (any writer's), oldest first."""
        return sorted(self.root.glob("data/*/*/*.parquet"), key=lambda p: (p.name[:15], p.name))

    def key_of(self, path: Path) -> str:
        """A staged file's key (its path under the root)."""
        return path.relative_to(self.root).as_posix()
