"""evaluate with a decision of three values against a binary outcome, and the messages of
a --label the outcomes cannot answer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import predlog
from predlog.tools.analytics import AnalyticsError, evaluate
from predlog.tools.cli._options import num
from tests.helpers import predlog_cli, read_all

N = 3000
DECISIONS = ("approve", "refer", "decline")


@pytest.fixture(scope="module")
def credit(tmp_path_factory):
    """Credit decisions of three values (and some without one), weighted by a 50% base
    sample, at thresholds that differ by record; outcomes say who defaulted."""
    root = tmp_path_factory.mktemp("decisions")
    rng = np.random.default_rng(11)
    rows = []
    with predlog.PredictionLogger(
        model_name="credit",
        data_dir=str(root / "data"),
        sample_rate=0.5,
        high_risk_score=0.8,
        new_version_window_s=0,
        install_signal_handlers=False,
    ) as log:
        for i in range(N):
            score = round(float(rng.beta(2, 5)), 3)
            decision = "decline" if score > 0.55 else "refer" if score > 0.3 else "approve"
            log.log(
                request_id=f"app-{i}",
                features={"income": float(rng.normal(40_000, 8_000))},
                score=score,
                decision=None if i % 50 == 0 else decision,
                threshold=(0.55, 0.6, None)[i % 3],  # None: the setting's, 0.5, is recorded
            )
            rows.append((f"app-{i}", "late" if rng.random() < score else "paid"))
    pd.DataFrame(rows, columns=["application", "outcome"]).to_csv(
        root / "outcomes.csv", index=False
    )
    return root


def joined(root):
    records = read_all(root / "data").to_pandas()
    outcomes = pd.read_csv(root / "outcomes.csv")
    j = records.merge(outcomes, left_on="request_id", right_on="application")
    return j.assign(y=j["outcome"] == "late")


def run(root, *extra):
    return predlog_cli(
        "evaluate",
        "--outcomes",
        str(root / "outcomes.csv"),
        "--key",
        "request_id=application",
        "--data",
        str(root / "data"),
        *extra,
    )


class TestDecisions:
    def test_each_decision_value_against_the_outcome_weighted(self, credit):
        """Per decision value: n, the weighted confusion row (positives, negatives), the
        bad rate among its records (precision) and its share of all positives (recall),
        as pandas computes them from the records; records without a decision are a row."""
        report = evaluate(
            credit / "outcomes.csv",
            data_dir=credit / "data",
            key=("request_id", "application"),
            label=("outcome", "late"),
        )
        j = joined(credit)
        assert j["sample_weight"].nunique() > 1  # the weights matter
        w = j["sample_weight"]
        by = {d["decision"]: d for d in report["decisions"]["values"]}
        assert set(by) == {*DECISIONS, None}
        assert report["decisions"]["positive"] == "outcome = 'late'"
        total_positive = (w * j["y"]).sum()
        for value, part in j.groupby(j["decision"].fillna("-"), dropna=False):
            row = by[None if value == "-" else value]
            pw, weight = part["sample_weight"], part["sample_weight"].sum()
            positive = (pw * part["y"]).sum()
            assert row["n"] == len(part)
            assert row["positives"] == int(part["y"].sum())
            assert row["weighted_n"] == pytest.approx(weight, rel=1e-12)
            assert row["weighted_positives"] == pytest.approx(positive, rel=1e-12)
            assert row["weighted_negatives"] == pytest.approx(weight - positive, rel=1e-12)
            assert row["precision"] == pytest.approx(positive / weight, rel=1e-12)
            assert row["recall"] == pytest.approx(positive / total_positive, rel=1e-12)
            assert row["share"] == pytest.approx(weight / w.sum(), rel=1e-12)
        assert by["decline"]["precision"] > by["refer"]["precision"] > by["approve"]["precision"]

    def test_binary_metrics_say_their_threshold(self, credit):
        """Precision and recall are taken at each record's recorded threshold, and the
        report says which: the caller's where given, the setting's (0.5) where not."""
        report = evaluate(
            credit / "outcomes.csv",
            data_dir=credit / "data",
            key=("request_id", "application"),
            label=("outcome", "late"),
        )
        threshold = report["overall"]["threshold"]
        assert (threshold["min"], threshold["max"], threshold["distinct"]) == (0.5, 0.6, 3)
        assert threshold["records_without"] == 0
        j = joined(credit)
        w, flagged = j["sample_weight"], j["raw_score"] >= j["decision_threshold"]
        tp = (w * (flagged & j["y"])).sum()
        assert report["overall"]["precision"] == pytest.approx(tp / (w * flagged).sum(), rel=1e-12)
        text = run(credit, "--label", "outcome=late")
        assert text.returncode == 0, text.stderr
        assert "at each record's recorded threshold (3 values, 0.5 to 0.6)" in text.stdout

    def test_text_shows_the_matrix_and_calibration_as_tables(self, credit, tmp_path):
        """The text answer has a row per decision value and a calibration row per score
        bin (records, weighted mean score, weighted observed rate); JSON and HTML hold both."""
        page = tmp_path / "evaluate.html"
        text = run(credit, "--label", "outcome=late", "--html", str(page))
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        j = joined(credit)
        for value in DECISIONS:
            part = j[j["decision"] == value]
            (row,) = [line.split() for line in lines if line.split()[:1] == [value]]
            assert int(row[1]) == len(part)
            assert row[-2] == num(
                float((part["sample_weight"] * part["y"]).sum() / part["sample_weight"].sum())
            )
        assert any(line.split()[:2] == ["(no", "decision)"] for line in lines)
        start = lines.index("calibration by score bin (weighted):")
        end = lines.index("by cohort:")
        shown = {line.split()[0]: line.split()[1:] for line in lines[start + 2 : end]}
        bins = np.minimum(np.floor(j["raw_score"] * 10), 9).astype(int)
        for b, part in j.groupby(bins):
            pw = part["sample_weight"]
            expected = [
                str(len(part)),
                num(float((pw * part["raw_score"]).sum() / pw.sum())),
                num(float((pw * part["y"]).sum() / pw.sum())),
            ]
            assert shown[f"{b / 10:.1f}-{(b + 1) / 10:.1f}"] == expected
        assert len(shown) == bins.nunique()
        html = page.read_text()
        assert "Decisions against outcome = &#x27;late&#x27;" in html
        assert all(f"<td>{value}</td>" in html for value in DECISIONS)
        assert "<td>(no decision)</td>" in html
        assert "precision and recall at 0.5 to 0.6" in html
        as_json = json.loads(run(credit, "--label", "outcome=late", "-o", "json").stdout)
        assert len(as_json["decisions"]["values"]) == 4
        assert len(as_json["overall"]["calibration"]) == bins.nunique()


class TestLabelMessages:
    def test_a_positive_value_no_outcome_holds_is_named(self, credit):
        """--label outcome=defaulted, a value the column never holds, says so with the
        values it does hold; it is not "the join matched nothing"."""
        answer = run(credit, "--label", "outcome=defaulted")
        assert answer.returncode == 1
        assert (
            "--label outcome=defaulted: no outcome has 'outcome' = 'defaulted' "
            "(values seen: 'paid', 'late')"
        ) in answer.stderr
        assert "matched nothing" not in answer.stderr and "Traceback" not in answer.stderr

    def test_a_text_column_without_a_value_asks_for_one(self, credit):
        """A text outcome column given without =value says which values it holds and how
        to name the positive one (a conversion error before)."""
        answer = run(credit, "--label", "outcome")
        assert answer.returncode == 1
        assert "--label outcome: 'outcome' is text, not true/false" in answer.stderr
        assert "(values seen: 'paid', 'late')" in answer.stderr
        assert "say which value is positive, e.g. --label outcome=late" in answer.stderr
        assert "Conversion" not in answer.stderr and "matched nothing" not in answer.stderr

    def test_values_from_the_file_and_the_command_line_are_escaped(self, credit, tmp_path):
        """A terminal escape in the outcomes and a quote and newline in --label reach the
        message escaped, on one line; the example is quoted for a shell."""
        hostile = tmp_path / "hostile.csv"
        pd.DataFrame(
            {"application": ["app-1", "app-2"], "verdict": ["\x1b[31mred", "ok; rm -rf ~"]}
        ).to_csv(hostile, index=False)
        with pytest.raises(AnalyticsError) as caught:
            evaluate(
                hostile,
                data_dir=credit / "data",
                key=("request_id", "application"),
                label=("verdict", "it's\nbad"),
            )
        message = str(caught.value)
        assert "\x1b" not in message and "\n" not in message
        assert "'\\x1b[31mred'" in message and '"it\'s\\nbad"' in message
        with pytest.raises(AnalyticsError) as caught:
            evaluate(
                hostile,
                data_dir=credit / "data",
                key=("request_id", "application"),
                label=("verdict", None),
            )
        assert "e.g. --label 'verdict=ok; rm -rf ~'" in str(caught.value)

    def test_a_true_false_column_is_read_as_it_is(self, credit, tmp_path):
        """A 0/1 column needs no value; a join that matches nothing still says so."""
        flags = tmp_path / "flags.csv"
        j = joined(credit)
        pd.DataFrame({"application": j["request_id"], "bad": j["y"].astype(int)}).to_csv(
            flags, index=False
        )
        report = evaluate(
            flags, data_dir=credit / "data", key=("request_id", "application"), label=("bad", None)
        )
        assert report["n"] == len(j)
        pd.DataFrame({"application": ["nobody"], "bad": [1]}).to_csv(flags, index=False)
        with pytest.raises(AnalyticsError, match="the join matched nothing"):
            evaluate(
                flags,
                data_dir=credit / "data",
                key=("request_id", "application"),
                label=("bad", None),
            )
