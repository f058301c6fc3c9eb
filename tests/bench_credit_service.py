"""A BentoML credit service without predlog's line, for ``predlog bench`` before adopting.

Unlike the fraud example: its API is ``/assess``, the body ``{"applicant": {...}}``, the
answer ``{"probability": ..., "label": "approve" | "refer" | "decline"}``.
"""

from __future__ import annotations

import math
from typing import Any

import bentoml


@bentoml.service(name="credit_bare")
class CreditBare:
    @bentoml.api
    def assess(self, applicant: dict[str, Any]) -> dict[str, Any]:
        ratio = float(applicant.get("debt", 0)) / max(float(applicant.get("income", 1)), 1.0)
        probability = 1 / (1 + math.exp(-6 * (ratio - 0.4)))
        label = "decline" if probability > 0.7 else "refer" if probability > 0.4 else "approve"
        return {"probability": round(probability, 4), "label": label}
