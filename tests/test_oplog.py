from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import predlog
from predlog import PredictionLogMiddleware
from tests.helpers import Collect, FailingSink

REQUIRED = ("timestamp", "level", "logger", "request_id", "model_version", "trace_id", "span_id")


@pytest.fixture
def lines():
    stream = io.BytesIO()
    predlog.configure_logging(stream=stream)
    return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]


async def handler(request: Request) -> JSONResponse:
    structlog.get_logger().info("scoring_started")
    body = await request.json()
    predlog.record(
        score=body["score"],
        decision="review",
        feature_timestamps={"txn_count_1h": time.time() - body["age"]},
        feature_cache_hit=False,
        features={"amount": 5, "email": "x@y.z"},
    )
    return JSONResponse({"ok": True})


def serve(requests, **options):
    logger = predlog.PredictionLogger(
        model_name="fraud",
        model_version="v7",
        operational_log=True,
        summary_features=["amount", "email"],
        pii_fields=["email"],
        pseudonym_key="oplog-test-key-0123456789",
        install_signal_handlers=False,
        sinks=[],
        **options,
    )
    app = Starlette(routes=[Route("/predict", handler, methods=["POST"])])
    app.add_middleware(PredictionLogMiddleware, logger=logger)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            for rid, body in requests:
                await client.post("/predict", json=body, headers={"X-Request-ID": rid})

    asyncio.run(go())
    logger.close()
    return logger


class TestOperationalLog:
    def test_every_line_carries_the_required_keys(self, lines):
        """Each JSON line has timestamp, level, logger, request_id, model_version, trace ids."""
        serve([("r-1", {"score": 0.2, "age": 10})])
        out = lines()
        assert out
        for line in out:
            assert set(REQUIRED) <= set(line), line

    def test_prediction_complete_with_summary_only(self, lines):
        """prediction_complete has score, decision and latencies; summary features, no PII."""
        serve([("r-1", {"score": 0.2, "age": 10})])
        (done,) = [line for line in lines() if line["event"] == "prediction_complete"]
        assert done["request_id"] == "r-1"
        assert done["model_version"] == "v7"
        assert done["level"] == "info"
        assert (done["score"], done["decision"], done["cache_hit"]) == (0.2, "review", False)
        assert done["total_ms"] > 0
        assert done["features"] == {"amount": 5}
        assert "x@y.z" not in json.dumps(lines())

    def test_handler_lines_carry_the_request_id(self, lines):
        """A line the handler logs inside the request is tagged with its request id."""
        serve([("r-9", {"score": 0.2, "age": 10})])
        (mine,) = [line for line in lines() if line["event"] == "scoring_started"]
        assert (mine["request_id"], mine["model_version"], mine["logger"]) == ("r-9", "v7", "app")

    def test_warnings_for_near_threshold_and_stale_features(self, lines):
        """Scores near the threshold and stale features are warned about, once each."""
        serve(
            [("near", {"score": 0.52, "age": 10}), ("stale", {"score": 0.1, "age": 7200})],
            stale_feature_age_s=3600,
        )
        warnings = [
            (line["event"], line["request_id"]) for line in lines() if line["level"] == "warning"
        ]
        assert warnings == [("prediction_near_threshold", "near"), ("stale_features", "stale")]

    def test_sink_failures_are_logged_as_json_rate_limited(self, lines):
        """predlog's own errors come out as JSON error lines, one per kind per interval."""
        counted = fail_five_times()
        errors = [line for line in lines() if line["level"] == "error"]
        assert len(errors) == 1
        assert errors[0]["error_kind"] == "sink_export_failed:FailingSink[0]"
        assert counted["sink_export_failed:FailingSink[0]"] == 5


@pytest.fixture
def root_handler():
    """The application's handler on the root logger, removed afterwards."""
    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def fail_five_times(**options):
    """A logger whose only sink always raises, exported to five times; its error counts."""
    logger = predlog.PredictionLogger(
        sinks=[FailingSink()],
        install_signal_handlers=False,
        batch_size=1,
        flush_interval_s=0.01,
        **options,
    )
    for i in range(5):
        logger.log(request_id=f"r{i}", score=0.1)
        logger.flush()
    logger.close()
    return logger.errors()


class TestTheApplicationsLogging:
    """predlog leaves logging configuration to the application unless asked."""

    def test_making_a_logger_configures_nothing_globally(self, root_handler):
        """operational_log=True touches neither structlog's nor logging's configuration."""
        root = logging.getLogger()
        ours = logging.getLogger("predlog")
        before = (list(root.handlers), root.level, list(ours.handlers), ours.propagate)
        serve([("r-1", {"score": 0.2, "age": 10})])
        assert not structlog.is_configured()
        assert (list(root.handlers), root.level, list(ours.handlers), ours.propagate) == before

    def test_sink_errors_reach_the_applications_handler_once_with_traceback(self, root_handler):
        """With operational_log on, a failing sink's error reaches the root handler once per
        interval, with the exception's traceback."""
        errors = fail_five_times(operational_log=True)
        assert errors["sink_export_failed:FailingSink[0]"] == 5
        (record,) = [r for r in root_handler.records if r.name == "predlog"]
        assert record.levelno == logging.ERROR
        assert record.getMessage().startswith("sink_export_failed:FailingSink[0]")
        text = logging.Formatter().format(record)
        assert "Traceback (most recent call last)" in text
        assert "OSError: disk on fire" in text

    def test_prediction_lines_are_json_on_stdout_without_configuration(self, capsys):
        """Unconfigured, prediction lines are still JSON lines on stdout with every key."""
        serve([("r-2", {"score": 0.2, "age": 10})])
        # The handler's own line goes through structlog's defaults, as the application left
        # them: a console line, not predlog's business.
        text = capsys.readouterr().out.splitlines()
        out = [json.loads(line) for line in text if line.startswith("{")]
        (done,) = [line for line in out if line["event"] == "prediction_complete"]
        assert set(REQUIRED) <= set(done)
        assert (done["request_id"], done["logger"]) == ("r-2", "predlog.predictions")
        assert not structlog.is_configured()

    def test_prediction_lines_go_through_the_applications_structlog(self, capsys):
        """An application that configured structlog gets predlog's lines through its setup."""
        with structlog.testing.capture_logs() as captured:
            serve([("r-3", {"score": 0.2, "age": 10})])
        (done,) = [e for e in captured if e["event"] == "prediction_complete"]
        assert done["request_id"] == "r-3"
        assert "prediction_complete" not in capsys.readouterr().out

    def test_configure_logging_when_asked_adds_json_errors_and_keeps_propagating(
        self, lines, root_handler
    ):
        """configure_logging() writes predlog's errors as JSON lines with the traceback, and
        the application's handler still gets them."""
        fail_five_times()
        (error,) = [line for line in lines() if line["level"] == "error"]
        assert error["error_kind"] == "sink_export_failed:FailingSink[0]"
        assert "Traceback (most recent call last)" in error["exception"]
        assert "OSError: disk on fire" in error["exception"]
        assert len([r for r in root_handler.records if r.name == "predlog"]) == 1
