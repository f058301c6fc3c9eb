"""Acceptance: records through a real Kafka broker and back into Parquet."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import duckdb
import pyarrow as pa
import pytest

import predlog
from predlog import KafkaSink
from predlog.testing import MemorySink
from tests.helpers import child_env
from tests.services import broker, fresh_topic, kafka_bootstrap, wait_for_port


def sink_to_parquet(bootstrap: str, topic: str, data_dir, *, group: str) -> dict:
    """Run `predlog sink` until the topic has been idle for a few seconds."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "predlog",
            "sink",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--data",
            str(data_dir),
            "--group",
            group,
            "--exit-when-idle",
            "6",
            "--max-wait",
            "2",
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parquet_ids(data_dir) -> tuple[int, int, set[str]]:
    glob = f"{data_dir}/predictions/**/*.parquet"
    con = duckdb.connect()
    rows, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT prediction_id) FROM read_parquet('{glob}')"
    ).fetchone()
    ids = {
        r[0]
        for r in con.execute(f"SELECT DISTINCT request_id FROM read_parquet('{glob}')").fetchall()
    }
    return rows, distinct, ids


class TestRoundTrip:
    def test_100k_records_through_kafka_into_parquet(self, tmp_path):
        """100,000 records: KafkaSink -> topic -> predlog sink -> Parquet, each exactly once."""
        bootstrap, topic = kafka_bootstrap(), fresh_topic("roundtrip")
        sink = KafkaSink(bootstrap_servers=bootstrap, topic=topic, spool_dir=tmp_path / "spool")
        # A ring that holds the whole burst: this test is about the round trip, and
        # logging 100,000 records in a tight loop outruns any broker.
        log = predlog.PredictionLogger(
            sinks=[sink],
            model_name="fraud",
            model_version="v4",
            ring_capacity=1 << 17,
            install_signal_handlers=False,
        )
        n = 100_000
        for i in range(n):
            log.log(
                request_id=f"rt-{i}", features={"i": i, "amount": i / 10}, score=(i % 100) / 100
            )
        assert log.close(timeout=300)
        assert log.stats()["delivered"] == n
        assert sink.stats()["sent"] + sink.stats()["replayed"] >= n

        stats = sink_to_parquet(bootstrap, topic, tmp_path / "data", group=f"g-{topic}")
        assert stats["written"] == n
        rows, distinct, ids = parquet_ids(tmp_path / "data")
        assert (rows, distinct) == (n, n)
        assert ids == {f"rt-{i}" for i in range(n)}
        con = duckdb.connect()
        glob = f"{tmp_path}/data/predictions/**/*.parquet"
        sample = con.execute(
            "SELECT features, raw_score, model_version "
            f"FROM read_parquet('{glob}') WHERE request_id = 'rt-4242'"
        ).fetchone()
        assert json.loads(sample[0]) == {"i": 4242, "amount": 424.2}
        assert sample[1:] == (0.42, "v4")

    def test_kcat_reads_the_documented_format(self, tmp_path):
        """kcat, a client we did not write, consumes messages that decode as documented,
        each on the partition the Java client's partitioner picks for its key."""
        from aiokafka.partitioner import DefaultPartitioner

        bootstrap, topic = kafka_bootstrap(), fresh_topic("kcat")
        sink = KafkaSink(bootstrap_servers=bootstrap, topic=topic, spool_dir=tmp_path / "spool")
        with predlog.PredictionLogger(sinks=[sink], install_signal_handlers=False) as log:
            for i in range(50):
                log.log(request_id=f"k-{i}", features={"x": i}, score=0.25, decision="approved")
        consume = ["kcat", "-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-u"]
        out = subprocess.run(
            [*consume, "-f", "%p\t%k\t%h\t%s\n"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        lines = [line for line in out.splitlines() if line]
        assert len(lines) == 50
        seen = set()
        choose, partitions = DefaultPartitioner(), [0, 1, 2]  # num.partitions=3 (up.sh)
        for line in lines:
            partition, key, headers, value = line.split("\t", 3)
            assert int(partition) == choose(key.encode(), partitions, partitions)
            record = json.loads(value)
            assert key == record["request_id"]
            assert "predlog-schema-version=1" in headers
            assert "content-type=application/json" in headers
            assert record["schema_version"] == 1
            assert record["features"] == {"x": int(key.split("-")[1])}
            assert record["raw_score"] == 0.25
            assert record["timestamp_utc"].endswith("+00:00")
            assert len(record["prediction_id"]) == 36
            seen.add(key)
        assert seen == {f"k-{i}" for i in range(50)}
        assert {line.split("\t", 1)[0] for line in lines} == {"0", "1", "2"}

    def test_consumer_drops_duplicates(self, tmp_path):
        """The same records sent twice (as a spool replay may) are written once."""
        bootstrap, topic = kafka_bootstrap(), fresh_topic("dupes")
        keep = MemorySink()
        with predlog.PredictionLogger(sinks=[keep], install_signal_handlers=False) as log:
            for i in range(200):
                log.log(request_id=f"d-{i}", score=0.1)
        table = pa.Table.from_pylist(keep.records, schema=predlog.arrow_schema())
        sink = KafkaSink(bootstrap_servers=bootstrap, topic=topic, spool_dir=tmp_path / "spool")
        for batch in table.to_batches():
            sink.export(batch)
            sink.export(batch)
        sink.close()
        stats = sink_to_parquet(bootstrap, topic, tmp_path / "data", group=f"g-{topic}")
        assert stats["consumed"] == 400
        assert stats["duplicates"] == 200
        rows, distinct, _ = parquet_ids(tmp_path / "data")
        assert (rows, distinct) == (200, 200)


class TestBrokerOutage:
    def test_stop_the_broker_for_20_seconds(self, tmp_path):
        """Logging continues through a >20 s outage: nothing lost, spool under its cap."""
        bootstrap, topic = kafka_bootstrap(), fresh_topic("outage")
        cap = 64 << 20
        sink = KafkaSink(
            bootstrap_servers=bootstrap,
            topic=topic,
            spool_dir=tmp_path / "spool",
            spool_max_bytes=cap,
            delivery_timeout_s=2,
            retry_interval_s=1,
        )
        log = predlog.PredictionLogger(
            sinks=[sink], flush_interval_s=0.2, install_signal_handlers=False
        )
        stop = threading.Event()
        sent = []
        spool_peak = [0]

        def traffic() -> None:
            i = 0
            while not stop.is_set():
                for _ in range(50):
                    log.log(request_id=f"o-{i}", features={"i": i}, score=0.3)
                    sent.append(i)
                    i += 1
                time.sleep(0.025)  # ~2,000 records/s, steady

        def watch() -> None:
            while not stop.is_set():
                spool_peak[0] = max(spool_peak[0], sink.spool.size)
                time.sleep(0.1)

        workers = [threading.Thread(target=traffic), threading.Thread(target=watch)]
        for w in workers:
            w.start()
        try:
            time.sleep(4)
            broker("stop")
            outage_started = time.monotonic()
            time.sleep(22)
            spooled_during = sink.stats()["spooled"]
            broker("start")
            wait_for_port(bootstrap)
            outage = time.monotonic() - outage_started
            time.sleep(8)
        finally:
            stop.set()
            for w in workers:
                w.join()
        assert log.close(timeout=120)
        stats = log.stats()
        assert outage >= 20
        assert spooled_during > 0, "records should have been spooled during the outage"
        assert stats["captured"] == len(sent)
        assert stats["dropped"] == 0 and stats["failed"] == 0 and stats["pending"] == 0
        assert stats["delivered"] == len(sent)
        assert 0 < spool_peak[0] < cap
        assert sink.spool.size == 0, "the spool must be empty once replayed"

        out = sink_to_parquet(bootstrap, topic, tmp_path / "data", group=f"g-{topic}")
        _, distinct, ids = parquet_ids(tmp_path / "data")
        assert ids == {f"o-{i}" for i in sent}, f"lost {len(sent) - len(ids)} records"
        assert distinct == len(sent)
        assert out["written"] == len(sent)


@pytest.fixture(autouse=True)
def _broker_running():
    """Whatever a test did to the broker, the next one finds it running."""
    yield
    bootstrap = kafka_bootstrap()
    host, port = bootstrap.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        if s.connect_ex((host, int(port))) != 0:
            broker("start")
            wait_for_port(bootstrap)
