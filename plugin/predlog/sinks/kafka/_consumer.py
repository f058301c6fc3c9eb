"""``predlog sink``: a consumer group that turns the Kafka topic into the Parquet layout.

It writes exactly what :class:`~predlog.ParquetSink` writes, under the same
``<data>/predictions/date=.../`` layout, so every tool works on either. Offsets
are committed only after the Parquet file holding those records is published:
a crash between the two re-reads the records (at least once), never loses them.
Duplicates (a redelivery, or a record the producer's spool sent twice) are dropped
by ``prediction_id`` within a bounded memory of recent ids, which a restart fills from
the newest published files first: the records of a file published just before a
crash, whose offsets were never committed, come back and are dropped, not published
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from predlog.flush._ids import ids_as_text
from predlog.sinks._parquet import ParquetSink
from predlog.sinks.kafka import _wire

StatsT = TypeVar("StatsT")


@dataclass
class ConsumerStats:
    consumed: int = 0
    written: int = 0
    duplicates: int = 0
    undecodable: int = 0
    files: int = 0
    commits: int = 0


#: Called after each offset commit with the running totals and the lag in messages
#: (``None`` when the broker has not said yet); it runs on the consumer's loop.
OnCommit: TypeAlias = Callable[[ConsumerStats, int | None], None]


class _RecentIds:
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


async def consume(
    *,
    bootstrap_servers: str,
    topic: str,
    data_dir: str | Path,
    group_id: str = "predlog-sink",
    max_batch: int = 50_000,
    max_wait_s: float = 5.0,
    exit_when_idle_s: float | None = None,
    remember_ids: int = 1_000_000,
    stop: asyncio.Event | None = None,
    on_commit: OnCommit | None = None,
    pause_before_commit_s: float = 0.0,
) -> ConsumerStats:
    """Consume until ``stop`` is set (or the topic is idle for ``exit_when_idle_s``).

    ``on_commit`` is told the totals and the lag after every offset commit.
    ``pause_before_commit_s`` (0 outside tests) holds each file published and its
    offsets not yet committed for that long: the window a crash test kills in.
    """
    from aiokafka import AIOKafkaConsumer  # noqa: PLC0415  # optional dependency

    stop = stop or asyncio.Event()
    stats = ConsumerStats()
    sink = ParquetSink(data_dir)
    recent = _RecentIds(remember_ids)
    # Files a dead consumer staged for an object store are uploaded first, so that
    # their ids are remembered too (a store that is down stops the start here).
    sink.flush()
    recent.remember_published(sink)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=10_000,
    )
    await consumer.start()
    pending: list[bytes] = []
    positions: dict[Any, int] = {}
    started = time.monotonic()
    last_message = time.monotonic()
    try:
        while not stop.is_set():
            polled = await consumer.getmany(timeout_ms=500, max_records=10_000)
            now = time.monotonic()
            for tp, messages in polled.items():
                pending.extend(m.value for m in messages if m.value is not None)
                if messages:
                    positions[tp] = messages[-1].offset + 1
            if polled:
                last_message = now
            due = pending and (len(pending) >= max_batch or now - started >= max_wait_s)
            idle = exit_when_idle_s is not None and now - last_message >= exit_when_idle_s
            if due or (pending and idle):
                _write(pending, sink, recent, stats)
                if pause_before_commit_s:
                    await asyncio.sleep(pause_before_commit_s)
                await _commit(consumer, stats, positions, on_commit)
                pending = []
                started = now
            if idle and not pending:
                break
        if pending:
            _write(pending, sink, recent, stats)
            await _commit(consumer, stats, positions, on_commit)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        sink.close()
    return stats


async def _commit(
    consumer: Any, stats: ConsumerStats, positions: dict[Any, int], on_commit: OnCommit | None
) -> None:
    """Commit the offsets consumed so far, then tell ``on_commit``."""
    await consumer.commit()
    stats.commits += 1
    if on_commit is not None:
        on_commit(stats, _lag(consumer, positions))


def _lag(consumer: Any, positions: dict[Any, int]) -> int | None:
    """Messages past our position in the assigned partitions we have read, from the
    high-water marks of the last fetches (no request to the broker)."""
    lag, known = 0, False
    assigned = consumer.assignment()
    for tp, position in positions.items():
        highwater = consumer.highwater(tp) if tp in assigned else None
        if highwater is not None:
            lag += max(highwater - position, 0)
            known = True
    return lag if known else None


def _write(
    values: list[bytes], sink: ParquetSink, recent: _RecentIds, stats: ConsumerStats
) -> None:
    stats.consumed += len(values)
    try:
        batch = _wire.decode(values)
    except Exception:  # noqa: BLE001  # one bad message must not stop the topic
        good: list[bytes] = []
        for value in values:
            try:
                _wire.decode([value])
            except Exception:  # noqa: BLE001
                stats.undecodable += 1
            else:
                good.append(value)
        if not good:
            return
        batch = _wire.decode(good)
    fresh = recent.unseen(batch)
    stats.duplicates += batch.num_rows - fresh.num_rows
    if fresh.num_rows:
        sink.export(fresh)
    before = sink.published_count
    sink.flush()  # publish before the caller commits the offsets
    stats.files += sink.published_count - before
    stats.written += fresh.num_rows


def until_signalled(consume: Callable[..., Awaitable[StatsT]], options: dict[str, Any]) -> StatsT:
    """Run a consumer coroutine until SIGTERM/SIGINT sets its ``stop`` event; it then
    finishes the batch in hand, and its totals are returned."""

    async def main() -> StatsT:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await consume(stop=stop, **options)

    return asyncio.run(main())


def run(argv_options: dict[str, Any]) -> ConsumerStats:
    """Run :func:`consume` until SIGTERM/SIGINT, then finish the batch in hand."""
    return until_signalled(consume, argv_options)
