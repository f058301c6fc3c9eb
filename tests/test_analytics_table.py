"""The analytics read an Iceberg table (``--table``) as they read the Parquet layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import predlog
from predlog.tools.analytics import AnalyticsError, Predictions, evaluate, investigate
from tests.helpers import predlog_cli

pytest.importorskip("pyiceberg")

TABLE = "preds.records"


@pytest.fixture
def table_dir(tmp_path: Path) -> Path:
    """A data directory whose embedded catalog holds TABLE with 300 committed records,
    and no Parquet layout at all (so nothing can be read from it by mistake)."""
    from predlog.sinks.iceberg import IcebergSink  # the iceberg extra

    data = tmp_path / "data"
    sink = IcebergSink(TABLE, data_dir=data, spool_dir=tmp_path / "spool", commit_interval_s=60)
    with predlog.PredictionLogger(
        sinks=[sink], model_name="fraud", install_signal_handlers=False
    ) as log:
        for i in range(300):
            log.log(
                request_id=f"t-{i}",
                features={"amount": float(i % 17)},
                score=(i % 10) / 10,
                user_segment="retail" if i % 3 else "business",
            )
    assert log.stats()["delivered"] == 300
    assert not (data / "predictions").exists()
    return data


def test_investigate_and_evaluate_read_the_table(table_dir: Path, tmp_path: Path) -> None:
    [record] = investigate("t-7", data_dir=table_dir, table=TABLE)
    assert record["score"] == pytest.approx(0.7)
    assert len(record["prediction_id"]) == 36  # canonical UUID text, as from the layout
    outcomes = tmp_path / "outcomes.csv"
    with outcomes.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["request_id", "fraud"])
        writer.writerows([f"t-{i}", int(i % 10 >= 5)] for i in range(300))
    report = evaluate(
        outcomes, data_dir=table_dir, table=TABLE, label=("fraud", None), min_cohort=10
    )
    assert report["overall"]["n"] == 300
    assert report["overall"]["auc"] == pytest.approx(1.0)


def test_the_commands_take_table(table_dir: Path) -> None:
    answer = predlog_cli(
        "investigate", "t-11", "--table", TABLE, "--data", str(table_dir), "-o", "json"
    )
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)[0]["request_id"] == "t-11"
    # The table named by the setting, as the logger would be configured.
    by_setting = predlog_cli(
        "investigate",
        "t-12",
        "-o",
        "json",
        PREDLOG_ICEBERG_TABLE=TABLE,
        PREDLOG_DATA_DIR=str(table_dir),
    )
    assert by_setting.returncode == 0, by_setting.stderr
    assert json.loads(by_setting.stdout)[0]["request_id"] == "t-12"


def test_a_missing_table_is_said_plainly(table_dir: Path) -> None:
    with pytest.raises(predlog.PredlogError, match=r"no table 'preds\.nothing'"):
        Predictions(table_dir, table="preds.nothing")
    with pytest.raises(AnalyticsError, match="no prediction with request id 'nope' in table"):
        investigate("nope", data_dir=table_dir, table=TABLE)
