"""The bentoml.monitor variant's logging, shared by both benchmark services."""

from __future__ import annotations

from typing import Any

import bentoml


def log_with_bentoml_monitor(
    name: str, features: dict[str, Any], score: float, decision: str
) -> None:
    """What predlog records, through bentoml.monitor: every feature, score, decision.

    bentoml.monitor writes synchronously on the request path: the built-in anchor the
    predlog variants are compared with.
    """
    with bentoml.monitor(name) as mon:
        for key, value in features.items():
            kind = "numerical" if isinstance(value, (int, float)) else "categorical"
            mon.log(value, key, "feature", kind)
        mon.log(score, "score", "prediction", "numerical")
        mon.log(decision, "decision", "prediction", "categorical")
