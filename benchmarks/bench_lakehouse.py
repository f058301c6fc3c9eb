"""The lakehouse hops: Kafka into Iceberg on S3, commit latency, and `predlog compact`.

Needs a Kafka broker (``make bench`` starts one; or set PREDLOG_TEST_KAFKA=host:port);
starts its own moto S3 server. Prints, each from this run:

1. ``predlog sink --table``: N records produced to a fresh topic first, then one
   consumer process drains them into an Iceberg table whose warehouse is on moto's S3
   (a SQL catalog named ``bench``, configured by PYICEBERG_CATALOG__BENCH__*): records
   per second for that one process, from its first poll to its last commit;
2. the latency of that consumer's commits (data files and offsets in one snapshot),
   median and p95 ms;
3. ``predlog compact``: the same records as small files, on the Parquet layout (local
   disk) and in the table (S3), compacted by the command; seconds per GB rewritten.

No assertions: the figures are for benchmarks/RESULTS.md.

Usage: python benchmarks/bench_lakehouse.py [--records N] [--max-batch N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fraud_features
from predlog import ParquetSink
from predlog.testing import build_batch

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}
#: Yesterday (UTC): a day `predlog compact` takes by default.
DAY = datetime.now(tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
    days=1
)


def batches(n: int, size: int = 50_000) -> Iterator[pa.RecordBatch]:
    """``n`` fraud-model records over yesterday, in batches of ``size``."""
    rng = random.Random(14)
    step = 80_000 / n  # seconds between records: the whole run within the day
    for first in range(0, n, size):
        yield build_batch(
            [
                {
                    "request_id": f"r-{i}",
                    "features": fraud_features(rng),
                    "score": rng.random(),
                    "decision": "approved",
                    "user_segment": "standard",
                    "channel": "web",
                    "timestamp": DAY + timedelta(seconds=i * step),
                }
                for i in range(first, min(n, first + size))
            ],
            model_name="fraud",
            model_version="v1",
        )


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port, stopped afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def catalog_env(endpoint: str, bucket: str, work: Path) -> dict[str, str]:
    """A pyiceberg SQL catalog ``bench``: SQLite here, the warehouse in the S3 bucket."""
    prefix = "PYICEBERG_CATALOG__BENCH__"
    return {
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        f"{prefix}TYPE": "sql",
        f"{prefix}URI": f"sqlite:///{work / 'catalog.db'}",
        f"{prefix}WAREHOUSE": f"s3://{bucket}/warehouse",
        f"{prefix}S3__ENDPOINT": endpoint,
        f"{prefix}S3__ACCESS_KEY_ID": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        f"{prefix}S3__SECRET_ACCESS_KEY": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        f"{prefix}S3__REGION": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def produce(bootstrap: str, topic: str, n: int) -> float:
    """Put ``n`` records on ``topic`` as KafkaSink does (one message per record); s."""
    from aiokafka import AIOKafkaProducer

    from predlog.sinks.kafka import _wire

    async def run() -> float:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=20,
            compression_type="zstd",
            max_batch_size=1 << 20,
        )
        await producer.start()
        start = time.perf_counter()
        try:
            for batch in batches(n):
                sends = [
                    await producer.send(topic, key=k, value=v, timestamp_ms=ts, headers=h)
                    for k, v, ts, h in _wire.encode(batch)
                ]
                await asyncio.gather(*sends)
        finally:
            await producer.stop()
        return time.perf_counter() - start

    return asyncio.run(run())


def drain(
    bootstrap: str, topic: str, env: dict[str, str], work: Path, max_batch: int
) -> dict[str, Any]:
    """Run one `predlog sink --table` consumer (the function the command runs, in a
    process of its own) until the topic is idle; its counts and every commit's latency
    (the command prints only their median and maximum)."""
    idle = 3.0
    code = f"""
import dataclasses, json
from predlog.tools.sink import TableDestination, consume_until_signalled
stats = consume_until_signalled({{
    "destination": TableDestination("bench.lake.preds", data_dir={str(work)!r}),
    "bootstrap_servers": {bootstrap!r}, "topic": {topic!r}, "group_id": "bench",
    "max_batch": {max_batch},
    "max_wait_s": 2.0, "exit_when_idle_s": {idle},
}})
print(json.dumps(dataclasses.asdict(stats)))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT / "plugin")},
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["idle_s"] = idle
    return result


def compact(*args: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "predlog", "compact", *args, "-o", "json"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT / "plugin")},
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def small_files(data: Path, n: int, per_file: int) -> None:
    """The records as a logger that flushes every ``per_file`` records leaves them."""
    sink = ParquetSink(data)
    for batch in batches(n, per_file):
        sink.export(batch)
        sink.flush()
    sink.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def say_compaction(what: str, report: dict[str, Any]) -> None:
    mb = 1e6
    print(
        f"  {what}: {report['files_before']} files, {report['bytes_before'] / mb:.1f} MB -> "
        f"{report['files_after']} files, {report['bytes_after'] / mb:.1f} MB, "
        f"{report['rows']} rows in {report['seconds']:.2f} s: "
        f"{report['seconds_per_gb']:.1f} s per GB rewritten"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--max-batch", type=int, default=50_000, help="records per commit")
    args = parser.parse_args()
    bootstrap = os.environ.get("PREDLOG_TEST_KAFKA")
    if not bootstrap:
        raise SystemExit("set PREDLOG_TEST_KAFKA=host:port (make bench starts a broker)")
    import boto3

    n = args.records
    print(f"bench_lakehouse: {n} records, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp, moto_s3() as endpoint:
        work = Path(tmp)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, **_boto(CREDENTIALS)).create_bucket(Bucket=bucket)
        env = catalog_env(endpoint, bucket, work)
        topic = f"bench-lake-{uuid.uuid4().hex[:8]}"
        produced = produce(bootstrap, topic, n)
        print(f"1. produced {n} records to {topic} in {produced:.1f} s (not the figure)")
        run = drain(bootstrap, topic, env, work, args.max_batch)
        busy = run["seconds"] - run["idle_s"]
        print(
            f"   predlog sink --table (one consumer process, warehouse on moto S3): "
            f"{run['written']} records in {busy:.1f} s = {run['written'] / busy:,.0f} records/s "
            f"({run['commits']} commits, {run['files']} data files; the idle wait before "
            f"exit, {run['idle_s']:.0f} s, left out)"
        )
        latencies = run["commit_ms"]
        if latencies:
            print(
                f"2. commit latency over {len(latencies)} commits: median "
                f"{statistics.median(latencies):.0f} ms, p95 {percentile(latencies, 0.95):.0f} ms"
            )
        print("3. predlog compact")
        layout = work / "layout"
        small_files(layout, n, 5_000)
        say_compaction(
            "Parquet layout, local disk (predlog compact --data DIR)",
            compact("--data", str(layout), env={}),
        )
        say_compaction(
            "Iceberg table on moto S3 (predlog compact --table bench.lake.preds)",
            compact("--data", str(work), "--table", "bench.lake.preds", env=env),
        )


def _boto(credentials: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
        "region_name": credentials["AWS_DEFAULT_REGION"],
    }


if __name__ == "__main__":
    main()
