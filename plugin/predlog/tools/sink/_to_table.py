"""``predlog sink --table``: the Kafka topic into an Iceberg table, exactly once.

The destination of the consumer loop that keeps its own offsets. The consumed offsets
go into the same Iceberg commit as the data files they produced, as snapshot summary
properties (:func:`predlog.sinks.iceberg.offsets_key`), as Iceberg's Kafka Connect sink
does. A commit either lands with both or with neither, so on every start and every
partition assignment the consumer seeks to the offsets in the table (snapshots newest
first; per partition the newest value wins) and resumes exactly after the last record
the table holds. The group's committed offsets are the fallback for a partition the
table has never seen, and are committed too, after the table, for lag monitoring only.

A commit goes ahead only if, for every partition in it, the table's offset is still
the one this batch started from. Anything else means another consumer (after a
rebalance, or a zombie) committed that range first: the batch is refused and the
partitions re-sought. After a refused or unknown commit, offsets in the table at or
past this batch's end mean this batch's own commit landed.

Data files of a batch that was never committed (the process was killed between
writing them and committing) are referenced by no snapshot: no reader sees them.

A batch is decoded a chunk at a time, and each chunk's rows go to a writer thread that
encodes, compresses and uploads them (work that releases the GIL) while the next chunk
decodes; the commit then describes the files from the footers their writer kept,
without reading them back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from predlog.sinks.iceberg import (
    COMMITTER_KEY,
    CommitStats,
    DataFile,
    FileWriter,
    OpenFile,
    Refused,
    commit_with_retry,
    no_blind_retry,
    offsets_key,
    open_table,
    split,
    table_offsets,
    writer_tag,
)
from predlog.tools.sink._loop import Batch, ConsumerStats

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table

_log = logging.getLogger("predlog.iceberg.kafka")

#: A commit attempt's file locations and summary properties, for the table as it is.
Prepare = Callable[["Table"], tuple[list[str], dict[str, str]]]
#: Records decoded at a time, each chunk a row group of its partition's file: small
#: enough that the writer thread's encoding overlaps most of the decoding, large enough
#: for row groups a reader skips by their statistics.
CHUNK: Final = 16_384


class BatchFiles:
    """The data files of one batch, one per partition, written by a thread of their own.

    :meth:`add` queues a chunk's rows and returns at once; the writer thread opens each
    partition's file on first use and appends its rows in the order they came.
    :meth:`close` waits for every write and returns the complete files; on any error,
    every file is abandoned (never committed) and the error raised.
    """

    def __init__(self, writer: FileWriter) -> None:
        self._writer = writer
        self._open: dict[tuple[int, str], OpenFile] = {}
        self._pending: list[Future[None]] = []
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="predlog-table-files")
        self.rows = 0

    def add(self, decoded: pa.RecordBatch) -> None:
        self.rows += decoded.num_rows
        for key, rows in split(decoded).items():
            self._pending.append(self._thread.submit(self._append, key, rows))

    def _append(self, key: tuple[int, str], rows: pa.RecordBatch) -> None:
        handle = self._open.get(key)
        if handle is None:
            handle = self._open[key] = self._writer.open(*key)
        handle.write(rows)

    def close(self) -> list[DataFile]:
        try:
            for write in self._pending:
                write.result()
            return list(self._thread.map(OpenFile.close, list(self._open.values())))
        except BaseException:
            self.abandon()
            raise
        finally:
            self._thread.shutdown()

    def abandon(self) -> None:
        """Stop: the writes queued end or are cancelled, the files are left unfinished."""
        for write in self._pending:
            write.cancel()
        self._thread.shutdown(wait=True)
        for handle in self._open.values():
            handle.abandon()


class TableDestination:
    """One Iceberg table as the loop's destination, exactly once: offsets in the table."""

    keeps_offsets = True

    def __init__(self, table: str, *, data_dir: str | Path, chunk_records: int = CHUNK) -> None:
        if chunk_records < 1:
            raise ValueError(f"chunk_records must be at least 1, got {chunk_records}")
        self.name = table
        self.data_dir = data_dir
        #: Records decoded at a time (see :data:`CHUNK`).
        self.chunk_records = chunk_records
        self.commit_stats = CommitStats()
        #: Per assigned partition, the table's offset this consumer continues from
        #: (None: the table holds none for it).
        self.base: dict[int, int | None] = {}
        #: Partitions whose next batch may start past the table's end, (end, start),
        #: because the broker deleted the records in between.
        self.gaps: dict[int, tuple[int, int]] = {}
        #: Set by :meth:`open`: the table and its file writer, and the consumer that
        #: answers where the broker's retention began.
        self.table: Table
        self._writer: FileWriter
        self._consumer: Any = None
        self._topic = self._group = ""

    def open(self, consumer: Any, *, topic: str, group: str) -> None:
        """Open (or create) the table."""
        self._consumer, self._topic, self._group = consumer, topic, group
        self.table = open_table(self.name, data_dir=self.data_dir)
        self._writer = FileWriter(self.table)

    async def continues_at(self, partitions: list[int]) -> dict[int, int]:
        """The table's offsets of ``partitions``, read from its newest snapshots."""
        await asyncio.to_thread(self.table.refresh)
        stored = table_offsets(self.table, self._topic, self._group)
        for p in partitions:
            self.base[p] = stored.get(p)
        return {p: stored[p] for p in partitions if p in stored}

    def revoked(self, partitions: list[int]) -> None:
        """Forget their offsets: a commit must never write a stale one for them."""
        for p in partitions:
            self.base.pop(p, None)

    async def store(self, batch: Batch, stats: ConsumerStats) -> bool:
        """Write the batch's data files and commit them with its offsets, off the event
        loop; whether the batch is now in the table."""
        await self._accept_retention_gaps(batch, stats)
        return await asyncio.to_thread(self.write_and_commit, batch, stats)

    def close(self) -> None:
        """Nothing is held between commits."""

    async def _accept_retention_gaps(self, batch: Batch, stats: ConsumerStats) -> None:
        """A batch that starts past the table's end, because the broker deleted the
        records in between (retention ran before they were consumed), goes ahead: those
        records are gone for every reader. They are counted and logged, never silent."""
        from aiokafka.structs import TopicPartition  # noqa: PLC0415  # optional dependency

        gaps = [p for p, first in batch.first.items() if (self.base.get(p) or first) < first]
        if not gaps:
            return
        tps = [TopicPartition(self._topic, p) for p in gaps]
        starts = await self._consumer.beginning_offsets(tps)
        for tp in tps:
            base = self.base.get(tp.partition)
            if base is not None and starts[tp] > base and batch.first[tp.partition] <= starts[tp]:
                stats.lost_to_retention += starts[tp] - base
                _log.error(
                    "partition %d: records %d to %d were deleted by the broker before "
                    "they were consumed",
                    tp.partition,
                    base,
                    starts[tp] - 1,
                )
                self.gaps[tp.partition] = (base, batch.first[tp.partition])

    def write_and_commit(self, batch: Batch, stats: ConsumerStats) -> bool:
        """Write the batch's data files and commit them with its offsets; whether the
        batch is now in the table (False: refused; the loop re-seeks)."""
        if any(
            p not in self.base
            or (self.base[p] not in (None, first) and self.gaps.get(p) != (self.base[p], first))
            for p, first in batch.first.items()
        ):
            # A partition no longer assigned here (revoked since it was polled): its end
            # must not be recorded, nor carried by this consumer's later commits. Or not
            # where the table ends: records were read and dropped in between (a
            # rebalance); committing these offsets would skip them.
            stats.refused += 1
            _log.warning(
                "batch dropped: starts at %s, the table ends at %s", batch.first, self.base
            )
            return False
        files, rows = self._write(batch, stats)
        started = time.perf_counter()
        try:
            made, landed = self._commit(batch, files)
        except Refused as exc:
            stats.refused += 1
            _log.warning("batch dropped: %s", exc)
            return False
        stats.conflicts = self.commit_stats.conflicts
        if not (made or landed):
            return False
        stats.commit_ms.append((time.perf_counter() - started) * 1000)
        if made:
            stats.files += len(files)
            stats.written += rows
        for p, end in batch.end.items():
            self.base[p] = end
            self.gaps.pop(p, None)
        return True

    def _write(self, batch: Batch, stats: ConsumerStats) -> tuple[list[DataFile], int]:
        """The batch's data files, complete, and the rows in them. Decoded a chunk at a
        time (a chunk that fails whole is decoded a message at a time, as a batch is),
        written by the files' own thread meanwhile."""
        files = BatchFiles(self._writer)
        try:
            for first in range(0, len(batch.values), self.chunk_records):
                chunk = Batch(native=batch.native)
                chunk.values = batch.values[first : first + self.chunk_records]
                decoded = chunk.decode(stats)
                if decoded is not None and decoded.num_rows:
                    files.add(decoded)
        except BaseException:
            files.abandon()
            raise
        return files.close(), files.rows

    def _commit(self, batch: Batch, files: list[DataFile]) -> tuple[bool, bool]:
        """Commit ``files`` with the batch's offsets: (made by this call, landed by an
        earlier attempt of this batch). Raises :class:`Refused` if the table's offsets
        moved since the batch began."""
        locations = [f.location for f in files]
        key = offsets_key(self._topic, self._group)
        expected = {p: self.base.get(p) for p in batch.end}
        offsets = {p: o for p, o in self.base.items() if o is not None} | batch.end
        landed = False

        def prepare(table: Table) -> tuple[list[str], dict[str, str]]:
            nonlocal landed
            now = table_offsets(table, self._topic, self._group)
            if all(now.get(p, -1) >= end for p, end in batch.end.items()):
                landed = True  # our own earlier attempt landed after all
                return [], {}
            if any(now.get(p) != expected[p] for p in batch.end):
                raise Refused(f"offsets moved: table {now}, batch from {expected}")
            properties = {
                key: json.dumps({str(p): o for p, o in sorted(offsets.items())}),
                COMMITTER_KEY: writer_tag(),
            }
            return locations, properties

        if locations:
            made = commit_with_retry(self.table, prepare, stats=self.commit_stats, written=files)
        else:
            made = self._commit_offsets_only(prepare)
        return made, landed

    def _commit_offsets_only(self, prepare: Prepare) -> bool:
        """A batch with no decodable record: record its offsets in an empty commit."""
        _, properties = prepare(self.table)
        if not properties:
            return False
        no_blind_retry(self.table)
        try:
            with (
                self.table.transaction() as tx,
                tx.update_snapshot(snapshot_properties=properties).fast_append(),
            ):
                pass
        except Exception:  # noqa: BLE001  # the next batch's commit carries the offsets
            self.table.refresh()
            return False
        return True
