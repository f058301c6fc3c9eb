"""A four-worker BentoML service with predlog, for the multi-worker test."""

from __future__ import annotations

from typing import Any

import bentoml

import predlog


@bentoml.service(name="multi_worker", workers=4, traffic={"timeout": 30})
class Scorer:
    @bentoml.api
    def predict(self, transaction: dict[str, Any]) -> dict[str, Any]:
        score = min(1.0, float(transaction.get("amount", 0)) / 1000)
        return {"score": score, "decision": "declined" if score >= 0.5 else "approved"}


predlog.instrument(Scorer, model_name="multi", model_version="v1")
