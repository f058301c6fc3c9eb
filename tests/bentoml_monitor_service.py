"""A BentoML service that already uses ``bentoml.monitor``, switched to predlog's
monitor backend by its service config alone, for tests/test_bentoml_monitor.py."""

from __future__ import annotations

from typing import Any

import bentoml

import predlog


@bentoml.service(
    name="monitored",
    monitoring={
        "enabled": True,
        "type": "predlog.bentoml_monitor.PredlogMonitor",
        "options": {"score_column": "probability", "decision_column": "label"},
    },
)
class Monitored:
    @bentoml.api
    def predict(self, transaction: dict[str, Any]) -> dict[str, Any]:
        amount = float(transaction.get("amount", 0))
        probability = min(1.0, amount / 1000)
        label = "declined" if probability >= 0.5 else "approved"
        with bentoml.monitor("fraud") as mon:
            mon.log(amount, name="amount_seen", data_type="numerical", role="feature")
            mon.log(transaction.get("country", "??"), "country", "feature", "categorical")
            mon.log(probability, name="probability", role="prediction", data_type="numerical")
            mon.log(label, name="label", role="prediction", data_type="categorical")
            mon.log(transaction.get("chargeback"), "chargeback", "target", "categorical")
        return {"result": label}


predlog.instrument(Monitored, model_name="monitored", model_version="v1")
