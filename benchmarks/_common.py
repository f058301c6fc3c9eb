"""Shared pieces of the benchmarks: realistic records and robust timing."""

from __future__ import annotations

import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import predlog
from predlog.testing import paused

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


@contextmanager
def one_core() -> Iterator[None]:
    """Pin this process to one core for the block, as per-core targets are stated."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if affinity:
        os.sched_setaffinity(0, {min(affinity)})
    try:
        yield
    finally:
        if affinity:
            os.sched_setaffinity(0, affinity)


def log_fraud(log: predlog.PredictionLogger, n: int, rng: random.Random, prefix: str) -> None:
    """``n`` fraud-like records through ``log.log()``, request ids ``<prefix>-<i>``: 1,024
    feature sets drawn from ``rng`` first, then a score per record."""
    feats = [fraud_features(rng) for _ in range(1024)]
    for i in range(n):
        log.log(
            request_id=f"{prefix}-{i}",
            features=feats[i & 1023],
            score=rng.random(),
            decision="approved",
            threshold=0.5,
            user_segment="standard",
            channel="web",
            inference_ms=1.2,
        )


def flusher_rate(log: predlog.PredictionLogger, records: int, seed: int) -> float:
    """Records/s the flusher of ``log`` delivers, from a ring filled beforehand.

    The ring is filled while the test holds the flusher's drain lock, so no batch
    leaves before the clock starts (otherwise the flusher drains during the fill
    and the rate is overstated, by ~16% in one measured case). ``log`` needs a ring
    of at least ``records`` and is closed here.
    """
    before = log.stats()["delivered"]
    with paused(log):
        log_fraud(log, records, random.Random(seed), f"r{seed}")
        start = time.perf_counter()
    if not log.flush(timeout=600):
        raise SystemExit("the flusher did not finish within 10 minutes")
    elapsed = time.perf_counter() - start
    stats = log.stats()
    log.close(timeout=60)
    if stats["delivered"] - before != records:
        raise SystemExit(f"records were lost, the figures would mislead: {stats}")
    return records / elapsed


def cpu_model() -> str:
    """The CPU's model name, for the machine line every result carries."""
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
