"""The fraud model: logistic regression over scaled numbers and one-hot categories.

A linear model, so that every score can be explained exactly: each feature's
contribution to the log-odds is its coefficient times its transformed value,
with no approximation (used by the audit log's adverse-action reasons).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from examples.fraud_service import data

MODEL_VERSION = "v2.1.0"
DEFAULT_PATH = Path(
    os.environ.get("FRAUD_MODEL_PATH", Path.home() / ".cache/predlog-ci/fraud-model.joblib")
)


def build() -> Pipeline:
    return Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        (
                            "num",
                            # The feature store sometimes misses a value: impute, as in
                            # production, rather than refuse to score.
                            Pipeline(
                                [
                                    ("impute", SimpleImputer(strategy="median")),
                                    ("scale", StandardScaler()),
                                ]
                            ),
                            list(data.NUMERIC),
                        ),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), list(data.CATEGORICAL)),
                    ]
                ),
            ),
            ("classify", LogisticRegression(max_iter=2000, C=0.5)),
        ]
    )


def frame(rows: list[dict[str, Any]]) -> Any:
    """The model's input table (a pandas DataFrame, which the column transformer needs)."""
    import pandas as pd  # noqa: PLC0415  # only where the model runs

    return pd.DataFrame(rows, columns=list(data.FEATURES))


def contributions(model: Pipeline, features: dict[str, Any]) -> dict[str, float]:
    """Exact per-feature contributions to the log-odds of fraud (a linear model's terms).

    Each transformed column's coefficient times its value, summed back onto the feature
    it came from (the one-hot columns of a category add up to that category's term).
    """
    prepare = model.named_steps["prepare"]
    coefficients = model.named_steps["classify"].coef_[0]
    row = prepare.transform(frame([features]))
    row = row.toarray()[0] if hasattr(row, "toarray") else np.asarray(row)[0]
    out: dict[str, float] = {}
    for name, coefficient, value in zip(
        prepare.get_feature_names_out(), coefficients, row, strict=True
    ):
        _, _, column = name.partition("__")
        feature = next(f for f in data.FEATURES if column == f or column.startswith(f"{f}_"))
        out[feature] = out.get(feature, 0.0) + float(coefficient * value)
    return out


_loaded: dict[str, Pipeline] = {}


def score_features(features: dict[str, Any]) -> float:
    """Score one logged feature set with the saved model (``predlog replay --model``)."""
    model = _loaded.get("model")
    if model is None:
        model = _loaded["model"] = load()
    return float(model.predict_proba(frame([features]))[0, 1])


#: Plain-English adverse-action reasons, one per feature that can be a top reason.
REASONS = {
    "amount": "Transaction amount is unusually high",
    "hour": "Transaction made at an unusual time of day",
    "distance_from_home_km": "Transaction location is far from the cardholder's home",
    "card_age_days": "Card was issued recently",
    "txn_count_1h": "Many transactions on this card in the last hour",
    "txn_count_24h": "Many transactions on this card in the last 24 hours",
    "txn_count_7d": "Many transactions on this card in the last 7 days",
    "credit_score": "Credit score is lower than typical",
    "debt_to_income": "Debt-to-income ratio is high",
    "account_age_days": "Account was opened recently",
    "merchant_category": "Merchant category has elevated fraud risk",
    "user_segment": "Customer segment has elevated risk",
    "channel": "Purchase channel has elevated fraud risk",
    "region": "Region has elevated fraud risk",
}


def train(path: Path = DEFAULT_PATH, *, n: int = 60_000) -> dict[str, float]:
    cols = data.generate(n, seed=7)
    table = frame(data.rows({k: v for k, v in cols.items() if k != "is_fraud"}))
    split = int(n * 0.8)
    model = build()
    model.fit(table.iloc[:split], cols["is_fraud"][:split])
    auc = float(
        roc_auc_score(cols["is_fraud"][split:], model.predict_proba(table.iloc[split:])[:, 1])
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    joblib.dump({"model": model, "version": MODEL_VERSION}, tmp)
    tmp.replace(path)
    return {"auc": auc, "n": float(n), "fraud_rate": float(np.mean(cols["is_fraud"]))}


def load(path: Path = DEFAULT_PATH) -> Pipeline:
    if not path.exists():
        train(path)
    bundle = joblib.load(path)
    model: Pipeline = bundle["model"]
    return model


if __name__ == "__main__":
    print(train())
