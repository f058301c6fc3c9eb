"""``predlog sink``: the one consumer loop, from the Kafka topic into a destination.

The loop polls the topic, gathers a :class:`Batch` until it is due (``max_batch``
records, or ``max_wait_s`` since the last), and hands it to a :class:`Destination`,
which makes it durable. There are two: the Parquet layout
(:class:`~predlog.tools.sink.ParquetDestination`: at least once, the offsets in the
consumer group, duplicates dropped by prediction id) and an Iceberg table
(:class:`~predlog.tools.sink.TableDestination`: exactly once, the offsets in the
table's own commits). What they share is here, once:

* one batch is in the destination's hands while the next is polled, so fetching and
  unpacking overlap with writing; a batch is handed over only after the one before
  it is committed, so commits stay in offset order;
* the group's offsets of a batch are committed only after the destination made it
  durable: a crash between the two reads the batch again, never loses it;
* when the assignment changes (a rebalance), or the destination refuses a batch
  (another consumer committed that range first), what is in hand is dropped and
  every partition goes back to where the destination continues: its own offsets if
  it keeps them, else the group's.

Nothing here blocks the event loop on a write: destinations do theirs in a worker
thread. aiokafka is imported only when a consumer starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import pyarrow as pa

from predlog._settings import read
from predlog.sinks import kafka

_log = logging.getLogger("predlog.sink")


@dataclass
class ConsumerStats:
    """What one run of ``predlog sink`` consumed, wrote and committed, either destination."""

    consumed: int = 0
    written: int = 0
    #: Records dropped as already written (the Parquet layout's prediction-id memory).
    duplicates: int = 0
    undecodable: int = 0
    files: int = 0
    #: Batches committed where the consumer resumes from: the table, else the group.
    commits: int = 0
    #: Batches dropped because another consumer had committed their range (the table).
    refused: int = 0
    #: Records the broker deleted (retention) before they were consumed (the table).
    lost_to_retention: int = 0
    #: Table commits refused by the catalog because another commit landed first.
    conflicts: int = 0
    #: Per batch, milliseconds from written to visible: the table commit, or publishing.
    commit_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0


#: Called after each commit with the running totals and the lag in messages (``None``
#: when the broker has not said yet); it runs on the consumer's event loop.
OnCommit: TypeAlias = Callable[[ConsumerStats, int | None], None]


class Batch:
    """The messages of one batch, per partition: their values and offset range."""

    def __init__(self, *, native: bool = True) -> None:
        self.values: list[bytes] = []
        #: Decode with the extension where it takes the values (``native_decode``).
        self.native = native
        #: Per partition, the first offset in the batch and the one after its last.
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

    def decode(self, stats: ConsumerStats) -> pa.RecordBatch | None:
        """The records of the values that decode; the others are counted undecodable.
        One bad message must not stop the topic: a batch that fails whole is decoded
        one message at a time."""
        try:
            return kafka.decode(self.values, native=self.native)
        except Exception:  # noqa: BLE001  # one bad message must not stop the topic
            good: list[bytes] = []
            for value in self.values:
                try:
                    kafka.decode([value], native=False)
                except Exception:  # noqa: BLE001
                    stats.undecodable += 1
                else:
                    good.append(value)
            return kafka.decode(good, native=self.native) if good else None


class Destination(Protocol):
    """Where the loop's batches go, and where their offsets are kept.

    The loop calls ``open`` once, before its consumer joins the group; ``store`` for
    one batch at a time; ``continues_at`` and ``revoked`` around rebalances (never
    while a ``store`` runs); ``close`` once at the end, whatever happened.
    """

    #: True: the offsets are committed with the data (exactly once), and the group's
    #: copy is for lag monitoring only. False: the group's offsets are the only record,
    #: committed after each ``store`` (at least once).
    keeps_offsets: bool

    def open(self, consumer: Any, *, topic: str, group: str) -> None:
        """Start-up I/O, once; ``consumer`` (not started yet) may be asked for offsets
        later. An error here stops the start."""

    async def continues_at(self, partitions: list[int]) -> dict[int, int]:
        """Per partition, the next offset this destination holds as its own; one left
        out continues at the group's committed offset (else the beginning)."""

    def revoked(self, partitions: list[int]) -> None:
        """Forget partitions this consumer no longer reads."""

    async def store(self, batch: Batch, stats: ConsumerStats) -> bool:
        """Decode and write the batch and make it durable (its blocking work in a worker
        thread); False if refused, and then the loop reads again from ``continues_at``."""

    def close(self) -> None:
        """Release what ``open`` took. Safe after a failed ``open``."""


def lag(consumer: Any, topic: str, committed: dict[int, int]) -> int | None:
    """Messages past the committed offsets in the assigned partitions, from the
    high-water marks of the last fetches (no request to the broker); ``None`` if the
    broker has not reported any."""
    from aiokafka.structs import TopicPartition  # noqa: PLC0415  # optional dependency

    total, known = 0, False
    assigned = consumer.assignment()
    for partition, offset in committed.items():
        tp = TopicPartition(topic, partition)
        highwater = consumer.highwater(tp) if tp in assigned else None
        if highwater is not None:
            total += max(highwater - offset, 0)
            known = True
    return total if known else None


class ConsumerLoop:
    """One consumer process: its consumer, its destination and the state between them."""

    def __init__(
        self,
        consumer: Any,
        destination: Destination,
        *,
        topic: str,
        on_commit: OnCommit | None = None,
        pause_before_commit_s: float = 0.0,
        native_decode: bool = True,
    ) -> None:
        self.consumer = consumer
        self.native_decode = native_decode
        self.destination = destination
        self.topic = topic
        self.stats = ConsumerStats()
        self.on_commit = on_commit
        #: Seconds between a batch made durable and the group's commit of its offsets (0
        #: outside tests): the window a crash test kills in.
        self.pause_before_commit_s = pause_before_commit_s
        #: Per partition, the offset the group holds (what the lag is measured from).
        self.committed: dict[int, int] = {}
        #: Set when the positions moved (a rebalance, or a refused batch): what was
        #: polled since does not follow what was committed, and is dropped.
        self.moved = False
        #: Held while a batch is stored: a rebalance waits rather than seek under it.
        self.busy = asyncio.Lock()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """Seek every newly assigned partition to where the destination continues."""
        async with self.busy:
            await self.resync(assigned)
        self.moved = True

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Forget revoked partitions: what is in hand of them is dropped by the loop.

        A batch being stored ends first (the group waits for every member's revocation
        before it assigns anything): its commit lands before the next owner reads where
        the partitions continue, and the destination forgets them after that commit has
        recorded where they end, never before (a table that remembered an end it no
        longer owns would write it over the next owner's in its later commits)."""
        async with self.busy:
            self.destination.revoked([tp.partition for tp in revoked if tp.topic == self.topic])
        self.moved = True

    async def resync(self, partitions: Any = None) -> None:
        """Seek each partition (all assigned by default) to where the destination
        continues, else the group's committed offset, else the beginning. Whatever
        was read past that and not committed is read again."""
        tps = [
            tp
            for tp in (self.consumer.assignment() if partitions is None else partitions)
            if tp.topic == self.topic
        ]
        stored = await self.destination.continues_at([tp.partition for tp in tps])
        for tp in tps:
            offset = stored.get(tp.partition)
            if offset is None:
                offset = await self.consumer.committed(tp)
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)

    async def deliver(self, batch: Batch) -> None:
        """Store the batch, then commit its offsets to the group and report."""
        self.stats.consumed += len(batch.values)
        async with self.busy:
            if not await self.destination.store(batch, self.stats):
                await self.resync()
                # What was polled meanwhile follows this batch, not the destination's
                # end: it is dropped, and read again from there.
                self.moved = True
                return
        if self.pause_before_commit_s:
            await asyncio.sleep(self.pause_before_commit_s)
        if await self.commit_group(batch) or self.destination.keeps_offsets:
            self.stats.commits += 1
        if self.on_commit is not None:
            self.on_commit(self.stats, lag(self.consumer, self.topic, self.committed))

    async def commit_group(self, batch: Batch) -> bool:
        """Commit the batch's offsets to the group; whether it took them. A refusal
        (a rebalance took the partitions) is logged: the batch is durable, and whoever
        reads the partitions next reads it again from the previous commit."""
        from aiokafka.structs import OffsetAndMetadata, TopicPartition  # noqa: PLC0415

        offsets = {
            TopicPartition(self.topic, p): OffsetAndMetadata(end, "")
            for p, end in batch.end.items()
        }
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001  # a durable batch is never undone
            _log.warning("offsets %s not committed to the group: %s", batch.end, exc)
            return False
        self.committed.update(batch.end)
        return True

    def take_moved(self) -> bool:
        """Whether the positions moved since last asked; asking clears it."""
        moved, self.moved = self.moved, False
        return moved

    async def run(
        self, *, max_batch: int, max_wait_s: float, exit_when_idle_s: float | None, stop: Any
    ) -> None:
        """Poll and deliver until ``stop`` is set, or the topic is idle that long: no
        message for ``exit_when_idle_s`` since the last one or the last assignment. A
        consumer still joining is not idle: after a crash the group waits out the dead
        member's session before it assigns anything."""
        batch = Batch(native=self.native_decode)
        started = time.monotonic()
        last_message: float | None = None
        writing: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                polled = await self.consumer.getmany(timeout_ms=500, max_records=10_000)
                if self.take_moved():
                    # What is in hand is dropped, and every partition goes back to
                    # where the destination continues (the positions moved past it).
                    await _finish(writing)
                    writing, batch, self.moved = None, Batch(native=self.native_decode), False
                    async with self.busy:
                        await self.resync()
                    started = last_message = time.monotonic()
                    continue
                now = time.monotonic()
                for tp, messages in polled.items():
                    batch.add(tp.partition, messages)
                if polled:
                    last_message = now
                due = batch and (len(batch.values) >= max_batch or now - started >= max_wait_s)
                idle = (
                    exit_when_idle_s is not None
                    and last_message is not None
                    and now - last_message >= exit_when_idle_s
                )
                if due or (batch and idle):
                    await _finish(writing)
                    if self.moved:
                        continue  # the batch before was refused: read again from its start
                    writing = asyncio.create_task(self.deliver(batch))
                    batch, started = Batch(native=self.native_decode), now
                if idle and not batch:
                    break
            await _finish(writing)
            writing = None
            if batch and not self.moved:
                await self.deliver(batch)
        finally:
            if writing is not None:
                # Leaving on an error: the batch in flight still ends (committed or not)
                # before the consumer stops, so no commit outlives the process's intent.
                with contextlib.suppress(Exception):
                    await writing


async def _finish(writing: asyncio.Task[None] | None) -> None:
    """Wait for the batch in flight, if any (its errors are the caller's)."""
    if writing is not None:
        await writing


async def consume(
    *,
    destination: Destination,
    bootstrap_servers: str,
    topic: str,
    group_id: str = "predlog-sink",
    max_batch: int = 50_000,
    max_wait_s: float = 5.0,
    exit_when_idle_s: float | None = None,
    stop: asyncio.Event | None = None,
    on_commit: OnCommit | None = None,
    pause_before_commit_s: float = 0.0,
    native_decode: bool | None = None,
) -> ConsumerStats:
    """Consume ``topic`` into ``destination`` until ``stop`` is set (or the topic is
    idle for ``exit_when_idle_s``), then finish the batch in hand.

    ``on_commit`` is told the totals and the lag after every commit.
    ``pause_before_commit_s`` (0 outside tests) holds each batch made durable and its
    group offsets not yet committed for that long: the window a crash test kills in.
    ``native_decode`` (default: the setting, ``PREDLOG_NATIVE_DECODE``) decodes values
    with the extension where it is built.
    """
    if native_decode is None:
        native_decode = read("native_decode")  # a bad value stops here, before consuming
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener  # noqa: PLC0415

    began = time.monotonic()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=10_000,
        max_partition_fetch_bytes=16 << 20,
        fetch_max_bytes=64 << 20,
    )
    loop = ConsumerLoop(
        consumer,
        destination,
        topic=topic,
        on_commit=on_commit,
        pause_before_commit_s=pause_before_commit_s,
        native_decode=native_decode,
    )

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await loop.on_partitions_revoked(revoked)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            await loop.on_partitions_assigned(assigned)

    try:
        destination.open(consumer, topic=topic, group=group_id)
        await consumer.start()
        try:
            consumer.subscribe([topic], listener=Listener())
            await loop.run(
                max_batch=max_batch,
                max_wait_s=max_wait_s,
                exit_when_idle_s=exit_when_idle_s,
                stop=stop or asyncio.Event(),
            )
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
    finally:
        destination.close()
    loop.stats.seconds = time.monotonic() - began
    return loop.stats


def consume_until_signalled(options: dict[str, Any]) -> ConsumerStats:
    """Run :func:`consume` with ``options`` until SIGTERM/SIGINT sets its ``stop``
    event; it then finishes the batch in hand, and its totals are returned."""

    async def main() -> ConsumerStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await consume(stop=stop, **options)

    return asyncio.run(main())
