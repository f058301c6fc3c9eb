"""predlog.bentoml_monitor: BentoML's own ``bentoml.monitor`` API, fed into predlog records."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from typing import Any

import bentoml
import httpx
import pytest
from services.bentoserve import BentoServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import predlog
from predlog import ConfigError, PredictionLogMiddleware
from predlog.bentoml_monitor import (
    MONITOR_TYPE,
    MonitorOptions,
    PredlogMonitor,
    check_monitoring,
    fields_from_columns,
)
from predlog.testing import MemorySink
from tests.helpers import ROOT, bento_env, read_all, start_bento

_names = itertools.count()


def _monitor_name() -> str:
    """BentoML caches one monitor per name for the process: each test takes a new one."""
    return f"test-monitor-{next(_names)}"


def _app(sink: MemorySink, handler: Any) -> tuple[Starlette, predlog.PredictionLogger]:
    logger = predlog.PredictionLogger(
        model_name="fraud", sinks=[sink], install_signal_handlers=False
    )
    app = Starlette(routes=[Route("/predict", handler, methods=["POST"])])
    app.add_middleware(PredictionLogMiddleware, logger=logger)
    return app, logger


def _post(app: Starlette, *bodies: dict[str, Any]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            return [
                await client.post("/predict", json=b, headers={"X-Request-ID": f"m-{i}"})
                for i, b in enumerate(bodies)
            ]

    return asyncio.run(go())


class TestFieldMapping:
    def test_roles_go_to_features_score_decision_and_extra(self):
        """feature → features, numerical prediction → score, categorical prediction →
        decision, any other role → extra, beside the monitor's name."""
        columns = {
            "amount": ("feature", "numerical", [120.0]),
            "country": ("feature", "categorical", ["FR"]),
            "probability": ("prediction", "numerical", [0.87]),
            "label": ("prediction", "categorical", ["declined"]),
            "chargeback": ("target", "categorical", [True]),
        }
        fields = fields_from_columns("fraud", columns, MonitorOptions())
        assert fields == {
            "features": {"amount": 120.0, "country": "FR"},
            "score": 0.87,
            "decision": "declined",
            "chargeback": True,
            "bentoml_monitor": "fraud",
        }

    def test_batch_column_becomes_a_list_and_reserved_names_are_renamed(self):
        """A column logged several times is a list; an extra column named like a record
        field (threshold) is renamed, never sets that field."""
        columns = {
            "x": ("feature", "numerical", [1, 2, 3]),
            "threshold": ("target", "numerical", [0.5]),
        }
        fields = fields_from_columns("m", columns, MonitorOptions())
        assert fields["features"] == {"x": [1, 2, 3]}
        assert "threshold" not in fields
        assert fields["threshold_"] == 0.5

    def test_options_choose_roles_and_columns(self):
        """Options move roles and pick which prediction column is score and decision."""
        options = MonitorOptions.parse(
            {
                "feature_roles": ["feature", "input"],
                "score_column": "p_fraud",
                "decision_column": "action",
            }
        )
        columns = {
            "seg": ("input", "categorical", ["vip"]),
            "p_other": ("prediction", "numerical", [0.1]),
            "p_fraud": ("prediction", "numerical", [0.9]),
            "action": ("prediction", "categorical", ["block"]),
        }
        fields = fields_from_columns("m", columns, options)
        assert fields["features"] == {"seg": "vip"}
        assert (fields["score"], fields["decision"]) == (0.9, "block")
        assert fields["p_other"] == 0.1

    @pytest.mark.parametrize(
        ("options", "named"),
        [
            ({"feature_role": ["x"]}, "monitoring.options.feature_role"),
            ({"feature_roles": "feature"}, "monitoring.options.feature_roles"),
            ({"prediction_roles": []}, "monitoring.options.prediction_roles"),
            ({"prediction_roles": ["feature"]}, "monitoring.options.prediction_roles"),
            ({"score_column": 3}, "monitoring.options.score_column"),
        ],
    )
    def test_malformed_option_is_named(self, options, named):
        """A malformed option raises ConfigError naming it, from the constructor BentoML calls."""
        with pytest.raises(ConfigError) as err:
            PredlogMonitor("m", **options)
        assert err.value.setting == named


class TestThroughBentomlMonitor:
    def test_monitored_fields_join_the_request_record(self):
        """`with bentoml.monitor(...)` in a handler puts its fields into that request's
        record, merged with the body's features; the response carries no score."""
        name = _monitor_name()
        sink = MemorySink()

        async def handler(request: Request) -> Response:
            tx = (await request.json())["tx"]
            with bentoml.monitor(name, monitor_class=MONITOR_TYPE, monitor_options={}) as mon:
                mon.log(tx["amount"] * 2, "amount_x2", "feature", "numerical")
                mon.log(0.25 if tx["amount"] < 500 else 0.75, "p", "prediction", "numerical")
                mon.log("approved", "label", "prediction", "categorical")
                mon.log("web", "channel_seen", "context", "categorical")
            return JSONResponse({"ok": True})

        app, logger = _app(sink, handler)
        _post(app, {"tx": {"amount": 100}}, {"tx": {"amount": 900}})
        logger.close()
        by_id = {r["request_id"]: r for r in sink.records}
        first, second = by_id["m-0"], by_id["m-1"]
        assert json.loads(first["features"]) == {"amount": 100, "amount_x2": 200}
        assert (first["raw_score"], first["decision"]) == (0.25, "approved")
        assert second["raw_score"] == 0.75
        extra = json.loads(first["extra"])
        assert extra["channel_seen"] == "web"
        assert extra["bentoml_monitor"] == name

    def test_handler_recorded_features_are_kept(self):
        """Features the handler gave predlog.record() are merged, not replaced."""
        name = _monitor_name()
        sink = MemorySink()

        async def handler(request: Request) -> Response:
            await request.body()  # the middleware keeps the body as the app reads it
            predlog.record(features={"from_store": 7})
            with bentoml.monitor(name, monitor_class=PredlogMonitor) as mon:
                mon.log(1, "monitored", "feature", "numerical")
            return JSONResponse({})

        app, logger = _app(sink, handler)
        _post(app, {"a": 1})
        logger.close()
        (rec,) = sink.records
        assert json.loads(rec["features"]) == {"a": 1, "from_store": 7, "monitored": 1}

    def test_outside_a_request_nothing_breaks_and_it_is_counted(self, caplog):
        """A monitor block with no request to join raises nothing, is counted and told."""
        name = _monitor_name()
        with bentoml.monitor(name, monitor_class=PredlogMonitor) as mon:
            mon.log(1.0, "x", "feature", "numerical")
        with bentoml.monitor(name, monitor_class=PredlogMonitor) as again:
            again.log(2.0, "x", "feature", "numerical")
        assert mon is again
        assert mon.stats() == {
            "recorded": 0,
            "outside_request": 2,
            "outside_block": 0,
            "failed": 0,
        }
        assert "outside a request" in caplog.text

    def test_a_failing_value_never_fails_the_request(self):
        """An unhashable column name is counted as failed; the request still answers."""
        name = _monitor_name()
        sink = MemorySink()
        seen: list[PredlogMonitor] = []

        async def handler(request: Request) -> Response:
            with bentoml.monitor(name, monitor_class=PredlogMonitor) as mon:
                mon.log(1, ["not", "hashable"], "feature", "numerical")  # type: ignore[arg-type]
                mon.log(math.pi, "p", "prediction", "numerical")
            seen.append(mon)
            return JSONResponse({"ok": True})

        app, logger = _app(sink, handler)
        (response,) = _post(app, {"a": 1})
        logger.close()
        assert response.status_code == 200
        assert seen[0].stats()["failed"] == 1
        assert sink.records[0]["raw_score"] == pytest.approx(math.pi)


class TestStartupCheck:
    def test_instrument_refuses_malformed_monitor_options(self):
        """predlog.instrument on a service whose config selects this monitor with a bad
        option fails there, naming it, not in the first request."""

        @bentoml.service(
            monitoring={"enabled": True, "type": MONITOR_TYPE, "options": {"scor_column": "p"}}
        )
        class Bad:
            @bentoml.api
            def predict(self, x: int) -> int:
                return x

        with pytest.raises(ConfigError, match=r"^monitoring\.options\.scor_column: unknown"):
            predlog.instrument(Bad, model_name="bad", install_signal_handlers=False)

    def test_bentoml_config_file_is_checked_too(self, tmp_path, monkeypatch):
        """Monitoring set in a BENTOML_CONFIG file, which BentoML merges only when it
        builds the app, is checked by instrument all the same."""
        config = tmp_path / "bentoml.yaml"
        config.write_text(
            "services:\n"
            "  filecfg:\n"
            "    monitoring:\n"
            "      enabled: true\n"
            f"      type: {MONITOR_TYPE}\n"
            "      options: {prediction_roles: []}\n"
        )
        monkeypatch.setenv("BENTOML_CONFIG", str(config))

        @bentoml.service(name="filecfg")
        class FromFile:
            @bentoml.api
            def predict(self, x: int) -> int:
                return x

        with pytest.raises(ConfigError, match=r"^monitoring\.options\.prediction_roles: "):
            predlog.instrument(FromFile, model_name="f", install_signal_handlers=False)

    def test_other_monitors_are_not_checked(self):
        """Options of another monitoring type are that monitor's business."""
        check_monitoring({"enabled": True, "type": "otlp", "options": {"endpoint": "x"}})
        check_monitoring({"enabled": False, "type": MONITOR_TYPE, "options": {"bad": 1}})


@pytest.mark.integration
class TestBentomlServe:
    def test_monitored_fields_reach_parquet(self, tmp_path):
        """A real `bentoml serve` of a service configured to this monitor: its
        bentoml.monitor fields are in the Parquet records, the response had none."""
        data = tmp_path / "data"
        server = start_bento("tests.bentoml_monitor_service:Monitored", tmp_path, data)
        try:
            for i, tx in enumerate(
                [{"amount": 120.0, "country": "FR"}, {"amount": 900.0, "chargeback": True}]
            ):
                r = httpx.post(
                    f"{server.base_url}/predict",
                    json={"transaction": tx},
                    headers={"X-Request-ID": f"mon-{i}"},
                    timeout=30,
                )
                assert r.status_code == 200, r.text
        finally:
            log = server.stop()
        rows = {r["request_id"]: r for r in read_all(data).to_pylist()}
        assert set(rows) == {"mon-0", "mon-1"}, log[-3000:]
        low, high = rows["mon-0"], rows["mon-1"]
        assert json.loads(low["features"]) == {
            "amount": 120.0,
            "country": "FR",
            "amount_seen": 120.0,
        }
        assert (low["raw_score"], low["decision"]) == (0.12, "approved")
        assert (high["raw_score"], high["decision"]) == (0.9, "declined")
        assert json.loads(high["extra"])["chargeback"] is True
        assert json.loads(low["extra"])["bentoml_monitor"] == "fraud"

    def test_malformed_option_in_config_file_stops_bentoml_serve(self, tmp_path):
        """`bentoml serve` with a bad option for this monitor in its BENTOML_CONFIG file
        exits at start-up, and its output names the option."""
        config = tmp_path / "bentoml.yaml"
        config.write_text(
            "services:\n"
            "  monitored:\n"
            "    monitoring:\n"
            "      enabled: true\n"
            f"      type: {MONITOR_TYPE}\n"
            "      options: {score_colum: probability}\n"
        )
        server = BentoServer(
            "tests.bentoml_monitor_service:Monitored",
            log_path=tmp_path / "server.log",
            cwd=ROOT,
            env=bento_env(tmp_path / "data", tmp_path / "bentoml", BENTOML_CONFIG=str(config)),
        )
        with pytest.raises(RuntimeError, match="bentoml serve exited"):
            server.start()
        assert "monitoring.options.score_colum: unknown option" in server.stop()
