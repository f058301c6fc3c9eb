"""The fraud example (examples/fraud_service) in the variant named by BENCH_VARIANT.

The same Scorer (feature store fetch, the scikit-learn model, the decision) in each:
bare, monitor (bentoml.monitor logging every feature the model saw, the score and
the decision), otel (BentoML tracing, every request sampled, spans kept in memory, plus the
scorer's own child spans), predlog, predlog_oplog (plus operational logs) and
predlog_kafka (predlog with PREDLOG_KAFKA_* set by the benchmark). Without the
middleware, the scorer's ``predlog.record()`` call finds no request and does nothing.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from benchmarks.servers.monitor import log_with_bentoml_monitor
from examples.fraud_service.scoring import PREDLOG_OPTIONS, Scorer, Transaction
from opentelemetry import trace

import predlog

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
TRACING: dict[str, Any] = (
    {"tracing": {"exporter_type": "in_memory", "sample_rate": 1.0}} if VARIANT == "otel" else {}
)


@bentoml.service(name="fraud_bench", workers=1, traffic={"timeout": 30}, **TRACING)
class Fraud:
    def __init__(self) -> None:
        if VARIANT == "otel":
            from bentoml._internal.configuration.containers import BentoMLContainer

            trace.set_tracer_provider(BentoMLContainer.tracer_provider.get())
        self.scorer = Scorer(on_scored=monitor if VARIANT == "monitor" else None)

    @bentoml.api
    def predict(self, transaction: Transaction) -> dict[str, Any]:
        return self.scorer.score(transaction)


def monitor(features: dict[str, Any], score: float, decision: str) -> None:
    log_with_bentoml_monitor("fraud", features, score, decision)


if VARIANT.startswith("predlog"):
    Fraud.add_asgi_middleware(
        predlog.PredictionLogMiddleware,
        **PREDLOG_OPTIONS,
        operational_log=VARIANT == "predlog_oplog",
    )
