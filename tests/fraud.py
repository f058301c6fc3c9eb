"""Driving the fraud example: sending transactions and checking what predlog wrote."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from predlog.flush import Pseudonymiser
from tests.helpers import start_bento

PSEUDONYM_KEY = "test-key-0123456789abcdef"
PSEUDONYMS = Pseudonymiser(key=PSEUDONYM_KEY, key_id=None, pii_fields=["card_id"])


def transactions(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "transaction_id": f"tx-{seed}-{i}",
            "card_id": f"card-{rng.randrange(40)}",
            "amount": round(rng.lognormvariate(3.5, 1.2), 2),
            "merchant_category": rng.choice(["grocery", "fuel", "travel", "electronics"]),
            "hour": rng.randrange(24),
            "user_segment": rng.choice(["standard", "high_value", "new_customer"]),
            "channel": rng.choice(["pos", "web", "mobile"]),
            "region": rng.choice(["EU", "US", "APAC"]),
        }
        for i in range(n)
    ]


def check_records(sent: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """Every sent request has exactly one record that matches what was sent and returned.

    ``sent`` items: {"request_id", "transaction", "response", "given_id"}.
    """
    by_id = {r["request_id"]: r for r in records}
    assert len(by_id) == len(records), "duplicate records"
    assert set(by_id) == {s["request_id"] for s in sent}
    for s in sent:
        r = by_id[s["request_id"]]
        tx, response = s["transaction"], s["response"]
        features = json.loads(r["features"])
        # From the body:
        assert features["amount"] == tx["amount"]
        assert features["merchant_category"] == tx["merchant_category"]
        assert features["transaction_id"] == tx["transaction_id"]
        # card_id is PII: never in the clear, always its keyed hash.
        assert features["card_id"] == PSEUDONYMS.pseudonym(tx["card_id"])
        # From predlog.record(): the feature-store values the model saw.
        assert "txn_count_1h" in features
        assert "credit_score" in features
        assert r["feature_store_snapshot_id"] == "fs-2026-11-26T00"
        assert r["feature_freshness_max_age_seconds"] > 0
        # What the service answered:
        assert r["raw_score"] == response["score"]
        assert r["decision"] == response["decision"]
        assert r["decision_threshold"] == 0.7
        assert r["model_name"] == "fraud"
        assert r["model_version"] == response["model_version"] == "v2.1.0"
        assert (r["user_segment"], r["channel"], r["geographic_region"]) == (
            tx["user_segment"],
            tx["channel"],
            tx["region"],
        )
        assert r["total_ms"] > 0
        assert r["inference_ms"] > 0
        assert r["feature_fetch_ms"] >= 0
        assert r["total_ms"] >= r["inference_ms"]
        assert json.loads(r["extra"])["http_status"] == 200
        assert r["data_quality"] == []
        if s["given_id"]:
            assert r["request_id"] == s["given_id"]
        else:
            assert len(r["request_id"]) == 32


@contextmanager
def serve_fraud(tmp_path: Path, **env: str) -> Iterator[tuple[str, Path, Any]]:
    """`bentoml serve` the fraud example; yields (base url, data dir, stop())."""
    data = tmp_path / "data"
    server = start_bento(
        "examples.fraud_service.service:FraudService",
        tmp_path,
        data,
        **{"PREDLOG_PSEUDONYM_KEY": PSEUDONYM_KEY, **env},
    )
    try:
        yield server.base_url, data, server.stop
    finally:
        server.stop()
