"""Flusher on a thread or as an asyncio task: what each does to the event loop.

An asyncio server loop handles a steady stream of "requests" (each logs one
prediction). Beside it, an arrivals thread hands the loop a callback at random
moments (Poisson, ~2,000 a second) with ``call_soon_threadsafe``, as a socket
becoming readable would, and records how long each waited to run: the delay a
request arriving at that moment would pay. Sampling arrivals uniformly in time
matters: a probe that re-arms itself undercounts long stalls. The same load runs
in each mode, alternating, in this process:

* ``thread``: predlog's flusher on its background thread (what ships);
* ``task``:   a task on the loop runs each drain-decode-write pass (``log.flush()``
  every 0.2 s), and the loop waits for it as if it did the work itself.

Printed: arrival delay p50/p99/p99.9/max for each, the ratio task/thread, and
the records delivered. Usage: python benchmarks/bench_flusher_mode.py [--seconds S] [--rate R]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import predlog
from _common import fraud_features


def arrivals(loop: asyncio.AbstractEventLoop, stop: float, delays: list[float]) -> threading.Thread:
    """A thread handing ``loop`` a callback at random moments (Poisson, ~2,000 a second)
    until ``stop`` (monotonic), as a socket becoming readable would; each callback adds
    to ``delays`` how long it waited to run, in ms. Returned unstarted."""

    def arrived(sent: float) -> None:
        delays.append((time.perf_counter() - sent) * 1000)

    def send() -> None:
        pace = random.Random(5)
        while time.monotonic() < stop:
            time.sleep(pace.expovariate(2000))
            loop.call_soon_threadsafe(arrived, time.perf_counter())

    return threading.Thread(target=send, daemon=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(mode: str, seconds: float, rate: int) -> dict[str, float]:
    rng = random.Random(3)
    feats = [fraud_features(rng) for _ in range(1024)]
    log = predlog.PredictionLogger(
        model_name="fraud",
        model_version="v1",
        data_dir=tempfile.mkdtemp(),
        ring_capacity=1 << 17,
        batch_size=8192 if mode == "thread" else 1 << 17,
        flush_interval_s=0.2 if mode == "thread" else 3600,
        install_signal_handlers=False,
    )
    stop = time.monotonic() + seconds
    delays: list[float] = []
    sender = arrivals(asyncio.get_running_loop(), stop, delays)

    async def traffic() -> None:
        i = 0
        per_tick = max(1, rate // 1000)
        while time.monotonic() < stop:
            for _ in range(per_tick):
                log.log(
                    request_id=f"r{i}",
                    features=feats[i & 1023],
                    score=0.3,
                    decision="approved",
                    user_segment="standard",
                    channel="web",
                )
                i += 1
            await asyncio.sleep(0.001)

    async def task_flusher() -> None:
        while time.monotonic() < stop:
            await asyncio.sleep(0.2)
            # The loop waits while the drain runs, as if it ran the drain itself.
            log.flush()

    sender.start()
    jobs = [traffic()]
    if mode == "task":
        jobs.append(task_flusher())
    await asyncio.gather(*jobs)
    sender.join()
    await asyncio.sleep(0.05)  # let the last arrivals run
    log.close()
    stats = log.stats()
    return {
        "p50": statistics.median(delays),
        "p99": percentile(delays, 0.99),
        "p999": percentile(delays, 0.999),
        "max": max(delays),
        "delivered": stats["delivered"],
        "captured": stats["captured"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=20_000, help="predictions per second")
    args = parser.parse_args()
    results = {}
    for mode in ("thread", "task", "thread", "task"):  # alternate to cancel drift
        r = asyncio.run(run(mode, args.seconds, args.rate))
        results.setdefault(mode, []).append(r)
    summary = {}
    for mode, runs in results.items():
        summary[mode] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        s = summary[mode]
        print(
            f"{mode:6s}: arrival delay p50 {s['p50']:.3f} ms, p99 {s['p99']:.2f} ms, "
            f"p99.9 {s['p999']:.2f} ms, max {s['max']:.2f} ms; "
            f"delivered {s['delivered']:.0f}/{s['captured']:.0f}"
        )
    t, k = summary["thread"], summary["task"]
    print(
        f"task/thread: p99 delay {k['p99'] / max(t['p99'], 1e-9):.2f}x, "
        f"p99.9 {k['p999'] / max(t['p999'], 1e-9):.2f}x, "
        f"max {k['max'] / max(t['max'], 1e-9):.2f}x"
    )


if __name__ == "__main__":
    main()
