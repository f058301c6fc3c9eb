from __future__ import annotations

import gc
import inspect
import json
import logging
import math
import threading
import time
import uuid
import weakref
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import predlog
from predlog.testing import CAPTURE_FIELDS, MemorySink, capture_records
from tests.helpers import BlockedSink, FailingSink, start_python


def identity_holds(stats):
    return stats["captured"] == (
        stats["sampled_out"]
        + stats["delivered"]
        + stats["dropped"]
        + stats["failed"]
        + stats["pending"]
    )


class TestFieldMapping:
    def test_log_parameters_are_the_capture_layout(self):
        """Every log() keyword is a capture field and every capture field but the three
        log() derives (timestamp_ns, extra, flags) is a log() keyword."""
        params = inspect.signature(predlog.PredictionLogger.log).parameters
        named = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
        assert {*named, "timestamp_ns", "extra", "flags"} - {"timestamp"} == set(CAPTURE_FIELDS)
        assert any(p.kind is p.VAR_KEYWORD for p in params.values())

    def test_every_argument_lands_in_its_column(self):
        """Each log() argument ends up in the column of the same meaning."""
        fetched = time.time() - 90
        with capture_records(
            model_name="fraud",
            model_version="v2.1.0",
            model_framework="lightgbm",
            summary_features=["amount"],
        ) as (log, sink):
            log.log(
                request_id="req-1",
                session_id="sess-9",
                features={"amount": 120.5, "merchant": "grocery", "age": None},
                score=0.87,
                decision="declined",
                threshold=0.6,
                user_segment="high_value",
                channel="web",
                geographic_region="EU",
                feature_store_snapshot_id="snap-7",
                feature_timestamps={"amount": fetched, "merchant": fetched + 30},
                feature_fetch_ms=3.5,
                inference_ms=1.25,
                total_ms=6.0,
                campaign="black-friday",
            )
        (r,) = sink.records
        assert r["request_id"] == "req-1"
        assert r["session_id"] == "sess-9"
        assert json.loads(r["features"]) == {"amount": 120.5, "merchant": "grocery", "age": None}
        assert json.loads(r["features_summary"]) == {"amount": 120.5}
        assert r["feature_null_count"] == 1
        assert r["raw_score"] == 0.87
        assert r["decision"] == "declined"
        assert r["decision_threshold"] == 0.6
        assert r["model_confidence"] == "medium"
        assert (r["model_name"], r["model_version"], r["model_framework"]) == (
            "fraud",
            "v2.1.0",
            "lightgbm",
        )
        assert (r["user_segment"], r["channel"], r["geographic_region"]) == (
            "high_value",
            "web",
            "EU",
        )
        assert r["feature_store_snapshot_id"] == "snap-7"
        assert 89 <= r["feature_freshness_max_age_seconds"] <= 120
        assert (r["feature_fetch_ms"], r["inference_ms"], r["total_ms"]) == (3.5, 1.25, 6.0)
        assert json.loads(r["extra"]) == {"campaign": "black-friday"}
        assert r["data_quality"] == []
        assert r["schema_version"] == predlog.SCHEMA_VERSION
        assert r["sample_weight"] == 1.0
        assert r["sampling_reason"] == "new_model_version"

    def test_timestamp_and_prediction_id(self):
        """The timestamp is taken at log(); the UUIDv7 id encodes the same millisecond."""
        before = datetime.now(timezone.utc)
        with capture_records() as (log, sink):
            for i in range(50):
                log.log(request_id=f"r{i}", score=0.1)
        after = datetime.now(timezone.utc)
        ids = [r["prediction_id"] for r in sink.records]
        assert len(set(ids)) == 50
        assert ids == sorted(ids)
        for r in sink.records:
            assert before - timedelta(milliseconds=1) <= r["timestamp_utc"] <= after
            pid = uuid.UUID(r["prediction_id"])
            assert str(pid) == r["prediction_id"]  # canonical text: lower case, dashes
            assert pid.version == 7
            assert pid.variant == uuid.RFC_4122
            assert int.from_bytes(pid.bytes[:6], "big") == int(
                r["timestamp_utc"].timestamp() * 1000
            )

    def test_explicit_timestamp_and_model_override(self):
        """A backfilled timestamp and a per-call model version are honoured."""
        at = datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc)
        with capture_records(model_version="v1") as (log, sink):
            log.log(request_id="a", score=0.3, timestamp=at, model_version="v2-canary")
        (r,) = sink.records
        assert r["timestamp_utc"] == at
        assert r["model_version"] == "v2-canary"

    def test_threshold_defaults_to_configured(self):
        """Without a threshold the configured decision_threshold is recorded and used."""
        with capture_records(decision_threshold=0.7) as (log, sink):
            log.log(request_id="a", score=0.75)
        assert sink.records[0]["decision_threshold"] == 0.7
        assert sink.records[0]["model_confidence"] == "low"

    def test_array_features_with_names(self):
        """A numpy vector is logged under the configured feature names."""
        sink = MemorySink()
        with predlog.PredictionLogger(
            sinks=[sink], feature_names=["amount", "hour"], install_signal_handlers=False
        ) as log:
            log.log(request_id="a", features=np.array([12.5, np.nan]), score=0.2)
            log.log(request_id="b", features=[1, 2, 3], score=0.2)
        first, second = sink.records
        assert json.loads(first["features"]) == {"amount": 12.5, "hour": None}
        assert first["feature_null_count"] == 1
        assert json.loads(second["features"]) == {"0": 1, "1": 2, "2": 3}
        assert "features_names_mismatch" in second["data_quality"]

    def test_raw_json_body_is_decoded_in_the_flusher(self):
        """Bytes are decoded by the extractor, off the request path."""
        with capture_records() as (log, sink):
            log.log(request_id="a", features=b'{"amount": 3.0, "hour": 4}', score=0.2)
        assert json.loads(sink.records[0]["features"]) == {"amount": 3.0, "hour": 4}


class TestBadInputNeverRaises:
    @pytest.mark.parametrize(
        ("score", "flag"),
        [
            (float("nan"), "score_nan"),
            (float("inf"), "score_inf"),
            (-float("inf"), "score_inf"),
            (None, "score_missing"),
            ("high", "score_invalid"),
            ([0.1, 0.9], "score_invalid"),
            (np.float32("nan"), "score_nan"),
        ],
    )
    def test_unusable_scores_are_flagged(self, score, flag):
        """A NaN, infinite, missing or non-numeric score is stored as null with a flag."""
        with capture_records() as (log, sink):
            assert log.log(request_id="a", score=score, features={"x": 1}) is True
            log.log(request_id="b", score=0.5, features={"x": 1})
        bad, good = sink.records
        assert bad["raw_score"] is None
        assert bad["model_confidence"] is None
        assert flag in bad["data_quality"]
        assert good["raw_score"] == 0.5 and good["data_quality"] == []
        assert log.stats()["delivered"] == 2

    def test_numeric_like_scores_are_accepted(self):
        """numpy scalars, ints and numeric strings are scores."""
        with capture_records() as (log, sink):
            log.log(request_id="a", score=np.float32(0.25))
            log.log(request_id="b", score=1)
            log.log(request_id="c", score="0.75")
        assert [r["raw_score"] for r in sink.records] == [0.25, 1.0, 0.75]

    @pytest.mark.parametrize(
        ("features", "flag"),
        [
            (None, "features_missing"),
            (42, "features_invalid_type"),
            (b"\xff\xfe not json", "features_undecodable"),
            (b"[1, 2]", "features_undecodable"),
        ],
    )
    def test_unusable_features_are_flagged(self, features, flag):
        """Missing, scalar or undecodable features are recorded as null with a flag."""
        with capture_records() as (log, sink):
            log.log(request_id="a", score=0.2, features=features)
        (r,) = sink.records
        assert r["features"] is None
        assert flag in r["data_quality"]

    def test_non_numeric_and_unserialisable_values(self):
        """Strings are kept as categories; objects JSON cannot encode become their repr."""

        class Opaque:
            def __repr__(self):
                return "<Opaque>"

        with capture_records() as (log, sink):
            log.log(request_id="a", score=0.2, features={"merchant": "fuel", "obj": Opaque()})
        (r,) = sink.records
        assert json.loads(r["features"]) == {"merchant": "fuel", "obj": "<Opaque>"}
        assert "features_coerced" in r["data_quality"]

    def test_ten_megabyte_feature_vector(self):
        """A 10 MB vector is not stored whole: the record is written, flagged oversize."""
        big = {f"f{i}": float(i) for i in range(600_000)}
        with capture_records(summary_features=["f1"]) as (log, sink):
            assert log.log(request_id="big", score=0.2, features=big)
            log.log(request_id="ok", score=0.2, features={"a": 1})
        big_rec, ok = sink.records
        assert big_rec["features"] is None
        assert "features_oversize" in big_rec["data_quality"]
        assert json.loads(big_rec["features_summary"]) == {"f1": 1.0}
        assert ok["features"] == '{"a":1}'

    def test_extractor_that_raises(self):
        """A failing extractor flags the record instead of losing it."""

        def broken(body):
            raise RuntimeError("boom")

        sink = MemorySink()
        with predlog.PredictionLogger(
            sinks=[sink], extractor=broken, install_signal_handlers=False
        ) as log:
            log.log(request_id="a", score=0.2, features=b"{}")
        assert sink.records[0]["data_quality"] == ["features_undecodable"]

    def test_bad_timings_and_timestamps(self):
        """Unusable timings are nulled with flags; an unusable timestamp fails only that call."""
        with capture_records() as (log, sink):
            log.log(request_id="a", score=0.2, inference_ms="slow", total_ms=float("nan"))
            log.log(request_id="b", score=0.2, feature_timestamps={"x": "yesterday"})
            assert log.log(request_id="c", score=0.2, timestamp="noon") is False  # type: ignore[arg-type]
        a, b = sink.records
        assert a["inference_ms"] is None and "inference_ms_invalid" in a["data_quality"]
        assert a["total_ms"] is None and "total_ms_invalid" in a["data_quality"]
        assert "feature_timestamps_invalid" in b["data_quality"]
        stats = log.stats()
        assert stats["failed"] == 1 and identity_holds(stats)
        assert log.errors()["log_failed"] == 1

    def test_odd_identifier_types_become_text(self):
        """Non-string ids and categories are stored as their text."""
        with capture_records() as (log, sink):
            log.log(request_id=123, score=0.2, user_segment=7, decision=True)  # type: ignore[arg-type]
        (r,) = sink.records
        assert (r["request_id"], r["user_segment"], r["decision"]) == ("123", "7", "True")


class TestAccounting:
    def test_every_number_counted_while_a_sink_stalls(self):
        """With a sink stalled mid-batch, each of the six numbers is what it must be, and
        pending is the ring plus the batch in the flusher's hands."""
        sink = BlockedSink()
        log = predlog.PredictionLogger(
            sinks=[sink],
            ring_capacity=64,
            batch_size=16,
            flush_interval_s=0.01,
            install_signal_handlers=False,
        )
        for i in range(16):
            log.log(request_id=f"a{i}", score=0.2)
        assert sink.entered.wait(10), "the flusher never reached the sink"
        for i in range(200):
            log.log(request_id=f"b{i}", score=0.2)
        stalled = log.stats()
        sink.release.set()
        log.close()
        done = log.stats()
        assert stalled == {
            "captured": 216,
            "sampled_out": 0,
            "delivered": 0,
            "dropped": 216 - 16 - 64,
            "failed": 0,
            "pending": 16 + 64,
        }
        assert identity_holds(stalled)
        assert done == {**stalled, "delivered": 80, "pending": 0}
        assert len(sink.records) == 80

    def test_identity_at_every_moment(self):
        """captured == sampled_out + delivered + dropped + failed + pending, while running."""
        sink = BlockedSink()
        log = predlog.PredictionLogger(
            sinks=[sink],
            ring_capacity=256,
            batch_size=64,
            flush_interval_s=0.01,
            sample_rate=0.5,
            new_version_window_s=0,
            install_signal_handlers=False,
        )
        seen = []
        for i in range(3000):
            log.log(request_id=f"r{i}", score=0.2 if i % 3 else 0.95)
            if i % 100 == 0:
                seen.append(log.stats())
        sink.release.set()
        log.close()
        seen.append(log.stats())
        assert all(identity_holds(s) and s["pending"] >= 0 for s in seen)
        final = seen[-1]
        assert final["pending"] == 0
        assert final["dropped"] > 0 and final["sampled_out"] > 0
        assert final["delivered"] == len(sink.records)

    def test_log_after_close_is_counted_dropped(self):
        """A closed logger drops new records, counts them, and never raises."""
        with capture_records() as (log, _sink):
            log.log(request_id="a", score=0.2)
        assert log.log(request_id="b", score=0.2) is False
        assert log.stats() == {
            "captured": 2,
            "sampled_out": 0,
            "delivered": 1,
            "dropped": 1,
            "failed": 0,
            "pending": 0,
        }
        assert log.close() is True  # twice is fine

    def test_drop_oldest_keeps_the_newest(self):
        """With drop_oldest a full ring evicts old records in favour of new ones."""
        sink = BlockedSink()
        log = predlog.PredictionLogger(
            sinks=[sink],
            ring_capacity=8,
            batch_size=8,
            flush_interval_s=60,
            overflow="drop_oldest",
            install_signal_handlers=False,
        )
        for i in range(100):
            log.log(request_id=f"r{i}", score=0.2)
        sink.release.set()
        log.close()
        ids = [r["request_id"] for r in sink.records]
        assert ids == [f"r{i}" for i in range(92, 100)]
        assert log.stats()["dropped"] == 92

    def test_a_stalled_sink_holds_no_captured_objects(self):
        """While a sink stalls, what was captured for its batch is let go: memory stays
        at one ring of captures (benchmarks/bench_outage_memory.py), not a ring plus a
        batch."""

        class Features(dict):  # a dict that can be weakly referenced
            pass

        sink = BlockedSink()
        log = predlog.PredictionLogger(
            sinks=[sink],
            ring_capacity=16,
            batch_size=8,
            flush_interval_s=60,
            install_signal_handlers=False,
        )
        refs = []
        for i in range(8):
            features = Features(amount=i)
            refs.append(weakref.ref(features))
            log.log(request_id=f"r{i}", features=features, score=0.2)
        del features
        assert log.flush(timeout=0.2) is False  # the flusher is now stuck in the sink
        assert sink.entered.wait(5)
        gc.collect()
        alive = [ref for ref in refs if ref() is not None]
        sink.release.set()
        log.close()
        assert alive == []
        assert [json.loads(r["features"]) for r in sink.records] == [
            {"amount": i} for i in range(8)
        ]


class TestSinkIsolation:
    def test_failing_sink_does_not_starve_the_others(self, caplog):
        """One sink raising leaves the other sink fed; the failure is counted and logged once."""
        good, bad = MemorySink(), FailingSink()
        log = predlog.PredictionLogger(
            sinks=[good, bad],
            batch_size=10,
            flush_interval_s=0.01,
            install_signal_handlers=False,
        )
        with caplog.at_level(logging.ERROR, logger="predlog"):
            for i in range(100):
                log.log(request_id=f"r{i}", score=0.2)
                if i % 10 == 9:
                    log.flush()
            log.close()
        assert len(good.records) == 100
        stats = log.stats()
        assert stats["failed"] == 100 and stats["delivered"] == 0 and identity_holds(stats)
        per_sink = log.sink_stats()
        assert per_sink["MemorySink[0]"]["delivered"] == 100
        assert per_sink["FailingSink[1]"] == {
            "delivered": 0,
            "failed": 100,
            "errors": {"OSError": 10},
        }
        lines = [r for r in caplog.records if "FailingSink" in r.getMessage()]
        assert len(lines) == 1

    def test_parquet_beside_a_failing_sink_counts_each_record_once(self, data_dir):
        """Parquet holds rows of batches another sink refused (counted failed) in a file
        not yet published: they are failed, not also pending, and delivered is never
        below zero."""
        parquet = predlog.ParquetSink(data_dir)
        log = predlog.PredictionLogger(
            sinks=[parquet, FailingSink()], install_signal_handlers=False
        )
        for i in range(10):
            log.log(request_id=f"r{i}", score=0.2)
        assert log.flush(timeout=10) is not None
        log.log(request_id="after", score=0.2)
        # Until both sinks have had the last batch: Parquet holds it, the other refused it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            parquet.unpublished_rows < 1 or log.stats()["pending"]
        ):
            time.sleep(0.01)
        stats = log.stats()
        assert (stats["delivered"], stats["failed"], stats["pending"]) == (0, 11, 0), stats
        assert identity_holds(stats)
        log.close()

    def test_a_sinks_own_figures_are_in_sink_stats(self):
        """A sink's own stats() shows under "own"; one that raises is reported, not raised."""

        class Counting(MemorySink):
            def stats(self):
                return {"sent": len(self.records)}

        class Broken(MemorySink):
            def stats(self):
                raise RuntimeError("no figures today")

        log = predlog.PredictionLogger(sinks=[Counting(), Broken()], install_signal_handlers=False)
        log.log(request_id="a", score=0.2)
        log.close()
        per_sink = log.sink_stats()
        assert per_sink["Counting[0]"]["own"] == {"sent": 1}
        assert "own" not in per_sink["Broken[1]"]
        assert per_sink["Broken[1]"]["delivered"] == 1
        assert log.errors() == {"sink_stats_failed": 1}

    def test_flush_times_out_on_a_stalled_sink(self):
        """flush(timeout) returns False instead of hanging when a sink stalls."""
        sink = BlockedSink()
        log = predlog.PredictionLogger(sinks=[sink], install_signal_handlers=False)
        log.log(request_id="a", score=0.2)
        started = time.monotonic()
        assert log.flush(timeout=0.2) is False
        assert not sink.records
        assert time.monotonic() - started < 5
        sink.release.set()
        assert log.close() is True
        assert len(sink.records) == 1

    def test_log_is_instant_while_sink_is_stalled(self):
        """log() keeps returning while the only sink is blocked (it never waits on a sink)."""
        sink = BlockedSink()
        log = predlog.PredictionLogger(
            sinks=[sink],
            ring_capacity=1024,
            batch_size=16,
            flush_interval_s=0.01,
            install_signal_handlers=False,
        )
        done = threading.Event()

        def many():
            for i in range(20_000):
                log.log(request_id=f"r{i}", score=0.2)
            done.set()

        threading.Thread(target=many).start()
        assert done.wait(30), "log() blocked behind a stalled sink"
        sink.release.set()
        log.close()
        stats = log.stats()
        assert stats["delivered"] + stats["dropped"] == 20_000

    def test_sampled_records_carry_weights(self):
        """At a 10% base rate, ordinary records are kept with weight 10."""
        with capture_records(sample_rate=0.1, new_version_window_s=0) as (log, sink):
            for i in range(2000):
                log.log(request_id=f"r{i}", score=0.2)
        stats = log.stats()
        assert 100 < stats["delivered"] < 320
        assert stats["sampled_out"] == 2000 - stats["delivered"]
        assert {r["sample_weight"] for r in sink.records} == {10.0}
        assert math.isclose(sum(r["sample_weight"] for r in sink.records), 2000, rel_tol=0.35)


class TestFork:
    def test_child_reports_errors_though_a_parent_thread_held_the_lock(self):
        """A fork while another thread is inside the error reporter leaves the child a
        working reporter of its own, not a lock nobody will release."""
        code = """
import os, sys, threading, time, predlog
from predlog.testing import MemorySink
log = predlog.PredictionLogger(sinks=[MemorySink()], install_signal_handlers=False)
inside, release = threading.Event(), threading.Event()

class SlowKind(str):
    def __hash__(self):
        inside.set()
        release.wait()
        return str.__hash__(self)

holder = threading.Thread(target=log.reporter.report, args=(SlowKind("slow"), "held"))
holder.start()
inside.wait(10)
pid = os.fork()
if pid == 0:
    log.reporter.report("child_error", "in the child")
    os._exit(0 if log.errors() == {"child_error": 1} else 3)
release.set()
holder.join()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.05)
os.kill(pid, 9)
sys.exit(4)
"""
        proc = start_python(code)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
