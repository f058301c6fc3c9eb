"""The fraud-scoring BentoML service, with predlog enabled in one line.

From the repository root::

    PREDLOG_PSEUDONYM_KEY=... bentoml serve examples.fraud_service.service:FraudService

``POST /predict`` takes ``{"transaction": {...}}``, fetches the card's behavioural
features from the feature store, scores them, and answers with the score and a
decision: declined, review or approved.
"""

from __future__ import annotations

from typing import Any

import bentoml

from examples.fraud_service.scoring import PREDLOG_OPTIONS, Scorer, Transaction
from predlog import PredictionLogMiddleware


@bentoml.service(name="fraud", traffic={"timeout": 30})
class FraudService:
    def __init__(self) -> None:
        self.scorer = Scorer()

    @bentoml.api
    def predict(self, transaction: Transaction) -> dict[str, Any]:
        return self.scorer.score(transaction)


FraudService.add_asgi_middleware(PredictionLogMiddleware, **PREDLOG_OPTIONS)
