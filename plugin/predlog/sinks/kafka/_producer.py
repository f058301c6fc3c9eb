"""KafkaSink: prediction records to a Kafka topic, with a disk spool for broker outages.

The producer is aiokafka's, idempotent with ``acks=all``; each record is one message
keyed by its request id (see :mod:`predlog.sinks.kafka._wire` for the format). Messages are
appended to aiokafka batches per partition, chosen as the Java client would
(:mod:`predlog.sinks.kafka._murmur2`), so Kafka batches them while each record keeps its own key.

aiokafka with idempotence retries forever, so this sink sets its own deadline:
when a batch is not acknowledged within ``delivery_timeout_s``, its records go to
the spool (:mod:`predlog.sinks._spool`), the producer is dropped, and from then on new
records go to the spool too, to keep their order, until a background task has
replayed the spool to a broker that answers again. A record that timed out may
still have reached the broker; the spool then sends it a second time. Delivery is
at least once, and consumers drop duplicates by ``prediction_id`` (as
``predlog sink`` does).

The sink runs its own event loop on its own thread: the flusher calls it
synchronously, and nothing here touches the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import pyarrow as pa

from predlog._report import ErrorReporter
from predlog.errors import SinkError
from predlog.sinks._spool import Spool, SpoolFullError
from predlog.sinks.kafka import _murmur2, _wire

T = TypeVar("T")
_START_TIMEOUT_S: Final = 5.0


class KafkaSink:
    """Sends record batches to ``topic``; spools to ``spool_dir`` while the broker is away."""

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
        if not bootstrap_servers:
            raise ValueError("bootstrap_servers: must name at least one broker")
        if not topic:
            raise ValueError("topic: must be a topic name")
        if delivery_timeout_s <= 0:
            raise ValueError(f"delivery_timeout_s: must be positive, got {delivery_timeout_s!r}")
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
        #: Where background failures (replay, spool clean-up) are counted and told.
        self.reporter = reporter if reporter is not None else ErrorReporter()
        self.spool = Spool(spool_dir, max_bytes=spool_max_bytes)
        #: Records acknowledged by the broker, spooled, replayed from the spool,
        #: and refused because the spool was full.
        self.sent = 0
        self.spooled = 0
        self.replayed = 0
        self.refused = 0
        self._producer: Any = None
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="predlog-kafka", daemon=True
        )
        self._thread.start()
        self._replayer = self._run(self._start_replayer())

    # -- Sink protocol (called from the flusher thread) ---------------------------

    def export(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise SinkError("KafkaSink is closed")
        entries = _wire.encode(batch)
        self._run(self._export(entries), timeout=self._delivery_timeout_s + _START_TIMEOUT_S + 5)

    def flush(self) -> None:
        """Acknowledged records are on the broker and spooled ones on disk: nothing to do,
        but give the spool one chance to drain now."""
        if self.spool:
            with contextlib.suppress(Exception):
                self._run(self._replay(), timeout=self._delivery_timeout_s * 2)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._run(self._shutdown(), timeout=self._delivery_timeout_s * 2 + 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # -- on the sink's loop --------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start_replayer(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._replay_forever())

    async def _export(self, entries: list[tuple[bytes, bytes]]) -> None:
        if not self.spool:
            try:
                await self._send(entries)
            except Exception:  # noqa: BLE001  # any failure: keep the records on disk
                await self._drop_producer()
            else:
                self.sent += len(entries)
                return
        try:
            self.spool.append(entries)
        except SpoolFullError as exc:
            self.refused += len(entries)
            raise SinkError(f"Kafka unreachable and {exc}", retriable=True) from exc
        self.spooled += len(entries)

    async def _producer_ready(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer  # noqa: PLC0415  # optional dependency

            producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, **self._producer_options)
            try:
                await asyncio.wait_for(producer.start(), _START_TIMEOUT_S)
            except BaseException:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(producer.stop(), 1)
                raise
            self._producer = producer
        return self._producer

    async def _send(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        # One deadline for the whole send: with the broker gone, even the metadata
        # lookup for the topic's partitions waits forever.
        await asyncio.wait_for(self._send_all(entries), self._delivery_timeout_s)

    async def _send_all(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        producer = await self._producer_ready()
        partitions = sorted(await producer.partitions_for(self.topic))
        chosen = _murmur2.partitions([key for key, _ in entries], len(partitions)).tolist()
        batches: dict[int, Any] = {}
        pending: list[Any] = []
        headers = _wire.HEADERS
        for (key, value), index in zip(entries, chosen, strict=True):
            partition = partitions[index]
            builder = batches.get(partition)
            if builder is None:
                builder = batches[partition] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
                pending.append(await producer.send_batch(builder, self.topic, partition=partition))
                builder = batches[partition] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None, headers=headers)
        for partition, builder in batches.items():
            if builder.record_count():
                pending.append(await producer.send_batch(builder, self.topic, partition=partition))
        await asyncio.gather(*pending)

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # stop() waits for pending sends, which with idempotence may be forever.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(producer.stop(), 1)

    async def _replay(self) -> None:
        """Send spooled segments in order; stop at the first failure."""
        # Reach the broker before reading anything: while it is away, a retry must cost
        # one refused connection, not a pass over a 16 MB segment.
        try:
            await self._producer_ready()
        except Exception:  # noqa: BLE001  # still away: try again later
            await self._drop_producer()
            return
        self.spool.seal()
        for segment in self.spool.segments():
            entries = list(self.spool.read(segment))
            if entries:
                try:
                    await self._send(entries)
                except Exception:  # noqa: BLE001  # still unreachable: try again later
                    await self._drop_producer()
                    return
                self.replayed += len(entries)
            self.spool.remove(segment)

    async def _replay_forever(self) -> None:
        while True:
            await asyncio.sleep(self._retry_interval_s)
            if self.spool:
                with contextlib.suppress(Exception):
                    await self._replay()

    async def _shutdown(self) -> None:
        task = self._replayer
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if self.spool:
            await self._replay()
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(producer.stop(), self._delivery_timeout_s)
        # Producers dropped during an outage leave tasks behind: end them cleanly.
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def stats(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "refused": self.refused,
            "spool_bytes": self.spool.size,
            "spool_corrupt": self.spool.corrupt,
        }
