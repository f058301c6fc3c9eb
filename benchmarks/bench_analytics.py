"""evaluate and drift over 10 million prediction records: time and peak memory.

Generates (once, with DuckDB) ten million records in the prediction log layout, two
weeks of them, with JSON features, sample weights, cohorts, and one feature shifted
in the second week, plus a labelled outcomes file. Then runs ``evaluate`` and
``drift`` each in a fresh child process and prints wall time and peak RSS.

Usage: python benchmarks/bench_analytics.py [--records N] [--data DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(root: Path, n: int) -> None:
    import duckdb

    done = root / f".complete-{n}"
    if done.exists():
        return
    (root / "predictions").mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        f"""
        CREATE TABLE p AS
        SELECT
            1::SMALLINT AS schema_version,
            uuid()::VARCHAR AS prediction_id,
            'r-' || i AS request_id,
            TIMESTAMPTZ '2026-10-01 00:00:00+00'
                + to_microseconds((i::DOUBLE * 1209600000000 / {n})::BIGINT) AS timestamp_utc,
            'fraud' AS model_name,
            'v2.1.0' AS model_version,
            (i % 4)::INT AS seg,
            random() AS u1, random() AS u2, random() AS u3, i
        FROM range({n}) t(i)
        """
    )
    con.execute(
        f"""
        COPY (
            SELECT schema_version, prediction_id, request_id, timestamp_utc, model_name,
                   model_version,
                   json_object(
                       'amount', round(exp(3.4 + 1.2 * u1)
                                       * (CASE WHEN i >= {n} / 2 THEN 1.8 ELSE 1 END), 2),
                       'hour', (u2 * 24)::INT,
                       'txn_count_1h', (u3 * 4)::INT,
                       'credit_score', 300 + (u2 * 550)::INT,
                       'debt_to_income', round(u3, 3),
                       'merchant_category',
                       ['grocery','fuel','travel','online'][1 + (u1 * 4)::INT % 4],
                       'channel', ['web','pos','mobile'][1 + seg % 3]
                   )::VARCHAR AS features,
                   least(1.0, greatest(0.0, 0.6 * u1 * u3 + 0.2 * u2)) AS raw_score,
                   0.5 AS decision_threshold,
                   CASE WHEN u2 < 0.3 THEN 1.0 ELSE 3.3333333333333335 END AS sample_weight,
                   ['standard','high_value','new','business'][1 + seg] AS user_segment,
                   ['web','pos','mobile'][1 + seg % 3] AS channel,
                   ['EU','US','APAC','LATAM'][1 + (i % 7) % 4] AS geographic_region,
                   u3 * 3600 AS feature_freshness_max_age_seconds,
                   strftime(timestamp_utc, '%Y-%m-%d') AS date
            FROM p
        ) TO '{root / "predictions"}' (FORMAT parquet, PARTITION_BY (date), OVERWRITE_OR_IGNORE)
        """
    )
    con.execute(
        f"""
        COPY (SELECT request_id AS transaction_id,
                     (random() < least(1.0, greatest(0.0, 0.6 * u1 * u3 + 0.2 * u2)))::INT AS fraud
              FROM p) TO '{root / "outcomes.parquet"}' (FORMAT parquet)
        """
    )
    done.touch()


PEAK = "\nimport resource\nprint('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"


def run_child(code: str) -> tuple[float, float, str]:
    """Wall time, the child's own peak RSS (MiB), and what it printed."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code + PEAK], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    lines = proc.stdout.strip().splitlines()
    peak_mib = float(lines[-1].split()[1])
    return elapsed, peak_mib, lines[-2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "predlog-10m")
    args = parser.parse_args()
    started = time.perf_counter()
    generate(args.data, args.records)
    print(
        f"data: {args.records:,} records under {args.data} "
        f"(generated or reused in {time.perf_counter() - started:.0f} s)"
    )
    evaluate_code = (
        "import json; from predlog.analytics import evaluate\n"
        f"r = evaluate({str(args.data / 'outcomes.parquet')!r}, data_dir={str(args.data)!r}, "
        "key=('request_id', 'transaction_id'), label=('fraud', None))\n"
        "print(json.dumps({'n': r['n'], 'auc': r['overall']['auc'], "
        "'cohorts': sum(len(v) for v in r['cohorts'].values())}))"
    )
    seconds, peak, out = run_child(evaluate_code)
    print(f"evaluate: {seconds:.1f} s, peak RSS {peak:,.0f} MiB -> {out}")
    drift_code = (
        "import json; from predlog.analytics import drift\n"
        f"r = drift(baseline='2026-10-01..2026-10-08', current='2026-10-08..2026-10-15', "
        f"data_dir={str(args.data)!r})\n"
        "print(json.dumps({'baseline': r['baseline']['n'], 'current': r['current']['n'], "
        "'drifted': r['drifted']}))"
    )
    seconds, peak, out = run_child(drift_code)
    print(f"drift: {seconds:.1f} s, peak RSS {peak:,.0f} MiB -> {out}")


if __name__ == "__main__":
    main()
