"""What the middleware and ``predlog.record()`` cost a request.

The ASGI app is called directly (no HTTP server, no sockets), so the only
difference between the variants is the middleware itself:

* ``bare``: a trivial JSON endpoint;
* ``predlog``: the same app inside PredictionLogMiddleware (flusher running);
* ``predlog + record()``: the handler also calls ``predlog.record()`` with 8 fields.

The flusher is idle while requests are timed, so these are request-path costs;
the flusher's cost of decoding the captured exchanges is printed separately.
With tracing, every variant runs under the OpenTelemetry ASGI middleware.

It also times ``predlog.record()`` alone, beside a plain ``dict.update`` of the
same fields. Each is run with no OpenTelemetry SDK and with one configured
(spans recorded, exported nowhere). Medians of repeated runs; ratios against the
bare app from the same run.

Usage: python benchmarks/bench_middleware.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import predlog
from predlog import PredictionLogMiddleware

BODY = b'{"transaction": {"amount": 120.5, "merchant_category": "grocery", "hour": 13}}'
RESPONSE = b'{"score":0.12,"decision":"approved"}'
FIELDS = {
    "score": 0.12,
    "decision": "approved",
    "threshold": 0.7,
    "feature_store_snapshot_id": "fs-1",
    "feature_fetch_ms": 1.2,
    "inference_ms": 0.8,
    "user_segment": "standard",
    "feature_cache_hit": True,
}


def make_app(record: bool) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if record:
            predlog.record(**FIELDS)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"36")],
            }
        )
        await send({"type": "http.response.body", "body": RESPONSE})

    return app


SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/predict",
    "headers": [(b"content-type", b"application/json"), (b"x-request-id", b"req-123456")],
}


async def drive(app: Any, n: int) -> float:
    message = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_: Any) -> None:
        pass

    start = time.perf_counter_ns()
    for _ in range(n):
        await app(dict(SCOPE), receive, send)
    return (time.perf_counter_ns() - start) / n / 1000


def measure(n: int, repeats: int, *, tracing: bool) -> dict[str, float]:
    tmp = tempfile.mkdtemp(prefix="predlog-bench-")
    # The flusher stays idle while requests are timed (a batch never fills, the
    # interval never passes), so the figures are the request path alone; what it
    # costs the flusher to decode those captures is timed separately below.
    capacity = n * 3 + 1
    logger = predlog.PredictionLogger(
        model_name="fraud",
        model_version="v1",
        data_dir=tmp,
        install_signal_handlers=False,
        ring_capacity=capacity,
        batch_size=capacity,
        flush_interval_s=3600,
    )
    variants = {
        "bare": make_app(record=False),
        "predlog": PredictionLogMiddleware(make_app(record=False), logger=logger),
        "predlog + record()": PredictionLogMiddleware(make_app(record=True), logger=logger),
    }
    if tracing:
        # A traced server already has the OpenTelemetry ASGI middleware and its server
        # span; predlog's increment is measured against that, not against no tracing.
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        variants = {name: OpenTelemetryMiddleware(app) for name, app in variants.items()}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    drain_rates: list[float] = []
    for _ in range(repeats):
        for name, app in variants.items():  # interleaved, so drift hits all alike
            # Untimed: collect the previous run's garbage, or the next run pays for it.
            gc.collect()
            samples[name].append(asyncio.run(drive(app, n)))
        pending = logger.stats()["pending"]
        start = time.perf_counter()
        logger.flush()  # decoding untimed above, timed here (with the Parquet file's publish)
        drain_rates.append(pending / (time.perf_counter() - start))
    logger.close()
    stats = logger.stats()
    if stats["dropped"] or stats["failed"]:
        raise SystemExit(f"records were lost, the figures would mislead: {stats}")
    result = {name: statistics.median(values) for name, values in samples.items()}
    result["drain"] = statistics.median(drain_rates)
    return result


def record_cost(n: int, repeats: int) -> tuple[float, float]:
    from predlog._context import bind_fields, unbind_fields

    def timed(fn: Any) -> float:
        start = time.perf_counter_ns()
        for _ in range(n):
            fn(**FIELDS)
        return (time.perf_counter_ns() - start) / n

    target: dict[str, Any] = {}
    token = bind_fields(target)
    try:
        rec = statistics.median(timed(predlog.record) for _ in range(repeats))
        plain = statistics.median(timed(target.update) for _ in range(repeats))
    finally:
        unbind_fields(token)
    return rec, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    rec, plain = record_cost(100_000, args.repeats)
    print(
        f"predlog.record(8 fields): {rec:.0f} ns | dict.update baseline {plain:.0f} ns | "
        f"ratio {rec / plain:.2f}x"
    )
    for tracing in (False, True):
        if tracing:
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider

            trace.set_tracer_provider(TracerProvider())
        result = measure(args.requests, args.repeats, tracing=tracing)
        drain = result.pop("drain")
        bare = result["bare"]
        label = "OTel SDK + ASGI middleware" if tracing else "no OpenTelemetry SDK"
        for name, micros in result.items():
            print(
                f"[{label}] {name:20s} {micros:7.2f} us/request | "
                f"+{micros - bare:6.2f} us over bare | ratio {micros / bare:.2f}x"
            )
        print(f"[{label}] flusher decoding middleware captures to Parquet: {drain:,.0f} records/s")


if __name__ == "__main__":
    main()
