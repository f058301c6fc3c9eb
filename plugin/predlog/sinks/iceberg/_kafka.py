"""``predlog sink --table``: the Kafka topic into an Iceberg table, exactly once.

The consumed offsets go into the same Iceberg commit as the data files they produced,
as snapshot summary properties (``predlog.kafka.offsets.<topic>.<group>`` = JSON of
partition -> next offset), as Iceberg's Kafka Connect sink does. A commit either lands
with both or with neither, so on every start and every partition assignment the
consumer seeks to the offsets in the table (snapshots newest first; per partition the
newest value wins) and resumes exactly after the last record the table holds. The
group's committed offsets are the fallback for a partition the table has never seen,
and are committed too, after the table, for lag monitoring only.

A commit goes ahead only if, for every partition in it, the table's offset is still
the one this batch started from. Anything else means another consumer (after a
rebalance, or a zombie) committed that range first: the batch is dropped and the
partitions re-sought. After a refused or unknown commit, offsets in the table at or
past this batch's end mean this batch's own commit landed.

Data files of a batch that was never committed (the process was killed between
writing them and committing) are referenced by no snapshot: no reader sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from predlog.sinks.iceberg._catalog import open_table
from predlog.sinks.iceberg._commit import (
    COMMITTER_KEY,
    CommitStats,
    Refused,
    ancestors,
    commit_with_retry,
    no_blind_retry,
    summary_value,
)
from predlog.sinks.iceberg._files import FileWriter, split, writer_tag
from predlog.sinks.kafka import _wire
from predlog.sinks.kafka._consumer import until_signalled

if TYPE_CHECKING:
    from pyiceberg.table import Table

OFFSETS_PREFIX: Final = "predlog.kafka.offsets"
_log = logging.getLogger("predlog.iceberg.kafka")


def offsets_key(topic: str, group: str) -> str:
    """The snapshot summary key of a topic's offsets for one consumer group."""
    return f"{OFFSETS_PREFIX}.{topic}.{group}"


def table_offsets(table: Table, topic: str, group: str) -> dict[int, int]:
    """Next offset per partition stored in the table (per partition, newest wins)."""
    key = offsets_key(topic, group)
    found: dict[int, int] = {}
    for snapshot in ancestors(table):
        value = summary_value(snapshot, key)
        if value:
            for partition, offset in json.loads(value).items():
                found.setdefault(int(partition), int(offset))
    return found


@dataclass
class IcebergConsumerStats:
    """What one run consumed, wrote and committed."""

    consumed: int = 0
    written: int = 0
    undecodable: int = 0
    files: int = 0
    commits: int = 0
    #: Batches dropped because another consumer had committed their range.
    refused: int = 0
    #: Records the broker deleted (retention) before they were consumed.
    lost_to_retention: int = 0
    conflicts: int = 0
    commit_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0


class _Batch:
    """Messages of one batch, per partition: values and the offset range."""

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.first: dict[int, int] = {}
        self.end: dict[int, int] = {}

    def add(self, partition: int, messages: list[Any]) -> None:
        if not messages:
            return
        self.first.setdefault(partition, messages[0].offset)
        self.end[partition] = messages[-1].offset + 1
        self.values.extend(m.value for m in messages if m.value is not None)

    def __bool__(self) -> bool:
        return bool(self.end)


def _decode(values: list[bytes], stats: IcebergConsumerStats) -> pa.RecordBatch | None:
    """The batch of the values that decode; the others are counted and skipped."""
    try:
        return _wire.decode(values)
    except Exception:  # noqa: BLE001  # one bad message must not stop the topic
        good: list[bytes] = []
        for value in values:
            try:
                _wire.decode([value])
            except Exception:  # noqa: BLE001
                stats.undecodable += 1
            else:
                good.append(value)
        return _wire.decode(good) if good else None


class TableConsumer:
    """Consumes one topic into one table; the state of one consumer process."""

    def __init__(self, consumer: Any, table: Table, topic: str, group: str) -> None:
        self.consumer = consumer
        self.table = table
        self.topic = topic
        self.group = group
        self.writer = FileWriter(table)
        self.stats = IcebergConsumerStats()
        self.commit_stats = CommitStats()
        #: Per assigned partition, the table's offset this consumer continues from
        #: (None: the table holds none for it).
        self.base: dict[int, int | None] = {}
        self.reassigned = False
        #: Seconds between the table's commit and the group's (0 outside tests): the
        #: window in which a crash test's kill leaves the group behind the table.
        self.pause_after_commit_s = 0.0
        #: Partitions whose next batch may start past the table's end, (end, start),
        #: because the broker deleted the records in between.
        self.gaps: dict[int, tuple[int, int]] = {}
        #: Held while a batch is written and committed in a worker thread: a rebalance
        #: waits for it rather than refresh the table under it.
        self.busy = asyncio.Lock()

    async def write_commit_group(self, batch: _Batch) -> None:
        """Write and commit the batch off the event loop, then the group's offsets."""
        async with self.busy:
            await self._accept_retention_gaps(batch)
            done = await asyncio.to_thread(self.write_and_commit, batch)
            if not done:
                await self.resync()
                # What the caller polled meanwhile follows this batch, not the table's
                # end: it is dropped, and read again from there.
                self.reassigned = True
        if done:
            if self.pause_after_commit_s:
                await asyncio.sleep(self.pause_after_commit_s)
            await self.commit_group(batch)

    async def _accept_retention_gaps(self, batch: _Batch) -> None:
        """A batch that starts past the table's end, because the broker deleted the
        records in between (retention ran before they were consumed), goes ahead: those
        records are gone for every reader. They are counted and logged, never silent."""
        from aiokafka.structs import TopicPartition  # noqa: PLC0415  # optional dependency

        gaps = [p for p, first in batch.first.items() if (self.base.get(p) or first) < first]
        if not gaps:
            return
        tps = [TopicPartition(self.topic, p) for p in gaps]
        starts = await self.consumer.beginning_offsets(tps)
        for tp in tps:
            base = self.base.get(tp.partition)
            if base is not None and starts[tp] > base and batch.first[tp.partition] <= starts[tp]:
                self.stats.lost_to_retention += starts[tp] - base
                _log.error(
                    "partition %d: records %d to %d were deleted by the broker before "
                    "they were consumed",
                    tp.partition,
                    base,
                    starts[tp] - 1,
                )
                self.gaps[tp.partition] = (base, batch.first[tp.partition])

    def take_reassigned(self) -> bool:
        """Whether the positions moved (a rebalance, or a batch the table refused) since
        last asked; asking clears it."""
        moved, self.reassigned = self.reassigned, False
        return moved

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """Seek every assigned partition to the table's offset for it."""
        async with self.busy:
            await self.resync(assigned)
        self.reassigned = True

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Forget revoked partitions: their uncommitted batch is dropped by the caller."""
        for tp in revoked:
            self.base.pop(tp.partition, None)
        self.reassigned = True

    async def resync(self, partitions: Any = None) -> None:
        """Seek each partition (all assigned by default) to where the table says it
        continues: the table's offset, else the group's committed offset, else the
        beginning. Whatever was read past that and not committed is read again."""
        await asyncio.to_thread(self.table.refresh)
        stored = table_offsets(self.table, self.topic, self.group)
        for tp in self.consumer.assignment() if partitions is None else partitions:
            if tp.topic != self.topic:
                continue
            offset = stored.get(tp.partition)
            self.base[tp.partition] = offset
            if offset is None:
                offset = await self.consumer.committed(tp)
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)

    def write_and_commit(self, batch: _Batch) -> bool:
        """Write the batch's data files and commit them with its offsets; whether the
        batch is now in the table (False: refused; the caller re-seeks)."""
        self.stats.consumed += len(batch.values)
        if any(
            self.base.get(p) not in (None, first) and self.gaps.get(p) != (self.base.get(p), first)
            for p, first in batch.first.items()
        ):
            # Not where the table ends: records were read and dropped in between (a
            # rebalance); committing these offsets would skip them.
            self.stats.refused += 1
            _log.warning(
                "batch dropped: starts at %s, the table ends at %s", batch.first, self.base
            )
            return False
        decoded = _decode(batch.values, self.stats)
        files = []
        if decoded is not None and decoded.num_rows:
            for (day, model), part in split(decoded).items():
                files.append(self.writer.write(day, model, part))
        key = offsets_key(self.topic, self.group)
        expected = {p: self.base.get(p) for p in batch.end}
        offsets = {p: o for p, o in self.base.items() if o is not None} | batch.end
        landed = False

        def prepare(table: Table) -> tuple[list[str], dict[str, str]]:
            nonlocal landed
            now = table_offsets(table, self.topic, self.group)
            if all(now.get(p, -1) >= end for p, end in batch.end.items()):
                landed = True  # our own earlier attempt landed after all
                return [], {}
            if any(now.get(p) != expected[p] for p in batch.end):
                raise Refused(f"offsets moved: table {now}, batch from {expected}")
            properties = {
                key: json.dumps({str(p): o for p, o in sorted(offsets.items())}),
                COMMITTER_KEY: writer_tag(),
            }
            if not files:
                # Nothing decodable: the offsets still move, with an empty append.
                return [], properties
            return [f.location for f in files], properties

        started = time.perf_counter()
        try:
            if files:
                made = commit_with_retry(self.table, prepare, stats=self.commit_stats)
            else:
                made = self._commit_offsets_only(prepare)
        except Refused as exc:
            self.stats.refused += 1
            _log.warning("batch dropped: %s", exc)
            return False
        self.stats.conflicts = self.commit_stats.conflicts
        if made or landed:
            self.stats.commit_ms.append((time.perf_counter() - started) * 1000)
            self.stats.commits += 1 if made else 0
            self.stats.files += len(files) if made else 0
            self.stats.written += decoded.num_rows if (made and decoded is not None) else 0
            for p, end in batch.end.items():
                self.base[p] = end
                self.gaps.pop(p, None)
            return True
        return False

    def _commit_offsets_only(self, prepare: Any) -> bool:
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

    async def commit_group(self, batch: _Batch) -> None:
        """The group's offsets, after the table's: for lag monitoring, never for resuming
        ahead of the table."""
        from aiokafka.structs import OffsetAndMetadata, TopicPartition  # noqa: PLC0415

        offsets = {
            TopicPartition(self.topic, p): OffsetAndMetadata(end, "")
            for p, end in batch.end.items()
        }
        with contextlib.suppress(Exception):
            await self.consumer.commit(offsets)


async def consume(  # noqa: PLR0915  # one loop whose ordering rules read best together
    *,
    bootstrap_servers: str,
    topic: str,
    table: str,
    data_dir: str | Path,
    group_id: str = "predlog-sink",
    max_batch: int = 50_000,
    max_wait_s: float = 5.0,
    exit_when_idle_s: float | None = None,
    stop: asyncio.Event | None = None,
    pause_after_commit_s: float = 0.0,
) -> IcebergConsumerStats:
    """Consume until ``stop`` is set (or the topic is idle for ``exit_when_idle_s``).

    ``pause_after_commit_s`` (0 outside tests) holds each table commit's group commit
    back that long: the window in which a crash test kills.
    """
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener  # noqa: PLC0415

    stop = stop or asyncio.Event()
    iceberg_table = open_table(table, data_dir=data_dir)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=10_000,
        max_partition_fetch_bytes=16 << 20,
        fetch_max_bytes=64 << 20,
    )
    state = TableConsumer(consumer, iceberg_table, topic, group_id)
    state.pause_after_commit_s = pause_after_commit_s

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await state.on_partitions_revoked(revoked)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            await state.on_partitions_assigned(assigned)

    await consumer.start()
    consumer.subscribe([topic], listener=Listener())
    began = time.monotonic()
    batch = _Batch()
    started = last_message = time.monotonic()
    # The batch before this one, being written and committed while this one is polled:
    # fetching and unpacking overlap with encoding Parquet and the commit's round trips.
    # One at a time, in order: a batch starts its commit only after the one before it
    # landed, so each commit still starts where the table ends.
    writing: asyncio.Task[None] | None = None
    try:
        while not stop.is_set():
            polled = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if state.take_reassigned():
                # The assignment changed: what is in hand is dropped, and every partition
                # goes back to where the table ends (the positions moved past it).
                await _finish(writing)
                writing = None
                state.reassigned = False
                batch = _Batch()
                async with state.busy:
                    await state.resync()
                continue
            now = time.monotonic()
            for tp, messages in polled.items():
                batch.add(tp.partition, messages)
            if polled:
                last_message = now
            due = batch and (len(batch.values) >= max_batch or now - started >= max_wait_s)
            idle = exit_when_idle_s is not None and now - last_message >= exit_when_idle_s
            if due or (batch and idle):
                await _finish(writing)
                if state.reassigned:
                    continue  # the commit before found the table moved: re-read from it
                writing = asyncio.create_task(state.write_commit_group(batch))
                batch = _Batch()
                started = now
            if idle and not batch:
                break
        await _finish(writing)
        writing = None
        if batch and not state.reassigned:
            await state.write_commit_group(batch)
    finally:
        if writing is not None:
            # Leaving on an error: the batch in flight still ends (committed or not)
            # before the consumer stops, so no commit outlives the process's intent.
            with contextlib.suppress(Exception):
                await writing
        with contextlib.suppress(Exception):
            await consumer.stop()
    state.stats.seconds = time.monotonic() - began
    return state.stats


async def _finish(writing: asyncio.Task[None] | None) -> None:
    """Wait for the batch in flight, if any (its errors are the caller's)."""
    if writing is not None:
        await writing


def run(options: dict[str, Any]) -> IcebergConsumerStats:
    """Run :func:`consume` until SIGTERM/SIGINT, then finish the batch in hand."""
    return until_signalled(consume, options)
