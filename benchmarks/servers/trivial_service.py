"""A trivial BentoML service, in the variant named by BENCH_VARIANT, for bench_server.py.

bare, monitor (bentoml.monitor logging the same fields), otel (BentoML tracing, every
request sampled, spans kept in memory), predlog, predlog_oplog (plus operational logs).
"""

from __future__ import annotations

import os
from typing import Any

import bentoml

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
            with bentoml.monitor("trivial") as mon:
                for name, value in transaction.items():
                    kind = "numerical" if isinstance(value, (int, float)) else "categorical"
                    mon.log(value, name, "feature", kind)
                mon.log(score, "score", "prediction", "numerical")
                mon.log(decision, "decision", "prediction", "categorical")
        return {"score": score, "decision": decision}


if VARIANT.startswith("predlog"):
    Trivial.add_asgi_middleware(
        predlog.PredictionLogMiddleware,
        model_name="trivial",
        model_version="v1",
        operational_log=VARIANT == "predlog_oplog",
    )
