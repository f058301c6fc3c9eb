"""``make demo``: the fraud service under ``bentoml serve``, with traffic and a look at the logs.

1. trains the model if there is none (a few seconds, synthetic data);
2. finds Jaeger: one already running, else the one services/ builds and caches, with
   its UI (``--no-traces`` skips it; without Jaeger the demo says so and carries on);
3. starts ``bentoml serve examples.fraud_service.service:FraudService``, exporting
   its traces to Jaeger;
4. sends a few hundred transactions with ``X-Request-ID`` headers;
5. prints where the prediction log and the operational log are, one declined
   prediction as predlog recorded it, the commands that verify it in the audit log, and
   that prediction's trace from Jaeger's API with a link to it in Jaeger's UI;
6. keeps serving until Ctrl-C (``--exit-after-demo`` stops instead).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset as ds
from services.bentoserve import BentoServer

import predlog
from examples.fraud_service import demo_jaeger
from examples.fraud_service import model as fraud_model

ROOT = Path(__file__).resolve().parents[2]
#: For the demo only. A real deployment takes its keys from a secret store.
DEMO_KEY = "demo-only-pseudonym-key-do-not-use"
DEMO_AUDIT_KEY = "d3" * 32


def transaction(rng: random.Random, i: int) -> dict[str, Any]:
    risky = rng.random() < 0.1
    return {
        "transaction_id": f"tx-{i:05d}",
        "card_id": f"card-{rng.randrange(400)}",
        "amount": round(rng.lognormvariate(5.2 if risky else 3.4, 1.0), 2),
        "merchant_category": rng.choice(
            ["electronics", "online_services", "travel"] if risky else ["grocery", "fuel"]
        ),
        "hour": rng.choice([1, 2, 3, 23]) if risky else rng.randrange(7, 22),
        "user_segment": rng.choice(["standard", "high_value", "new_customer", "business"]),
        "channel": rng.choice(["pos", "web", "mobile"]),
        "region": rng.choice(["EU", "US", "APAC", "LATAM"]),
    }


def records(data_dir: Path) -> list[dict[str, Any]]:
    root = data_dir / "predictions"
    if not root.exists():
        return []
    return ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pylist()


#: The columns the demo prints for one declined prediction.
SHOWN = (
    "request_id",
    "prediction_id",
    "trace_id",
    "timestamp_utc",
    "model_name",
    "model_version",
    "raw_score",
    "decision",
    "decision_threshold",
    "model_confidence",
    "feature_store_snapshot_id",
    "feature_freshness_max_age_seconds",
    "feature_null_count",
    "user_segment",
    "channel",
    "geographic_region",
    "feature_fetch_ms",
    "inference_ms",
    "total_ms",
    "sample_weight",
    "sampling_reason",
    "data_quality",
)


def server_env(data_dir: Path, otlp: str | None = None) -> dict[str, str]:
    """The service's environment: embedded defaults, plus the demo's keys and log paths,
    and the OTLP endpoint the service exports its traces to (none: no tracing)."""
    env = dict(os.environ)
    if otlp:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp
    env.setdefault("PREDLOG_PSEUDONYM_KEY", DEMO_KEY)
    env.setdefault("PREDLOG_AUDIT_SIGNING_KEY", DEMO_AUDIT_KEY)
    env.update(
        PREDLOG_DATA_DIR=str(data_dir),
        PREDLOG_PARQUET_MAX_FILE_AGE_S="2",
        PREDLOG_OPERATIONAL_LOG="true",
        BENTOML_DO_NOT_TRACK="true",
        PYTHONPATH=os.pathsep.join([str(ROOT / "plugin"), str(ROOT), env.get("PYTHONPATH", "")]),
    )
    return env


def send_traffic(base: str, requests: int) -> Counter[str]:
    """Score ``requests`` transactions, each with its own X-Request-ID; decisions by kind."""
    rng = random.Random(2026)
    decisions: Counter[str] = Counter()
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(requests):
            rid = f"demo-{i:04d}"
            r = client.post(
                "/predict",
                json={"transaction": transaction(rng, i)},
                headers={"X-Request-ID": rid},
            )
            r.raise_for_status()
            assert r.headers["x-request-id"] == rid
            decisions[r.json()["decision"]] += 1
    return decisions


def wait_for_records(data_dir: Path, requests: int, server_log: Path) -> list[dict[str, Any]]:
    """The prediction log once every demo request is in it (files publish every 2 s)."""
    deadline = time.monotonic() + 30
    rows = records(data_dir)
    while len({r["request_id"] for r in rows if r["request_id"].startswith("demo-")}) < requests:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(rows)} records arrived; see {server_log}")
        time.sleep(0.5)
        rows = records(data_dir)
    return rows


def declined_example(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The declined prediction the demo shows (the last one sent)."""
    declined = [r for r in rows if r["decision"] == "declined"] or rows
    return max(declined, key=lambda r: r["request_id"])


def show(rows: list[dict[str, Any]], data_dir: Path, server_log: Path) -> None:
    """Where the logs are, one declined prediction as recorded, and what to try next."""
    activate = Path(sys.prefix) / "bin" / "activate"
    print(f"the commands below are on PATH once you run: source {activate}")
    print(f"prediction log (Parquet): {data_dir / 'predictions'}  ({len(rows)} records)")
    print(f"operational log (JSON lines): {server_log}")
    example = declined_example(rows)
    print(f"\none declined prediction, as predlog recorded it ({example['request_id']}):")
    for key in SHOWN:
        print(f"  {key:34s} {example[key]}")
    print("  features:")
    for name, value in json.loads(example["features"]).items():
        print(f"    {name:32s} {value}")
    audit_dir = data_dir / "audit"
    key_file = audit_dir / "public_key.hex"
    print(f"\naudit log of declined decisions (Merkle tree, signed checkpoints): {audit_dir}")
    # Quoted for the shell: the data directory is the user's choice and may hold spaces.
    public_key = f"--public-key {shlex.quote(str(key_file))}"
    print(
        f"  prove this decision: predlog audit prove {shlex.quote(example['request_id'])}"
        f" --audit-dir {shlex.quote(str(audit_dir))} {public_key}"
    )
    print(
        f"  verify the whole log: predlog audit verify {shlex.quote(str(audit_dir))} {public_key}"
    )
    print(
        "  (the demo's key, as its log directory holds it; a real verifier pins a key it got"
        " out of band, since whoever can rewrite the log can rewrite that file)"
    )
    # Printed for the user to copy, never executed here. DuckDB's Python package is in
    # the virtualenv; its command-line shell is not.
    glob = f"{data_dir}/predictions/**/*.parquet"
    query = "SELECT decision, count(*), avg(raw_score) FROM read_parquet('{}') GROUP BY 1"
    print(
        "\nask your own questions:\n"
        f'  python -c "import duckdb; duckdb.sql(\\"{query.format(glob)}\\").show()"'
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "3000")))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--data", type=Path, default=Path(predlog.Settings().data_dir))
    parser.add_argument("--exit-after-demo", action="store_true")
    parser.add_argument(
        "--jaeger",
        help=f"Jaeger query URL, already running (default {demo_jaeger.DEFAULT_QUERY}, "
        "started by the demo if nothing answers there)",
    )
    parser.add_argument("--otlp", default=demo_jaeger.DEFAULT_OTLP, help="its OTLP/HTTP endpoint")
    parser.add_argument("--no-traces", action="store_true", help="serve without tracing")
    args = parser.parse_args()
    data_dir = args.data.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)

    print(
        "model:",
        fraud_model.DEFAULT_PATH,
        "(training)" if not fraud_model.DEFAULT_PATH.exists() else "",
    )
    fraud_model.load()
    jaeger = None
    if not args.no_traces:
        query = args.jaeger or demo_jaeger.DEFAULT_QUERY
        jaeger = demo_jaeger.start(
            query, args.otlp, data_dir / "jaeger.log", may_start=args.jaeger is None
        )
    server_log = data_dir / "server.log"
    server = BentoServer(
        "examples.fraud_service.service:FraudService",
        log_path=server_log,
        env=server_env(data_dir, jaeger.otlp if jaeger else None),
        cwd=ROOT,
        port=args.port,
    )
    base = server.base_url
    try:
        server.start()
        print(f"serving: POST {base}/predict  (bentoml serve, predlog enabled in one line)")
        decisions = send_traffic(base, args.requests)
        print(f"sent {args.requests} transactions with X-Request-IDs: {dict(decisions)}")
        rows = wait_for_records(data_dir, args.requests, server_log)
        show(rows, data_dir, server_log)
        if jaeger is not None:
            example = declined_example(rows)
            if demo_jaeger.show_trace(jaeger, example["trace_id"], example["request_id"]):
                print(
                    f"  waterfall PREDLOG_JAEGER_URL={shlex.quote(jaeger.query)} predlog"
                    f" investigate {shlex.quote(example['request_id'])}"
                    f" --data {shlex.quote(str(data_dir))} --html trace.html"
                )
        if args.exit_after_demo:
            return 0
        print(f"\nstill serving on {base}; Ctrl-C to stop")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop(timeout=30)
        if jaeger is not None:
            jaeger.stop()


if __name__ == "__main__":
    sys.exit(main())
