"""What log() costs the calling thread, and how fast the flusher drains to Parquet.

Prints, from one run on this machine:

* ns per ``log()`` call on the calling thread (median of repeated runs), beside a
  ``collections.deque.append`` baseline and an empty loop measured in the same run,
  and the ratio between them (absolute figures move with the machine; the ratio
  much less so);
* the same with the flusher busy draining to Parquet on another thread;
* records per second the flusher drains to Parquet, pinned to one core.

Usage: python benchmarks/bench_capture.py [--quick]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import predlog
from _common import flusher_rate, fraud_features, one_core
from predlog.testing import MemorySink


class NullSink(MemorySink):
    def export(self, batch: object) -> None:
        pass


def per_call_ns(loop: Callable[[int], None], calls: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        loop(calls)
        samples.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(samples)


def capture_cost(calls: int, repeats: int, *, busy_flusher: bool) -> dict[str, float]:
    rng = random.Random(7)
    feats = [fraud_features(rng) for _ in range(1024)]
    ids = [f"req-{i}" for i in range(1024)]
    tmp = tempfile.mkdtemp(prefix="predlog-bench-")
    if busy_flusher:
        log = predlog.PredictionLogger(
            model_name="fraud",
            model_version="v1",
            data_dir=tmp,
            ring_capacity=1 << 16,
            batch_size=4096,
            flush_interval_s=0.05,
            install_signal_handlers=False,
        )
    else:
        # An idle flusher: the ring holds one repeat's calls and is flushed, untimed,
        # between repeats, so memory is recycled as in a steady-state server.
        log = predlog.PredictionLogger(
            model_name="fraud",
            model_version="v1",
            sinks=[NullSink()],
            ring_capacity=calls + 1,
            batch_size=calls + 1,
            flush_interval_s=3600,
            install_signal_handlers=False,
        )
    fn = log.log

    def run_log_timed(n: int) -> float:
        start = time.perf_counter_ns()
        for i in range(n):
            j = i & 1023
            fn(
                request_id=ids[j],
                features=feats[j],
                score=0.42,
                decision="approved",
                threshold=0.5,
                user_segment="standard",
                channel="web",
            )
        elapsed = time.perf_counter_ns() - start
        if not busy_flusher:
            log.flush()  # empty the ring for the next repeat, untimed
        return elapsed / n

    def run_deque(n: int) -> None:
        d: collections.deque[object] = collections.deque(maxlen=1 << 16)
        append = d.append
        for i in range(n):
            j = i & 1023
            append((ids[j], feats[j], 0.42, "approved", 0.5, "standard", "web"))

    def run_empty(n: int) -> None:
        for i in range(n):
            j = i & 1023
            (ids[j], feats[j])

    log_ns = statistics.median(run_log_timed(calls) for _ in range(repeats))
    deque_ns = per_call_ns(run_deque, calls, repeats)
    empty_ns = per_call_ns(run_empty, calls, repeats)
    log.close()
    return {"log": log_ns, "deque": deque_ns, "empty": empty_ns}


def flusher_throughput(records: int, repeats: int) -> list[float]:
    rates = []
    with one_core():
        for r in range(repeats):
            log = predlog.PredictionLogger(
                model_name="fraud",
                model_version="v1",
                data_dir=tempfile.mkdtemp(prefix="predlog-bench-"),
                ring_capacity=records + 1,
                batch_size=8192,
                flush_interval_s=3600,
                install_signal_handlers=False,
            )
            rates.append(flusher_rate(log, records, seed=r))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    args = parser.parse_args()
    calls, repeats, records = (20_000, 5, 50_000) if args.quick else (50_000, 21, 300_000)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, pid {os.getpid()}")
    for busy in (False, True):
        c = capture_cost(calls, repeats, busy_flusher=busy)
        label = "flusher draining to Parquet" if busy else "flusher idle"
        print(
            f"log() [{label}]: {c['log']:.0f} ns/call | deque.append baseline "
            f"{c['deque']:.0f} ns | empty loop {c['empty']:.0f} ns | "
            f"log/deque = {c['log'] / c['deque']:.2f}x | "
            f"log net of loop = {c['log'] - c['empty']:.0f} ns"
        )
    rates = flusher_throughput(records, 3)
    print(
        f"flusher -> Parquet (one core, {records} records): median "
        f"{statistics.median(rates):,.0f} records/s (runs: "
        + ", ".join(f"{r:,.0f}" for r in rates)
        + ")"
    )


if __name__ == "__main__":
    main()
