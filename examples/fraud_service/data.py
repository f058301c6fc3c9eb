"""A synthetic but realistic card-transactions data set, with a few percent fraud.

Fraud here looks like it does in practice: larger amounts, far from home, at
night, in bursts (high 1 h / 24 h counts), on young cards and accounts, online.
Generated with a seed, so training is reproducible without any download.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

CATEGORIES = ("grocery", "fuel", "restaurants", "travel", "electronics", "online_services")
SEGMENTS = ("standard", "high_value", "new_customer", "business")
CHANNELS = ("pos", "web", "mobile")
REGIONS = ("EU", "US", "APAC", "LATAM")

NUMERIC = (
    "amount",
    "hour",
    "distance_from_home_km",
    "card_age_days",
    "txn_count_1h",
    "txn_count_24h",
    "txn_count_7d",
    "credit_score",
    "debt_to_income",
    "account_age_days",
)
CATEGORICAL = ("merchant_category", "user_segment", "channel", "region")
FEATURES = NUMERIC + CATEGORICAL


def generate(n: int, *, seed: int = 7, fraud_rate: float = 0.03) -> dict[str, npt.NDArray[Any]]:
    """Columns of ``n`` transactions plus the ``is_fraud`` label."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < fraud_rate
    pick = rng.choice

    def mix(normal: npt.NDArray[Any], fraudulent: npt.NDArray[Any]) -> npt.NDArray[Any]:
        # Each signal shows in only some frauds, as in real data: no single feature
        # (nor all of them together) separates the classes perfectly.
        return np.where(fraud & (rng.random(n) < 0.3), fraudulent, normal)

    cols: dict[str, npt.NDArray[Any]] = {
        "amount": np.round(mix(rng.lognormal(3.4, 1.0, n), rng.lognormal(5.0, 1.1, n)), 2),
        "hour": mix(
            np.clip(rng.normal(14, 4, n), 0, 23), rng.choice([0, 1, 2, 3, 4, 22, 23], n)
        ).astype(int),
        "distance_from_home_km": np.round(mix(rng.exponential(8, n), rng.exponential(250, n)), 1),
        "card_age_days": mix(rng.integers(30, 3000, n), rng.integers(0, 120, n)),
        "txn_count_1h": mix(rng.poisson(0.4, n), rng.poisson(3.5, n)),
        "txn_count_24h": mix(rng.poisson(3, n), rng.poisson(12, n)),
        "txn_count_7d": mix(rng.poisson(18, n), rng.poisson(35, n)),
        "credit_score": np.clip(mix(rng.normal(700, 60, n), rng.normal(640, 70, n)), 300, 850)
        .round()
        .astype(int),
        "debt_to_income": np.round(
            np.clip(mix(rng.normal(0.3, 0.12, n), rng.normal(0.45, 0.15, n)), 0, 1.5), 3
        ),
        "account_age_days": mix(rng.integers(60, 6000, n), rng.integers(0, 400, n)),
        "merchant_category": mix(
            pick(CATEGORIES, n, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1]),
            pick(CATEGORIES, n, p=[0.05, 0.05, 0.05, 0.25, 0.35, 0.25]),
        ),
        "user_segment": pick(SEGMENTS, n, p=[0.6, 0.15, 0.15, 0.1]),
        "channel": mix(pick(CHANNELS, n, p=[0.5, 0.3, 0.2]), pick(CHANNELS, n, p=[0.1, 0.6, 0.3])),
        "region": pick(REGIONS, n, p=[0.4, 0.35, 0.15, 0.1]),
    }
    cols["is_fraud"] = fraud.astype(int)
    return cols


def rows(cols: dict[str, npt.NDArray[Any]]) -> list[dict[str, Any]]:
    """The columns as one dict per transaction, with plain Python values."""
    names = list(cols)
    lists = [cols[name].tolist() for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]
