"""``predlog sink --table``: exactly once from Kafka into Iceberg, through SIGKILLs.

While 200,000 records flow into the topic, the consumer is killed with SIGKILL at 20
seeded random moments and restarted each time; afterwards a plain scan of the table
(no dedupe at read time) holds each prediction id exactly once. The seed is printed,
and ``PREDLOG_CRASH_SEED`` replays the schedule (not the exact interleaving). Also:
a range another consumer committed first is refused (no broker needed), and
``--metrics-port`` serves the table consumer's figures.
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
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from services.bentoserve import free_port

from predlog.errors import ConfigError
from predlog.sinks.iceberg import OpenFile, open_table, table_offsets
from predlog.sinks.kafka import encode
from predlog.tools.sink import Batch, ConsumerStats, TableDestination
from tests.helpers import ROOT, child_env
from tests.iceberg_child import make_batch, prediction_ids
from tests.services import fresh_topic, kafka_bootstrap
from tests.test_kafka import metric_values

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
                    for key, value, ts, headers in encode(batch)
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


def table_ids(data: Path) -> Counter[str]:
    """How often each prediction id is in the table (a plain scan, no dedupe)."""
    table = open_table(TABLE, data_dir=data, create=False)
    column = table.scan(selected_fields=("prediction_id",)).to_arrow().column("prediction_id")
    return Counter(str(v) for v in column.to_pylist())


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
    ids = table_ids(tmp_path)
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


def consumed(start: int, end: int) -> Batch:
    """Records ``start .. end`` as messages at those offsets of partition 0."""
    batch = Batch()
    messages = encode(make_batch(end - start, start=start))
    batch.add(0, [SimpleNamespace(offset=start + i, value=m[1]) for i, m in enumerate(messages)])
    return batch


def test_a_range_another_consumer_committed_first_is_refused(tmp_path: Path) -> None:
    """Two consumers that both started where the table ended (a zombie after a
    rebalance): the second one's batch overlaps what the first committed, so it is
    refused, not added; read again from the table's end, the rest goes in once."""
    first, zombie = (TableDestination(TABLE, data_dir=tmp_path) for _ in range(2))
    stats = ConsumerStats()
    for destination in (first, zombie):
        destination.open(None, topic="t", group="g")
        assert asyncio.run(destination.continues_at([0])) == {}
    assert asyncio.run(first.store(consumed(0, 10), stats))
    assert not asyncio.run(zombie.store(consumed(0, 15), stats))
    assert stats.refused == 1
    assert asyncio.run(zombie.continues_at([0])) == {0: 10}
    assert asyncio.run(zombie.store(consumed(10, 15), stats))
    expected = {str(u) for u in prediction_ids(0, 15)}
    assert table_ids(tmp_path) == Counter(dict.fromkeys(expected, 1))
    assert table_offsets(zombie.table, "t", "g") == {0: 15}


def test_a_batch_of_a_revoked_partition_is_refused(tmp_path: Path) -> None:
    """A batch holding records of a partition taken from this consumer (polled before
    the rebalance, stored after it) is refused: committing it would record where that
    partition ends, and this consumer's later commits would write that end over the new
    owner's, which would then read and commit those records a second time."""
    destination = TableDestination(TABLE, data_dir=tmp_path)
    destination.open(None, topic="t", group="g")
    stats = ConsumerStats()
    assert asyncio.run(destination.continues_at([0, 1])) == {}
    destination.revoked([1])
    batch = Batch()
    messages = encode(make_batch(4))
    batch.add(0, [SimpleNamespace(offset=i, value=m[1]) for i, m in enumerate(messages[:2])])
    batch.add(1, [SimpleNamespace(offset=i, value=m[1]) for i, m in enumerate(messages[2:])])
    assert not asyncio.run(destination.store(batch, stats))
    assert stats.refused == 1
    assert table_offsets(destination.table, "t", "g") == {}
    assert asyncio.run(destination.store(consumed(0, 5), stats))
    assert table_offsets(destination.table, "t", "g") == {0: 5}


def test_a_batch_decoded_in_chunks_lands_whole_one_file_per_partition(tmp_path: Path) -> None:
    """A batch decoded a few records at a time, two models and one message that is not
    a record among them: each partition is one file holding its rows in order, the bad
    message is counted and skipped, and the offsets cover every message."""
    destination = TableDestination(TABLE, data_dir=tmp_path, chunk_records=4)
    destination.open(None, topic="t", group="g")
    stats = ConsumerStats()
    assert asyncio.run(destination.continues_at([0])) == {}
    values = [m[1] for m in encode(make_batch(10, model=lambda i: f"m{i % 2}"))]
    values.insert(5, b"not a record")
    batch = Batch()
    batch.add(0, [SimpleNamespace(offset=i, value=v) for i, v in enumerate(values)])
    assert asyncio.run(destination.store(batch, stats))
    assert (stats.undecodable, stats.written, stats.files) == (1, 10, 2)
    ids = [str(u) for u in prediction_ids(0, 10)]
    assert table_ids(tmp_path) == Counter(dict.fromkeys(ids, 1))
    table = open_table(TABLE, data_dir=tmp_path, create=False)
    for model in ("m0", "m1"):
        rows = table.scan(row_filter=f"model_name == '{model}'").to_arrow()
        assert [str(v) for v in rows.column("prediction_id").to_pylist()] == ids[model == "m1" :: 2]
    assert table_offsets(table, "t", "g") == {0: 11}


def test_a_batch_whose_file_fails_commits_nothing(tmp_path: Path, monkeypatch) -> None:
    """A write that fails part-way (the store full) stops the batch: no file of it is
    committed, nor its offsets; the same batch stored again lands once."""
    destination = TableDestination(TABLE, data_dir=tmp_path, chunk_records=3)
    destination.open(None, topic="t", group="g")
    stats = ConsumerStats()
    assert asyncio.run(destination.continues_at([0])) == {}
    write, calls = OpenFile.write, []

    def failing(self: OpenFile, rows: object) -> None:
        calls.append(rows)
        if len(calls) == 2:
            raise OSError("no space left")
        write(self, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(OpenFile, "write", failing)
    with pytest.raises(OSError, match="no space left"):
        asyncio.run(destination.store(consumed(0, 10), stats))
    table = open_table(TABLE, data_dir=tmp_path, create=False)
    assert table.current_snapshot() is None
    monkeypatch.setattr(OpenFile, "write", write)
    assert asyncio.run(destination.store(consumed(0, 10), stats))
    assert table_ids(tmp_path) == Counter(dict.fromkeys(map(str, prediction_ids(0, 10)), 1))
    assert table_offsets(destination.table, "t", "g") == {0: 10}


@pytest.mark.integration
def test_metrics_port_shows_the_table_consumer_at_work(tmp_path: Path) -> None:
    """While `predlog sink --table --metrics-port` consumes a real topic into a table,
    /metrics shows what it consumed, wrote, published and committed, and its lag."""
    bootstrap, topic, port = kafka_bootstrap(), fresh_topic("iceberg-metrics"), free_port()
    produce(bootstrap, topic, 300, 1, 0.0)
    argv = [sys.executable, "-m", "predlog", "sink", "--bootstrap", bootstrap, "--topic", topic]
    argv += ["--table", TABLE, "--data", str(tmp_path), "--group", f"g-{topic}"]
    argv += ["--exit-when-idle", "30", "--max-wait", "1", "--metrics-port", str(port)]
    proc = subprocess.Popen(
        [*argv, "-o", "json"], env=child_env(), stdout=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        values: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while values.get("records_consumed_total") != 300 and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    values = metric_values(response.read().decode(), topic)
            except OSError:
                assert proc.poll() is None, "predlog sink --table exited before it was scraped"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert values["records_consumed_total"] == 300, values
    assert values["records_total:written"] == 300
    assert values["records_total:duplicate"] == values["records_total:undecodable"] == 0
    assert values["files_published_total"] >= 3  # three models: a data file each at least
    assert values["commits_total"] >= 1
    assert values["lag_records"] == 0
    assert values["last_commit_timestamp_seconds"] > 0
    stats = json.loads(out.strip().splitlines()[-1])
    assert (stats["consumed"], stats["written"], stats["refused"]) == (300, 300, 0)
    assert stats["commits"] == values["commits_total"]
    assert sum(table_ids(tmp_path).values()) == 300
