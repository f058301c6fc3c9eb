"""Data files: prediction batches as Parquet files in the table's data location.

Each file holds a single partition, one day of ``timestamp_utc`` and one
``model_name``, so that the committer's ``add_files`` infers the partition from the
file's own column statistics. Files carry no Parquet field ids (pyiceberg's
``add_files`` refuses files that do): readers map columns by name through the table's
name mapping, which ``add_files`` sets.

A file is written through the table's own filesystem (pyarrow's, with the FileIO's
credentials and endpoint). On an object store the upload completes in one call at
close, so no reader ever sees part of an object; on a local disk a file is complete
before any note names it, and only noted files are ever committed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from predlog.sinks.iceberg._catalog import filesystem

if TYPE_CHECKING:
    from pyiceberg.table import Table

_US_PER_DAY: Final = 86_400_000_000
Codec = Literal["zstd", "snappy", "lz4", "gzip", "brotli", "none"]


def writer_tag() -> str:
    """``<host>-<pid>``: who wrote a file or made a commit, as names and summaries say."""
    host = "".join(ch if ch.isalnum() or ch == "-" else "_" for ch in socket.gethostname())
    return f"{host[:32] or 'host'}-{os.getpid()}"


@dataclass(frozen=True)
class DataFile:
    """One complete data file: its full location (as the table names files) and rows."""

    location: str
    rows: int
    #: A short unique id; the pending note and the commit's summary carry it.
    file_id: str


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
    """Writes Parquet data files into one table's data location."""

    def __init__(self, table: Table, *, compression: Codec = "zstd") -> None:
        self.schema = file_schema(table)
        self._data = table.location().rstrip("/") + "/data"
        self._fs, _ = filesystem(table, self._data)
        self._table = table
        self._compression = compression
        self._tag = writer_tag()
        self._seq = 0

    def location_for(self, day: int, model: str) -> tuple[str, str]:
        """A fresh (file id, full location) in the partition's directory."""
        self._seq += 1
        file_id = f"{secrets.token_hex(8)}"
        date = datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%d")
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{stamp}-{self._tag}-{self._seq:06d}-{file_id}.parquet"
        partition = f"timestamp_utc_day={date}/model_name={quote(model, safe='')}"
        return file_id, f"{self._data}/{partition}/{name}"

    def open(self, day: int, model: str) -> OpenFile:
        """Start a file for one partition; write batches to it, then ``close`` it."""
        file_id, location = self.location_for(day, model)
        _, path = filesystem(self._table, location)
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
        self._stream.close()
        return DataFile(self.location, self.rows, self.file_id)

    def abandon(self) -> None:
        """Stop writing; the partial file is never noted, so never committed."""
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._stream.close()
