"""Answers from logs the fraud example writes: real model, real Parquet files."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from examples.fraud_service import data as fraud_data
from examples.fraud_service import model as fraud_model
from examples.fraud_service.scoring import DECLINE_AT, decide
from services.bentoserve import free_port
from sklearn.metrics import roc_auc_score

import predlog
from predlog.tools.analytics import AnalyticsError, evaluate, investigate, weighted_auc
from tests.helpers import parquet_files, predlog_cli

N = 6000


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """6,000 labelled transactions scored by the fraud model and logged at a 30% base rate."""
    root = tmp_path_factory.mktemp("analytics")
    cols = fraud_data.generate(N, seed=21)
    labels = cols.pop("is_fraud")
    rows = fraud_data.rows(cols)
    # One row at a time, as the service scores: a batched product sums in another order
    # and differs in the last bits, which replay must not be blamed for.
    scores = [fraud_model.score_features(row) for row in rows]
    with predlog.PredictionLogger(
        model_name="fraud",
        model_version="v2.1.0",
        data_dir=str(root / "data"),
        sample_rate=0.3,
        new_version_window_s=0,
        install_signal_handlers=False,
    ) as log:
        for i, (row, score) in enumerate(zip(rows, scores, strict=True)):
            log.log(
                request_id=f"tx-{i}",
                features=row,
                score=float(score),
                decision=decide(float(score)),
                threshold=DECLINE_AT,
                user_segment=row["user_segment"],
                channel=row["channel"],
                geographic_region=row["region"],
            )
    outcomes = pd.DataFrame(
        {
            "transaction_id": [f"tx-{i}" for i in range(N)],
            "fraud": labels,
            "outcome": np.where(labels == 1, "chargeback", "ok"),
        }
    )
    outcomes.to_csv(root / "outcomes.csv", index=False)
    return root


def joined(root):
    table = pd.concat(pq.read_table(f).to_pandas() for f in parquet_files(root / "data"))
    outcomes = pd.read_csv(root / "outcomes.csv")
    return table.merge(outcomes, left_on="request_id", right_on="transaction_id")


class TestWeightedAUC:
    def test_matches_scikit_learn_weighted_and_not(self, logged):
        """On the joined fraud data our AUC equals roc_auc_score to 1e-9, weighted or not."""
        j = joined(logged)
        y, s, w = j["fraud"].to_numpy(), j["raw_score"].to_numpy(), j["sample_weight"].to_numpy()
        assert abs(weighted_auc(y, s) - roc_auc_score(y, s)) < 1e-9
        assert abs(weighted_auc(y, s, w) - roc_auc_score(y, s, sample_weight=w)) < 1e-9

    def test_ties_count_half(self):
        """Tied scores across classes count one half, as the ROC curve's trapezoid does."""
        assert weighted_auc([1, 0], [0.5, 0.5]) == 0.5
        assert (
            abs(
                weighted_auc([1, 0, 1, 0], [0.9, 0.9, 0.2, 0.1])
                - roc_auc_score([1, 0, 1, 0], [0.9, 0.9, 0.2, 0.1])
            )
            < 1e-12
        )


class TestEvaluate:
    def test_overall_metrics_match_an_independent_computation(self, logged):
        """evaluate's AUC, precision and recall equal a direct computation on the join."""
        report = evaluate(
            logged / "outcomes.csv",
            data_dir=logged / "data",
            key=("request_id", "transaction_id"),
            label=("fraud", None),
        )
        j = joined(logged)
        y, s, w = (
            j["fraud"].to_numpy() == 1,
            j["raw_score"].to_numpy(),
            j["sample_weight"].to_numpy(),
        )
        assert report["n"] == len(j)
        assert abs(report["overall"]["auc"] - roc_auc_score(y, s, sample_weight=w)) < 1e-9
        flagged = s >= DECLINE_AT
        assert abs(report["overall"]["precision"] - w[flagged & y].sum() / w[flagged].sum()) < 1e-9
        assert abs(report["overall"]["recall"] - w[flagged & y].sum() / w[y].sum()) < 1e-9
        assert 0.8 < report["overall"]["auc"] < 0.99
        assert report["overall"]["calibration"]
        assert abs(report["overall"]["weighted_n"] - N) < 0.15 * N  # weights estimate the stream

    def test_label_by_value_and_cohorts_with_omissions(self, logged):
        """A string label works; cohorts under the minimum are left out and listed as omitted."""
        report = evaluate(
            logged / "outcomes.csv",
            data_dir=logged / "data",
            key=("request_id", "transaction_id"),
            label=("outcome", "chargeback"),
            min_cohort=500,
        )
        j = joined(logged)
        for cohort, column in (("geographic_region", "geographic_region"), ("channel", "channel")):
            counts = j[column].value_counts()
            kept = set(report["cohorts"][cohort])
            assert kept == {v for v, c in counts.items() if c >= 500}
            omitted = {o["value"] for o in report["omitted"] if o["cohort"] == cohort}
            assert omitted == {v for v, c in counts.items() if c < 500}
        assert report["omitted"], "the test data must leave at least one cohort out"
        eu = j[j["geographic_region"] == "EU"]
        assert (
            abs(
                report["cohorts"]["geographic_region"]["EU"]["auc"]
                - roc_auc_score(eu["fraud"], eu["raw_score"], sample_weight=eu["sample_weight"])
            )
            < 1e-9
        )

    def test_join_that_matches_nothing_says_how_many_rows(self, logged, tmp_path):
        """A join with no match is an error that gives both sides' row counts."""
        other = tmp_path / "other.csv"
        pd.DataFrame({"transaction_id": ["nope"], "fraud": [1]}).to_csv(other, index=False)
        with pytest.raises(AnalyticsError, match=r"matched nothing: \d+ predictions, 1 outcomes"):
            evaluate(
                other,
                data_dir=logged / "data",
                key=("request_id", "transaction_id"),
                label=("fraud", None),
            )

    def test_clear_errors(self, logged, tmp_path):
        """Missing data dir and missing columns are named."""
        with pytest.raises(AnalyticsError, match="does not exist"):
            evaluate(logged / "outcomes.csv", data_dir=tmp_path / "missing")
        with pytest.raises(AnalyticsError, match="no column 'label'"):
            evaluate(
                logged / "outcomes.csv",
                data_dir=logged / "data",
                key=("request_id", "transaction_id"),
            )


class TestInvestigate:
    def test_finds_a_request_and_shows_its_features(self, logged):
        """investigate returns the record with features, decision and percentile comparisons."""
        kept = sorted(joined(logged)["request_id"])[0]
        (found,) = investigate(kept, data_dir=logged / "data", user_key="user_segment")
        assert found["request_id"] == kept
        assert found["features"]["merchant_category"] in fraud_data.CATEGORIES
        assert found["decision"] in ("approved", "review", "declined")
        amount = found["comparison"]["amount"]
        assert amount["value"] == found["features"]["amount"]
        assert 0 <= amount["population_percentile"] <= 100
        assert amount["own_history_n"] > 0

    def test_trace_link_uses_the_jaeger_url_setting(self, tmp_path, monkeypatch):
        """PREDLOG_JAEGER_URL links a record's trace to Jaeger; an argument overrides it."""
        trace_id = "0af7651916cd43dd8448eb211c80319c"
        with predlog.PredictionLogger(
            data_dir=str(tmp_path / "data"), install_signal_handlers=False
        ) as log:
            log.log(request_id="traced", features={"amount": 1.0}, score=0.1, trace_id=trace_id)
        (unlinked,) = investigate("traced", data_dir=tmp_path / "data")
        assert unlinked["trace_id"] == trace_id
        assert unlinked["trace_url"] is None
        monkeypatch.setenv("PREDLOG_JAEGER_URL", "http://jaeger:16686/")
        (linked,) = investigate("traced", data_dir=tmp_path / "data")
        assert linked["trace_url"] == f"http://jaeger:16686/trace/{trace_id}"
        (argument,) = investigate("traced", data_dir=tmp_path / "data", jaeger_url="http://j")
        assert argument["trace_url"] == f"http://j/trace/{trace_id}"

    def test_unknown_request(self, logged):
        """An unknown request id is a clear error, not an empty answer."""
        with pytest.raises(AnalyticsError, match="no prediction with request id"):
            investigate("does-not-exist", data_dir=logged / "data")


class TestCommandLine:
    def test_data_dir_setting_is_the_default_directory(self, logged):
        """Without --data, `predlog investigate` and `predlog evaluate` read PREDLOG_DATA_DIR."""
        data = str(logged / "data")
        kept = sorted(joined(logged)["request_id"])[0]
        shown = predlog_cli("investigate", kept, PREDLOG_DATA_DIR=data)
        assert shown.returncode == 0, shown.stderr
        assert f"request {kept}" in shown.stdout
        out = predlog_cli(
            "evaluate",
            "--outcomes",
            str(logged / "outcomes.csv"),
            "--key",
            "request_id=transaction_id",
            "--label",
            "fraud",
            "-o",
            "json",
            PREDLOG_DATA_DIR=data,
        )
        assert out.returncode == 0, out.stderr
        api = evaluate(
            logged / "outcomes.csv",
            data_dir=data,
            key=("request_id", "transaction_id"),
            label=("fraud", None),
        )
        assert json.loads(out.stdout)["n"] == api["n"]

    def test_evaluate_and_investigate_commands(self, logged):
        """`predlog evaluate --json` prints the documented shape; investigate finds a request."""

        run = predlog_cli
        out = run(
            "evaluate",
            "--outcomes",
            str(logged / "outcomes.csv"),
            "--data",
            str(logged / "data"),
            "--key",
            "request_id=transaction_id",
            "--label",
            "outcome=chargeback",
            "-o",
            "json",
        )
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert set(report) >= {"n", "overall", "cohorts", "omitted"}
        assert set(report["cohorts"]) == {
            "user_segment",
            "channel",
            "geographic_region",
            "model_version",
        }
        api = evaluate(
            logged / "outcomes.csv",
            data_dir=logged / "data",
            key=("request_id", "transaction_id"),
            label=("outcome", "chargeback"),
        )
        assert report["overall"]["auc"] == api["overall"]["auc"]
        page = logged / "cli-evaluate.html"
        with_html = run(
            "evaluate",
            "--outcomes",
            str(logged / "outcomes.csv"),
            "--data",
            str(logged / "data"),
            "--key",
            "request_id=transaction_id",
            "--label",
            "fraud",
            "--html",
            str(page),
        )
        assert with_html.returncode == 0, with_html.stderr
        assert page.read_text().count("<polyline") >= 5
        kept = sorted(joined(logged)["request_id"])[0]
        shown = run("investigate", kept, "--data", str(logged / "data"))
        assert shown.returncode == 0, shown.stderr
        assert f"request {kept}" in shown.stdout
        assert "population p" in shown.stdout
        missing = run("investigate", "nope", "--data", str(logged / "data"))
        assert missing.returncode == 1
        assert "no prediction with request id" in missing.stderr


@pytest.fixture(scope="module")
def two_weeks(tmp_path_factory):
    """A baseline week and a current week of fraud-model logs; only `amount` is shifted."""
    from datetime import datetime, timedelta, timezone

    root = tmp_path_factory.mktemp("drift")
    model = fraud_model.load()
    with predlog.PredictionLogger(
        model_name="fraud",
        model_version="v2.1.0",
        data_dir=str(root / "data"),
        install_signal_handlers=False,
        ring_capacity=1 << 15,
    ) as log:
        for week, seed, factor in ((0, 31, 1.0), (1, 32, 2.0)):
            cols = fraud_data.generate(4000, seed=seed)
            cols.pop("is_fraud")
            cols["amount"] = cols["amount"] * factor
            rows = fraud_data.rows(cols)
            scores = model.predict_proba(fraud_model.frame(rows))[:, 1]
            start = datetime(2026, 10, 1, tzinfo=timezone.utc) + timedelta(days=7 * week)
            for i, (row, score) in enumerate(zip(rows, scores, strict=True)):
                log.log(
                    request_id=f"w{week}-{i}",
                    features=row,
                    score=float(score),
                    decision=decide(float(score)),
                    threshold=DECLINE_AT,
                    timestamp=start + timedelta(seconds=i * 100),
                )
    return root


class TestDrift:
    def test_flags_the_shifted_feature_and_no_other(self, two_weeks):
        """Doubling `amount` in the current week is flagged; every other feature is not."""
        from predlog.tools.analytics import drift

        report = drift(
            baseline="2026-10-01..2026-10-08",
            current="2026-10-08..2026-10-15",
            data_dir=two_weeks / "data",
        )
        assert report["drifted"] == ["amount"]
        amount = report["features"]["amount"]
        assert amount["kind"] == "numerical"
        assert amount["psi"] > 0.2
        assert amount["ks"]["p_value"] < 1e-6
        assert report["features"]["merchant_category"]["kind"] == "categorical"
        assert report["features"]["merchant_category"]["psi"] < 0.1
        assert report["baseline"]["n"] == report["current"]["n"] == 4000
        assert report["score"]["mean"]["current"] > report["score"]["mean"]["baseline"]

    def test_empty_range_is_an_error(self, two_weeks):
        """A range with no predictions says so."""
        from predlog.tools.analytics import drift

        with pytest.raises(AnalyticsError, match="no predictions in the current range"):
            drift(
                baseline="2026-10-01..2026-10-08",
                current="2027-01-01..2027-01-02",
                data_dir=two_weeks / "data",
            )


class TestReplay:
    def test_same_model_reproduces_the_logged_score_exactly(self, logged):
        """Replaying logged features through the saved model gives the logged score, bit for bit."""
        from predlog.tools.analytics import replay

        for request_id in sorted(joined(logged)["request_id"])[:20]:
            (result,) = replay(
                request_id,
                model="examples.fraud_service.model:score_features",
                data_dir=logged / "data",
            )
            assert result["replayed"]["score"] == result["logged"]["score"]
            assert result["score_difference"] == 0.0
            assert result["same_side_of_threshold"] is True

    def test_bentoml_model_tag(self, logged, tmp_path):
        """A model saved in the BentoML store, named by its tag, replays the same score."""
        import subprocess
        import sys

        from tests.helpers import child_env

        request_id = sorted(joined(logged)["request_id"])[0]
        script = (
            "import bentoml, json, sys\n"
            "from examples.fraud_service import model as m\n"
            "bentoml.sklearn.save_model('fraud', m.load())\n"
            "from predlog.tools.analytics import replay\n"
            "out = replay(sys.argv[1], model='bentoml:fraud:latest', data_dir=sys.argv[2])\n"
            "print(json.dumps(out))\n"
        )
        from tests.helpers import ROOT

        proc = subprocess.run(
            [sys.executable, "-c", script, request_id, str(logged / "data")],
            env=child_env(
                BENTOML_HOME=str(tmp_path / "bentoml"),
                BENTOML_DO_NOT_TRACK="true",
                PYTHONPATH=f"{ROOT / 'plugin'}:{ROOT}",
            ),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        (result,) = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["replayed"]["score"] == result["logged"]["score"]


class TestDriftAndReplayCommands:
    def test_drift_and_replay_commands(self, two_weeks, logged):
        """`predlog drift` names the shifted feature; `predlog replay` shows both scores."""

        drift_out = predlog_cli(
            "drift",
            "--baseline",
            "2026-10-01..2026-10-08",
            "--current",
            "2026-10-08..2026-10-15",
            "--data",
            str(two_weeks / "data"),
        )
        assert drift_out.returncode == 0, drift_out.stderr
        flagged = [line.split()[0] for line in drift_out.stdout.splitlines() if "DRIFTED" in line]
        assert flagged == ["amount"]
        page = two_weeks / "cli-drift.html"
        with_html = predlog_cli(
            "drift",
            "--baseline",
            "2026-10-01..2026-10-08",
            "--current",
            "2026-10-08..2026-10-15",
            "--data",
            str(two_weeks / "data"),
            "--html",
            str(page),
        )
        assert with_html.returncode == 0, with_html.stderr
        assert "amount: PSI" in page.read_text()
        request_id = sorted(joined(logged)["request_id"])[1]
        replay_out = predlog_cli(
            "replay",
            request_id,
            "--model",
            "examples.fraud_service.model:score_features",
            "--data",
            str(logged / "data"),
        )
        assert replay_out.returncode == 0, replay_out.stderr
        assert "difference 0; same side of threshold: True" in replay_out.stdout


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def render(page, tmp_path):
    """The page's rendered DOM and a screenshot, from headless Chromium."""
    import shutil
    import subprocess

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run the tests with `make test`")
    profile = tmp_path / "profile"
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run(
        [*base, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    shot = tmp_path / f"{page.stem}.png"
    subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1400,1800", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return dom, shot


def ink(png) -> float:
    """Share of pixels that are not (near) white."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    return float((pixels < 200).mean())


@pytest.mark.integration  # renders in headless Chromium, which `make test` installs
class TestHtmlReports:
    def test_evaluate_report_renders_roc_curves(self, logged, tmp_path):
        """The evaluate report renders in Chromium with a ROC curve per cohort value kept,
        and lists each cohort value left out as too small."""
        page = tmp_path / "evaluate.html"
        report = evaluate(
            logged / "outcomes.csv",
            data_dir=logged / "data",
            key=("request_id", "transaction_id"),
            label=("fraud", None),
            min_cohort=500,
            html_path=page,
        )
        dom, shot = render(page, tmp_path)
        curves = dom.count("<polyline")
        expected = 1 + sum(len(values) for values in report["cohorts"].values())
        assert curves == expected
        assert dom.count("<svg") >= 1 + sum(1 for v in report["cohorts"].values() if v)
        assert report["omitted"], "the test data must leave at least one cohort out"
        assert "Omitted cohorts" in dom
        omitted_table = dom.split("Omitted cohorts", 1)[1]
        for item in report["omitted"]:
            assert f"<td>{item['value']}</td><td>{item['n']}</td>" in omitted_table, item
        assert ink(shot) > 0.01, "the screenshot is blank"
        from PIL import Image

        colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
        assert any(c == (31, 119, 180) for _, c in colours), "no ROC line drawn"

    def test_drift_report_renders_histograms(self, two_weeks, tmp_path):
        """The drift report renders in Chromium with a histogram per feature and the score."""
        from predlog.tools.analytics import drift

        page = tmp_path / "drift.html"
        report = drift(
            baseline="2026-10-01..2026-10-08",
            current="2026-10-08..2026-10-15",
            data_dir=two_weeks / "data",
            html_path=page,
        )
        dom, shot = render(page, tmp_path)
        with_histograms = sum(1 for f in report["features"].values() if f.get("histogram"))
        assert dom.count("<svg") == with_histograms + 1
        assert dom.count("<rect") > 10 * with_histograms
        assert "amount: PSI" in dom and "DRIFTED" in dom
        assert ink(shot) > 0.01, "the screenshot is blank"


class TestInvestigateAudited:
    def test_shows_adverse_action_reasons_of_an_audited_decision(self, logged, tmp_path):
        """With the audit log beside the data, investigate shows the decision's reasons."""
        from cryptography.hazmat.primitives.asymmetric import ed25519

        from predlog.audit import AuditLog

        kept = sorted(joined(logged)["request_id"])[2]
        (plain,) = investigate(kept, data_dir=logged / "data")
        assert plain["audit"] is None
        audit_dir = tmp_path / "audit"
        with AuditLog(audit_dir, signing_key=ed25519.Ed25519PrivateKey.generate()) as log:
            log.append(
                {
                    "request_id": kept,
                    "prediction_id": plain["prediction_id"],
                    "decision": "declined",
                    "adverse_action_reasons": [
                        "Debt-to-income ratio is high",
                        "Card was issued recently",
                    ],
                }
            )
            log.checkpoint()
        (found,) = investigate(kept, data_dir=logged / "data", audit_dir=audit_dir)
        assert found["audit"]["adverse_action_reasons"] == [
            "Debt-to-income ratio is high",
            "Card was issued recently",
        ]
        assert found["audit"]["index"] == 0


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
#: A trace as Jaeger's API returns it: a server span, and the example's two child spans.
JAEGER_TRACE = {
    "traceID": TRACE_ID,
    "processes": {"p1": {"serviceName": "fraud"}, "p2": {"serviceName": "features"}},
    "spans": [
        {
            "traceID": TRACE_ID,
            "spanID": "c2",
            "operationName": "inference",
            "references": [{"refType": "CHILD_OF", "spanID": "a0"}],
            "startTime": 1_000_005_000,
            "duration": 15_000,
            "processID": "p1",
            "tags": [{"key": "span.kind", "value": "internal"}],
        },
        {
            "traceID": TRACE_ID,
            "spanID": "a0",
            "operationName": "POST /predict",
            "references": [],
            "startTime": 1_000_000_000,
            "duration": 20_000,
            "processID": "p1",
            "tags": [
                {"key": "predlog.prediction.decision", "value": "declined"},
                {"key": "http.status_code", "value": 200},
            ],
        },
        {
            "traceID": TRACE_ID,
            "spanID": "b1",
            "operationName": "feature_fetch",
            "references": [{"refType": "CHILD_OF", "spanID": "a0"}],
            "startTime": 1_000_001_000,
            "duration": 3_000,
            "processID": "p2",
            "tags": [],
        },
    ],
}


@pytest.fixture
def fake_jaeger():
    """Jaeger's query API on loopback, holding the one trace above (404 for any other)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            found = self.path == f"/api/traces/{TRACE_ID}"
            body = json.dumps({"data": [JAEGER_TRACE]} if found else {"data": None}).encode()
            self.send_response(200 if found else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def traced_records(data_dir, **traces):
    """One declined record per request id, with the given trace id."""
    with predlog.PredictionLogger(data_dir=str(data_dir), install_signal_handlers=False) as log:
        for request_id, trace_id in traces.items():
            log.log(
                request_id=request_id,
                features={"amount": 950.0, "hour": 3},
                score=0.93,
                decision="declined",
                threshold=0.7,
                trace_id=trace_id,
            )


class TestInvestigateTraceView:
    def test_page_draws_the_trace_beside_the_record(self, tmp_path, fake_jaeger):
        """The page shows the record and, beside it, the trace's spans in tree order with
        their service, duration, and bars placed on the trace's timeline."""
        traced_records(tmp_path / "data", traced=TRACE_ID)
        page = tmp_path / "investigate.html"
        investigate("traced", data_dir=tmp_path / "data", jaeger_url=fake_jaeger, html_path=page)
        text = page.read_text()
        assert "declined" in text and "950" in text
        rows = re.findall(
            r"<tr title=[^>]*><td>([^<]*)</td><td[^>]*>([^<]*)</td><td[^>]*>([^<]*)</td>"
            r"<td[^>]*>([^<]*)</td><td[^>]*><div class=\"bar\" style=\"margin-left:([\d.]+)%;"
            r"width:([\d.]+)%",
            text,
        )
        assert rows == [
            ("fraud", "POST /predict", "20.00 ms", "+0.00 ms", "0.00", "100.00"),
            ("features", "feature_fetch", "3.00 ms", "+1.00 ms", "5.00", "15.00"),
            ("fraud", "inference", "15.00 ms", "+5.00 ms", "25.00", "75.00"),
        ]
        assert 'padding-left:22px">feature_fetch' in text, "children are indented"
        attributes = text.split("Prediction attributes on the trace", 1)[1]
        assert "<td>predlog.prediction.decision</td><td>declined</td>" in attributes
        assert "http.status_code" not in attributes

    def test_page_says_why_the_trace_is_missing_and_still_renders(self, tmp_path, fake_jaeger):
        """No Jaeger URL, a trace Jaeger does not hold, and a Jaeger that is away each give
        one line on a page that still shows the record."""
        traced_records(tmp_path / "data", unknown="0" * 31 + "1", known=TRACE_ID)
        away = f"http://127.0.0.1:{free_port()}"
        cases = {
            "no Jaeger URL: set PREDLOG_JAEGER_URL": ("known", None),
            f"not found in Jaeger at {fake_jaeger}": ("unknown", fake_jaeger),
            f"Jaeger at {away} is unreachable": ("known", away),
        }
        for problem, (request_id, url) in cases.items():
            page = tmp_path / f"{request_id}.html"
            investigate(request_id, data_dir=tmp_path / "data", jaeger_url=url, html_path=page)
            text = page.read_text()
            assert text.count('class="note"') == 1, problem
            assert problem in text
            assert f"<td>{request_id}</td>" in text and "<td>declined</td>" in text
            assert '<table class="waterfall">' not in text
