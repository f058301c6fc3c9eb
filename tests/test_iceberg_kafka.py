"""``predlog sink --table``: exactly once from Kafka into Iceberg, through SIGKILLs.

While 200,000 records flow into the topic, the consumer is killed with SIGKILL at 20
seeded random moments and restarted each time; afterwards a plain scan of the table
(no dedupe at read time) holds each prediction id exactly once. The seed is printed,
and ``PREDLOG_CRASH_SEED`` replays the schedule (not the exact interleaving).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from predlog.errors import ConfigError
from predlog.sinks.iceberg._catalog import open_table
from predlog.sinks.iceberg._kafka import table_offsets
from predlog.sinks.kafka import _wire
from tests.helpers import ROOT, child_env
from tests.iceberg_child import make_batch, prediction_ids
from tests.services import fresh_topic, kafka_bootstrap

TOTAL = 200_000
KILLS = 20
TABLE = "stream.preds"
CHILD = Path(__file__).with_name("iceberg_child.py")


#: Read when the module is imported: the tests' clean environment removes PREDLOG_*.
_SEED_GIVEN = os.environ.get("PREDLOG_CRASH_SEED")


def _seed() -> int:
    return int(_SEED_GIVEN or random.SystemRandom().randrange(1 << 31))


def produce(bootstrap: str, topic: str, total: int, chunks: int, pause_s: float) -> None:
    """``total`` records in ``chunks`` sends, ``pause_s`` apart: records keep flowing."""
    from aiokafka import AIOKafkaProducer

    # Recent times: Kafka stamps each message with its prediction's time, and the
    # broker's retention deletes messages stamped more than a week ago.
    day0 = datetime.now(tz=timezone.utc) - timedelta(days=2)

    async def main() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
        await producer.start()
        try:
            size = total // chunks
            for chunk in range(chunks):
                batch = make_batch(
                    size, start=chunk * size, model=lambda i: f"m{i % 3}", step_s=0.5, day0=day0
                )
                sends = [
                    await producer.send(
                        topic, key=key, value=value, timestamp_ms=ts, headers=headers
                    )
                    for key, value, ts, headers in _wire.encode(batch)
                ]
                await asyncio.gather(*sends)
                await asyncio.sleep(pause_s)
        finally:
            await producer.stop()

    asyncio.run(main())


def start_sink(bootstrap: str, topic: str, data: Path, idle: str = "-") -> subprocess.Popen[str]:
    """The consumer, through tests/iceberg_child.py (it widens the kill window)."""
    return subprocess.Popen(
        [sys.executable, str(CHILD), "sink", bootstrap, topic, TABLE, str(data), idle],
        env=child_env(PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def commit_count(data: Path) -> int:
    """How many commits the table has (0 before it exists)."""
    if not (data / "iceberg" / "catalog.db").exists():
        return 0
    try:
        return len(open_table(TABLE, data_dir=data, create=False).snapshots())
    except ConfigError:
        return 0


@pytest.mark.integration
def test_killed_consumer_leaves_each_record_in_the_table_exactly_once(tmp_path: Path) -> None:
    bootstrap, topic, seed = kafka_bootstrap(), fresh_topic("iceberg-eo"), _seed()
    rng = random.Random(seed)
    print(f"\nseed={seed} (PREDLOG_CRASH_SEED={seed} replays the kill schedule)")
    started = time.monotonic()
    producer = threading.Thread(target=produce, args=(bootstrap, topic, TOTAL, 40, 0.5))
    producer.start()
    kills = 0
    try:
        for _ in range(KILLS):
            before = commit_count(tmp_path)
            sink = start_sink(bootstrap, topic, tmp_path)
            # Kill while it works: a random moment after its first commit of this run
            # (or, now and then, earlier: while it joins the group or writes files).
            deadline = time.monotonic() + rng.uniform(2.0, 30.0)
            while commit_count(tmp_path) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))
            if sink.poll() is not None:
                pytest.fail(f"seed={seed}: the sink exited early: {sink.communicate()[1][-3000:]}")
            sink.send_signal(signal.SIGKILL)
            sink.wait(30)
            kills += 1
    finally:
        producer.join(900)
    # The last run must see every record: on a slow machine the producer can still be
    # sending when the kills are over.
    assert not producer.is_alive(), f"seed={seed}: the producer did not finish"
    last = start_sink(bootstrap, topic, tmp_path, "8")
    out, err = last.communicate(timeout=600)
    assert last.returncode == 0, f"seed={seed}: {err[-3000:]}"
    final = json.loads(out)

    table = open_table(TABLE, data_dir=tmp_path, create=False)
    ids = Counter(
        str(v)
        for v in table.scan(selected_fields=("prediction_id",))
        .to_arrow()
        .column("prediction_id")
        .to_pylist()
    )
    expected = {str(u) for u in prediction_ids(0, TOTAL)}
    duplicated = sum(c - 1 for c in ids.values())
    missing = len(expected - set(ids))
    offsets = table_offsets(table, topic, f"{topic}-g")
    commits = len(table.snapshots())
    files = sum(1 for _ in (tmp_path / "iceberg").rglob("*.parquet"))
    live = len(list(table.scan().plan_files()))
    print(
        f"iceberg exactly-once: seed={seed} kills={kills} rows={sum(ids.values())} "
        f"duplicated={duplicated} missing={missing} commits={commits} live_files={live} "
        f"orphan_files={files - live} offsets={offsets} last_run={final} "
        f"seconds={time.monotonic() - started:.0f}"
    )
    assert duplicated == 0, f"seed={seed}: {duplicated} prediction ids twice"
    assert missing == 0, f"seed={seed}: {missing} prediction ids missing; last run: {err[-2000:]}"
    assert sum(offsets.values()) == TOTAL, f"seed={seed}: offsets {offsets}"
