"""A minimal fraud-scoring HTTP service with predlog, on embedded defaults, no framework.

``python examples/minimal_service/serve.py`` serves ``POST /predict`` on 127.0.0.1:8000, sends
itself a few hundred requests with ``X-Request-ID`` headers, then prints where the
prediction log is and one prediction investigated from it, and keeps serving until
Ctrl-C (``--exit-after-demo`` stops instead).

Every prediction costs the handler one ``log.log(...)`` call; decoding, sampling
and Parquet writing happen on predlog's flusher thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import predlog

MODEL_VERSION = "v2.1.0"
APPROVE_BELOW, DECLINE_FROM = 0.5, 0.8

#: A small logistic model over standardised features; weights are illustrative.
WEIGHTS = {
    "amount": 0.9,
    "distance_from_home_km": 0.6,
    "txn_count_1h": 0.8,
    "card_age_days": -0.5,
    "is_new_device": 1.1,
}
MEANS = {"amount": 60.0, "distance_from_home_km": 15.0, "txn_count_1h": 1.0, "card_age_days": 700}
SCALES = {"amount": 80.0, "distance_from_home_km": 25.0, "txn_count_1h": 1.5, "card_age_days": 500}
BIAS = -1.6


def score(features: dict[str, Any]) -> float:
    z = BIAS
    for name, weight in WEIGHTS.items():
        value = float(features.get(name) or 0.0)
        z += weight * (value - MEANS.get(name, 0.0)) / SCALES.get(name, 1.0)
    return 1.0 / (1.0 + math.exp(-z))


def decide(p: float) -> str:
    if p >= DECLINE_FROM:
        return "declined"
    if p >= APPROVE_BELOW:
        return "review"
    return "approved"


def make_handler(log: predlog.PredictionLogger) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server dispatches on
            started = time.perf_counter()
            request_id = self.headers.get("X-Request-ID") or str(uuid.uuid4())
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                features = json.loads(body)["features"]
                p = score(features)
            except (ValueError, KeyError, TypeError) as exc:
                self._reply(400, {"error": str(exc)}, request_id)
                return
            decision = decide(p)
            inference_ms = (time.perf_counter() - started) * 1000
            log.log(
                request_id=request_id,
                features=features,
                score=p,
                decision=decision,
                threshold=APPROVE_BELOW,
                user_segment=features.get("user_segment"),
                channel=features.get("channel"),
                geographic_region=features.get("region"),
                inference_ms=inference_ms,
                total_ms=(time.perf_counter() - started) * 1000,
            )
            self._reply(200, {"score": p, "decision": decision}, request_id)

        def _reply(self, status: int, payload: dict[str, Any], request_id: str) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Request-ID", request_id)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # predlog is the log; keep the terminal for the summary

    return Handler


def transaction(rng: random.Random) -> dict[str, Any]:
    fraud = rng.random() < 0.05
    return {
        "amount": round(rng.lognormvariate(5.5 if fraud else 3.5, 1.0), 2),
        "distance_from_home_km": round(rng.expovariate(0.01 if fraud else 0.08), 1),
        "txn_count_1h": rng.randrange(3, 9) if fraud else rng.randrange(3),
        "card_age_days": rng.randrange(30) if fraud else rng.randrange(3000),
        "is_new_device": fraud or rng.random() < 0.05,
        "user_segment": rng.choice(["standard", "high_value", "new"]),
        "channel": rng.choice(["web", "mobile", "pos"]),
        "region": rng.choice(["EU", "US", "APAC"]),
    }


def send_traffic(port: int, count: int) -> list[str]:
    rng = random.Random(42)
    ids = []
    for i in range(count):
        request_id = f"demo-{i:04d}"
        body = json.dumps({"features": transaction(rng)}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=body,
            headers={"Content-Type": "application/json", "X-Request-ID": request_id},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # loopback
            assert response.headers["X-Request-ID"] == request_id
            json.load(response)
        ids.append(request_id)
    return ids


def investigate(data_dir: Path, request_id: str) -> dict[str, Any]:
    """Read one request's record back from the Parquet files."""
    import pyarrow.dataset as ds  # noqa: PLC0415  # only the summary needs it

    table = ds.dataset(data_dir / "predictions", format="parquet", partitioning="hive")
    rows = table.to_table(filter=ds.field("request_id") == request_id).to_pylist()
    return rows[0] if rows else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--exit-after-demo", action="store_true")
    args = parser.parse_args()

    log = predlog.PredictionLogger(model_name="fraud", model_version=MODEL_VERSION)
    data_dir = log.settings.data_path.resolve()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(log))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"serving POST http://127.0.0.1:{args.port}/predict (model fraud {MODEL_VERSION})")

    ids = send_traffic(args.port, args.requests)
    log.flush()
    stats = log.stats()
    print(f"sent {len(ids)} requests with X-Request-IDs; predlog stats: {stats}")
    print(f"prediction log (Parquet): {data_dir / 'predictions'}")
    declined = [i for i in ids if investigate(data_dir, i).get("decision") == "declined"]
    example = investigate(data_dir, (declined or ids)[0])
    print("one prediction, investigated:")
    for key in (
        "request_id",
        "prediction_id",
        "timestamp_utc",
        "model_name",
        "model_version",
        "raw_score",
        "decision",
        "decision_threshold",
        "model_confidence",
        "features",
        "user_segment",
        "channel",
        "geographic_region",
        "inference_ms",
        "sample_weight",
        "sampling_reason",
        "data_quality",
    ):
        print(f"  {key:20s} {example.get(key)}")
    # Printed for the user to copy, never executed here.
    where = f"WHERE request_id = '{example.get('request_id')}'"
    query = f"SELECT * FROM read_parquet('{data_dir}/predictions/**/*.parquet') {where}"  # noqa: S608  # shown to the user, not run
    print(f'query it yourself: duckdb -c "{query}"')
    if args.exit_after_demo:
        server.shutdown()
        log.close()
        return 0 if stats["delivered"] == len(ids) else 1
    print("still serving; Ctrl-C to stop")
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    server.shutdown()
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
