"""What the middleware and ``predlog.record()`` cost a request.

The ASGI app is called directly (no HTTP server, no sockets), so the only
difference between the variants is the middleware itself:

* ``bare``: a trivial JSON endpoint;
* ``predlog``: the same app inside PredictionLogMiddleware (flusher running);
* ``predlog + record()``: the handler also calls ``predlog.record()`` with 8 fields.

The flusher is idle while requests are timed, so these are request-path costs;
the flusher's cost of decoding the captured exchanges is printed separately.
With tracing, every variant runs under the OpenTelemetry ASGI middleware.

Then predlog's total cost per request for ``bentoml serve``-style JSON bodies
(``{"tx": {...15 features...}}`` in, ``{"score":...,"decision":...}`` out): the
request path (``predlog`` over ``bare`` for an app that parses its request with
``json.loads`` and answers with ``json.dumps``, as a minimal model server does)
plus the flusher's time to decode those captures and write them to Parquet, per
record, as a ratio to that app's own time, all in the same run.

It also times ``predlog.record()`` alone, beside a plain ``dict.update`` of the
same fields. Each is run with no OpenTelemetry SDK and with one configured
(spans recorded, exported nowhere). Medians of repeated runs; ratios against the
bare app from the same run.

Usage: python benchmarks/bench_middleware.py [--requests N] [--repeats N] [--total-repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
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


#: A ``bentoml serve`` request body: the argument wrapped under its parameter name, with
#: the fraud example's transaction and the behavioural features a feature store adds.
BENTO_BODY = json.dumps(
    {
        "tx": {
            "transaction_id": "tx-00042",
            "card_id": "card-350",
            "amount": 204.92,
            "merchant_category": "grocery",
            "hour": 20,
            "user_segment": "high_value",
            "channel": "mobile",
            "region": "US",
            "txn_count_1h": 3,
            "txn_count_24h": 11,
            "avg_amount_30d": 87.4,
            "distance_from_home_km": 12.5,
            "card_age_days": 412,
            "is_new_device": False,
            "merchant_risk": 0.08,
        }
    }
).encode()


def make_json_app() -> Any:
    """A minimal model server: reads the whole body, ``json.loads`` it, unwraps the
    argument, ``json.dumps`` its answer. Its time is the yardstick of the total."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        body = message.get("body", b"")
        while message.get("more_body", False):
            message = await receive()
            body += message.get("body", b"")
        features = json.loads(body)["tx"]
        answer = json.dumps(
            {"score": 0.12 if features["amount"] < 1000 else 0.9, "decision": "approved"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app


SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/predict",
    "headers": [(b"content-type", b"application/json"), (b"x-request-id", b"req-123456")],
}


async def drive(app: Any, n: int, body: bytes = BODY) -> float:
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_: Any) -> None:
        pass

    start = time.perf_counter_ns()
    for _ in range(n):
        await app(dict(SCOPE), receive, send)
    return (time.perf_counter_ns() - start) / n / 1000


def idle_logger(data_dir: str, capacity: int) -> predlog.PredictionLogger:
    """A logger whose flusher stays idle until ``flush()``: a batch never fills and the
    interval never passes, so requests are timed alone and decoding separately."""
    return predlog.PredictionLogger(
        model_name="fraud",
        model_version="v1",
        data_dir=data_dir,
        install_signal_handlers=False,
        ring_capacity=capacity,
        batch_size=capacity,
        flush_interval_s=3600,
    )


def measure(n: int, repeats: int, *, tracing: bool) -> dict[str, float]:
    tmp = tempfile.mkdtemp(prefix="predlog-bench-")
    # The flusher stays idle while requests are timed (a batch never fills, the
    # interval never passes), so the figures are the request path alone; what it
    # costs the flusher to decode those captures is timed separately below.
    logger = idle_logger(tmp, n * 3 + 1)
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


def total_cost(n: int, repeats: int) -> dict[str, float]:
    """predlog's whole cost per ``bentoml serve``-style request, in µs: the request path
    (over the stdlib-JSON app, interleaved) and the flusher's decoding and Parquet
    writing of the same captures, per record, through the public ``flush()``."""
    tmp = tempfile.mkdtemp(prefix="predlog-bench-total-")
    logger = idle_logger(tmp, n + 1)  # the flusher stays idle while requests are timed
    variants = {
        "app": make_json_app(),
        "predlog": PredictionLogMiddleware(make_json_app(), logger=logger),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    flusher: list[float] = []
    for repeat in range(repeats):
        # Paired runs, in alternating order: the request path is the median of each
        # pair's difference, which drift and a busy neighbour hit alike on both sides.
        order = list(variants.items())
        for name, app in order if repeat % 2 == 0 else reversed(order):
            gc.collect()
            samples[name].append(asyncio.run(drive(app, n, BENTO_BODY)))
        pending = logger.stats()["pending"]
        gc.collect()
        start = time.perf_counter_ns()
        logger.flush()
        flusher.append((time.perf_counter_ns() - start) / pending / 1000)
    logger.close()
    stats = logger.stats()
    if stats["dropped"] or stats["failed"] or stats["delivered"] != n * repeats:
        raise SystemExit(f"records were lost, the figures would mislead: {stats}")
    app = statistics.median(samples["app"])
    path = statistics.median(p - a for p, a in zip(samples["predlog"], samples["app"], strict=True))
    flush = statistics.median(flusher)
    return {"app": app, "path": path, "flusher": flush, "total": path + flush}


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
    parser.add_argument(
        "--total-repeats", type=int, default=15, help="paired runs for the total-cost line"
    )
    args = parser.parse_args()

    rec, plain = record_cost(100_000, args.repeats)
    print(
        f"predlog.record(8 fields): {rec:.0f} ns | dict.update baseline {plain:.0f} ns | "
        f"ratio {rec / plain:.2f}x"
    )
    total = total_cost(args.requests, args.total_repeats)
    print(
        f"[total, bentoml-style JSON] app own time {total['app']:.2f} us | "
        f"predlog request path {total['path']:.2f} us | "
        f"flusher+Parquet {total['flusher']:.2f} us | total {total['total']:.2f} us | "
        f"total/app = {total['total'] / total['app']:.2f}x"
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
