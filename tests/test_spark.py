"""Spark reads predlog's Iceberg table: the weighted AUC it computes equals `predlog evaluate`.

PySpark in local mode with the Iceberg Spark runtime from Maven Central
(services/spark-jars.sh, PREDLOG_SPARK_JARS) opens the same catalog predlog writes
through: a JdbcCatalog on the embedded SQLite file, and on the PostgreSQL database of
the multi-writer case, each under the catalog name pyiceberg uses, with the same
warehouse. Spark computes the overall and per-cohort weighted AUC in SQL, with its own
arithmetic: weighted positives and negatives per distinct score, a running sum of the
negatives below, ties counting one half. Those equal `predlog evaluate --table` on the
same table to 1e-9.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from predlog.testing import build_batch
from tests.helpers import child_env, predlog_cli

pytestmark = pytest.mark.integration

N = 6_000
#: The cohort columns `predlog evaluate` reports (checked against its answer below).
COHORTS = ("user_segment", "channel", "geographic_region", "model_version")
START = datetime(2026, 11, 18, tzinfo=timezone.utc)


def population(seed: int = 14) -> tuple[list[tuple[str, list[dict]]], pd.DataFrame]:
    """Records of two model versions over three days, with cohorts and tied scores, and
    the outcome of every request (known for all; only the logged ones join)."""
    rng = np.random.default_rng(seed)
    label = rng.random(N) < 0.3
    # Scores that separate the classes imperfectly, rounded so that many tie.
    score = np.clip(np.round(rng.normal(np.where(label, 0.62, 0.4), 0.18), 2), 0, 1)
    segments = rng.choice(["new", "returning", "vip"], N, p=[0.5, 0.4, 0.1])
    channels = rng.choice(["web", "app", "pos"], N)
    regions = rng.choice(["eu", "us", "apac"], N, p=[0.45, 0.45, 0.1])
    versions = np.where(rng.random(N) < 0.5, "v1", "v2")
    by_version: dict[str, list[dict]] = {"v1": [], "v2": []}
    for i in range(N):
        by_version[versions[i]].append(
            {
                "request_id": f"tx-{i}",
                "score": float(score[i]),
                "features": {"amount": i % 500},
                "user_segment": str(segments[i]),
                "channel": str(channels[i]),
                "geographic_region": str(regions[i]),
                "timestamp": START + timedelta(seconds=40 * i),
            }
        )
    outcomes = pd.DataFrame({"request_id": [f"tx-{i}" for i in range(N)], "label": label})
    return list(by_version.items()), outcomes


#: Writes the batches of an Arrow file into a table through IcebergSink, whose closing
#: commits them: ``python -c WRITE TABLE BATCHES DATA_DIR LOCK_DIR``.
WRITE = """
import sys
import pyarrow as pa
from predlog.sinks.iceberg._sink import IcebergSink

name, batches, data, lock = sys.argv[1:]
sink = IcebergSink(name, data_dir=data, spool_dir=lock)
with pa.ipc.open_file(batches) as file:
    for i in range(file.num_record_batches):
        sink.export(file.get_batch(i))
sink.close()
"""


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The sampled records in the Iceberg table of each catalog (through IcebergSink,
    committed by its committer), and the outcomes file."""
    root = tmp_path_factory.mktemp("spark")
    data = root / "data"
    by_version, outcomes = population()
    batches = [
        build_batch(
            records,
            model_name="fraud",
            model_version=version,
            sample_rate=0.25,  # a stratified sample: weights 1 and 4
            new_version_window_s=0,
            decision_threshold=0.5,
        )
        for version, records in by_version
    ]
    with pa.ipc.new_file(root / "batches.arrow", batches[0].schema) as file:
        for batch in batches:
            file.write_batch(batch)
    tables = {"sqlite": "ns.predictions"}
    env = {}
    postgres = os.environ.get("PREDLOG_TEST_POSTGRES")
    if postgres:
        # A catalog by name, configured as pyiceberg users do; a namespace of this run's own.
        (root / "pg-warehouse").mkdir()
        env["PYICEBERG_CATALOG__SPARKPG__URI"] = postgres
        env["PYICEBERG_CATALOG__SPARKPG__WAREHOUSE"] = (root / "pg-warehouse").as_uri()
        tables["postgres"] = f"sparkpg.ns_{uuid.uuid4().hex[:8]}.predictions"
    for name in tables.values():
        # In a process of its own: pyiceberg reads PYICEBERG_* variables when imported.
        subprocess.run(
            [sys.executable, "-c", WRITE, name, str(root / "batches.arrow"), str(data), str(root)],
            env=child_env(**env),
            check=True,
            timeout=300,
        )
    outcomes.to_csv(root / "outcomes.csv", index=False)
    weights = {w for b in batches for w in b.column("sample_weight").to_pylist()}
    assert weights == {1.0, 4.0}, weights  # the sample is weighted, or the test proves less
    return root, tables, env, sum(b.num_rows for b in batches)


@pytest.fixture(scope="module")
def spark(logged):
    jars = os.environ.get("PREDLOG_SPARK_JARS")
    if not jars:
        pytest.fail("no Spark jars: run the tests with `make test` (services/with-services.sh)")
    from pyspark.sql import SparkSession

    root = logged[0]
    iceberg = root / "data" / "iceberg"
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("predlog-test-spark")
        .config("spark.jars", jars)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        # The embedded catalog: pyiceberg's SQL catalog "predlog" on SQLite.
        .config("spark.sql.catalog.predlog", "org.apache.iceberg.spark.SparkCatalog")
        .config("spark.sql.catalog.predlog.type", "jdbc")
        .config("spark.sql.catalog.predlog.uri", f"jdbc:sqlite:{iceberg / 'catalog.db'}")
        .config("spark.sql.catalog.predlog.warehouse", (iceberg / "warehouse").as_uri())
    )
    postgres = os.environ.get("PREDLOG_TEST_POSTGRES")
    if postgres:
        user, _, where = postgres.split("://", 1)[1].partition("@")
        builder = (
            builder.config("spark.sql.catalog.sparkpg", "org.apache.iceberg.spark.SparkCatalog")
            .config("spark.sql.catalog.sparkpg.type", "jdbc")
            .config("spark.sql.catalog.sparkpg.uri", f"jdbc:postgresql://{where}")
            .config("spark.sql.catalog.sparkpg.jdbc.user", user)
            .config("spark.sql.catalog.sparkpg.warehouse", (root / "pg-warehouse").as_uri())
        )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def spark_auc(spark, table: str, outcomes: Path) -> dict[tuple[str, str], tuple[int, float]]:
    """(cohort, value) -> (labelled predictions, weighted AUC), computed by Spark.

    ("overall", "all") is the whole join. The join and the label are evaluate's: the
    prediction's request_id equals the outcome's, rows without a score are left out.
    """
    spark.read.csv(str(outcomes), header=True, inferSchema=True).createOrReplaceTempView("outcomes")
    spark.sql(
        f"""
        SELECT p.raw_score AS s, p.sample_weight AS w, CAST(o.label AS BOOLEAN) AS y,
               {", ".join(f"p.{c}" for c in COHORTS)}
        FROM {table} p JOIN outcomes o
          ON CAST(p.request_id AS STRING) = CAST(o.request_id AS STRING)
        WHERE p.raw_score IS NOT NULL
        """
    ).createOrReplaceTempView("joined")
    long = " UNION ALL ".join(
        [
            "SELECT 'overall' AS cohort, 'all' AS value, s, w, y FROM joined",
            *(
                f"SELECT '{c}' AS cohort, CAST({c} AS STRING) AS value, s, w, y FROM joined "
                f"WHERE {c} IS NOT NULL"
                for c in COHORTS
            ),
        ]
    )
    rows = spark.sql(
        f"""
        WITH long AS ({long}),
        per_score AS (
          SELECT cohort, value, s, count(*) AS n,
                 sum(CASE WHEN y THEN w ELSE 0D END) AS pos,
                 sum(CASE WHEN y THEN 0D ELSE w END) AS neg
          FROM long GROUP BY cohort, value, s
        ),
        ranked AS (
          SELECT *, coalesce(sum(neg) OVER (
                   PARTITION BY cohort, value ORDER BY s
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0D) AS neg_below
          FROM per_score
        )
        SELECT cohort, value, sum(n) AS n,
               sum(pos * (neg_below + 0.5D * neg)) / (sum(pos) * sum(neg)) AS auc
        FROM ranked GROUP BY cohort, value
        """
    ).collect()
    return {(r["cohort"], r["value"]): (int(r["n"]), float(r["auc"])) for r in rows}


@pytest.mark.parametrize("catalog", ["sqlite", "postgres"])
def test_spark_weighted_auc_equals_predlog_evaluate(logged, spark, catalog):
    root, tables, env, rows = logged
    if catalog not in tables:
        pytest.fail("no PostgreSQL: run the tests with `make test` (services/with-services.sh)")
    name = tables[catalog]
    table = name if name.count(".") == 2 else f"predlog.{name}"
    # Spark reads every record predlog wrote, each once.
    counts = spark.sql(f"SELECT count(*), count(DISTINCT prediction_id) FROM {table}").first()
    assert counts[0] == counts[1] == rows

    done = predlog_cli(
        "evaluate",
        "--outcomes",
        str(root / "outcomes.csv"),
        "--label",
        "label",
        "--table",
        name,
        "--data",
        str(root / "data"),
        "-o",
        "json",
        **env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    found = spark_auc(spark, table, root / "outcomes.csv")

    n, auc = found[("overall", "all")]
    assert n == report["n"]
    assert abs(auc - report["overall"]["auc"]) < 1e-9
    assert set(report["cohorts"]) == set(COHORTS)
    compared = 0
    for cohort, values in report["cohorts"].items():
        for value, metrics in values.items():
            n, auc = found[(cohort, str(value))]
            assert n == metrics["n"], (cohort, value)
            if math.isnan(metrics["auc"]):
                assert math.isnan(auc) or auc is None
            else:
                assert abs(auc - metrics["auc"]) < 1e-9, (cohort, value, auc, metrics["auc"])
            compared += 1
    # Every cohort value evaluate scored (3 segments, 3 channels, 3 regions, 2 versions
    # less any under min_cohort) was compared; the omitted ones are the small ones.
    omitted = {(o["cohort"], str(o["value"])) for o in report["omitted"]}
    assert compared + len(omitted) == len(found) - 1
    assert all(found[key][0] < 100 for key in omitted)
    assert compared >= 8
