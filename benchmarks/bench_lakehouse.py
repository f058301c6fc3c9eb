"""The lakehouse hops: Kafka into Iceberg on S3, commit latency, and `predlog compact`.

Needs a Kafka broker (``make bench`` starts one; or set PREDLOG_TEST_KAFKA=host:port);
starts its own moto S3 server. Prints, each from this run:

1. ``predlog sink --table``: N records produced to a fresh topic once, then drained
   by one consumer process per run, each in a group of its own: into an Iceberg table
   whose warehouse is on moto's S3 (a SQL catalog named ``bench``, configured by
   PYICEBERG_CATALOG__BENCH__*), and, as baselines in the same rounds, alternating
   order: the same loop taking each batch as stored (its polling and unpacking only),
   decoding each batch and writing nothing, writing the Parquet layout on local disk,
   and the table with the values decoded in Python instead of by the extension.
   Records per second for one process, from the first assignment (polling starts
   there) to the last batch stored, so the start-up paid once per process (imports,
   opening the table, joining the group) is left out; the figure with it (from the
   consumer's start, the sink's imports included) is printed beside it. The ratios of
   the table to each baseline per round, and the records lost (the table's and the
   layout's rows against N). And a what-if: the table with decoding made free (one
   chunk decoded up front, its rows reused), which says how fast the table path itself
   goes behind the loop;
2. the latency of that consumer's commits (data files and offsets in one snapshot),
   median and p95 ms;
3. ``predlog compact``: the same records as small files, on the Parquet layout (local
   disk) and in the table (S3), compacted by the command; seconds per GB rewritten.

No assertions: the figures are for benchmarks/RESULTS.md.

Usage: python benchmarks/bench_lakehouse.py [--records N] [--max-batch N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
from typing import Any, Final

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


class Timed:
    """A destination as the loop sees it, timed: from the first assignment (the loop
    polls right after it) to the end of the last batch stored, and the records stored.
    Start-up (imports, the table opened, the group joined) is left out: it is paid once
    per process, not per record."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.keeps_offsets = inner.keeps_offsets
        self.began: float | None = None
        self.ended = 0.0
        self.records = 0

    def open(self, consumer: Any, *, topic: str, group: str) -> None:
        self.inner.open(consumer, topic=topic, group=group)

    async def continues_at(self, partitions: list[int]) -> dict[int, int]:
        if self.began is None:
            self.began = time.perf_counter()
        found: dict[int, int] = await self.inner.continues_at(partitions)
        return found

    def revoked(self, partitions: list[int]) -> None:
        self.inner.revoked(partitions)

    async def store(self, batch: Any, stats: Any) -> bool:
        stored: bool = await self.inner.store(batch, stats)
        if stored:
            self.records += len(batch.values)
            self.ended = time.perf_counter()
        return stored

    def close(self) -> None:
        self.inner.close()


class Consumed:
    """The loop's own ceiling: each batch taken as stored, nothing decoded or written."""

    keeps_offsets = False

    def open(self, consumer: Any, *, topic: str, group: str) -> None:
        del consumer, topic, group

    async def continues_at(self, partitions: list[int]) -> dict[int, int]:
        del partitions
        return {}

    def revoked(self, partitions: list[int]) -> None:
        del partitions

    async def store(self, batch: Any, stats: Any) -> bool:
        del batch, stats
        return True

    def close(self) -> None:
        pass


class Decoded(Consumed):
    """The loop and the values decoded into Arrow (in the worker thread, as the table
    destination decodes them), nothing written: what every destination pays first."""

    async def store(self, batch: Any, stats: Any) -> bool:
        await asyncio.to_thread(batch.decode, stats)
        return True


#: What a round drains the topic into: the figure (``table``) and its baselines, and
#: a what-if (``table-decoded``): the table with each chunk's decoding taken from one
#: chunk decoded up front, what the table path would do were decoding free; and the
#: table with the values decoded in Python (``table-python``, ``native_decode`` off),
#: the baseline of the extension's decoder.
KINDS = ("consume", "decode", "parquet", "table", "table-python", "table-decoded")


def decode_once() -> None:
    """Make every :class:`Batch` decode to the rows of the first values it decoded (as
    many as it has values): decoding costs nothing past the first chunk. Only for the
    what-if run; its rows repeat, so its records lost are not counted."""
    from predlog.tools.sink import Batch

    decode = Batch.decode
    first: list[pa.RecordBatch] = []

    def once(self: Batch, stats: Any) -> pa.RecordBatch | None:
        if not first or first[0].num_rows < len(self.values):
            decoded = decode(self, stats)
            if decoded is None:
                return None
            first[:] = [decoded]
        return first[0].slice(0, len(self.values))

    Batch.decode = once  # type: ignore[method-assign]


def consume_into(kind: str, options: dict[str, Any], work: str, table: str) -> dict[str, Any]:
    """In the consumer's process: drain the topic into ``kind``; its counts and times."""
    started = time.perf_counter()
    from predlog.tools.sink import ParquetDestination, TableDestination, consume_until_signalled

    inner: Any
    if kind.startswith("table"):
        inner = TableDestination(table, data_dir=work)
        if kind == "table-decoded":
            decode_once()
    elif kind == "parquet":
        inner = ParquetDestination(str(Path(work) / f"layout-{options['group_id']}"))
    elif kind == "decode":
        inner = Decoded()
    else:
        inner = Consumed()
    timed = Timed(inner)
    native = {"native_decode": kind != "table-python"}
    stats = consume_until_signalled({**options, **native, "destination": timed})
    result = dataclasses.asdict(stats)
    result["records"] = timed.records
    result["busy_s"] = timed.ended - (timed.began or timed.ended)
    result["whole_s"] = timed.ended - started
    return result


def drain(
    kind: str,
    *,
    bootstrap: str,
    topic: str,
    group: str,
    env: dict[str, str],
    work: Path,
    table: str,
    max_batch: int,
) -> dict[str, Any]:
    """Run one `predlog sink` consumer (the function the command runs, in a process of
    its own) into ``kind`` until the topic is idle; its counts, busy time, and every
    commit's latency (the command prints only their median and maximum)."""
    idle = 3.0
    options = {
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "group_id": group,
        "max_batch": max_batch,
        "max_wait_s": 2.0,
        "exit_when_idle_s": idle,
    }
    code = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from bench_lakehouse import consume_into
print(json.dumps(consume_into({kind!r}, {options!r}, {str(work)!r}, {table!r})))
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


def table_rows(table: str, env: dict[str, str], work: Path) -> int:
    """The rows of the table's current snapshot, as its summary counts them."""
    os.environ.update(env)
    from predlog.sinks.iceberg import open_table

    snapshot = open_table(table, data_dir=work, create=False).current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.additional_properties.get("total-records", 0))


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


def layout_rows(data: Path) -> int:
    """The rows in the Parquet layout's published files."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(path).num_rows for path in data.glob("predictions/**/*.parquet"))


def rounds(
    count: int,
    *,
    bootstrap: str,
    topic: str,
    env: dict[str, str],
    work: Path,
    n: int,
    max_batch: int,
) -> tuple[dict[str, list[float]], list[float], list[int]]:
    """Drain the topic into every kind, ``count`` alternating rounds; per kind the rates,
    every table commit's latency, and the records lost per checked run."""
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    latencies: list[float] = []
    lost: list[int] = []
    for r in range(count):
        # Alternate the order, so that a neighbour's load falls on every kind alike.
        for kind in KINDS if r % 2 == 0 else tuple(reversed(KINDS)):
            group = f"bench-{kind}-{r}-{uuid.uuid4().hex[:6]}"
            table = f"bench.lake.{kind.replace('-', '_')}_{r}"
            run = drain(
                kind,
                bootstrap=bootstrap,
                topic=topic,
                group=group,
                env=env,
                work=work,
                table=table,
                max_batch=max_batch,
            )
            rates[kind].append(run["records"] / run["busy_s"])
            line = (
                f"   round {r + 1} {kind:8s}: {run['records']} records in "
                f"{run['busy_s']:.2f} s = {rates[kind][-1]:>9,.0f} records/s"
            )
            if kind == "table-decoded":
                line += f" ({run['commits']} commits; what if decoding were free)"
            elif kind in ("table", "table-python"):
                if kind == "table":
                    latencies += run["commit_ms"]
                lost.append(n - table_rows(table, env, work))
                line += (
                    f" ({run['commits']} commits, {run['files']} data files; from the "
                    f"consumer's start: {run['written'] / run['whole_s']:,.0f}/s; "
                    f"lost {lost[-1]})"
                )
            elif kind == "parquet":
                lost.append(n - layout_rows(work / f"layout-{group}"))
                line += f" (lost {lost[-1]})"
            print(line)
    return rates, latencies, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--max-batch", type=int, default=50_000, help="records per commit")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of every kind")
    args = parser.parse_args()
    bootstrap = os.environ.get("PREDLOG_TEST_KAFKA")
    if not bootstrap:
        raise SystemExit("set PREDLOG_TEST_KAFKA=host:port (make bench starts a broker)")
    import boto3

    n = args.records
    print(f"bench_lakehouse: {n} records, {os.cpu_count()} cores, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp, moto_s3() as endpoint:
        work = Path(tmp)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, **_boto(CREDENTIALS)).create_bucket(Bucket=bucket)
        env = catalog_env(endpoint, bucket, work)
        topic = f"bench-lake-{uuid.uuid4().hex[:8]}"
        produced = produce(bootstrap, topic, n)
        print(f"1. produced {n} records to {topic} in {produced:.1f} s (not the figure)")
        rates, latencies, lost = rounds(
            args.rounds,
            bootstrap=bootstrap,
            topic=topic,
            env=env,
            work=work,
            n=n,
            max_batch=args.max_batch,
        )
        median = {kind: statistics.median(values) for kind, values in rates.items()}
        print(
            "   predlog sink --table (one consumer process, warehouse on moto S3), median "
            f"{median['table']:,.0f} records/s, from the assignment to the last commit"
        )
        for base in ("consume", "decode", "parquet", "table-python"):
            ratios = [t / b for t, b in zip(rates["table"], rates[base], strict=True)]
            print(
                f"   against the loop {_BASELINE[base]}: median {median[base]:,.0f}/s, "
                f"table/{base} per round "
                + ", ".join(f"{x:.2f}" for x in ratios)
                + f" (median {statistics.median(ratios):.2f})"
            )
        print(
            f"   what if decoding were free (table-decoded): median "
            f"{median['table-decoded']:,.0f}/s, against the loop alone "
            f"{median['table-decoded'] / median['consume']:.2f}"
        )
        print(f"   records lost (table and parquet runs): {sum(lost)}")
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
        table = f"bench.lake.table_{args.rounds - 1}"
        say_compaction(
            f"Iceberg table on moto S3 (predlog compact --table {table})",
            compact("--data", str(work), "--table", table, env=env),
        )


#: What each baseline kind is, as the summary names it.
_BASELINE: Final = {
    "consume": "taking each batch as stored (polling and unpacking only)",
    "decode": "decoding each batch into Arrow, nothing written",
    "parquet": "into the Parquet layout on local disk (predlog sink --data)",
    "table-python": "into the table, the values decoded in Python (native_decode off)",
}


def _boto(credentials: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
        "region_name": credentials["AWS_DEFAULT_REGION"],
    }


if __name__ == "__main__":
    main()
