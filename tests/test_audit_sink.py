from __future__ import annotations

import asyncio
import gc
import json
import warnings

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import predlog
from predlog import ConfigError
from predlog.audit import AuditLog, AuditSink, ReasonTable, verify
from predlog.testing import MemorySink, build_batch
from tests.helpers import drop

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
REASONS = {
    "income": "Income too low",
    "dti": "Debt-to-income ratio too high",
    "delinquencies": "Recent delinquencies",
    "age": "Length of credit history",
}


def table(**kw):
    return ReasonTable(REASONS, features=REASONS, **kw)


class TestReasonTable:
    def test_unmapped_feature_refuses_to_start(self):
        """A feature that could be a top reason but has no reason is a start-up error."""
        with pytest.raises(ConfigError, match="missing: tenure"):
            ReasonTable(REASONS, features=[*REASONS, "tenure"])

    def test_top_three_against_the_applicant(self):
        """The three largest contributions towards the adverse decision, in order."""
        c = {"income": 0.9, "dti": 1.5, "delinquencies": 0.2, "age": -0.4}
        assert table().adverse_reasons(c) == [
            "Debt-to-income ratio too high",
            "Income too low",
            "Recent delinquencies",
        ]

    def test_direction_can_be_reversed(self):
        """For a score where higher is better, the negative contributions are the reasons."""
        c = {"income": 0.9, "dti": -1.5, "delinquencies": 0.2, "age": -0.4}
        assert table(adverse_when="decreases_score").adverse_reasons(c) == [
            "Debt-to-income ratio too high",
            "Length of credit history",
        ]

    def test_explanation_lists_both_ways(self):
        """The explanation names the method and the top features each way."""
        e = table().explanation({"income": 0.9, "dti": 1.5, "age": -0.4}, method="shap")
        assert e["method"] == "shap"
        assert [x["feature"] for x in e["top_positive"]] == ["dti", "income"]
        assert [x["feature"] for x in e["top_negative"]] == ["age"]


def logger_with(sink, **kw):
    return predlog.PredictionLogger(
        sinks=[MemorySink()], audit=sink, install_signal_handlers=False, **kw
    )


def declined(log, i, **extra):
    log.log(
        request_id=f"r{i}",
        score=0.95,
        decision="declined",
        features={"income": 1},
        explanation={
            "method": "linear",
            "contributions": {"dti": 2.0, "income": 1.0, "age": 0.5, "delinquencies": 0.1},
        },
        **extra,
    )


class TestAuditSink:
    def test_declines_audited_even_when_sampled_out(self, tmp_path):
        """At sample rate 0 every declined decision still reaches the audit log."""
        sink = AuditSink(AuditLog(tmp_path, signing_key=KEY), reasons=table())
        log = logger_with(sink, sample_rate=0.0, new_version_window_s=0, high_risk_score=1.0)
        for i in range(20):
            declined(log, i)
            log.log(request_id=f"ok{i}", score=0.01, decision="approved")
        log.close()
        assert sink.appended == 20
        assert log.stats()["sampled_out"] == 20  # the approvals, not the declines
        assert verify(tmp_path, public_key=KEY.public_key()).ok
        entry = sink.log.entry(0)
        assert entry["adverse_action_reasons"] == [
            "Debt-to-income ratio too high",
            "Income too low",
            "Length of credit history",
        ]

    def test_explicit_audit_flag(self, tmp_path):
        """predlog.record(audit=True) / log(audit=True) audits any decision."""
        sink = AuditSink(AuditLog(tmp_path, signing_key=KEY), reasons=table())
        log = logger_with(sink)
        log.log(request_id="x", score=0.1, decision="approved", audit=True)
        log.log(request_id="y", score=0.1, decision="approved")
        log.close()
        assert [sink.log.entry(i)["request_id"] for i in range(sink.log.size)] == ["x"]

    def test_regulated_endpoints_and_models(self, tmp_path):
        """Every request to a configured endpoint, or for a configured model, is audited."""
        sink = AuditSink(
            AuditLog(tmp_path, signing_key=KEY),
            reasons=table(),
            decisions=(),
            models=("credit",),
            paths=("/v1/credit",),
        )
        log = logger_with(sink, model_name="fraud")
        log.log(request_id="by-path", score=0.1, decision="approved", http_path="/v1/credit/score")
        log.log(request_id="other-path", score=0.1, decision="approved", http_path="/v1/fraud")
        log.log(request_id="by-model", score=0.1, decision="approved", model_name="credit")
        log.close()
        assert [sink.log.entry(i)["request_id"] for i in range(sink.log.size)] == [
            "by-path",
            "by-model",
        ]

    def test_queue_policy_holds_and_replays_in_order(self, tmp_path, monkeypatch):
        """With the store failing, entries wait in the disk queue and land in order later."""
        sink = AuditSink(
            AuditLog(tmp_path / "log", signing_key=KEY),
            reasons=table(),
            queue_dir=tmp_path / "queue",
            retry_interval_s=0,
        )
        real = sink.log.append_many
        monkeypatch.setattr(
            sink.log, "append_many", lambda entries: (_ for _ in ()).throw(OSError("disk"))
        )
        log = logger_with(sink)
        for i in range(5):
            declined(log, i)
        log.flush()
        assert sink.queued == 5
        assert sink.log.size == 0
        monkeypatch.setattr(sink.log, "append_many", real)
        for i in range(5, 8):
            declined(log, i)
        log.close()
        assert [sink.log.entry(i)["request_id"] for i in range(8)] == [f"r{i}" for i in range(8)]
        assert log.stats()["failed"] == 0
        assert verify(tmp_path / "log", public_key=KEY.public_key()).ok

    def test_reject_policy_answers_503_until_the_store_recovers(self, tmp_path, monkeypatch):
        """Under reject, a failing store makes the service refuse decisions with 503."""
        sink = AuditSink(
            AuditLog(tmp_path, signing_key=KEY),
            reasons=table(),
            failure_policy="reject",
            retry_interval_s=0,
        )
        real = sink.log.append_many
        monkeypatch.setattr(
            sink.log, "append_many", lambda entries: (_ for _ in ()).throw(OSError("disk"))
        )
        logger = logger_with(sink)

        async def decide(request):
            predlog.record(score=0.95, decision="declined")
            return JSONResponse({"decision": "declined"})

        app = Starlette(routes=[Route("/predict", decide, methods=["POST"])])
        app.add_middleware(predlog.PredictionLogMiddleware, logger=logger)

        async def post():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
                return (await c.post("/predict", json={})).status_code

        assert asyncio.run(post()) == 200
        logger.flush()
        assert sink.accepting is False
        assert logger.stats()["failed"] == 1
        assert asyncio.run(post()) == 503
        monkeypatch.setattr(sink.log, "append_many", real)
        sink.accepting = True  # an operator (or the next successful append) reopens
        assert asyncio.run(post()) == 200
        logger.close()
        assert sink.log.size == 1
        assert json.loads(json.dumps(sink.stats()))["failures"] == 1

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("failure_policy", "drop"),
            ("decisions", "declined"),
            ("models", [""]),
            ("paths", "/v1/credit"),
            ("adverse_decisions", [None]),
            ("jurisdiction", ""),
            ("regulatory_category", None),
            ("queue_max_bytes", 0),
            ("queue_max_bytes", 1.5),
            ("retry_interval_s", -1),
            ("checkpoint_interval_s", float("nan")),
            ("checkpoint_interval_s", "60"),
        ],
    )
    def test_malformed_option_is_a_config_error(self, tmp_path, option, value):
        """Each malformed option is refused as a ConfigError (a ValueError) naming it,
        before the queue directory is made."""
        log = AuditLog(tmp_path / "audit", signing_key=KEY)
        with pytest.raises(ConfigError, match=f"^{option}: ") as caught:
            AuditSink(log, reasons=table(), queue_dir=tmp_path / "queue", **{option: value})
        assert isinstance(caught.value, ValueError)
        assert not (tmp_path / "queue").exists()
        log.close()

    def test_second_writer_is_refused(self, tmp_path):
        """Two processes (or objects) writing one audit log would fork the tree: refused."""
        first = AuditLog(tmp_path, signing_key=KEY)
        first.open()
        second = AuditLog(tmp_path, signing_key=KEY)
        with pytest.raises(ConfigError, match="another process"):
            second.open()
        assert first.append({"request_id": "still-mine"}) == 0
        first.close()

    def test_a_log_another_writer_holds_refuses_the_start(self, tmp_path):
        """A logger whose audit log another writer holds does not start (ConfigError
        naming audit_dir, from open, not from the constructors), and the sinks it had
        opened already are closed again."""
        holder = AuditLog(tmp_path / "audit", signing_key=KEY)
        holder.open()
        sink = AuditSink(AuditLog(tmp_path / "audit", signing_key=KEY), reasons=table())
        parquet = predlog.ParquetSink(tmp_path / "data")
        with pytest.raises(ConfigError, match=r"^audit_dir: ") as refused:
            predlog.PredictionLogger(sinks=[parquet], audit=sink, install_signal_handlers=False)
        assert "another process" in str(refused.value)
        with pytest.raises(predlog.SinkError, match="closed"):
            parquet.export(build_batch([{"request_id": "a", "score": 0.1}]))
        holder.close()

    def test_a_queue_that_cannot_be_made_refuses_the_start_and_lets_the_log_go(self, tmp_path):
        """A queue directory that cannot be made refuses the start (ConfigError naming
        audit_dir), and the audit log the sink had opened is let go: a logger made again
        with a queue that works opens it, rather than finding it held by a dead start."""
        (tmp_path / "not-a-dir").write_text("")
        sink = AuditSink(
            AuditLog(tmp_path / "audit", signing_key=KEY),
            reasons=table(),
            queue_dir=tmp_path / "not-a-dir" / "queue",
        )
        with pytest.raises(ConfigError, match=r"^audit_dir: "):
            predlog.PredictionLogger(sinks=[], audit=sink, install_signal_handlers=False)
        again = AuditLog(tmp_path / "audit", signing_key=KEY)
        again.open()
        again.close()
        sink.close()

    def test_the_constructors_touch_no_file(self, tmp_path):
        """Making the log and the sink writes nothing; open() (or the first export)
        makes the log and its queue, once, and close() is safe twice."""
        sink = AuditSink(
            AuditLog(tmp_path / "audit", signing_key=KEY),
            reasons=table(),
            queue_dir=tmp_path / "queue",
        )
        assert sorted(tmp_path.iterdir()) == []
        sink.export(build_batch([{"request_id": "a", "score": 0.9, "decision": "declined"}]))
        assert (tmp_path / "audit" / "public_key.hex").exists()
        assert (tmp_path / "queue").is_dir()
        sink.open()
        assert sink.appended == 1
        sink.close()
        sink.close()
        assert verify(tmp_path / "audit", public_key=KEY.public_key()).ok

    def test_an_opened_sink_dropped_unclosed_warns(self, tmp_path):
        """A sink, or a log on its own, opened and collected without close() warns with
        a ResourceWarning; closed ones say nothing."""
        sink = AuditSink(AuditLog(tmp_path / "a", signing_key=KEY), reasons=table())
        sink.open()
        held: list[object] = [sink]
        del sink
        with pytest.warns(ResourceWarning, match="unclosed .*AuditSink"):
            drop(held)
        log = AuditLog(tmp_path / "log", signing_key=KEY)
        log.append({"request_id": "r"})
        held.append(log)
        del log
        with pytest.warns(ResourceWarning, match="unclosed .*AuditLog"):
            drop(held)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            closed = AuditSink(AuditLog(tmp_path / "b", signing_key=KEY), reasons=table())
            closed.open()
            closed.close()
            del closed
            gc.collect()


class TestUnencodableEntries:
    @pytest.mark.parametrize("policy", ["queue", "reject"])
    def test_refused_entry_neither_queued_nor_blocking(self, tmp_path, policy):
        """An audited record with no RFC 8785 form (an integer beyond 2**53) is counted
        and reported, never queued, and does not stop the records after it."""
        sink = AuditSink(
            AuditLog(tmp_path, signing_key=KEY),
            reasons=table(),
            failure_policy=policy,
            retry_interval_s=0,
        )
        log = logger_with(sink)
        declined(log, 0)
        log.log(request_id="big", score=0.95, decision="declined", features={"card": 2**60})
        log.flush()
        declined(log, 1)
        log.close()
        assert sink.unencodable == 1
        assert sink.stats()["queued"] == 0 and sink.accepting
        ids = [sink.log.entry(i)["request_id"] for i in range(sink.log.size)]
        assert ids == ["r0", "r1"]
        assert verify(tmp_path, public_key=KEY.public_key()).ok
