"""Answers from logs the fraud example writes: real model, real Parquet files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from examples.fraud_service import data as fraud_data
from examples.fraud_service import model as fraud_model
from examples.fraud_service.scoring import DECLINE_AT, decide
from sklearn.metrics import roc_auc_score

import predlog
from predlog.analytics import AnalyticsError, evaluate, investigate, weighted_auc
from tests.helpers import parquet_files

N = 6000


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """6,000 labelled transactions scored by the fraud model and logged at a 30% base rate."""
    root = tmp_path_factory.mktemp("analytics")
    cols = fraud_data.generate(N, seed=21)
    labels = cols.pop("is_fraud")
    rows = fraud_data.rows(cols)
    model = fraud_model.load()
    scores = model.predict_proba(fraud_model.frame(rows))[:, 1]
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

    def test_unknown_request(self, logged):
        """An unknown request id is a clear error, not an empty answer."""
        with pytest.raises(AnalyticsError, match="no prediction with request id"):
            investigate("does-not-exist", data_dir=logged / "data")


class TestCommandLine:
    def test_evaluate_and_investigate_commands(self, logged):
        """`predlog evaluate --json` prints the documented shape; investigate finds a request."""
        import subprocess
        import sys

        from tests.helpers import child_env

        run = lambda *a: subprocess.run(  # noqa: E731
            [sys.executable, "-m", "predlog", *a],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
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
            "--json",
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
        kept = sorted(joined(logged)["request_id"])[0]
        shown = run("investigate", kept, "--data", str(logged / "data"))
        assert shown.returncode == 0, shown.stderr
        assert f"request {kept}" in shown.stdout
        assert "population p" in shown.stdout
        missing = run("investigate", "nope", "--data", str(logged / "data"))
        assert missing.returncode == 1
        assert "no prediction with request id" in missing.stderr
