"""The fraud decision, shared by the BentoML service and the FastAPI app.

One ``Scorer.score()`` call: fetch the card's features, score, decide, and tell
predlog what the model actually saw with ``predlog.record()``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry import trace
from pydantic import BaseModel

import predlog
from examples.fraud_service import data
from examples.fraud_service import model as fraud_model
from examples.fraud_service.feature_store import FeatureStore
from predlog.audit import AuditLog, AuditSink, ReasonTable, signing_key

DECLINE_AT = 0.7
REVIEW_AT = 0.4
MODEL_VERSION = fraud_model.MODEL_VERSION
tracer = trace.get_tracer("examples.fraud_service")


def audit_sink() -> Any:
    """The audit log for declined decisions, when PREDLOG_AUDIT_SIGNING_KEY is set.

    The setting names the Ed25519 key file ``predlog audit keygen`` wrote (or holds the
    key, as PEM text or 64 hex characters, from a secret store); a malformed one stops
    the service at start-up. Entries go to <data dir>/audit, one writer at a time.
    """
    key = signing_key()
    if key is None:
        return None
    root = Path(os.environ.get("PREDLOG_DATA_DIR") or predlog.Settings().data_dir)
    return AuditSink(
        AuditLog(root / "audit", signing_key=key, checkpoint_every=100),
        reasons=ReasonTable(fraud_model.REASONS, features=data.FEATURES),
        decisions=("declined",),
        jurisdiction="EU",
        regulatory_category="payments-fraud-screening",
        checkpoint_interval_s=5,
    )


#: predlog options both apps pass to the middleware. card_id identifies a person's
#: card: it is pseudonymised, so the service needs PREDLOG_PSEUDONYM_KEY to start.
PREDLOG_OPTIONS: dict[str, Any] = {
    "audit": audit_sink,
    "model_name": "fraud",
    "model_version": MODEL_VERSION,
    "model_framework": "scikit-learn",
    "paths": ["/predict"],
    "pii_fields": ["card_id"],
    "summary_features": ["amount", "merchant_category", "channel", "txn_count_1h"],
}


class Transaction(BaseModel):
    transaction_id: str
    card_id: str
    amount: float
    merchant_category: str
    hour: int
    user_segment: str
    channel: str
    region: str


def decide(score: float) -> str:
    if score >= DECLINE_AT:
        return "declined"
    if score >= REVIEW_AT:
        return "review"
    return "approved"


class Scorer:
    def __init__(
        self, on_scored: Callable[[dict[str, Any], float, str], None] | None = None
    ) -> None:
        """``on_scored(features, score, decision)``, if given, sees every decision: for
        another logger beside predlog (benchmarks/servers/fraud_variants.py)."""
        self.model = fraud_model.load()
        self.store = FeatureStore()
        self.on_scored = on_scored

    def score(self, transaction: Transaction) -> dict[str, Any]:
        started = time.perf_counter()
        with tracer.start_as_current_span("feature_fetch") as span:
            stored, stamps, cache_hit = self.store.fetch(transaction.card_id)
            span.set_attribute("feature_store.cache_hit", cache_hit)
        fetched = time.perf_counter()
        features = {
            "amount": transaction.amount,
            "hour": transaction.hour,
            "merchant_category": transaction.merchant_category,
            "user_segment": transaction.user_segment,
            "channel": transaction.channel,
            "region": transaction.region,
            **stored,
        }
        with tracer.start_as_current_span("inference") as span:
            score = float(self.model.predict_proba(fraud_model.frame([features]))[0, 1])
            decision = decide(score)
            # Exact for this linear model; only a decline needs reasons.
            explained: dict[str, Any] = {}
            if decision == "declined":
                explained["explanation"] = {
                    "method": "linear_log_odds_contributions",
                    "contributions": fraud_model.contributions(self.model, features),
                }
            span.set_attributes(
                {"predlog.prediction.score": score, "predlog.prediction.decision": decision}
            )
        predlog.record(
            features=features,
            feature_timestamps=stamps,
            feature_store_snapshot_id=self.store.snapshot_id,
            feature_cache_hit=cache_hit,
            feature_fetch_ms=(fetched - started) * 1000,
            inference_ms=(time.perf_counter() - fetched) * 1000,
            score=score,
            decision=decision,
            threshold=DECLINE_AT,
            user_segment=transaction.user_segment,
            channel=transaction.channel,
            geographic_region=transaction.region,
            **explained,
        )
        if self.on_scored is not None:
            self.on_scored(features, score, decision)
        return {"score": score, "decision": decision, "model_version": MODEL_VERSION}
