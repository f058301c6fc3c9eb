"""KafkaSink: prediction records to a Kafka topic, with a disk spool for broker outages.

The producer is aiokafka's, idempotent with ``acks=all``; each record is one message
keyed by its request id and stamped with the prediction's time (see
:mod:`predlog.sinks.kafka._wire` for the format). Messages are
appended to aiokafka batches per partition, chosen as the Java client would
(:mod:`predlog.sinks.kafka._murmur2`), so Kafka batches them while each record keeps its own key.

aiokafka with idempotence retries forever, so this sink sets its own deadline:
when a batch is not acknowledged within ``delivery_timeout_s``, its records go to
the spool (:class:`predlog.storage.Spool`, each with its timestamp and headers:
:mod:`predlog.sinks.kafka._spooled`), the producer is dropped, and from then on new
records go to the spool too, to keep their order, until the replayer has
replayed the spool to a broker that answers again. A record that timed out may
still have reached the broker; the spool then sends it a second time. Delivery is
at least once, and consumers drop duplicates by ``prediction_id`` (as
``predlog sink`` does).

One background task, the replayer, owns the spool's segments, as aiokafka's sender
owns its batches: it alone reads, sends and removes them, so no segment is ever
sent twice by two passes racing each other. Everything else asks it: ``flush()``
requests a pass and waits for it, ``close()`` asks for a last pass and waits for
the replayer to stop. Every failure it meets is counted (``replay_errors``) and told
through the sink's :class:`~predlog._report.ErrorReporter`; none is dropped silently.

Spools outlive their processes. Each sink holds an exclusive ``flock`` on its own
spool directory (``<data_dir>/spool/<pid>`` by default) for its lifetime; the kernel
releases it when the process ends, however it ends. The replayer adopts every
spool directory beside its own whose lock it can take (a process that died or
restarted, a sink that closed with records left) and replays it, oldest first and
each in its own order, before its own, then removes it. A directory whose owner
lives is locked, so two processes never replay the same one.

Lifecycle: the constructor only checks its arguments; it makes no directory and
starts no thread. ``open()`` (called by the logger before its flusher starts, or by
the first ``export()`` or ``flush()`` of a sink used on its own: a first flush is how
a process replays what a dead one spooled) claims the spool directory and starts the
loop and the replayer, once. A spool that cannot be claimed is a
:class:`~predlog.ConfigError` naming ``spool_dir``, which refuses the start; the
broker is not asked until the first send, so a broker that is down never does.
``close()`` is safe twice, and does nothing to a sink never opened. An open sink is
kept alive by its own loop thread until ``close()``, so it is never collected
unclosed (and has no ResourceWarning to give): close it.

After ``fork()`` the child's flusher calls :meth:`KafkaSink.after_fork_in_child`
(a sink used across a fork without a logger must call it in the child itself): the
child gets a new loop thread, a new producer and its own spool directory beside the
parent's (``spool/<child pid>``); the parent's loop, producer, spool and lock are
never touched there.

The sink runs its own event loop on its own thread (:mod:`predlog.sinks.kafka._loop`),
where OpenTelemetry instrumentation is suppressed: the flusher calls it
synchronously, and nothing here touches the request path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from predlog._report import ErrorReporter
from predlog._settings import check_argument
from predlog.errors import ConfigError, SinkError
from predlog.sinks.kafka import _murmur2, _spooled, _wire
from predlog.sinks.kafka._loop import LoopThread
from predlog.sinks.kafka._trim import release_free_memory
from predlog.storage import Spool, SpoolFullError, SpoolLockedError, adoptable, claim

_START_TIMEOUT_S: Final = 5.0
#: How long close() lets the producer stop: with idempotence, stop() may wait forever.
_STOP_TIMEOUT_S: Final = 2.0
#: What close() allows beyond the last pass and the producer's stop (ending leftovers).
_CLOSE_SLACK_S: Final = 3.0
_THREAD_NAME: Final = "predlog-kafka"
#: Records encoded and written at a time while spooling: a slice's messages are about
#: half a megabyte, where a whole batch's (8,192 records) were 7 MiB.
_SPOOL_SLICE: Final = 512
#: Loops and producers inherited across fork: the parent's, kept referenced in the
#: child so that nothing there ever closes or stops them.
_INHERITED: list[Any] = []


class KafkaSink:
    """Sends record batches to ``topic``; spools to ``spool_dir`` while the broker is away.

    ``spool_dir`` is this sink's own spool; when another live sink holds it, the first
    free ``<spool_dir>-<n>`` beside it is used instead. Spool directories of sinks that
    are gone, beside it, are adopted and replayed (see the module docstring). A bad
    argument raises :class:`~predlog.ConfigError` naming it, checked as the setting it
    stands for (``kafka_spool_max_bytes``...) is. ``close()`` takes about
    ``delivery_timeout_s`` + 2 s at worst.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        spool_dir: str | Path,
        spool_max_bytes: int = 1 << 30,
        delivery_timeout_s: float = 10.0,
        retry_interval_s: float = 2.0,
        compression_type: str | None = "zstd",
        linger_ms: int = 5,
        max_batch_size: int = 1 << 20,
        client_id: str = "predlog",
        reporter: ErrorReporter | None = None,
    ) -> None:
        _check_options(
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            spool_max_bytes=spool_max_bytes,
            delivery_timeout_s=delivery_timeout_s,
            retry_interval_s=retry_interval_s,
        )
        self.topic = topic
        self._bootstrap = bootstrap_servers
        self._producer_options: dict[str, Any] = {
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": compression_type,
            "linger_ms": linger_ms,
            "max_batch_size": max_batch_size,
            "request_timeout_ms": int(delivery_timeout_s * 1000),
        }
        self._delivery_timeout_s = delivery_timeout_s
        self._retry_interval_s = retry_interval_s
        self._spool_max_bytes = spool_max_bytes
        #: Where background failures (replay, spool clean-up) are counted and told.
        self.reporter = reporter if reporter is not None else ErrorReporter()
        self._spool_dir = Path(spool_dir)
        self._spool: Spool | None = None
        self._adopted: list[Spool] = []
        self._reset_counters()
        self._producer: Any = None
        self._closed = False

    def open(self) -> None:
        """Claim the spool directory and start the loop and its replayer, once (a closed
        sink stays closed). Raises :class:`~predlog.ConfigError` naming ``spool_dir``
        when no spool can be had there; never asks the broker."""
        if self._spool is not None or self._closed:
            return
        try:
            spool = claim(self._spool_dir, max_bytes=self._spool_max_bytes)
        except (SpoolLockedError, OSError) as exc:
            raise ConfigError("spool_dir", f"no Kafka spool can be had there: {exc}") from None
        self._spool = spool
        self._start_loop()

    @property
    def spool(self) -> Spool:
        """This sink's own spool (the sink opens itself to have one)."""
        self.open()
        if self._spool is None:
            raise SinkError("KafkaSink is closed and was never opened")
        return self._spool

    def _reset_counters(self) -> None:
        """Zero the counters: at start, and in a forked child, whose records are its own."""
        #: Records acknowledged by the broker, spooled, replayed from a spool (ours or
        #: an adopted one), and refused because the spool was full; failures met while
        #: replaying; spool directories of gone sinks adopted.
        self.sent = 0
        self.spooled = 0
        self.replayed = 0
        self.refused = 0
        self.replay_errors = 0
        self.adopted = 0

    def _start_loop(self) -> None:
        """A new loop thread and replayer, with the replayer's state fresh."""
        # The replayer's state: touched only on the sink's loop.
        self._stopping = False
        self._waiters: list[concurrent.futures.Future[None]] = []
        self._delivered: set[Path] = set()
        self._adopted = []
        self._loop = LoopThread(_THREAD_NAME)
        self._wake, self._replayer = self._loop.run(self._start_replayer())

    # -- Sink protocol (called from the flusher thread) ---------------------------

    def export(self, batch: pa.RecordBatch) -> None:
        """Send the batch, or spool it while the broker is away (or the spool still holds
        older records, which must reach the topic first)."""
        if self._closed:
            raise SinkError("KafkaSink is closed")
        self.open()
        # Encoded on the sink's thread, not the caller's: each batch's messages then
        # come and go in one thread's allocator arena, and not in two (see _export).
        timeout = self._delivery_timeout_s + _START_TIMEOUT_S + 5
        if self._loop.run(self._export(batch), timeout=timeout):
            release_free_memory()  # what this thread made the batch with (see _export)

    def flush(self) -> None:
        """Ask the replayer for a pass over the spools now and wait for it, bounded.

        Acknowledged records are on the broker and spooled ones on disk, so nothing
        here is needed for durability; the pass only lets a flush after an outage
        drain the spool at once. Replaying here, beside the replayer, would send a
        segment twice, so flush only asks. Raises SinkError if the replayer is gone.
        """
        if self._closed:
            return
        self.open()
        if not (self.spool or self._adopted):
            return
        timeout = self._delivery_timeout_s * 2
        done = self._request_pass()
        try:
            done.result(timeout)
        except concurrent.futures.TimeoutError:
            # The pass goes on in the background; what it has not sent stays on disk.
            self.reporter.report(
                "kafka_flush_timeout",
                f"spool replay still running after {timeout} s; "
                f"{self.spool.size} bytes wait in the spool",
            )

    def close(self) -> None:
        """Give the spools a last replay pass, stop the producer, let the spool go. Safe twice.

        About ``delivery_timeout_s`` + 2 s at worst: the last pass gets at most
        ``delivery_timeout_s``, the producer's stop 2 s, and a hard limit a few seconds
        beyond that ends anything that ignores cancelling. Stopping there loses nothing.
        A segment leaves the disk only once the broker has acknowledged all of it, so
        whatever the last pass did not send is still in the spool, fsynced. Closing
        releases the spool's lock (and the process's end releases it anyway), so the
        next sink beside it, a restarted process or another worker, adopts the
        directory and replays it. A segment cut off part way is sent again whole: at
        least once, and consumers drop duplicates by ``prediction_id``. An empty spool
        directory is removed.
        """
        if self._closed:
            return
        self._closed = True
        if self._spool is None:
            return  # never opened: nothing started, nothing to let go
        budget = self._delivery_timeout_s + _STOP_TIMEOUT_S + _CLOSE_SLACK_S
        try:
            self._loop.run(self._shutdown(), timeout=budget)
        except Exception as exc:  # noqa: BLE001  # close must finish; the failure is told
            self.reporter.report("kafka_close_failed", f"shutdown did not finish: {exc!r}", exc=exc)
        if not self._loop.stop(timeout=_STOP_TIMEOUT_S):
            self.reporter.report("kafka_close_failed", f"{_THREAD_NAME} thread did not stop")

    def stats(self) -> dict[str, int]:
        """Counters for operators; ``replay_errors`` counts every failure the replayer met."""
        adopted = list(self._adopted)
        own = self._spool
        return {
            "sent": self.sent,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "refused": self.refused,
            "replay_errors": self.replay_errors,
            "spool_bytes": 0 if own is None else own.size,
            "spool_corrupt": sum(s.corrupt for s in adopted) + (0 if own is None else own.corrupt),
            "adopted": self.adopted,
            "adopted_bytes": sum(s.size for s in adopted),
        }

    # -- on the sink's loop --------------------------------------------------------

    async def _start_replayer(self) -> tuple[asyncio.Event, asyncio.Task[None]]:
        # The event must be made on the loop that waits on it. Orphans are adopted
        # at once, so that the first flush() already drains them.
        self._adopt_orphans()
        wake = asyncio.Event()
        return wake, asyncio.get_running_loop().create_task(self._replay_forever(wake))

    async def _export(self, batch: pa.RecordBatch) -> bool:
        """Send the batch, or spool it; True when it was spooled.

        While spooling (the broker away, the ring full behind the flusher) memory is
        what matters: the batch is encoded and written in slices of ``_SPOOL_SLICE``
        records, so only one slice's messages and spool entries exist at a time, and
        the freed pages go back to the system after each batch. A batch whose send
        failed is spooled from its messages, already made, in the same slices.
        """
        n = batch.num_rows
        chunks: Iterator[list[tuple[bytes, bytes]]]
        if self.spool:
            chunks = (
                _spooled.pack(_wire.encode(batch.slice(i, _SPOOL_SLICE)))
                for i in range(0, n, _SPOOL_SLICE)
            )
        else:
            entries = _wire.messages(batch)
            try:
                await self._send(entries)
            except Exception as exc:  # noqa: BLE001  # any failure: keep the records on disk
                self.reporter.report("kafka_send_failed", f"spooling {n} records: {exc!r}", exc=exc)
                await self._drop_producer()
            else:
                self.sent += n
                return False
            chunks = (
                _spooled.pack(entries.part(i, i + _SPOOL_SLICE)) for i in range(0, n, _SPOOL_SLICE)
            )
        try:
            self.spool.append_chunks(chunks)
        except SpoolFullError as exc:
            self.refused += n
            raise SinkError(f"Kafka unreachable and {exc}") from exc
        finally:
            release_free_memory()
        self.spooled += n
        return True

    async def _producer_ready(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer  # noqa: PLC0415  # optional dependency

            producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, **self._producer_options)
            try:
                await asyncio.wait_for(producer.start(), _START_TIMEOUT_S)
            except BaseException:
                # The start failure is what the caller reports; a failing stop adds nothing.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 1)
                raise
            self._producer = producer
        return self._producer

    async def _send(self, entries: _wire.Messages | Sequence[_wire.Message]) -> None:
        # One deadline for the whole send: with the broker gone, even the metadata
        # lookup for the topic's partitions waits forever.
        await asyncio.wait_for(self._send_all(entries), self._delivery_timeout_s)

    async def _send_all(self, entries: _wire.Messages | Sequence[_wire.Message]) -> None:
        """Append every message to aiokafka's batch of its partition, send each batch
        as it fills and the rest at the end, and wait until the broker has them all."""
        producer = await self._producer_ready()
        partitions = sorted(await producer.partitions_for(self.topic))
        if isinstance(entries, _wire.Messages):
            keys, each = entries.keys, entries.each()
        else:
            keys, each = [entry[0] for entry in entries], iter(entries)
        chosen = _murmur2.partitions(keys, len(partitions)).tolist()
        batches: dict[int, Any] = {}
        pending: list[Any] = []
        for (key, value, stamp, headers), index in zip(each, chosen, strict=True):
            partition = partitions[index]
            builder = batches.get(partition)
            if builder is None:
                builder = batches[partition] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=stamp, headers=headers) is None:
                pending.append(await producer.send_batch(builder, self.topic, partition=partition))
                builder = batches[partition] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=stamp, headers=headers)
        for partition, builder in batches.items():
            if builder.record_count():
                # Nothing more comes: closed, the sender takes it at once, where an open
                # batch would linger for linger_ms first (every export waited that long).
                builder.close()
                pending.append(await producer.send_batch(builder, self.topic, partition=partition))
        await asyncio.gather(*pending)

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # stop() waits for pending sends, which with idempotence may be forever. The
            # producer is dropped because it failed, and that failure was reported.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 1)

    # -- the replayer: sole owner of the spools' segments ---------------------------

    def _request_pass(self) -> concurrent.futures.Future[None]:
        """A future the replayer settles once a pass that starts after this call ends."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop.call_soon(self._enlist, done)
        return done

    def _enlist(self, done: concurrent.futures.Future[None]) -> None:
        if self._replayer.done():
            done.set_exception(SinkError("the spool replayer is not running"))
            return
        self._waiters.append(done)
        self._wake.set()

    async def _replay_forever(self, wake: asyncio.Event) -> None:
        """Pass over the spools every ``retry_interval_s``, or at once when asked; after
        ``_stopping`` is set, make one last pass and return."""
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), self._retry_interval_s)
                wake.clear()
                last = self._stopping
                await self._pass()
                if last:
                    return
        finally:
            # Like aiokafka's sender: a replayer that ends fails whoever still waits.
            waiters, self._waiters = self._waiters, []
            _settle(waiters, SinkError("the spool replayer stopped"))

    async def _pass(self) -> None:
        """One pass for the waiters enlisted before it began; no failure ends the replayer."""
        waiters, self._waiters = self._waiters, []
        try:
            if not self._stopping:
                self._adopt_orphans()
            if self.spool or self._adopted:
                await self._replay()
        except Exception as exc:  # noqa: BLE001  # counted and told; the next pass retries
            self._replay_failed("kafka_replay_failed", f"replay pass failed: {exc!r}", exc)
        except BaseException:
            _settle(waiters, SinkError("the spool replay pass was cancelled"))
            raise
        _settle(waiters, None)

    def _adopt_orphans(self) -> None:
        """Take every spool directory beside ours whose lock is free: its owner is gone."""
        held = {self.spool.directory, *(s.directory for s in self._adopted)}
        try:
            candidates = adoptable(self.spool.directory)
        except OSError as exc:
            self._replay_failed("kafka_spool_failed", f"listing spools beside ours: {exc!r}", exc)
            return
        for directory in candidates:
            if directory in held:
                continue
            try:
                orphan = Spool(directory, max_bytes=self._spool_max_bytes, exclusive=True)
            except SpoolLockedError:
                continue  # its owner lives and replays it
            except OSError as exc:
                self._replay_failed("kafka_spool_failed", f"adopting {directory}: {exc!r}", exc)
                continue
            self._adopted.append(orphan)
            self.adopted += 1

    async def _replay(self) -> None:
        """Send the adopted spools, oldest first, then our own; stop at the first failure."""
        for orphan in list(self._adopted):
            if not orphan.segments():
                self._let_go(orphan)  # nothing to send: no broker needed
        if not (self.spool or self._adopted):
            return
        # Reach the broker before reading anything: while it is away, a retry must cost
        # one refused connection, not a pass over a 16 MB segment.
        try:
            await self._producer_ready()
        except Exception as exc:  # noqa: BLE001  # still away: counted, tried again later
            await self._drop_producer()
            self._replay_failed("kafka_replay_failed", f"broker unreachable: {exc!r}", exc)
            return
        for orphan in list(self._adopted):
            if not await self._replay_spool(orphan):
                return
            if not orphan.segments():
                self._let_go(orphan)
        await self._replay_spool(self.spool)

    async def _replay_spool(self, spool: Spool) -> bool:
        """Send one spool's segments in order; False when the pass must stop."""
        spool.seal()
        for segment in spool.segments():
            if not await self._replay_segment(spool, segment):
                return False
        return True

    async def _replay_segment(self, spool: Spool, segment: Path) -> bool:
        """Send one segment, then remove it; False when the pass must stop here.

        A segment that was sent but could not be removed is remembered, so the next
        pass only retries the removal: its records are not sent a second time.
        """
        if segment not in self._delivered:
            corrupt = spool.corrupt
            try:
                entries, unreadable = _spooled.unpack(spool.read(segment))
            except OSError as exc:
                self._replay_failed("kafka_spool_failed", f"reading {segment}: {exc!r}", exc)
                return False
            if spool.corrupt > corrupt:
                self._replay_failed(
                    "kafka_spool_corrupt",
                    f"{segment} is corrupt after {len(entries) + unreadable} entries; "
                    "the rest is lost",
                )
            if unreadable:
                self._replay_failed(
                    "kafka_spool_corrupt",
                    f"{segment}: {unreadable} entries are no Kafka message and were left out",
                )
            if entries:
                try:
                    await self._send(entries)
                except Exception as exc:  # noqa: BLE001  # still unreachable: try again later
                    await self._drop_producer()
                    self._replay_failed("kafka_replay_failed", f"sending {segment}: {exc!r}", exc)
                    return False
                self.replayed += len(entries)
            self._delivered.add(segment)
        try:
            spool.remove(segment)
        except OSError as exc:
            self._replay_failed(
                "kafka_spool_failed", f"{segment} was sent but not removed: {exc!r}", exc
            )
        else:
            self._delivered.discard(segment)
        return True

    def _let_go(self, orphan: Spool) -> None:
        """Release an adopted spool, removing its directory when no segment is left."""
        self._adopted.remove(orphan)
        try:
            orphan.close(remove_if_empty=True)
        except OSError as exc:
            self._replay_failed("kafka_spool_failed", f"removing {orphan.directory}: {exc!r}", exc)

    def _replay_failed(self, kind: str, message: str, exc: BaseException | None = None) -> None:
        """Count a replay failure and tell the reporter: the replayer never drops one."""
        self.replay_errors += 1
        self.reporter.report(kind, message, exc=exc)

    async def _shutdown(self) -> None:
        """The replayer stops first, so nothing replays while the producer goes away; the
        spools are let go last, when nothing here uses them any more."""
        await self._stop_replayer()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), _STOP_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001  # closing goes on; the failure is told
                self.reporter.report("kafka_close_failed", f"producer stop: {exc!r}", exc=exc)
        # Producers dropped during an outage leave tasks behind: end them, bounded.
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=_STOP_TIMEOUT_S)
        for orphan in list(self._adopted):
            self._let_go(orphan)
        try:
            self.spool.close(remove_if_empty=True)
        except OSError as exc:
            self.reporter.report("kafka_close_failed", f"releasing the spool: {exc!r}", exc=exc)

    async def _stop_replayer(self) -> None:
        """Ask the replayer for its last pass and wait for it to return, at most
        ``delivery_timeout_s``: past that it is cancelled, and what it had not sent stays
        in the spools, for whoever adopts them next."""
        self._stopping = True
        self._wake.set()
        timeout = self._delivery_timeout_s
        try:
            await asyncio.wait_for(self._replayer, timeout)
        except asyncio.TimeoutError:
            self._replay_failed(
                "kafka_replay_failed",
                f"last replay pass unfinished after {timeout} s; "
                f"{self.spool.size} bytes stay in the spool",
            )
        except Exception as exc:  # noqa: BLE001  # closing goes on; the failure is told
            self._replay_failed("kafka_replay_failed", f"replayer failed: {exc!r}", exc)

    # -- fork ---------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """In a forked child: the parent's loop thread did not survive the fork, and its
        producer, spool and lock stay the parent's. Start a new loop, a new producer
        (made on first use) and a spool of the child's own beside the parent's. A sink
        the parent never opened has nothing of the parent's: it opens as usual."""
        self._reset_counters()
        parent = self._spool
        if parent is None:
            return
        _INHERITED.append(self._loop)
        producer, self._producer = self._producer, None
        if producer is not None:
            _INHERITED.append(producer)
        for spool in (parent, *self._adopted):
            spool.close()  # the child's copy of each lock's descriptor; the parent keeps it
        self._adopted = []
        if self._closed:
            return
        try:
            own = parent.directory.parent / str(os.getpid())
            self._spool = claim(own, max_bytes=self._spool_max_bytes)
            self._start_loop()
        except Exception as exc:  # noqa: BLE001  # a fork hook must never break the fork
            self._closed = True
            self.reporter.report(
                "kafka_fork_failed", f"no Kafka sink in the child: {exc!r}", exc=exc
            )


def _check_options(
    *,
    bootstrap_servers: str,
    topic: str,
    spool_max_bytes: int,
    delivery_timeout_s: float,
    retry_interval_s: float,
) -> None:
    """Refuse bad arguments before anything is started, naming the argument."""
    if not bootstrap_servers:
        raise ConfigError("bootstrap_servers", "must name at least one broker")
    if not topic:
        raise ConfigError("topic", "must be a topic name")
    check_argument("spool_max_bytes", "kafka_spool_max_bytes", spool_max_bytes)
    check_argument("delivery_timeout_s", "kafka_delivery_timeout_s", delivery_timeout_s)
    if retry_interval_s <= 0:
        raise ConfigError("retry_interval_s", f"must be positive, got {retry_interval_s!r}")


def _settle(waiters: list[concurrent.futures.Future[None]], error: SinkError | None) -> None:
    """Answer flush() callers: done, or why not."""
    for waiter in waiters:
        if waiter.done():
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
