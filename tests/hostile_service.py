"""A one-worker BentoML service taking any JSON object, for the hostile-input test.

``HOSTILE_PREDLOG=1`` adds predlog with a 4 KiB body cap; otherwise the service
runs bare, so the test can compare every response with and without predlog.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml

import predlog

MAX_BODY_BYTES = 4096


@bentoml.service(name="hostile", workers=1, traffic={"timeout": 30})
class Echo:
    @bentoml.api
    def predict(self, transaction: dict[str, Any]) -> dict[str, Any]:
        amount = transaction.get("amount", 0)
        score = min(1.0, float(amount) / 1000) if isinstance(amount, (int, float)) else 0.0
        return {"score": score, "keys": len(transaction), "marker": transaction.get("marker")}


if os.environ.get("HOSTILE_PREDLOG") == "1":
    Echo.add_asgi_middleware(
        predlog.PredictionLogMiddleware,
        model_name="hostile",
        model_version="v1",
        max_body_bytes=MAX_BODY_BYTES,
    )
