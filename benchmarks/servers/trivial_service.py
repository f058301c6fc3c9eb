"""A trivial BentoML service, in the variant named by BENCH_VARIANT, for bench_server.py.

bare, monitor (bentoml.monitor logging the same fields), otel (BentoML tracing, every
request sampled, spans kept in memory), predlog, predlog_oplog (plus operational logs),
predlog_kafka (predlog with PREDLOG_KAFKA_* set by the benchmark).

With BENCH_GC_LOG=<file>, each process appends its garbage-collection time and count
per generation to that file (JSON lines, at most once a second): how the worker's
full collections were found to set p99 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from benchmarks.servers.monitor import log_with_bentoml_monitor

import predlog

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
TRACING: dict[str, Any] = (
    {"tracing": {"exporter_type": "in_memory", "sample_rate": 1.0}} if VARIANT == "otel" else {}
)


@bentoml.service(name="trivial", workers=1, traffic={"timeout": 30}, **TRACING)
class Trivial:
    @bentoml.api
    def predict(self, transaction: dict[str, Any]) -> dict[str, Any]:
        score, decision = 0.42, "approved"
        if VARIANT == "monitor":
            log_with_bentoml_monitor("trivial", transaction, score, decision)
        return {"score": score, "decision": decision}


if VARIANT.startswith("predlog"):
    Trivial.add_asgi_middleware(
        predlog.PredictionLogMiddleware,
        model_name="trivial",
        model_version="v1",
        operational_log=VARIANT == "predlog_oplog",
    )

if os.environ.get("BENCH_GC_LOG"):
    import atexit
    import gc
    import json
    import time

    _gc = {"start": 0.0, "seconds": [0.0, 0.0, 0.0], "count": [0, 0, 0], "written": 0.0}

    def _gc_timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _gc["start"] = time.perf_counter()
        else:
            gen = info["generation"]
            _gc["seconds"][gen] += time.perf_counter() - _gc["start"]  # type: ignore[index]
            _gc["count"][gen] += 1  # type: ignore[index]
            if time.perf_counter() - _gc["written"] > 1:  # type: ignore[operator]
                _gc["written"] = time.perf_counter()
                _gc_report()

    gc.callbacks.append(_gc_timer)

    @atexit.register
    def _gc_report() -> None:
        with open(os.environ["BENCH_GC_LOG"], "a") as out:
            out.write(json.dumps({"variant": VARIANT, "pid": os.getpid(), **_gc}) + "\n")
