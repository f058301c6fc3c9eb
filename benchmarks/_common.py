"""Shared pieces of the benchmarks: realistic records and robust timing."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

SEGMENTS = ("standard", "high_value", "new", "business")
CHANNELS = ("web", "mobile", "pos")
REGIONS = ("EU", "US", "APAC")
CATEGORIES = ("grocery", "electronics", "travel", "fuel", "restaurants", "online")


def fraud_features(rng: random.Random) -> dict[str, Any]:
    """Fifteen features of the kind a card-fraud model takes."""
    return {
        "amount": round(rng.lognormvariate(3.5, 1.2), 2),
        "merchant_category": rng.choice(CATEGORIES),
        "hour": rng.randrange(24),
        "distance_from_home_km": round(rng.expovariate(0.05), 1),
        "card_age_days": rng.randrange(2000),
        "txn_count_1h": rng.randrange(5),
        "txn_count_24h": rng.randrange(20),
        "txn_count_7d": rng.randrange(80),
        "credit_score": rng.randrange(300, 850),
        "debt_to_income": round(rng.random(), 3),
        "account_age_days": rng.randrange(5000),
        "user_segment": rng.choice(SEGMENTS),
        "channel": rng.choice(CHANNELS),
        "region": rng.choice(REGIONS),
        "is_new_device": rng.random() < 0.1,
    }


def median_ns_per_call(run: Callable[[int], float], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of the per-call time (ns) that ``run(calls)`` reports."""
    return statistics.median(run(calls) / calls * 1e9 for _ in range(repeats))


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
