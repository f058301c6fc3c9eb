"""A feature-store stub: per-card behavioural features with freshness timestamps.

Like a real online store it is keyed by card, returns each feature with the time
it was last computed, and is imperfect: about 8% of lookups return some stale
features (hours old) and about 4% a missing one. Values are a deterministic
function of the card id, so a replay sees what the original request saw.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from examples.fraud_service.data import NUMERIC

#: What the store knows about a card: every numeric feature but the transaction's own.
BEHAVIOURAL = tuple(name for name in NUMERIC if name not in ("amount", "hour"))


class FeatureStore:
    def __init__(self, *, snapshot_id: str = "fs-2026-11-26T00") -> None:
        self.snapshot_id = snapshot_id
        self._cache: dict[str, tuple[dict[str, Any], dict[str, float]]] = {}

    def fetch(self, card_id: str) -> tuple[dict[str, Any], dict[str, float], bool]:
        """Features, their last-update times (epoch seconds), and whether it was a cache hit."""
        hit = card_id in self._cache
        if not hit:
            self._cache[card_id] = self._compute(card_id)
        values, stamps = self._cache[card_id]
        return dict(values), dict(stamps), hit

    def _compute(self, card_id: str) -> tuple[dict[str, Any], dict[str, float]]:
        seed = int.from_bytes(hashlib.sha256(card_id.encode()).digest()[:8], "big")
        rng = np.random.default_rng(seed)
        risky = rng.random() < 0.05
        values: dict[str, Any] = {
            "distance_from_home_km": round(float(rng.exponential(250 if risky else 8)), 1),
            "card_age_days": int(rng.integers(0, 120) if risky else rng.integers(30, 3000)),
            "txn_count_1h": int(rng.poisson(3.5 if risky else 0.4)),
            "txn_count_24h": int(rng.poisson(12 if risky else 3)),
            "txn_count_7d": int(rng.poisson(35 if risky else 18)),
            "credit_score": int(np.clip(rng.normal(640 if risky else 700, 60), 300, 850)),
            "debt_to_income": round(float(np.clip(rng.normal(0.3, 0.12), 0, 1.5)), 3),
            "account_age_days": int(rng.integers(0, 400) if risky else rng.integers(60, 6000)),
        }
        now = time.time()
        stamps = {name: now - float(rng.uniform(1, 300)) for name in values}
        if rng.random() < 0.08:
            stale = BEHAVIOURAL[int(rng.integers(len(BEHAVIOURAL)))]
            stamps[stale] = now - float(rng.uniform(2, 30)) * 3600
        if rng.random() < 0.04:
            values[BEHAVIOURAL[int(rng.integers(len(BEHAVIOURAL)))]] = None
        return values, stamps
