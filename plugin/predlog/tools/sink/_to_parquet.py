"""``predlog sink`` into the Parquet layout: the destination of the at-least-once path.

It writes exactly what :class:`~predlog.ParquetSink` writes, under the same
``<data>/predictions/date=.../`` layout, so every tool works on either. The loop
commits a batch's offsets to the consumer group only after its Parquet file is
published: a crash between the two reads the records again (at least once), never
loses them. Duplicates (a redelivery, or a record the producer's spool sent twice) are
dropped by ``prediction_id`` within a bounded memory of recent ids, which a start
fills from the newest published files first: the records of a file published just
before a crash, whose offsets were never committed, come back and are dropped, not
published twice.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from predlog.flush import ids_as_text
from predlog.sinks import ParquetSink
from predlog.tools.sink._loop import Batch, ConsumerStats


class RecentIds:
    """The last ``limit`` prediction ids seen (canonical UUID text), for dropping
    duplicates."""

    def __init__(self, limit: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def unseen(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        ids: list[Any] = batch.column("prediction_id").to_pylist()
        keep = np.ones(len(ids), dtype=bool)
        for i, pid in enumerate(ids):
            if pid in self._ids:
                keep[i] = False
            else:
                self._ids[pid] = None
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return batch if keep.all() else batch.filter(pa.array(keep))

    def remember_published(self, sink: ParquetSink) -> None:
        """Remember the ids in the newest files ``sink`` has already published.

        A consumer killed after publishing a file and before committing its offsets
        reads that file's records again when it restarts; without their ids it would
        publish them a second time, and every reader would count them twice. Files
        written before ids were text hold them as 16 bytes; they are read as the same
        text, so an upgrade does not publish their records again. The files are the
        sink's own listing, so an object store is read the same way as a local disk.
        """
        filesystem = sink.location.filesystem
        chunks: list[list[Any]] = []
        held = 0
        for path in sink.published_files():
            if held >= self._limit:
                break
            try:
                table = pq.read_table(path, columns=["prediction_id"], filesystem=filesystem)
                chunks.append(ids_as_text(table.column(0)).to_pylist())
            except (OSError, TypeError, pa.ArrowException):
                continue  # not one of ours, or damaged: nothing of it to publish twice
            held += len(chunks[-1])
        for chunk in reversed(chunks):  # oldest first: the newest are evicted last
            for pid in chunk:
                self._ids[pid] = None
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)


class ParquetDestination:
    """The Parquet layout under ``data_dir`` (a path or an object store URL), at least
    once: offsets in the consumer group, duplicates dropped by prediction id."""

    keeps_offsets = False

    def __init__(self, data_dir: str | os.PathLike[str], *, remember_ids: int = 1_000_000) -> None:
        self.sink = ParquetSink(data_dir)
        self.recent = RecentIds(remember_ids)

    def open(self, consumer: Any = None, *, topic: str = "", group: str = "") -> None:
        """Upload the files a dead consumer staged for an object store, so that their
        ids are remembered too, then remember the newest published ids. A store that
        is down stops the start here."""
        del consumer, topic, group  # the group keeps the offsets: nothing to ask of it
        self.sink.flush()  # opens the sink: dead writers' staged files are adopted
        self.recent.remember_published(self.sink)

    async def continues_at(self, partitions: list[int]) -> dict[int, int]:
        """None of its own: every partition continues at the group's offset."""
        del partitions
        return {}

    def revoked(self, partitions: list[int]) -> None:
        """Nothing to forget: the ids remembered stay true whoever reads next."""

    async def store(self, batch: Batch, stats: ConsumerStats) -> bool:
        """Write and publish the batch (in a worker thread); never refused."""
        await asyncio.to_thread(self.write, batch, stats)
        return True

    def write(self, batch: Batch, stats: ConsumerStats) -> None:
        """Decode the batch, drop the ids already written, and publish the rest before
        the loop commits the offsets."""
        decoded = batch.decode(stats)
        if decoded is None:
            return
        fresh = self.recent.unseen(decoded)
        stats.duplicates += decoded.num_rows - fresh.num_rows
        if fresh.num_rows:
            self.sink.export(fresh)
        before, started = self.sink.published_count, time.perf_counter()
        self.sink.flush()
        stats.commit_ms.append((time.perf_counter() - started) * 1000)
        stats.files += self.sink.published_count - before
        stats.written += fresh.num_rows

    def close(self) -> None:
        self.sink.close()
