from __future__ import annotations

import inspect
import json
import math
from datetime import datetime, timezone
from hashlib import blake2b

import numpy as np
import pytest

from predlog import PredictionLogger, arrow_schema
from predlog.flush import BatchBuilder, BuildResult, ExchangeDecoder, as_arrow
from predlog.testing import (
    CAPTURE_FIELDS,
    ErrorReporter,
    Exchange,
    build_batch,
    capture_records,
    resolve,
)

AT_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def capture(**values):
    """A capture tuple with the named values and None everywhere else."""
    unknown = set(values) - set(CAPTURE_FIELDS)
    assert not unknown, unknown
    values.setdefault("timestamp_ns", AT_NS)
    values.setdefault("features", {"f": 1})
    return tuple(values.get(name) for name in CAPTURE_FIELDS)


def make_builder(reporter=None, *, audit_rule=None, feature_names=(), **settings):
    return BatchBuilder.from_settings(
        resolve(settings),
        reporter=reporter or ErrorReporter(),
        feature_names=feature_names,
        audit_rule=audit_rule,
    )


def rows(result: BuildResult):
    assert result.batch is not None
    return as_arrow(result.batch).to_pylist()


def keeps(request_id: str, rate: float) -> bool:
    digest = blake2b(request_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


class TestBatchBuilder:
    def test_nothing_in_nothing_out(self):
        """No captures build no batch and count nothing."""
        assert make_builder().build([]) == BuildResult(None, 0, 0, 0)

    def test_batch_has_the_record_schema_and_order(self):
        """The batch is in arrow_schema(), one row per capture, in capture order."""
        captures = [capture(request_id=f"r{i}", score=i / 10, features={"i": i}) for i in range(5)]
        result = make_builder().build(captures)
        assert result.batch is not None
        assert as_arrow(result.batch).schema.equals(arrow_schema(), check_metadata=True)
        assert (result.kept, result.sampled_out, result.failed) == (5, 0, 0)
        assert [r["request_id"] for r in rows(result)] == [f"r{i}" for i in range(5)]
        assert [json.loads(r["features"]) for r in rows(result)] == [{"i": i} for i in range(5)]

    def test_columns_come_from_their_capture_fields(self):
        """Each capture field fills its column; model and threshold default from settings."""
        stamp = datetime(2026, 1, 1, tzinfo=timezone.utc)
        result = make_builder(
            model_name="fraud", model_version="v1", model_framework="lgbm", decision_threshold=0.4
        ).build(
            [
                capture(
                    request_id="a",
                    score=0.45,
                    decision="declined",
                    session_id="s",
                    user_segment="hv",
                    channel="web",
                    geographic_region="EU",
                    feature_store_snapshot_id="snap",
                    feature_freshness_max_age_seconds=3.0,
                    feature_fetch_ms=1.0,
                    inference_ms=2.0,
                    total_ms=3.5,
                    trace_id="t" * 32,
                    span_id="s" * 16,
                    extra={"campaign": "bf"},
                ),
                capture(request_id="b", score=0.9, threshold=0.8, model_version="v2"),
            ]
        )
        a, b = rows(result)
        assert a["timestamp_utc"] == stamp
        assert (a["model_name"], a["model_version"], a["model_framework"]) == (
            "fraud",
            "v1",
            "lgbm",
        )
        assert (a["raw_score"], a["decision"], a["decision_threshold"]) == (0.45, "declined", 0.4)
        assert a["model_confidence"] == "low"
        assert (a["session_id"], a["user_segment"], a["channel"], a["geographic_region"]) == (
            "s",
            "hv",
            "web",
            "EU",
        )
        assert a["feature_store_snapshot_id"] == "snap"
        assert a["feature_freshness_max_age_seconds"] == 3.0
        assert (a["feature_fetch_ms"], a["inference_ms"], a["total_ms"]) == (1.0, 2.0, 3.5)
        assert (a["trace_id"], a["span_id"]) == ("t" * 32, "s" * 16)
        assert json.loads(a["extra"]) == {"campaign": "bf"}
        assert (b["model_name"], b["model_version"], b["decision_threshold"]) == (
            "fraud",
            "v2",
            0.8,
        )
        assert b["extra"] is None

    def test_unusable_scores_are_flagged_and_kept(self):
        """NaN, inf and non-numeric scores become null scores with a flag; no record is lost."""
        scores = [0.3, math.nan, math.inf, -math.inf, "0.7", "high", None, np.float32(0.25)]
        captures = [capture(request_id=f"r{i}", score=s) for i, s in enumerate(scores)]
        result = make_builder().build(captures)
        assert (result.kept, result.failed) == (len(scores), 0)
        got = rows(result)
        assert [r["raw_score"] for r in got] == [0.3, None, None, None, 0.7, None, None, 0.25]
        assert [r["data_quality"] for r in got] == [
            [],
            ["score_nan"],
            ["score_inf"],
            ["score_inf"],
            [],
            ["score_invalid"],
            ["score_missing"],
            [],
        ]
        assert [r["model_confidence"] for r in got[1:4]] == [None, None, None]

    def test_unusable_optional_numbers_are_flagged(self):
        """A bad threshold or timing is flagged; the configured threshold stands in."""
        result = make_builder(decision_threshold=0.6).build(
            [capture(request_id="a", score=0.5, threshold="high", inference_ms=math.nan)]
        )
        (r,) = rows(result)
        assert r["decision_threshold"] == 0.6
        assert r["inference_ms"] is None
        assert sorted(r["data_quality"]) == ["inference_ms_invalid", "threshold_invalid"]

    def test_feature_timestamps_give_freshness(self):
        """Without a given freshness, the stalest feature timestamp's age is recorded."""
        at_s = AT_NS / 1e9
        result = make_builder().build(
            [
                capture(request_id="a", score=0.1, feature_timestamps={"x": at_s - 30, "y": at_s}),
                capture(request_id="b", score=0.1, feature_timestamps="yesterday"),
            ]
        )
        a, b = rows(result)
        assert a["feature_freshness_max_age_seconds"] == pytest.approx(30.0)
        assert b["feature_freshness_max_age_seconds"] is None
        assert b["data_quality"] == ["feature_timestamps_invalid"]

    def test_sample_rate_keeps_by_request_id_hash_with_weights(self):
        """Below rate 1 the base rate keeps ids whose hash is under the cut, weight 1/rate."""
        rate = 0.25
        ids = [f"req-{i}" for i in range(2000)]
        result = make_builder(sample_rate=rate, new_version_window_s=0).build(
            [capture(request_id=rid, score=0.05) for rid in ids]
        )
        expected = [rid for rid in ids if keeps(rid, rate)]
        assert 400 < len(expected) < 600
        got = rows(result)
        assert [r["request_id"] for r in got] == expected
        assert (result.kept, result.sampled_out) == (len(expected), len(ids) - len(expected))
        assert {r["sample_weight"] for r in got} == {4.0}
        assert {r["sampling_reason"] for r in got} == {"base_rate"}

    def test_stratified_records_are_kept_at_weight_one(self):
        """Near-threshold, high-risk and new-version records bypass the base rate at weight 1."""
        dropped_id = next(f"x{i}" for i in range(1000) if not keeps(f"x{i}", 0.01))
        strata = make_builder(sample_rate=0.01, new_version_window_s=0).build(
            [
                capture(request_id=dropped_id, score=0.55),
                capture(request_id=dropped_id, score=0.95),
                capture(request_id=dropped_id, score=0.05),
            ]
        )
        assert [(r["sampling_reason"], r["sample_weight"]) for r in rows(strata)] == [
            ("near_threshold", 1.0),
            ("high_risk", 1.0),
        ]
        assert strata.sampled_out == 1
        fresh = make_builder(sample_rate=0.01).build([capture(request_id=dropped_id, score=0.05)])
        assert [(r["sampling_reason"], r["sample_weight"]) for r in rows(fresh)] == [
            ("new_model_version", 1.0)
        ]

    def test_all_sampled_out_builds_no_batch(self):
        """When the sample keeps nothing there is no batch, and every record is counted."""
        result = make_builder(sample_rate=0.0, new_version_window_s=0).build(
            [capture(request_id=f"r{i}", score=0.05) for i in range(10)]
        )
        assert result == BuildResult(None, 0, 10, 0)

    def test_unpackable_capture_fails_alone(self):
        """A capture that cannot be unpacked is counted failed; its batch mates are kept."""
        reporter = ErrorReporter()
        captures = [
            capture(request_id="a", score=0.1),
            capture(request_id="b", score=0.1)[:-1],
            capture(request_id="c", score=0.1, timestamp_ns="not a time"),
            ("too", "short"),
            (),
            capture(request_id="d", score=0.1),
        ]
        result = make_builder(reporter).build(captures)
        assert [r["request_id"] for r in rows(result)] == ["a", "d"]
        assert (result.kept, result.sampled_out, result.failed) == (2, 0, 4)
        assert as_arrow(result.batch).schema.equals(arrow_schema())
        assert reporter.counts() == {"batch_invalid": 1, "record_invalid": 4}

    def test_audit_rule_keeps_records_the_sample_would_drop(self):
        """Records the audit rule wants are kept at weight 1 whatever the sample rate."""
        seen = []

        def rule(decision, model_name, extra):
            seen.append((decision, model_name, extra))
            return decision == "declined"

        result = make_builder(
            audit_rule=rule, sample_rate=0.0, new_version_window_s=0, model_name="fraud"
        ).build(
            [
                capture(request_id="a", score=0.05, decision="approved"),
                capture(request_id="b", score=0.05, decision="declined", extra={"k": 1}),
                capture(request_id="c", score=0.05, decision="declined", model_name="other"),
            ]
        )
        got = rows(result)
        assert [r["request_id"] for r in got] == ["b", "c"]
        assert {(r["sampling_reason"], r["sample_weight"]) for r in got} == {("audit", 1.0)}
        assert result.sampled_out == 1
        assert seen == [
            ("approved", "fraud", None),
            ("declined", "fraud", {"k": 1}),
            ("declined", "other", None),
        ]

    def test_given_flags_travel_to_data_quality(self):
        """Flags a capture arrived with are in its record's data_quality."""
        result = make_builder().build(
            [capture(request_id="a", score=0.1, flags=("handler_exception",)), capture(score=0.2)]
        )
        assert [r["data_quality"] for r in rows(result)] == [["handler_exception"], []]

    def test_exchanges_are_decoded_by_their_own_decoder(self):
        """A capture holding an Exchange is decoded with the decoder the exchange carries."""
        exchanges = []
        for score_field in ("a", "b"):
            ex = Exchange("POST", "/p", ExchangeDecoder(score_field=score_field))
            ex.request_chunks.append(b'{"x": 1}')
            ex.request_size = 8
            ex.response_chunks.append(b'{"a": 0.1, "b": 0.2}')
            ex.response_size = 20
            ex.response_parts = 1
            ex.status = 200
            exchanges.append(ex)
        result = make_builder().build(
            [capture(request_id=f"r{i}", features=ex) for i, ex in enumerate(exchanges)]
            + [capture(request_id="plain", score=0.3)]
        )
        got = rows(result)
        assert [r["raw_score"] for r in got] == [0.1, 0.2, 0.3]
        assert [json.loads(r["features"]) for r in got] == [{"x": 1}, {"x": 1}, {"f": 1}]

    def test_undecodable_exchange_keeps_its_record(self):
        """A decoder that raises leaves the record in the batch, flagged exchange_undecodable."""

        class BrokenDecoder(ExchangeDecoder):
            def resolve(self, capture, report):
                raise RuntimeError("decoder bug")

        reporter = ErrorReporter()
        ex = Exchange("POST", "/p", BrokenDecoder())
        result = make_builder(reporter).build([capture(request_id="a", features=ex, score=0.3)])
        (r,) = rows(result)
        assert r["request_id"] == "a"
        assert r["features"] is None
        assert "exchange_undecodable" in r["data_quality"]
        assert reporter.counts()["exchange_invalid"] == 1


class TestBuildBatch:
    def test_same_records_as_the_logger_delivers(self):
        """build_batch(records) holds what a logger delivers for log(**record), id aside."""
        stamp = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
        records = [
            {
                "request_id": "a",
                "features": [1.0, None],
                "score": 0.87,
                "decision": "declined",
                "threshold": 0.6,
                "timestamp": stamp,
                "campaign": "bf",
            },
            {"request_id": "b", "features": b'{"amount": 3}', "score": math.nan, "timestamp": 1.5},
        ]
        settings = {"model_name": "fraud", "summary_features": ["amount"]}
        with capture_records(**settings, feature_names=["amount", "age"]) as (log, sink):
            for record in records:
                log.log(**record)
        built = build_batch(records, **settings, feature_names=["amount", "age"]).to_pylist()
        for row in (*built, *sink.records):
            del row["prediction_id"]
        assert built == sink.records

    def test_every_log_argument_has_its_own_column(self):
        """Each named log() argument lands in its own column, none in extra."""
        named = [
            p.name
            for p in inspect.signature(PredictionLogger.log).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        values = {
            "timestamp": 1.0,
            "features": {"x": 1},
            "score": 0.5,
            "threshold": 0.5,
            "feature_freshness_max_age_seconds": 1.0,
            "feature_timestamps": {"x": 0.5},
            "feature_fetch_ms": 1.0,
            "inference_ms": 1.0,
            "total_ms": 1.0,
        }
        record = {name: values.get(name, "text") for name in named}
        (row,) = build_batch([record]).to_pylist()
        assert row["extra"] is None
        assert row["data_quality"] == []

    def test_other_keys_go_to_extra(self):
        """A key log() has no argument for goes to the extra map, as log(**extra) does."""
        (row,) = build_batch(
            [{"request_id": "a", "score": 0.1, "features": {}, "flags": 1, "campaign": "bf"}]
        ).to_pylist()
        assert json.loads(row["extra"]) == {"flags": 1, "campaign": "bf"}
        assert row["data_quality"] == []

    def test_settings_are_applied_and_checked(self):
        """Settings shape the batch as they shape a logger's, and a bad one is refused."""
        batch = build_batch(
            [{"request_id": f"r{i}", "score": 0.05} for i in range(20)],
            sample_rate=0.0,
            new_version_window_s=0,
        )
        assert batch.num_rows == 0
        assert batch.schema.equals(arrow_schema())
        (row,) = build_batch([{"score": 0.1}], model_name="fraud").to_pylist()
        assert row["model_name"] == "fraud"
        with pytest.raises(ValueError, match="sample_rate"):
            build_batch([], sample_rate=2.0)

    def test_unbuildable_record_raises(self):
        """A record no batch can hold raises ValueError instead of vanishing."""
        with pytest.raises(ValueError, match="1 of 2 records"):
            build_batch([{"request_id": "a"}, {"request_id": "b", "timestamp": 1e12}])
