"""Records of non-2xx responses: recorded and flagged, left out of drift and evaluate by
default, counted, and brought back by ``--include-errors``."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pandas as pd
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import predlog
from predlog import PredictionLogMiddleware
from predlog.tools.analytics import AnalyticsError, drift, evaluate
from predlog.tools.analytics.engine import open_engine
from tests.helpers import predlog_cli, read_all

BASELINE = "2026-10-01..2026-10-08"
CURRENT = "2026-10-08..2026-10-15"
PER_WEEK = 1500
#: Invalid requests (422, no features, no score) per week: the invalid-request rate rises.
INVALID = {0: 30, 1: 150}
#: Requests that failed after scoring (503 with a score), current week only.
FAILED = 40


@pytest.fixture(scope="module")
def weeks(tmp_path_factory):
    """Two weeks of records of one unchanged population, plus the records of non-2xx
    responses: 422s without features or score, 503s with both; outcomes for every record."""
    root = tmp_path_factory.mktemp("errors")
    rng = np.random.default_rng(7)
    outcomes = []
    with predlog.PredictionLogger(
        model_name="credit", data_dir=str(root / "data"), install_signal_handlers=False
    ) as log:
        for week in (0, 1):
            start = datetime(2026, 10, 1, tzinfo=timezone.utc) + timedelta(days=7 * week)
            for i in range(PER_WEEK):
                at = start + timedelta(seconds=i * 300)
                request_id = f"w{week}-{i}"
                if i < INVALID[week]:
                    log.log(request_id=request_id, timestamp=at, http_status=422)
                    continue
                score = float(rng.random())
                failed = week == 1 and i < INVALID[week] + FAILED
                log.log(
                    request_id=request_id,
                    features={"income": float(rng.normal(50_000, 9_000)), "term": "36"},
                    score=score,
                    decision="decline" if score > 0.7 else "refer" if score > 0.4 else "approve",
                    threshold=0.7,
                    timestamp=at,
                    **({"http_status": 503} if failed else {"http_status": 200} if i % 2 else {}),
                )
                outcomes.append((request_id, int(rng.random() < score)))
    pd.DataFrame(outcomes, columns=["request_id", "defaulted"]).to_csv(
        root / "outcomes.csv", index=False
    )
    return root


class TestErrorDefinition:
    def test_a_status_outside_2xx_is_an_error_and_no_status_never_is(self, tmp_path):
        """Of the middleware's records, the 422 and the 500 are errors and the 200 is not;
        records written by log() without a status are not, with a 201 neither, with a 302
        they are (outside 200-299)."""

        async def predict(request: Request) -> Response:
            body = await request.json()
            if "amount" not in body:
                return JSONResponse({"detail": "amount: field required"}, status_code=422)
            status = 500 if body["amount"] < 0 else 200
            return JSONResponse({"score": 0.5, "decision": "refer"}, status_code=status)

        data = tmp_path / "data"
        logger = predlog.PredictionLogger(data_dir=str(data), install_signal_handlers=False)
        app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])
        app.add_middleware(PredictionLogMiddleware, logger=logger)

        async def send() -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                for request_id, body in (
                    ("ok", {"amount": 5}),
                    ("invalid", {}),
                    ("boom", {"amount": -1}),
                ):
                    await client.post("/predict", json=body, headers={"X-Request-ID": request_id})

        asyncio.run(send())
        logger.log(request_id="logged", features={"amount": 1}, score=0.1)
        logger.log(request_id="created", features={"amount": 1}, score=0.1, http_status=201)
        logger.log(request_id="moved", features={"amount": 1}, score=0.1, http_status=302)
        logger.close()
        flags = dict(
            zip(
                read_all(data)["request_id"].to_pylist(),
                read_all(data)["data_quality"].to_pylist(),
                strict=True,
            )
        )
        assert "http_status_422" in flags["invalid"]  # recorded and flagged
        with open_engine(data_dir=data) as eng:
            rows = dict(eng.rows(f"SELECT request_id, {eng.http_error()} FROM predictions"))
        assert rows == {
            "ok": False,
            "invalid": True,
            "boom": True,
            "logged": False,
            "created": False,
            "moved": True,
        }


class TestDrift:
    def test_invalid_requests_are_not_read_as_nulls_and_are_counted(self, weeks):
        """By default the 422s are left out: the features have no nulls, and the report
        counts what it left out per range; --include-errors brings the nulls back."""
        report = drift(baseline=BASELINE, current=CURRENT, data_dir=weeks / "data")
        errors = report["errors"]
        assert (errors["baseline"], errors["current"]) == (INVALID[0], INVALID[1] + FAILED)
        assert errors["included"] is False
        assert report["baseline"]["n"] == PER_WEEK - INVALID[0]
        assert report["current"]["n"] == PER_WEEK - INVALID[1] - FAILED
        income = report["features"]["income"]["null_rate"]
        assert income == {"baseline": 0.0, "current": 0.0}
        assert report["drifted"] == []

        kept = drift(
            baseline=BASELINE, current=CURRENT, data_dir=weeks / "data", include_errors=True
        )
        assert kept["errors"]["included"] is True
        assert kept["baseline"]["n"] == kept["current"]["n"] == PER_WEEK
        income = kept["features"]["income"]["null_rate"]
        assert income["baseline"] == pytest.approx(INVALID[0] / PER_WEEK, rel=1e-12)
        assert income["current"] == pytest.approx(INVALID[1] / PER_WEEK, rel=1e-12)

    def test_the_command_says_what_it_left_out_in_text_json_and_html(self, weeks, tmp_path):
        """Text, -o json and the HTML page each give the counts; --include-errors says it
        kept them and shows the invalid-request rate as nulls again."""
        args = [
            "drift",
            "--baseline",
            BASELINE,
            "--current",
            CURRENT,
            "--data",
            str(weeks / "data"),
        ]
        page = tmp_path / "drift.html"
        text = predlog_cli(*args, "--html", str(page))
        assert text.returncode == 0, text.stderr
        left = f"left out {INVALID[0] + INVALID[1] + FAILED} records of non-2xx responses"
        assert left in text.stdout
        assert f"(baseline {INVALID[0]}, current {INVALID[1] + FAILED})" in text.stdout
        income = next(line for line in text.stdout.splitlines() if line.split()[:1] == ["income"])
        assert "nulls 0.0% -> 0.0%" in income
        assert f"baseline {INVALID[0]}, current {INVALID[1] + FAILED}" in page.read_text()
        as_json = predlog_cli(*args, "-o", "json")
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout)["errors"]["current"] == INVALID[1] + FAILED
        kept = predlog_cli(*args, "--include-errors")
        assert kept.returncode == 0, kept.stderr
        assert "including 220 records of non-2xx responses" in kept.stdout
        income = next(line for line in kept.stdout.splitlines() if line.split()[:1] == ["income"])
        assert "nulls 2.0% -> 10.0%" in income

    def test_a_range_holding_only_errors_says_so(self, tmp_path):
        """A range whose every record is an error names them rather than saying it is empty."""
        with predlog.PredictionLogger(
            data_dir=str(tmp_path / "data"), install_signal_handlers=False
        ) as log:
            log.log(
                features={"a": 1}, score=0.2, timestamp=datetime(2026, 10, 2, tzinfo=timezone.utc)
            )
            for _ in range(3):
                log.log(http_status=422, timestamp=datetime(2026, 10, 9, tzinfo=timezone.utc))
        with pytest.raises(
            Exception, match=r"no predictions in the current range .*, only 3 of non-2xx"
        ):
            drift(baseline=BASELINE, current=CURRENT, data_dir=tmp_path / "data")


class TestEvaluate:
    def test_failed_requests_are_left_out_and_counted(self, weeks):
        """The 503s, scored and labelled, are left out and counted; --include-errors
        evaluates them too."""
        args = {"data_dir": weeks / "data", "label": ("defaulted", None)}
        report = evaluate(weeks / "outcomes.csv", **args)
        labelled = 2 * PER_WEEK - INVALID[0] - INVALID[1]
        assert report["errors"] == {
            "rule": report["errors"]["rule"],
            "included": False,
            "n": FAILED,
        }
        assert report["n"] == labelled - FAILED
        assert sum(d["n"] for d in report["decisions"]["values"]) == labelled - FAILED
        kept = evaluate(weeks / "outcomes.csv", **args, include_errors=True)
        assert kept["n"] == labelled
        assert kept["errors"]["n"] == FAILED and kept["errors"]["included"] is True

    def test_records_without_a_score_are_joined_counted_and_decided(self, tmp_path):
        """A 422 has no score but may have an outcome: it is counted among the errors.
        A label-only answer (a decision, no score) is in the decision table though the
        score metrics cannot read it."""
        outcomes = []
        at = datetime(2026, 10, 1, tzinfo=timezone.utc)
        with predlog.PredictionLogger(
            data_dir=str(tmp_path / "data"), install_signal_handlers=False
        ) as log:
            for i in range(40):
                score = (i % 10) / 10
                log.log(request_id=f"s{i}", score=score, decision="approve", timestamp=at)
                outcomes.append((f"s{i}", int(score > 0.5)))
            for i in range(7):
                log.log(request_id=f"bad{i}", http_status=422, timestamp=at)
                outcomes.append((f"bad{i}", 1))
            for i in range(6):
                log.log(request_id=f"refer{i}", decision="refer", http_status=200, timestamp=at)
                outcomes.append((f"refer{i}", i % 2))
        pd.DataFrame(outcomes, columns=["request_id", "bad"]).to_csv(
            tmp_path / "outcomes.csv", index=False
        )
        args = {"data_dir": tmp_path / "data", "label": ("bad", None)}
        report = evaluate(tmp_path / "outcomes.csv", **args)
        assert report["n"] == 40
        assert report["errors"]["n"] == 7
        rows = {d["decision"]: d for d in report["decisions"]["values"]}
        assert (rows["approve"]["n"], rows["refer"]["n"]) == (40, 6)
        assert rows["refer"]["positives"] == 3
        assert None not in rows  # the 422s are left out
        kept = evaluate(tmp_path / "outcomes.csv", **args, include_errors=True)
        assert {d["decision"]: d["n"] for d in kept["decisions"]["values"]}[None] == 7

    def test_outcomes_joined_with_no_score_at_all_say_so(self, tmp_path):
        """When nothing joined has a score, the message says that, not that the join
        matched nothing."""
        at = datetime(2026, 10, 1, tzinfo=timezone.utc)
        with predlog.PredictionLogger(
            data_dir=str(tmp_path / "data"), install_signal_handlers=False
        ) as log:
            for i in range(5):
                log.log(request_id=f"r{i}", decision="refer", http_status=200, timestamp=at)
        pd.DataFrame({"request_id": [f"r{i}" for i in range(5)], "bad": [0, 1, 0, 1, 0]}).to_csv(
            tmp_path / "outcomes.csv", index=False
        )
        with pytest.raises(AnalyticsError, match="5 predictions joined with an outcome, but none"):
            evaluate(tmp_path / "outcomes.csv", data_dir=tmp_path / "data", label=("bad", None))

    def test_the_command_says_what_it_left_out(self, weeks, tmp_path):
        """Text, -o json and HTML give the count; --include-errors says it kept them."""
        args = [
            "evaluate",
            "--outcomes",
            str(weeks / "outcomes.csv"),
            "--label",
            "defaulted",
            "--data",
            str(weeks / "data"),
        ]
        page = tmp_path / "evaluate.html"
        text = predlog_cli(*args, "--html", str(page))
        assert text.returncode == 0, text.stderr
        assert f"left out {FAILED} records of non-2xx responses" in text.stdout
        assert f"{FAILED} records of non-2xx responses left out" in page.read_text()
        as_json = predlog_cli(*args, "-o", "json")
        assert json.loads(as_json.stdout)["errors"]["n"] == FAILED
        kept = predlog_cli(*args, "--include-errors")
        assert kept.returncode == 0, kept.stderr
        assert f"including {FAILED} records of non-2xx responses" in kept.stdout
