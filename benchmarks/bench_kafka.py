"""Kafka: which record format, which batching, and what an outage costs the request path.

Needs a broker (``make bench`` starts one; or set PREDLOG_TEST_KAFKA=host:port).
Prints, each from this run:

0. with ``--base REV``: the flusher into Kafka (ring to acknowledgement, one core) with
   this tree's Kafka package against REV's, alternating rounds in fresh interpreters,
   records/s and CPU per record of the process (every thread), and of that CPU what
   is the Kafka sink's (beyond the same records into a sink that does nothing), each
   side's median and head/base; then where the sink's CPU went: its own thread (the
   event loop: encoding, aiokafka, zstd, the socket), the flusher thread beyond its
   CPU into the sink that does nothing, and the garbage collector (any thread). Both
   sides run one copy of the code committed at HEAD, with the Kafka package
   (``predlog/sinks/kafka``) of REV or of this working tree laid over it, so that the
   ratio is the Kafka package's alone, whatever else is being changed in the tree;
   the native extension is this tree's, or ``--native PATH``. A full collection runs
   just before the clock starts, in every run: the fill leaves the ring's records as
   survivors, and whether the full pass they call for fell inside the timed window
   depended on the collector's counters, which the Kafka package's imports shift
   (measured: about 1 us/record in the Kafka run, none in the other, on the flusher
   thread). That pass is log()'s cost, not the sink's;

   with ``--only stages`` instead (no broker needed): the CPU per record of each step
   the sink's loop thread takes with batches of 8,192 fraud-like records, on this
   thread alone: encoding the messages, choosing partitions, appending them to
   aiokafka's record batches (its Cython builder, 1 MiB batches, as the sink does),
   and building those (zstd, then the checksum; and, for comparison, the same batches
   uncompressed: checksum and copy alone). What the loop thread spends beyond these in
   ``--base`` runs is aiokafka's sender, asyncio and the socket;

1. encoding 100,000 records: JSON per record (predlog record JSON v1) vs Arrow IPC
   per batch, records/s;
2. delivery to the broker, acks=all, idempotent, zstd: one message per record
   (aiokafka batches, per-record keys; what KafkaSink does) vs the same records packed
   as one Arrow IPC message per 8,192 records (no per-record keys), records/s;
   then the whole flusher (captures in the ring to records acknowledged by the
   broker, as bench_capture.py measures it for Parquet), on one core;
3. the codecs aiokafka offers, on the same record JSON: MiB/s and ratio;
4. ``log()`` on the calling thread with the broker up vs away (an address where
   nothing listens; records go to the disk spool), ns/call, and the ratio.

Usage: python benchmarks/bench_kafka.py [--records N] [--base REV [--rounds N] [--native PATH]]
       [--only versus | --only stages]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import predlog
from _common import flusher_rate, fraud_features, log_fraud, one_core
from predlog import KafkaSink
from predlog.sinks.kafka import _murmur2, _wire
from predlog.testing import MemorySink, paused

ROOT = Path(__file__).resolve().parent.parent


def batches(n: int) -> list[pa.RecordBatch]:
    rng = random.Random(5)
    keep = MemorySink()
    with predlog.PredictionLogger(
        sinks=[keep], ring_capacity=n + 1, batch_size=8192, install_signal_handlers=False
    ) as log:
        for i in range(n):
            log.log(
                request_id=f"b-{i}",
                features=fraud_features(rng),
                score=rng.random(),
                decision="approved",
                user_segment="standard",
                channel="web",
            )
    table = pa.Table.from_pylist(keep.records, schema=predlog.arrow_schema())
    return table.to_batches(max_chunksize=8192)


def fraud_batches(n: int) -> list[pa.RecordBatch]:
    """Batches of 8,192 records as :func:`flusher_cost` logs them (1,024 feature sets)."""
    keep = MemorySink()
    with predlog.PredictionLogger(
        sinks=[keep],
        model_name="fraud",
        model_version="v1",
        ring_capacity=n + 1,
        batch_size=8192,
        install_signal_handlers=False,
    ) as log:
        log_fraud(log, n, random.Random(1), "s")
    table = pa.Table.from_pylist(keep.records, schema=predlog.arrow_schema())
    return table.to_batches(max_chunksize=8192)


def ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def encode_rates(data: list[pa.RecordBatch]) -> tuple[float, float]:
    n = sum(b.num_rows for b in data)
    start = time.perf_counter()
    for b in data:
        _wire.encode(b)
    json_rate = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for b in data:
        ipc(b)
    return json_rate, n / (time.perf_counter() - start)


def per_record_rate(bootstrap: str, data: list[pa.RecordBatch]) -> float:
    with tempfile.TemporaryDirectory() as spool:
        sink = KafkaSink(
            bootstrap_servers=bootstrap, topic=f"bench-{uuid.uuid4().hex[:8]}", spool_dir=spool
        )
        sink.export(data[0])  # connect and create the topic outside the timing
        n = sum(b.num_rows for b in data[1:])
        start = time.perf_counter()
        for b in data[1:]:
            sink.export(b)
        rate = n / (time.perf_counter() - start)
        stats = sink.stats()
        sink.close()
    if stats["spooled"]:
        raise SystemExit(f"records were spooled, the figure would mislead: {stats}")
    return rate


def packed_rate(bootstrap: str, data: list[pa.RecordBatch]) -> float:
    from aiokafka import AIOKafkaProducer

    async def run() -> float:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type="zstd",
            max_request_size=64 << 20,
            max_batch_size=64 << 20,
        )
        await producer.start()
        topic = f"bench-packed-{uuid.uuid4().hex[:8]}"
        await producer.send_and_wait(topic, ipc(data[0]))
        n = sum(b.num_rows for b in data[1:])
        start = time.perf_counter()
        for b in data[1:]:
            await producer.send_and_wait(topic, ipc(b))
        rate = n / (time.perf_counter() - start)
        await producer.stop()
        return rate

    return asyncio.run(run())


def warmed_logger(sink: Any, records: int) -> predlog.PredictionLogger:
    """A logger into ``sink`` whose ring holds ``records``, flushing only when asked,
    after one record went through (connected, the topic made) outside any timing."""
    log = predlog.PredictionLogger(
        sinks=[sink],
        model_name="fraud",
        model_version="v1",
        ring_capacity=records + 1,
        batch_size=8192,
        flush_interval_s=3600,
        install_signal_handlers=False,
    )
    log.log(request_id="warm-up", features={"x": 1}, score=0.1)
    if not log.flush(timeout=60):
        raise SystemExit("the broker did not take a first record")
    return log


def flusher_to_kafka(bootstrap: str, records: int, seed: int) -> float:
    with tempfile.TemporaryDirectory() as spool:
        sink = KafkaSink(
            bootstrap_servers=bootstrap, topic=f"bench-f-{uuid.uuid4().hex[:8]}", spool_dir=spool
        )
        log = warmed_logger(sink, records)
        with one_core():
            rate = flusher_rate(log, records, seed)
        if sink.stats()["spooled"]:
            raise SystemExit(f"records were spooled, the figure would mislead: {sink.stats()}")
    return rate


class Discard:
    """A sink that takes each batch and does nothing with it: the flusher's own cost."""

    def export(self, batch: pa.RecordBatch) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class GcClock:
    """CPU seconds the garbage collector takes while running, on whichever thread."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.running = False
        self._started: dict[int, float] = {}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        ident = threading.get_ident()
        if phase == "start":
            self._started[ident] = time.thread_time()
        elif self.running and ident in self._started:
            self.seconds += time.thread_time() - self._started.pop(ident)


def thread_cpu() -> dict[str, float]:
    """CPU seconds each live thread has used, by thread name (where the platform has a
    clock per thread; else none)."""
    used: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None or not hasattr(time, "pthread_getcpuclockid"):
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except OSError:
            continue  # ended meanwhile
        used[thread.name] = used.get(thread.name, 0.0) + seconds
    return used


def flusher_cost(bootstrap: str | None, records: int, seed: int) -> dict[str, float]:
    """Records/s from the ring to acknowledged, and CPU microseconds per record of the
    whole process (the flusher, the sink's loop, aiokafka), on one core, and of it the
    flusher thread's, the sink's loop thread's and the garbage collector's. Without
    ``bootstrap``, the same into :class:`Discard`: what building the batches costs."""
    clock = GcClock()
    gc.callbacks.append(clock)
    try:
        return _flusher_cost(bootstrap, records, seed, clock)
    finally:
        gc.callbacks.remove(clock)


def _flusher_cost(
    bootstrap: str | None, records: int, seed: int, clock: GcClock
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as spool:
        sink: KafkaSink | Discard = (
            Discard()
            if bootstrap is None
            else KafkaSink(
                bootstrap_servers=bootstrap,
                topic=f"bench-v-{uuid.uuid4().hex[:8]}",
                spool_dir=spool,
            )
        )
        log = warmed_logger(sink, records)
        with one_core():
            with paused(log):
                log_fraud(log, records, random.Random(seed), f"v{seed}")
                gc.collect()  # the fill's survivors: log()'s cost (see the module docstring)
                threads = thread_cpu()
                clock.running = True
                start, cpu = time.perf_counter(), cpu_seconds()
            if not log.flush(timeout=600):
                raise SystemExit("the flusher did not finish within 10 minutes")
            elapsed, used = time.perf_counter() - start, cpu_seconds() - cpu
            clock.running = False
            after = thread_cpu()
        stats = log.stats()
        sent = sink.stats() if isinstance(sink, KafkaSink) else {"spooled": 0}
        log.close(timeout=60)
    if stats["delivered"] != records + 1 or sent["spooled"] or stats["failed"]:
        raise SystemExit(f"records were lost or spooled, the figure would mislead: {stats} {sent}")

    def per_record(name: str) -> float:
        return (after.get(name, 0.0) - threads.get(name, 0.0)) / records * 1e6

    return {
        "rate": records / elapsed,
        "cpu": used / records * 1e6,
        "flusher": per_record("predlog-flusher"),
        "loop": per_record("predlog-kafka"),
        "gc": clock.seconds / records * 1e6,
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def versus(args: argparse.Namespace, bootstrap: str) -> None:
    """The flusher into Kafka with this tree's Kafka package against ``args.base``'s."""
    git = shutil.which("git")
    if git is None:
        raise SystemExit("git is needed to check out the base revision")

    def rev(name: str) -> str:
        return subprocess.run(
            [git, "rev-parse", "--short", name],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    base, head = rev(args.base), rev("HEAD")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    native = Path(args.native) if args.native else ROOT / "plugin" / "predlog" / f"_rust{suffix}"
    package = Path("plugin") / "predlog" / "sinks" / "kafka"
    with tempfile.TemporaryDirectory(prefix="predlog-kafka-versus-") as tmp:
        sides: dict[str, Path] = {}
        for side in ("base", "head"):
            tree = Path(tmp) / side
            subprocess.run(
                [git, "worktree", "add", "--detach", "--quiet", str(tree), head],
                cwd=ROOT,
                check=True,
            )
            sides[side] = tree
        try:
            for side, tree in sides.items():
                if native.exists():
                    shutil.copy(native, tree / "plugin" / "predlog" / native.name)
                shutil.rmtree(tree / package)
                if side == "head":
                    shutil.copytree(ROOT / package, tree / package)
                else:
                    names = subprocess.run(
                        [git, "ls-tree", "-r", "--name-only", base, str(package)],
                        cwd=ROOT,
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.split()
                    for name in names:
                        target = tree / name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(
                            subprocess.run(
                                [git, "show", f"{base}:{name}"],
                                cwd=ROOT,
                                capture_output=True,
                                check=True,
                            ).stdout
                        )
            rounds: list[dict[str, tuple[float, ...]]] = []
            for _ in range(args.rounds):
                rounds.append(
                    {side: child_cost(tree, args.records) for side, tree in sides.items()}
                )
        finally:
            for tree in sides.values():
                subprocess.run(
                    [git, "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True
                )
    print(
        f"flusher -> Kafka, Kafka package of this tree vs {base}, both on the code of {head} "
        f"(native extension: {native if native.exists() else 'none'}), {args.records:,} records, "
        f"one core, {args.rounds} alternating rounds:"
    )
    print_measures(rounds)


def print_measures(rounds: list[dict[str, tuple[float, ...]]]) -> None:
    """Each measure of :func:`child_cost`: both sides' medians and head against base."""
    measures = (
        "records/s",
        "CPU us/record",
        "of it the sink's",
        "  its loop thread",
        "  flusher thread",
        "  GC, Kafka run",
        "  GC, Discard run",
    )
    for index, name in enumerate(measures):
        b = [r["base"][index] for r in rounds]
        h = [r["head"][index] for r in rounds]
        line = f"  {name:18s} base {statistics.median(b):10,.2f}"
        line += f"  head {statistics.median(h):10,.2f}"
        if name == "  flusher thread":
            # A difference of two runs, near nothing: a ratio of it says nothing.
            moved = [y - x for x, y in zip(b, h, strict=True)]
            line += f"  head-base {statistics.median(moved):+.2f}"
            line += f" [{min(moved):+.2f} to {max(moved):+.2f}]"
        else:
            ratios = [y / x if x else float("nan") for x, y in zip(b, h, strict=True)]
            line += f"  head/base {statistics.median(ratios):.3f}"
            line += f" [{min(ratios):.3f}-{max(ratios):.3f}]"
        print(line)
    print(
        "  (the loop thread: encoding, aiokafka, zstd, the socket; the flusher thread: its "
        "CPU beyond the Discard run's;\n   GC: CPU in the garbage collector during the "
        "window, on any thread, in the Kafka run and in the Discard run, which follows it in "
        "the same process\n   and so walks whatever the Kafka package left there too)"
    )


def child_cost(tree: Path, records: int) -> tuple[float, ...]:
    """In a fresh interpreter with ``tree``'s predlog: :func:`flusher_cost` into Kafka,
    and the CPU per record of that beyond the same records into :class:`Discard` (the
    Kafka sink's own share), with where it went (see :func:`versus`)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREDLOG_") or k == "PREDLOG_TEST_KAFKA"
    }
    env["PYTHONPATH"] = str(tree / "plugin")
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(records)],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kafka, discard = json.loads(out.strip().splitlines()[-1])
    return (
        kafka["rate"],
        kafka["cpu"],
        kafka["cpu"] - discard["cpu"],
        kafka["loop"],
        kafka["flusher"] - discard["flusher"],
        kafka["gc"],
        discard["gc"],
    )


def stages(data: list[pa.RecordBatch], repeats: int = 5) -> dict[str, float]:
    """CPU microseconds per record of each step KafkaSink's loop takes with these batches
    (see the module docstring), the least of ``repeats`` passes each."""
    n = sum(b.num_rows for b in data)
    best: dict[str, float] = {}
    for _ in range(repeats):
        clock = time.thread_time()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.thread_time()
            used = (now - clock) / n * 1e6
            best[name] = min(best.get(name, used), used)
            clock = now

        messages = [_wire.messages(b) for b in data]
        lap("encode the messages (_wire.messages)")
        chosen = [_murmur2.partitions(m.keys, 3).tolist() for m in messages]
        lap("choose partitions (murmur2)")
        built = appended(messages, chosen, ZSTD)
        lap("append to aiokafka batches")
        for b in built:
            b.build()
        lap("build them: zstd and checksum")
        plain = appended(messages, chosen, 0)
        clock = time.thread_time()
        for b in plain:
            b.build()
        lap("  the same uncompressed (checksum, copy)")
    return best


#: Kafka's code for zstd in a record batch's attributes.
ZSTD = 4


def appended(messages: list[_wire.Messages], chosen: list[list[int]], codec: int) -> list[Any]:
    """What the sink's send does per record: each message into its partition's aiokafka
    batch (1 MiB, as KafkaSink's), a new batch when one is full; every batch made."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    def builder() -> Any:
        return DefaultRecordBatchBuilder(2, codec, 0, -1, -1, 0, 1 << 20)

    done: list[Any] = []
    for entries, indices in zip(messages, chosen, strict=True):
        current = [builder() for _ in range(3)]
        offsets = [0, 0, 0]
        for (key, value, stamp, headers), index in zip(entries.each(), indices, strict=True):
            if current[index].append(offsets[index], stamp, key, value, headers) is None:
                done.append(current[index])
                current[index], offsets[index] = builder(), 0
                current[index].append(0, stamp, key, value, headers)
            offsets[index] += 1
        done += current
    return done


def codecs(data: list[pa.RecordBatch]) -> list[tuple[str, float, float]]:
    from aiokafka import codec

    payload = b"".join(value for b in data[:4] for _, value, _, _ in _wire.encode(b))
    out = []
    for name, encode in (
        ("lz4 (aiokafka: LZ4 HC, level 9)", codec.lz4_encode),
        ("zstd (aiokafka: level 3)", codec.zstd_encode),
        ("snappy", codec.snappy_encode),
        ("gzip (aiokafka: level 9)", codec.gzip_encode),
    ):
        start = time.perf_counter()
        packed = encode(payload)
        elapsed = time.perf_counter() - start
        out.append((name, len(payload) / elapsed / 2**20, len(payload) / len(packed)))
    return out


def log_cost(bootstrap: str, *, broker_down: bool, calls: int, repeats: int) -> float:
    rng = random.Random(9)
    feats = [fraud_features(rng) for _ in range(256)]
    with tempfile.TemporaryDirectory() as spool:
        sink = KafkaSink(
            # A broker that is away: a loopback port where nothing listens, as a stopped
            # broker leaves it. The shared broker other runs use is never stopped.
            bootstrap_servers=closed_port() if broker_down else bootstrap,
            topic=f"bench-o-{uuid.uuid4().hex[:8]}",
            spool_dir=spool,
            delivery_timeout_s=2,
            retry_interval_s=1,
        )
        log = predlog.PredictionLogger(
            sinks=[sink], flush_interval_s=0.1, install_signal_handlers=False
        )
        samples = []
        for r in range(repeats):
            start = time.perf_counter_ns()
            for i in range(calls):
                log.log(request_id=f"o-{r}-{i}", features=feats[i & 255], score=0.3)
            samples.append((time.perf_counter_ns() - start) / calls)
            time.sleep(0.3)  # let the flusher keep up: this measures capture, not overflow
        log.close(timeout=120)
        stats = log.stats()
        if stats["dropped"] or stats["failed"]:
            raise SystemExit(f"records were lost, the figure would mislead: {stats}")
        return statistics.median(samples)


def closed_port() -> str:
    """A loopback address where nothing listens: a broker that is away."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--base", help="git revision whose Kafka package to compare against")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds with --base")
    parser.add_argument("--native", help="the native extension both sides use with --base")
    parser.add_argument("--only", choices=("versus", "stages"), help="print only that part")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only == "stages":
        data = fraud_batches(args.records)
        steps = stages(data)
        print(f"the sink's steps, CPU us/record, {args.records:,} fraud-like records, this thread:")
        for name, used in steps.items():
            print(f"  {name:42s} {used:6.2f}")
        total = sum(used for name, used in steps.items() if not name.startswith(" "))
        print(f"  {'the steps above, in all':42s} {total:6.2f}")
        return  # no broker needed

    bootstrap = os.environ.get("PREDLOG_TEST_KAFKA")
    if not bootstrap:
        raise SystemExit("set PREDLOG_TEST_KAFKA=host:port (make bench starts a broker)")
    if args.child:
        kafka = flusher_cost(bootstrap, args.child, seed=1)
        print(json.dumps([kafka, flusher_cost(None, args.child, seed=1)]))
        return
    if args.base:
        versus(args, bootstrap)
    if args.only == "versus":
        return
    data = batches(args.records)
    json_rate, ipc_rate = encode_rates(data)
    print(
        f"encode: JSON per record {json_rate:,.0f} records/s | Arrow IPC per batch "
        f"{ipc_rate:,.0f} records/s | JSON/IPC = {json_rate / ipc_rate:.2f}x"
    )
    per_record = statistics.median(per_record_rate(bootstrap, data) for _ in range(3))
    packed = statistics.median(packed_rate(bootstrap, data) for _ in range(3))
    print(
        f"to Kafka (acks=all, idempotent, zstd): one message per record {per_record:,.0f} "
        f"records/s | one IPC message per 8,192 records {packed:,.0f} records/s | "
        f"ratio {per_record / packed:.2f}x"
    )
    rates = [flusher_to_kafka(bootstrap, args.records, seed) for seed in range(3)]
    print(
        f"flusher -> Kafka (one core, {args.records} records, from the ring to acknowledged): "
        f"median {statistics.median(rates):,.0f} records/s (runs: "
        + ", ".join(f"{r:,.0f}" for r in rates)
        + ")"
    )
    for name, speed, ratio in codecs(data):
        print(f"codec {name}: {speed:,.0f} MiB/s, ratio {ratio:.1f}")
    up = log_cost(bootstrap, broker_down=False, calls=5_000, repeats=15)
    down = log_cost(bootstrap, broker_down=True, calls=5_000, repeats=15)
    print(
        f"log() on the calling thread: broker up {up:.0f} ns/call | broker away "
        f"(spooling) {down:.0f} ns/call | down/up = {down / up:.2f}x"
    )


if __name__ == "__main__":
    main()
