"""Re-scoring a logged prediction with a model: would it decide the same today?"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from predlog.tools.analytics._data import AnalyticsError, Predictions


def load_scorer(spec: str) -> Callable[[Mapping[str, Any]], Any]:
    """``package.module:callable`` (features -> score, or a mapping with ``score`` and
    ``decision``), or ``bentoml:<tag>`` for a scikit-learn model in the BentoML store."""
    if spec.startswith("bentoml:"):
        import bentoml  # noqa: PLC0415  # only for BentoML model tags
        import pandas as pd  # noqa: PLC0415

        tag = spec.removeprefix("bentoml:")
        try:
            model = bentoml.sklearn.load_model(tag)
        except Exception as exc:  # noqa: BLE001  # BentoML raises its own kinds; one line
            raise AnalyticsError(
                f"cannot load {tag} from the BentoML model store: {exc} (save it first "
                "with bentoml.sklearn.save_model, or give --model module:callable)"
            ) from None
        columns = list(getattr(model, "feature_names_in_", []))

        def score(features: Mapping[str, Any]) -> float:
            frame = pd.DataFrame([dict(features)])
            if columns:
                frame = frame.reindex(columns=columns)
            return float(model.predict_proba(frame)[0, 1])

        return score
    module, sep, name = spec.partition(":")
    if not sep:
        raise AnalyticsError(f"--model must be module:callable or bentoml:<tag>, got {spec!r}")
    try:
        target = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise AnalyticsError(f"cannot load {spec}: {exc}") from exc
    if not callable(target):
        raise AnalyticsError(f"{spec} is not callable")
    scorer: Callable[[Mapping[str, Any]], Any] = target
    return scorer


def replay(
    request_id: str,
    *,
    model: str,
    data_dir: str | Path | None = None,
    table: str | None = None,
) -> list[dict[str, Any]]:
    """Logged and replayed score (and decision, when the scorer gives one), side by side."""
    data = Predictions(data_dir, table=table)
    rows = data.query(
        "SELECT prediction_id, model_name, model_version, features, raw_score, decision, "
        "decision_threshold FROM predictions WHERE request_id = ? ORDER BY timestamp_utc",
        [request_id],
    ).fetchall()
    if not rows:
        raise AnalyticsError(f"no prediction with request id {request_id!r} in {data.where}")
    scorer = load_scorer(model)
    out = []
    for pid, name, version, features_json, score, decision, threshold in rows:
        if features_json is None:
            raise AnalyticsError(f"prediction {pid} has no logged features to replay")
        result = scorer(json.loads(features_json))
        replayed_score = result.get("score") if isinstance(result, Mapping) else float(result)
        replayed_decision = result.get("decision") if isinstance(result, Mapping) else None
        out.append(
            {
                "prediction_id": str(pid),
                "logged": {"model": f"{name} {version}", "score": score, "decision": decision},
                "replayed": {
                    "model": model,
                    "score": replayed_score,
                    "decision": replayed_decision,
                },
                "threshold": threshold,
                "score_difference": None if score is None else replayed_score - score,
                "same_side_of_threshold": (
                    None
                    if score is None or threshold is None
                    else (score >= threshold) == (replayed_score >= threshold)
                ),
            }
        )
    return out
