"""``--engine spark`` answers what ``--engine duckdb`` answers: every number of evaluate and drift.

The same records (written once by the real logger to both the Parquet layout and an
Iceberg table) are evaluated and compared for drift by DuckDB and by PySpark in local
mode. Every number of the two reports must agree to 1e-9, every string and list length
exactly; only ``engine`` and ``generated_at`` may differ. The data is made to reach the
corners where two SQL engines part ways: varying sample weights, tied scores, JSON
nulls beside missing keys, a feature name with a space, a dot, a double quote and a
non-ASCII letter, a cohort value under ``min_cohort``, outcomes not yet labelled, a
label given as ``column=value``, a decision of three values, and records of non-2xx
responses (422s without features or score, 503s with both) that both leave out. A
few numbers are also recomputed here from the raw records (scikit-learn's weighted
AUC, a weighted KS in numpy), so agreement is not two engines sharing a wrong answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from examples.fraud_service import data as fraud_data
from examples.fraud_service import model as fraud_model
from examples.fraud_service.scoring import DECLINE_AT, decide

import predlog
from predlog.sinks import ParquetSink, Sink
from predlog.tools.analytics import AnalyticsError, drift, evaluate
from tests.helpers import local_spark, parquet_files, predlog_cli

pytest.importorskip("pyspark")
pytest.importorskip("pyiceberg")

pytestmark = pytest.mark.integration

N = 6000
TABLE = "preds.parity"
#: A feature name both engines must address inside the JSON features: a space, a dot,
#: a double quote and a non-ASCII letter.
AWKWARD = 'net amount "eur". é'
KEY = ("request_id", "transaction_id")
LABEL = ("outcome", "chargeback")
MIN_COHORT = 50
BASELINE = "2026-10-01..2026-10-08"
CURRENT = "2026-10-08..2026-10-15"
#: (layout, outcomes file) of the evaluate runs: both layouts, both outcome formats.
EVALUATED = [("parquet", "outcomes.csv"), ("iceberg", "outcomes.parquet")]
#: Numbers of the two engines' reports may differ by this much, no more.
TOLERANCE = 1e-9
#: Report keys allowed to differ between engines.
FREE = {"engine", "generated_at"}
#: The model's inputs logged as features: numbers with and without decimals, categories.
LOGGED = ("amount", "hour", "credit_score", "merchant_category", "user_segment")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local Spark for the module; the engine's ``getOrCreate`` reuses it.

    Four shuffle partitions rather than Spark's 200: the test's aggregations are small,
    and 200 tasks per shuffle on two cores is most of the run time.
    """
    yield from local_spark("predlog-engine-parity")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two weeks of fraud-model records, logged once to the Parquet layout under
    ``data`` and to the Iceberg table TABLE under ``lake``; outcomes as CSV and Parquet.

    The second week's ``amount`` is doubled and ``device`` mostly changes category.
    Every 25th request was invalid (422, recorded beside it) and every 40th failed
    after scoring (503).
    """
    from predlog.sinks.iceberg import IcebergSink  # the iceberg extra

    root = tmp_path_factory.mktemp("parity")
    cols = fraud_data.generate(N, seed=15, fraud_rate=0.1)
    labels = cols.pop("is_fraud")
    rows = fraud_data.rows(cols)
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    sinks: list[Sink] = [
        ParquetSink(root / "data"),
        IcebergSink(TABLE, data_dir=root / "lake", spool_dir=root / "spool", commit_interval_s=60),
    ]
    with predlog.PredictionLogger(
        sinks=sinks,
        model_name="fraud",
        model_version="v2",
        sample_rate=0.3,  # base-rate records weigh 1/0.3, the others 1
        new_version_window_s=0,
        install_signal_handlers=False,
    ) as log:
        for i, row in enumerate(rows):
            # Rounded: many records share a score, so the AUC's ties count.
            score = round(float(fraud_model.score_features(row)), 2)
            # A few of the model's inputs, one of each kind: fewer features, fewer queries.
            features = {name: row[name] for name in LOGGED}
            features["transaction_id"] = f"tx-{i}"
            features[AWKWARD] = round(row["amount"] * 0.9, 1) if i % 5 else None
            second_week = i >= N // 2
            if second_week:
                features["amount"] = round(row["amount"] * 2, 2)
            # Two categories, a large shift: flagged (few bins, so little PSI noise).
            features["device"] = "mobile" if (i * 7919) % 10 < (7 if second_week else 2) else "web"
            if i % 7 == 0:
                features["amount"] = None  # a JSON null
            elif i % 11 == 0:
                del features["amount"]  # no key at all
            region = "antarctica" if i % 1000 == 3 else row["region"]  # a cohort of 6
            at = start + timedelta(seconds=i * (14 * 86400 // N))
            if i % 25 == 0:
                log.log(request_id=f"invalid-{i}", timestamp=at, http_status=422)
            log.log(
                request_id=f"tx-{i}",
                features=features,
                score=score,
                decision=decide(score),
                threshold=DECLINE_AT,
                user_segment=row["user_segment"],
                channel=row["channel"],
                geographic_region=region,
                timestamp=at,
                http_status=503 if i % 40 == 7 else 200,
            )
    outcomes = pd.DataFrame(
        {
            "transaction_id": [f"tx-{i}" for i in range(N)],
            # Every 13th outcome not known yet: empty, so left out, not negative.
            "outcome": [
                None if i % 13 == 0 else ("chargeback" if y else "ok") for i, y in enumerate(labels)
            ],
        }
    )
    outcomes.to_csv(root / "outcomes.csv", index=False)
    outcomes.to_parquet(root / "outcomes.parquet", index=False)
    frame = records(root)
    assert len(frame) > 1500, len(frame)
    assert len(records(root, errors=True)) > len(frame) + 50
    weights = set(frame["sample_weight"])
    assert len(weights) > 1, weights  # varying weights, or the test proves less
    return root


def records(root: Path, *, errors: bool = False) -> pd.DataFrame:
    """The records as written; without ``errors``, those of 2xx responses alone."""
    frame = pd.concat(pq.read_table(f).to_pandas() for f in parquet_files(root / "data"))
    if errors:
        return frame
    status = frame["extra"].map(lambda text: json.loads(text or "{}").get("http_status", 200))
    return frame[(status >= 200) & (status < 300)]


def where(root: Path, layout: str) -> dict[str, Any]:
    """The ``data_dir`` / ``table`` arguments of one layout."""
    if layout == "parquet":
        return {"data_dir": root / "data"}
    return {"data_dir": root / "lake", "table": TABLE}


def differences(a: Any, b: Any, path: str = "$") -> list[str]:
    """Where two reports differ: keys, list lengths, types, strings, numbers beyond TOLERANCE."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(map(str, set(a) ^ set(b)))} in only one"]
        return [
            d
            for k in a
            if not (path == "$" and k in FREE)
            for d in differences(a[k], b[k], f"{path}.{k}")
        ]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items against {len(b)}"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    if type(a) is not type(b):
        return [f"{path}: {a!r} ({type(a).__name__}) against {b!r} ({type(b).__name__})"]
    if isinstance(a, float):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(
            a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE
        )
        return [] if same else [f"{path}: {a!r} against {b!r}"]
    return [] if a == b else [f"{path}: {a!r} against {b!r}"]


def assert_same(a: Any, b: Any) -> None:
    found = differences(a, b)
    assert not found, f"{len(found)} differences:\n" + "\n".join(found[:20])


def numbers(report: Any) -> int:
    """How many numbers a report holds (so an empty report cannot pass as equal)."""
    if isinstance(report, dict):
        return sum(numbers(v) for v in report.values())
    if isinstance(report, (list, tuple)):
        return sum(numbers(v) for v in report)
    return int(isinstance(report, (int, float)) and not isinstance(report, bool))


def run_evaluate(root: Path, engine: str, layout: str, outcomes: str) -> dict[str, Any]:
    return evaluate(
        root / outcomes,
        **where(root, layout),
        key=KEY,
        label=LABEL,
        min_cohort=MIN_COHORT,
        engine=engine,
        spark_master="local[2]",
    )


def run_drift(root: Path, engine: str, layout: str) -> dict[str, Any]:
    return drift(
        baseline=BASELINE,
        current=CURRENT,
        **where(root, layout),
        engine=engine,
        spark_master="local[2]",
    )


@pytest.fixture(scope="module")
def evaluations(logged: Path, spark: Any) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(engine, layout, outcomes file) -> evaluate's report."""
    return {
        (engine, layout, outcomes): run_evaluate(logged, engine, layout, outcomes)
        for layout, outcomes in EVALUATED
        for engine in ("duckdb", "spark")
    }


@pytest.fixture(scope="module")
def drifts(logged: Path, spark: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """(engine, layout) -> drift's report."""
    return {
        (engine, layout): run_drift(logged, engine, layout)
        for layout in ("parquet", "iceberg")
        for engine in ("duckdb", "spark")
    }


@pytest.mark.parametrize(
    ("layout", "outcomes"),
    EVALUATED,
)
def test_evaluate_is_the_same_on_both_engines(
    evaluations: dict[tuple[str, str, str], dict[str, Any]], layout: str, outcomes: str
) -> None:
    duck = evaluations[("duckdb", layout, outcomes)]
    spark = evaluations[("spark", layout, outcomes)]
    assert (duck["engine"], spark["engine"]) == ("duckdb", "spark")
    assert_same(duck, spark)
    assert numbers(duck) > 500
    # The corners the data was made to reach are in the report.
    assert {"cohort": "geographic_region", "value": "antarctica"}.items() <= next(
        o for o in duck["omitted"] if o["value"] == "antarctica"
    ).items()
    assert all(duck["cohorts"][c] for c in ("user_segment", "channel", "geographic_region"))
    assert 0.5 < duck["overall"]["auc"] < 1.0
    assert duck["errors"]["n"] > 10  # the 503s joined with an outcome, left out
    assert [d["decision"] for d in duck["decisions"]["values"]] == [
        "approved",
        "declined",
        "review",
    ]


@pytest.mark.parametrize("layout", ["parquet", "iceberg"])
def test_drift_is_the_same_on_both_engines(
    drifts: dict[tuple[str, str], dict[str, Any]], layout: str
) -> None:
    duck, spark = drifts[("duckdb", layout)], drifts[("spark", layout)]
    assert (duck["engine"], spark["engine"]) == ("duckdb", "spark")
    assert_same(duck, spark)
    assert numbers(duck) > 200
    assert duck["errors"]["baseline"] > 10 and duck["errors"]["current"] > 10
    assert spark["drifted"] == duck["drifted"]
    assert duck["drifted"] == ["device"]  # the shifted feature, or nothing is compared
    assert "too few records" in duck["features"]["amount"]["note"]  # PSI large, n small
    assert spark["identifiers"] == duck["identifiers"] == ["transaction_id"]
    flags = {name: f["drifted"] for name, f in duck["features"].items()}
    assert flags == {name: f["drifted"] for name, f in spark["features"].items()}
    # The awkward name was read by both, as a number, with its nulls.
    awkward = duck["features"][AWKWARD]
    assert awkward["kind"] == "numerical"
    assert awkward["n"]["baseline"] > 0 and awkward["null_rate"]["baseline"] > 0
    assert duck["features"]["merchant_category"]["kind"] == "categorical"


def test_the_table_and_the_layout_give_the_same_reports(
    evaluations: dict[tuple[str, str, str], dict[str, Any]],
    drifts: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """The same records read from the Iceberg table or the layout, with the same
    outcomes as CSV or as Parquet: the same reports."""
    for engine in ("duckdb", "spark"):
        assert_same(
            evaluations[(engine, "parquet", "outcomes.csv")],
            evaluations[(engine, "iceberg", "outcomes.parquet")],
        )
        assert_same(drifts[(engine, "parquet")], drifts[(engine, "iceberg")])


def labelled(root: Path, *, errors: bool = False) -> pd.DataFrame:
    """Predictions joined with their known outcomes, in pandas."""
    outcomes = pd.read_csv(root / "outcomes.csv").dropna(subset=["outcome"])
    joined = records(root, errors=errors).merge(
        outcomes, left_on="request_id", right_on="transaction_id"
    )
    return joined.assign(y=joined["outcome"] == "chargeback")


def test_evaluate_matches_scikit_learn(
    logged: Path, evaluations: dict[tuple[str, str, str], dict[str, Any]]
) -> None:
    from sklearn.metrics import roc_auc_score

    report = evaluations[("spark", "parquet", "outcomes.csv")]
    joined = labelled(logged)
    assert joined["raw_score"].duplicated().sum() > len(joined) / 2  # ties, plenty
    w = joined["sample_weight"]
    assert report["n"] == len(joined)
    assert report["overall"]["weighted_n"] == pytest.approx(w.sum(), rel=1e-12)
    assert report["overall"]["auc"] == pytest.approx(
        roc_auc_score(joined["y"], joined["raw_score"], sample_weight=w), abs=1e-12
    )
    assert report["overall"]["auc"] != pytest.approx(
        roc_auc_score(joined["y"], joined["raw_score"]), abs=1e-6
    )  # the weights matter on this data
    for value, part in joined.groupby("channel"):
        expected = roc_auc_score(part["y"], part["raw_score"], sample_weight=part["sample_weight"])
        assert report["cohorts"]["channel"][value]["auc"] == pytest.approx(expected, abs=1e-12)
    flagged = joined["raw_score"] >= joined["decision_threshold"]
    tp = (w * (flagged & joined["y"])).sum()
    assert report["overall"]["precision"] == pytest.approx(tp / (w * flagged).sum(), rel=1e-12)
    assert report["overall"]["recall"] == pytest.approx(tp / (w * joined["y"]).sum(), rel=1e-12)
    assert report["errors"]["n"] == len(labelled(logged, errors=True)) - len(joined)
    decided = {d["decision"]: d for d in report["decisions"]["values"]}
    for value, part in joined.groupby("decision"):
        positive = (part["sample_weight"] * part["y"]).sum()
        assert decided[value]["n"] == len(part)
        assert decided[value]["weighted_positives"] == pytest.approx(positive, rel=1e-12)
        assert decided[value]["precision"] == pytest.approx(
            positive / part["sample_weight"].sum(), rel=1e-12
        )


def weighted_ks(a: np.ndarray, wa: np.ndarray, b: np.ndarray, wb: np.ndarray) -> float:
    """The largest gap between two weighted empirical CDFs."""
    grid = np.union1d(a, b)

    def cdf(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        order = np.argsort(x)
        cum = np.cumsum(w[order]) / w.sum()
        return np.concatenate([[0.0], cum])[np.searchsorted(x[order], grid, side="right")]

    return float(np.abs(cdf(a, wa) - cdf(b, wb)).max())


def test_drift_matches_numpy(logged: Path, drifts: dict[tuple[str, str], dict[str, Any]]) -> None:
    report = drifts[("spark", "parquet")]
    every = records(logged, errors=True)
    frame = records(logged)
    week = np.where(frame["timestamp_utc"] < pd.Timestamp("2026-10-08", tz="UTC"), 0, 1)
    second = every["timestamp_utc"] >= pd.Timestamp("2026-10-08", tz="UTC")
    assert report["errors"]["baseline"] == (~second).sum() - (week == 0).sum()
    assert report["errors"]["current"] == second.sum() - (week == 1).sum()
    w = frame["sample_weight"].to_numpy()
    for name in ("amount", AWKWARD):
        value = np.array(
            [json.loads(f).get(name) for f in frame["features"]], dtype=np.float64
        )  # JSON null and a missing key are both NaN here
        has = ~np.isnan(value)
        entry = report["features"][name]
        sides = [(value[has & (week == k)], w[has & (week == k)]) for k in (0, 1)]
        assert entry["ks"]["statistic"] == pytest.approx(
            weighted_ks(*sides[0], *sides[1]), abs=1e-12
        )
        for side, k in (("baseline", 0), ("current", 1)):
            null_rate = w[~has & (week == k)].sum() / w[week == k].sum()
            assert entry["null_rate"][side] == pytest.approx(null_rate, rel=1e-12)
            assert entry["n"][side] == int((has & (week == k)).sum())
            mean = np.average(value[has & (week == k)], weights=w[has & (week == k)])
            assert entry["mean"][side] == pytest.approx(mean, rel=1e-12)
        # PSI's inner edges: the baseline's weighted deciles, the smallest value whose
        # cumulative weight share reaches k/10 (exactly rounded sums here).
        base, base_w = sides[0]
        order = np.argsort(base, kind="stable")
        total = math.fsum(base_w)
        share = [math.fsum(base_w[order][: i + 1]) / total for i in range(len(base))]
        deciles = {
            float(base[order][next(i for i, f in enumerate(share) if f >= k / 10 - 1e-9)])
            for k in range(1, 10)
        }
        edges = entry["histogram"]["edges"]
        assert edges[1:-1] == sorted(d for d in deciles if d > edges[0])
        assert len(edges) > 5
    assert report["features"]["amount"]["null_rate"]["baseline"] > 0.1  # nulls and no key
    score = report["score"]["ks"]["statistic"]
    s = frame["raw_score"].to_numpy()
    assert score == pytest.approx(
        weighted_ks(s[week == 0], w[week == 0], s[week == 1], w[week == 1]), abs=1e-12
    )


def test_the_command_gives_the_same_json_on_both_engines(logged: Path, spark: Any) -> None:
    args = [
        "evaluate",
        "--outcomes",
        str(logged / "outcomes.csv"),
        "--key",
        "=".join(KEY),
        "--label",
        "=".join(LABEL),
        "--min-cohort",
        str(MIN_COHORT),
        "--data",
        str(logged / "data"),
        "-o",
        "json",
    ]
    by_spark = predlog_cli(*args, "--engine", "spark", "--spark-master", "local[1]")
    assert by_spark.returncode == 0, by_spark.stderr
    by_duckdb = predlog_cli(*args, "--engine", "duckdb")
    assert by_duckdb.returncode == 0, by_duckdb.stderr
    duck, spark_report = json.loads(by_duckdb.stdout), json.loads(by_spark.stdout)
    assert spark_report["engine"] == "spark"
    assert_same(duck, spark_report)
    assert numbers(duck) > 500


def test_spark_refuses_an_object_store_and_click_an_unknown_engine(tmp_path: Path) -> None:
    with pytest.raises(AnalyticsError, match=r"object store.*--engine duckdb"):
        drift(
            baseline=BASELINE,
            current=CURRENT,
            data_dir="s3://bucket/predlog",
            engine="spark",
        )
    answer = predlog_cli(
        "drift",
        "--baseline",
        BASELINE,
        "--current",
        CURRENT,
        "--data",
        "s3://bucket/predlog",
        "--engine",
        "spark",
    )
    assert answer.returncode != 0
    assert "object store" in answer.stderr and "Traceback" not in answer.stderr
    unknown = predlog_cli(
        "drift",
        "--baseline",
        BASELINE,
        "--current",
        CURRENT,
        "--data",
        str(tmp_path),
        "--engine",
        "presto",
    )
    assert unknown.returncode == 2
    assert "Invalid value for '--engine'" in unknown.stderr and "presto" in unknown.stderr
