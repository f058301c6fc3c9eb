"""Memory while a sink is down and requests keep coming as fast as they can.

The bound predlog promises: while a sink stalls, memory grows by at most one full
ring (ring capacity x the size of one captured record), plus 10% for everything
else (the batch stuck in the sink, allocator slack). Nothing else may accumulate:
not the error reports, not the counters, not a queue in a sink.

Two kinds of capture, each measured in its own child process so that RSS starts
clean:

* ``log``: ``PredictionLogger.log()`` with a fresh 15-feature dict per call;
* ``middleware``: requests through PredictionLogMiddleware (ASGI app called
  directly), each with its own body bytes, headers and scope, as a server makes them.

For each, first the size of one captured record as it sits in the ring (tracemalloc
over 20,000 captures held in a ring that is never drained), then the outage: the
sink blocks forever (a hung disk or object store), and one thread produces at
saturation for ``--seconds``. RSS is sampled every 50 ms. Printed: RSS growth at the
end and at its peak, against ring capacity x record size, and the records offered,
held and dropped. A third run logs into a KafkaSink whose broker is away (records go
to the disk spool): its address is a loopback port where nothing listens, so the
shared broker other runs use is never stopped, and aiokafka meets what a stopped
broker gives it, a refused connection. A fourth, ``draining``, is the baseline for it
from the same run: ``log()`` into a sink that does nothing with each batch but take
``--drain-s`` seconds over it (by default about what spooling a batch takes), so the
flusher builds batch after batch while the ring refills behind it, as it does while
spooling. What the Kafka sink holds of its own is its figure minus this one.

Usage: python benchmarks/bench_outage_memory.py [--seconds S] [--capacity N] [--kinds K,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa

import predlog
from _common import fraud_features
from bench_middleware import make_app

ROOT = Path(__file__).resolve().parent.parent
BODY = (
    '{"transaction": {"amount": %d.5, "merchant_category": "grocery", "hour": 13, '
    '"channel": "web", "card_age_days": 400}}'
)


class DrainingSink:
    """A sink that takes each batch after ``seconds`` and does nothing with it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def export(self, batch: pa.RecordBatch) -> None:
        time.sleep(self.seconds)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class StalledSink:
    """A sink whose export never returns while the outage lasts."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, batch: pa.RecordBatch) -> None:
        self.release.wait()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.release.set()


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Producer:
    """Makes predictions of one kind, each with freshly allocated inputs."""

    def __init__(self, kind: str, logger: predlog.PredictionLogger) -> None:
        self.kind, self.logger, self.count = kind, logger, 0
        self.rng = random.Random(3)
        self.loop = asyncio.new_event_loop()
        self.app = predlog.PredictionLogMiddleware(make_app(record=False), logger=logger)

    def one(self) -> None:
        self.count += 1
        n = self.count
        if self.kind in {"log", "kafka", "draining"}:
            self.logger.log(request_id=f"m-{n}", features=fraud_features(self.rng), score=0.42)
        else:
            self.loop.run_until_complete(self.request(n))

    async def request(self, n: int) -> None:
        body = (BODY % n).encode()
        message = {"type": "http.request", "body": body, "more_body": False}
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/predict",
            "headers": [
                (b"content-type", b"application/json"),
                (b"x-request-id", f"m-{n}".encode()),
            ],
        }

        async def receive() -> dict[str, Any]:
            return message

        async def send(_: Any) -> None:
            pass

        await self.app(scope, receive, send)


def record_size(kind: str, capacity: int) -> dict[str, float]:
    """Bytes one captured record keeps alive in the ring: by tracemalloc (what Python
    asked for) and by RSS (what the process pays, allocator overhead included), over a
    full ring that is never drained."""
    logger = predlog.PredictionLogger(
        sinks=[StalledSink()],
        ring_capacity=capacity,
        batch_size=capacity,
        flush_interval_s=3600,
        install_signal_handlers=False,
    )
    producer = Producer(kind, logger)
    warm = 200  # caches (ids, contextvars) filled outside the measurement
    for _ in range(warm):
        producer.one()
    time.sleep(0.2)
    rss_before = rss_bytes()
    for _ in range(capacity // 2 - warm):
        producer.one()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(capacity // 4):
        producer.one()
    traced = (tracemalloc.get_traced_memory()[0] - before) / (capacity // 4)
    tracemalloc.stop()
    for _ in range(capacity - capacity // 2 - capacity // 4):
        producer.one()
    rss = (rss_bytes() - rss_before) / (capacity - warm)
    assert logger.stats()["dropped"] == 0
    return {"traced": traced, "rss": rss}


def closed_port() -> str:
    """A loopback address where nothing listens: a broker that is away."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def outage(kind: str, seconds: float, capacity: int, drain_s: float) -> dict[str, Any]:
    # The spool is left full (the broker never comes back): removed here, or any
    # KafkaSink whose spool directory is made beside it later would adopt it.
    with tempfile.TemporaryDirectory(prefix="predlog-outage-") as spool:
        return _outage(kind, seconds, capacity, spool, drain_s)


def _outage(kind: str, seconds: float, capacity: int, spool: str, drain_s: float) -> dict[str, Any]:
    if kind == "draining":
        sink: Any = DrainingSink(drain_s)
    elif kind == "kafka":
        sink = predlog.KafkaSink(
            bootstrap_servers=closed_port(),
            topic=f"outage-{os.getpid()}",
            spool_dir=spool,
            delivery_timeout_s=2,
        )
    else:
        sink = StalledSink()
    logger = predlog.PredictionLogger(
        sinks=[sink], ring_capacity=capacity, install_signal_handlers=False
    )
    producer = Producer(kind, logger)
    for _ in range(2000):  # the same warm-up the baseline gets, delivered or not
        producer.one()
    if not isinstance(sink, StalledSink):
        # The warm-up goes through the sink (to the spool) before the baseline: what a
        # sink loads on its first batch (aiokafka, Arrow's compute library, imported
        # on first use) is code, tens of MiB of it, not memory the outage holds.
        logger.flush(timeout=30)
    time.sleep(0.5)
    baseline = rss_bytes()
    peak, at_full = baseline, None
    start = time.monotonic()
    next_sample = start
    while (now := time.monotonic()) - start < seconds:
        for _ in range(200):
            producer.one()
        if now >= next_sample:
            peak = max(peak, rss_bytes())
            next_sample = now + 0.05
            if at_full is None and logger.stats()["dropped"]:
                at_full = rss_bytes()  # the ring has just filled
    end = rss_bytes()
    stats = logger.stats()
    if isinstance(sink, StalledSink):
        sink.release.set()
    spool_bytes = sink.stats()["spool_bytes"] if kind == "kafka" else 0
    logger.close(timeout=60 if kind == "kafka" else 5)
    return {
        "kind": kind,
        "offered": producer.count,
        "dropped": stats["dropped"],
        "pending": stats["pending"],
        "growth_end": end - baseline,
        "growth_peak": peak - baseline,
        "after_full": end - at_full if at_full is not None else None,
        "spool_bytes": spool_bytes,
    }


def child(args: argparse.Namespace) -> None:
    if args.measure == "size":
        print(json.dumps(record_size(args.kind, args.capacity)))
    else:
        print(json.dumps(outage(args.kind, args.seconds, args.capacity, args.drain_s)))


def run_child(*argv: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *argv],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "plugin")),
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--capacity", type=int, default=65_536)
    parser.add_argument(
        "--kinds",
        default="log,middleware,draining,kafka",
        help="comma-separated: log, middleware, draining, kafka",
    )
    parser.add_argument(
        "--drain-s", type=float, default=0.25, help="seconds the draining sink takes a batch"
    )
    parser.add_argument("--measure", choices=("size", "outage"), help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        child(args)
        return
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - {"log", "middleware", "draining", "kafka"}
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    print(f"ring capacity {args.capacity:,}; {args.seconds:.0f} s at saturation per kind")
    growth: dict[str, float] = {}
    for kind in kinds:
        size_kind = "log" if kind in {"kafka", "draining"} else kind
        size = run_child("--measure", "size", "--kind", size_kind, "--capacity", str(args.capacity))
        r = run_child(
            "--measure",
            "outage",
            "--kind",
            kind,
            "--seconds",
            str(args.seconds),
            "--capacity",
            str(args.capacity),
            "--drain-s",
            str(args.drain_s),
        )
        bound = args.capacity * size["rss"]
        what = {
            "kafka": "broker away, spooling",
            "draining": f"sink taking {args.drain_s} s a batch",
        }.get(kind, "sink stalled")
        growth[kind] = r["growth_end"] / bound
        after_full = (
            "ring never filled"
            if r["after_full"] is None
            else f"after the ring filled {r['after_full'] / 2**20:+,.1f} MiB"
        )
        print(
            f"{kind:10s} ({what}): record {size['rss']:,.0f} B RSS "
            f"({size['traced']:,.0f} B traced); capacity x record = {bound / 2**20:,.1f} MiB\n"
            f"{'':10s} RSS growth: end {r['growth_end'] / 2**20:,.1f} MiB "
            f"({r['growth_end'] / bound:.3f}x), peak {r['growth_peak'] / 2**20:,.1f} MiB "
            f"({r['growth_peak'] / bound:.3f}x), {after_full} | offered {r['offered']:,}, "
            f"dropped {r['dropped']:,}, pending {r['pending']:,}, "
            f"spool {r['spool_bytes'] / 2**20:,.1f} MiB"
        )
    if "kafka" in growth and "draining" in growth:
        print(
            f"kafka against draining (the same flusher work, no sink work): "
            f"{growth['kafka']:.3f}x - {growth['draining']:.3f}x = "
            f"{growth['kafka'] - growth['draining']:+.3f}x of the ring bound is the Kafka "
            "sink's own"
        )


if __name__ == "__main__":
    main()
