"""The fraud-scoring BentoML service, with predlog enabled in one line.

From the repository root::

    PREDLOG_PSEUDONYM_KEY=... bentoml serve examples.fraud_service.service:FraudService

``POST /predict`` takes ``{"transaction": {...}}``, fetches the card's behavioural
features from the feature store, scores them, and answers with the score and a
decision: declined, review or approved.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from opentelemetry import trace

import predlog
from examples.fraud_service.scoring import PREDLOG_OPTIONS, Scorer, Transaction


def tracing_config() -> dict[str, Any]:
    """Export traces over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return {}
    return {
        "tracing": {
            "exporter_type": "otlp",
            "sample_rate": 1.0,
            "otlp": {"protocol": "http", "endpoint": f"{endpoint.rstrip('/')}/v1/traces"},
        }
    }


@bentoml.service(name="fraud", traffic={"timeout": 30}, **tracing_config())
class FraudService:
    def __init__(self) -> None:
        if tracing_config():
            # BentoML gives its tracer provider to its own middleware only; make it the
            # global one so the scorer's child spans join the request's trace.
            from bentoml._internal.configuration.containers import (  # noqa: PLC0415
                BentoMLContainer,  # only when tracing is on
            )

            trace.set_tracer_provider(BentoMLContainer.tracer_provider.get())
        self.scorer = Scorer()

    @bentoml.api
    def predict(self, transaction: Transaction) -> dict[str, Any]:
        return self.scorer.score(transaction)


predlog.instrument(FraudService, **PREDLOG_OPTIONS)
