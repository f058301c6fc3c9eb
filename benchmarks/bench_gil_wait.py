"""How long a request waits for the GIL while the flusher decodes: native against Python.

An asyncio loop serves a steady stream of ``bentoml serve``-style requests through
PredictionLogMiddleware (called directly, no sockets), and the flusher thread decodes
them in batches beside it. An arrivals thread hands the loop a callback at random
moments (Poisson, ~2,000 a second) with ``call_soon_threadsafe``, as a socket becoming
readable would, and records how long each waited to run. A request arriving while the
flusher holds the GIL waits for it: up to a whole switch interval
(``sys.getswitchinterval()``, 5 ms) per hand-over.

Two variants alternate in this process, the same load each: the flusher with the
native decoder (parsing with the GIL released) and with the Python decoder. Printed:
arrival delay p50/p99/p99.9/max of each, how many arrivals waited longer than half a
switch interval, and the ratios; and that no record was lost.

Usage: python benchmarks/bench_gil_wait.py [--seconds S] [--rate R] [--rounds K]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson

import predlog
from bench_decode import FEATURES_15
from bench_flusher_mode import arrivals, percentile
from predlog import PredictionLogMiddleware
from predlog.flush import _native

RESPONSE = b'{"score":0.12,"decision":"approved"}'


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"36")],
        }
    )
    await send({"type": "http.response.body", "body": RESPONSE})


async def run(native: bool, seconds: float, rate: int) -> dict[str, float]:
    log = predlog.PredictionLogger(
        model_name="fraud",
        model_version="v1",
        data_dir=tempfile.mkdtemp(),
        ring_capacity=1 << 17,
        install_signal_handlers=False,
        native_decode=native,
    )
    served = PredictionLogMiddleware(app, logger=log)
    bodies = [orjson.dumps({"tx": {**FEATURES_15, "amount": 10.5 + i}}) for i in range(1024)]
    stop = time.monotonic() + seconds
    delays: list[float] = []
    sender = arrivals(asyncio.get_running_loop(), stop, delays)

    async def send(_: Any) -> None:
        pass

    async def traffic() -> None:
        i = 0
        per_tick = max(1, rate // 1000)
        while time.monotonic() < stop:
            for _ in range(per_tick):
                message = {"type": "http.request", "body": bodies[i & 1023], "more_body": False}

                async def receive(m: dict[str, Any] = message) -> dict[str, Any]:
                    return m

                scope = {
                    "type": "http",
                    "method": "POST",
                    "path": "/predict",
                    "headers": [(b"content-type", b"application/json")],
                }
                await served(scope, receive, send)
                i += 1
            await asyncio.sleep(0.001)

    sender.start()
    await traffic()
    sender.join()
    await asyncio.sleep(0.05)
    log.close()
    stats = log.stats()
    half = sys.getswitchinterval() * 1000 / 2
    return {
        "p50": statistics.median(delays),
        "p99": percentile(delays, 0.99),
        "p999": percentile(delays, 0.999),
        "max": max(delays),
        "long": sum(d > half for d in delays) / len(delays),
        "lost": stats["captured"] - stats["delivered"],
        "delivered": stats["delivered"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=8_000, help="requests per second")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not _native.AVAILABLE:
        raise SystemExit("predlog._rust is not built: pip install -e . with cargo on PATH")
    results: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for name in ("python", "native"):  # alternate to cancel drift
            r = asyncio.run(run(name == "native", args.seconds, args.rate))
            results.setdefault(name, []).append(r)
    summary = {}
    for name, runs in results.items():
        summary[name] = s = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{name:6s}: arrival delay p50 {s['p50']:.3f} ms, p99 {s['p99']:.2f} ms, "
            f"p99.9 {s['p999']:.2f} ms, max {s['max']:.2f} ms; "
            f"waited > half a switch interval {s['long']:.2%}; "
            f"delivered {s['delivered']:.0f}, lost {s['lost']:.0f}"
        )
        if any(r["lost"] for r in runs):
            raise SystemExit("records were lost, the figures would mislead")
    p, n = summary["python"], summary["native"]
    print(
        f"native/python: p99 delay {n['p99'] / max(p['p99'], 1e-9):.2f}x, "
        f"p99.9 {n['p999'] / max(p['p999'], 1e-9):.2f}x, "
        f"long waits {n['long'] / max(p['long'], 1e-9):.2f}x"
    )


if __name__ == "__main__":
    main()
