"""Acceptance: records through a real Kafka broker and back into Parquet; the spool's replay.

The classes marked ``integration`` need the broker services/with-services.sh starts;
the rest run anywhere.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import duckdb
import pyarrow as pa
import pytest
from aiokafka.structs import TopicPartition

import predlog
from predlog import KafkaSink
from predlog.errors import ConfigError, SinkError
from predlog.sinks.kafka import _spooled, _wire
from predlog.storage import Spool, SpoolLockedError
from predlog.testing import ErrorReporter, MemorySink
from predlog.tools.sink import Batch, ConsumerLoop, ConsumerStats
from tests.helpers import ROOT, child_env
from tests.services import (
    PrivateBroker,
    closed_port,
    fresh_topic,
    kafka_bootstrap,
    topic_keys,
)


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
            "-o",
            "json",
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


def left_in_spool(
    spool_dir: Path,
    n: int,
    *,
    prefix: str,
    per_segment: int,
    exclusive: bool = False,
    release: bool = True,
) -> set[str]:
    """A spool as an outage leaves it: ``n`` records, ``per_segment`` to a segment;
    ``exclusive`` as a KafkaSink holds it, and still held unless ``release``.

    Returns the records' keys (their request ids).
    """
    keep = MemorySink()
    with predlog.PredictionLogger(sinks=[keep], install_signal_handlers=False) as log:
        for i in range(n):
            log.log(request_id=f"{prefix}-{i}", features={"i": i}, score=0.5)
    table = pa.Table.from_pylist(keep.records, schema=predlog.arrow_schema())
    # A segment is closed once it reaches segment_bytes: 1 byte gives one per append.
    spool = Spool(spool_dir, max_bytes=1 << 30, segment_bytes=1, exclusive=exclusive)
    for batch in table.to_batches(max_chunksize=per_segment):
        spool.append(_spooled.pack(_wire.encode(batch)))
    assert len(spool.segments()) == -(-n // per_segment)
    if release:
        spool.close()
    return {f"{prefix}-{i}" for i in range(n)}


@pytest.mark.integration
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


@pytest.mark.integration
class TestBrokerOutage:
    def test_stop_the_broker_for_20_seconds(self, tmp_path):
        """Logging continues through a >20 s outage: nothing lost, spool under its cap.

        The broker is this test's own, so stopping it touches no one else's."""
        (tmp_path / "broker").mkdir()
        kafka = PrivateBroker(tmp_path / "broker")
        kafka.start()
        try:
            self._outage(tmp_path, kafka)
        finally:
            kafka.stop()

    def _outage(self, tmp_path, kafka):
        bootstrap, topic = kafka.address, fresh_topic("outage")
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
            kafka.stop()
            outage_started = time.monotonic()
            time.sleep(22)
            spooled_during = sink.stats()["spooled"]
            kafka.start()
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


@pytest.mark.integration
class TestReplayHasOneOwner:
    def test_flush_during_a_replay_pass_sends_every_record_once(self, tmp_path):
        """flush() while the replayer is part way through the spool: every spooled record
        reaches the topic exactly once, the spool is empty, and no error was hidden."""
        bootstrap, topic = kafka_bootstrap(), fresh_topic("replay-flush")
        n, per_segment = 20_000, 50
        keys = left_in_spool(tmp_path / "spool", n, prefix="rf", per_segment=per_segment)
        reporter = ErrorReporter()
        sink = KafkaSink(
            bootstrap_servers=bootstrap,
            topic=topic,
            spool_dir=tmp_path / "spool",
            retry_interval_s=0.2,
            reporter=reporter,
        )
        sink.open()  # the replayer starts here, as when a logger opens its sinks
        deadline = time.monotonic() + 60
        while sink.stats()["replayed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        replayed_before = sink.stats()["replayed"]
        sink.flush()
        spool_after_flush = sink.spool.size
        sink.close()

        assert 0 < replayed_before < n, "flush must land while a replay pass is under way"
        counts = topic_keys(bootstrap, topic)
        twice = {key: c for key, c in counts.items() if c > 1}
        assert not twice, f"{len(twice)} keys sent more than once, e.g. {sorted(twice)[:3]}"
        assert set(counts) == keys
        assert sink.stats()["replayed"] == n
        assert spool_after_flush == 0, "flush waits for the pass it asked for"
        assert reporter.counts() == {}
        assert sink.stats()["replay_errors"] == 0

    def test_a_segment_sent_but_not_removed_is_not_sent_again(self, tmp_path, monkeypatch):
        """When removing a replayed segment fails, the failure is reported and counted,
        and the next pass only retries the removal: no record reaches the topic twice."""
        bootstrap, topic = kafka_bootstrap(), fresh_topic("replay-remove")
        keys = left_in_spool(tmp_path / "spool", 150, prefix="rr", per_segment=50)
        sink = KafkaSink(
            bootstrap_servers=bootstrap,
            topic=topic,
            spool_dir=tmp_path / "spool",
            retry_interval_s=600,  # only flush() starts a pass
        )
        remove, failed = sink.spool.remove, []

        def remove_failing_once(segment: Path) -> None:
            if not failed:
                failed.append(segment.name)
                raise OSError(5, "Input/output error", str(segment))
            remove(segment)

        monkeypatch.setattr(sink.spool, "remove", remove_failing_once)
        sink.flush()
        assert sink.spool.size > 0, "the segment that was not removed is still on disk"
        sink.flush()
        assert sink.spool.size == 0
        sink.close()

        counts = topic_keys(bootstrap, topic)
        assert set(counts) == keys
        assert set(counts.values()) == {1}
        assert sink.stats()["replayed"] == 150
        assert sink.reporter.counts() == {"kafka_spool_failed": 1}
        assert sink.stats()["replay_errors"] == 1


class TestReplayErrors:
    def test_an_unreachable_broker_is_counted_not_hidden(self, tmp_path):
        """Replay passes and sends that fail while the broker is away show in the
        reporter's counts and in replay_errors; the records stay spooled."""
        left_in_spool(tmp_path / "spool", 10, prefix="u", per_segment=5)
        reporter = ErrorReporter()
        sink = KafkaSink(
            bootstrap_servers=closed_port(),
            topic="t",
            spool_dir=tmp_path / "spool",
            retry_interval_s=600,
            reporter=reporter,
        )
        size = sink.spool.size
        try:
            sink.flush()
            assert reporter.counts() == {"kafka_replay_failed": 1}
            assert sink.stats()["replay_errors"] == 1
            assert sink.spool.size == size
        finally:
            sink.close()
        assert sink.stats()["replay_errors"] == 2, "close() made a last pass, and it failed too"
        assert sink.spool.size == size

    def test_a_failed_send_is_reported_and_spooled(self, tmp_path):
        """A batch the broker does not take goes to the spool, and the failure is told."""
        keep = MemorySink()
        with predlog.PredictionLogger(sinks=[keep], install_signal_handlers=False) as log:
            for i in range(3):
                log.log(request_id=f"s-{i}", score=0.1)
        batch = pa.RecordBatch.from_pylist(keep.records, schema=predlog.arrow_schema())
        sink = KafkaSink(
            bootstrap_servers=closed_port(),
            topic="t",
            spool_dir=tmp_path / "spool",
            retry_interval_s=600,
        )
        try:
            sink.export(batch)
            assert sink.stats()["spooled"] == 3
            assert sink.reporter.counts() == {"kafka_send_failed": 1}
        finally:
            sink.close()

    def test_while_spooling_a_batch_is_encoded_and_written_a_slice_at_a_time(
        self, tmp_path, monkeypatch
    ):
        """With the broker away, a large batch never exists whole as messages: it is
        encoded a slice at a time, each slice written before the next is made, and every
        record lands in the spool, in order, as the message it would have been."""
        batch = a_batch(3000, "sl")
        sink = KafkaSink(
            bootstrap_servers=closed_port(),
            topic="t",
            spool_dir=tmp_path / "spool",
            retry_interval_s=600,
        )
        encoded: list[tuple[int, int]] = []
        real_encode = _wire.encode

        def encode(part: pa.RecordBatch) -> list:
            on_disk = sum(s.stat().st_size for s in sink.spool.segments())
            encoded.append((part.num_rows, on_disk))
            return real_encode(part)

        try:
            sink.export(batch.slice(0, 10))  # the send fails: from now on, spooling
            monkeypatch.setattr(_wire, "encode", encode)
            sink.export(batch)
            assert sink.stats()["spooled"] == 3010
            assert max(rows for rows, _ in encoded) <= 512 and sum(r for r, _ in encoded) == 3000
            sizes = [size for _, size in encoded]
            assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), (
                "each slice is on disk before the next one is made"
            )
            spool = sink.spool
            entries = [e for seg in spool.segments() for e in spool.read(seg)]
            messages, bad = _spooled.unpack(entries)
            assert bad == 0
            assert messages == real_encode(batch.slice(0, 10)) + real_encode(batch)
        finally:
            sink.close()

    def test_a_batch_the_spool_cannot_hold_is_refused_whole(self, tmp_path):
        """When the spool fills part way through a batch, none of the batch stays in it:
        the whole batch is refused and counted, so no record is both counted failed and
        replayed later."""
        sink = KafkaSink(
            bootstrap_servers=closed_port(),
            topic="t",
            spool_dir=tmp_path / "spool",
            spool_max_bytes=600_000,
            retry_interval_s=600,
        )
        try:
            sink.export(a_batch(10, "first"))
            size = sink.spool.size
            with pytest.raises(SinkError, match="Kafka unreachable"):
                sink.export(a_batch(2000, "big"))  # a few slices fit, the rest do not
            stats = sink.stats()
            assert stats["spooled"] == 10 and stats["refused"] == 2000
            assert sink.spool.size == size == sum(s.stat().st_size for s in sink.spool.segments())
        finally:
            sink.close()

    def test_flush_after_close_returns(self, tmp_path):
        """A closed sink has no replayer to ask: flush() returns instead of waiting."""
        left_in_spool(tmp_path / "spool", 5, prefix="c", per_segment=5)
        sink = KafkaSink(
            bootstrap_servers=closed_port(),
            topic="t",
            spool_dir=tmp_path / "spool",
            retry_interval_s=600,
        )
        sink.close()
        started = time.monotonic()
        sink.flush()
        assert time.monotonic() - started < 1
        sink.close()


@pytest.mark.integration
class TestOrphanedSpools:
    def test_spools_of_gone_processes_are_replayed_once_and_removed(self, tmp_path):
        """Spools left by a process that died and by a sink that closed are adopted by a
        new sink beside them: every record reaches the topic exactly once and their
        directories go. A sibling held by a live sink is left alone."""
        bootstrap, topic = kafka_bootstrap(), fresh_topic("orphans")
        root = tmp_path / "spool"
        live = KafkaSink(
            bootstrap_servers=closed_port(),
            topic=topic,
            spool_dir=root / "1003",
            delivery_timeout_s=1,
            retry_interval_s=600,
        )
        live.export(a_batch(20, "live"))
        assert live.stats()["spooled"] == 20
        closed = left_in_spool(root / "1001", 300, prefix="closed", per_segment=50, exclusive=True)
        died = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, sys\n"
                "from pathlib import Path\n"
                "from tests.test_kafka import left_in_spool\n"
                "left_in_spool(Path(sys.argv[1]), 400, prefix='died', per_segment=50,"
                " exclusive=True, release=False)\n"
                "os._exit(0)\n",
                str(root / "1002"),
            ],
            env=child_env(PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert died.returncode == 0, died.stderr
        died_keys = {f"died-{i}" for i in range(400)}

        sink = KafkaSink(
            bootstrap_servers=bootstrap,
            topic=topic,
            spool_dir=root / "2000",
            retry_interval_s=600,  # only flush() starts a pass
        )
        sink.flush()
        stats = sink.stats()
        sink.close()
        live_spool_bytes = live.spool.size
        live.close()

        left = sorted(p.name for p in root.iterdir())
        assert left == ["1003"], "the orphans (and the new sink's empty spool) are removed"
        assert live_spool_bytes > 0 and len(live.spool.segments()) >= 1
        assert stats["adopted"] == 2 and stats["replayed"] == 700
        assert stats["replay_errors"] == 0 and stats["adopted_bytes"] == 0
        counts = topic_keys(bootstrap, topic)
        assert set(counts) == closed | died_keys, "the live sink's records stay its own"
        assert set(counts.values()) == {1}


class TestAdoptionWhileTheBrokerIsAway:
    def test_orphans_are_held_until_sent_and_let_go_at_close(self, tmp_path):
        """A sink adopts, when it opens, the spools of gone owners beside it, never a
        live one's; an empty one is removed at once, the others stay whole and locked
        by it while the broker is away, and close() lets them go for the next owner."""
        root = tmp_path / "spool"
        left_in_spool(root / "1", 10, prefix="o", per_segment=5, exclusive=True)
        Spool(root / "2", max_bytes=1 << 20, exclusive=True).close()
        live = Spool(root / "3", max_bytes=1 << 20, exclusive=True)
        live.append([(b"k", b"live")])
        sink = KafkaSink(
            bootstrap_servers=closed_port(),
            topic="t",
            spool_dir=root / "4",
            delivery_timeout_s=1,
            retry_interval_s=600,
        )
        assert sink.stats()["adopted"] == 0
        sink.open()
        try:
            assert sink.stats()["adopted"] == 2
            with pytest.raises(SpoolLockedError):
                Spool(root / "1", max_bytes=1 << 20, exclusive=True)
            sink.flush()
            assert not (root / "2").exists(), "an empty orphan needs no broker to go"
            assert sink.stats()["adopted_bytes"] > 0
            assert sink.reporter.counts() == {"kafka_replay_failed": 1}
        finally:
            sink.close()
        assert sorted(p.name for p in root.iterdir()) == ["1", "3"]
        orphan = Spool(root / "1", max_bytes=1 << 20, exclusive=True)
        assert sum(1 for seg in orphan.segments() for _ in orphan.read(seg)) == 10
        orphan.close()
        assert [v for seg in live.segments() for _, v in live.read(seg)] == [b"live"]
        live.close()


class TestKafkaSinkOptions:
    @pytest.mark.parametrize(
        ("option", "value", "message"),
        [
            ("bootstrap_servers", "", "must name at least one broker"),
            ("topic", "", "must be a topic name"),
            ("spool_max_bytes", 0, "must be positive, got 0"),
            ("spool_max_bytes", 1.5, "must be an integer, got 1.5"),
            ("delivery_timeout_s", 0, "must be > 0, got 0"),
            ("delivery_timeout_s", float("inf"), "must be a finite number >= 0, got inf"),
            ("retry_interval_s", -1.0, "must be positive, got -1.0"),
        ],
    )
    def test_bad_arguments_raise_config_error(self, tmp_path, option, value, message):
        """A bad argument is a ConfigError naming it (still a ValueError), and nothing
        is started or made for it."""
        options = {"bootstrap_servers": closed_port(), "topic": "t", option: value}
        with pytest.raises(ConfigError, match=rf"^{option}: {re.escape(message)}") as caught:
            KafkaSink(spool_dir=tmp_path / "spool", **options)
        assert caught.value.setting == option
        assert isinstance(caught.value, ValueError)
        assert not (tmp_path / "spool").exists()


class TestLifecycle:
    def test_the_constructor_makes_nothing_and_open_starts_once(self, tmp_path):
        """A KafkaSink made is only checked: no spool directory, no thread. open() claims
        the spool and starts one loop thread, once; close() stops it, safe twice."""
        spool_dir = tmp_path / "spool"
        before = set(threading.enumerate())
        sink = KafkaSink(
            bootstrap_servers=closed_port(), topic="t", spool_dir=spool_dir, retry_interval_s=600
        )
        assert not spool_dir.exists()
        assert set(threading.enumerate()) - before == set()
        sink.open()
        sink.open()
        (loop,) = (t for t in set(threading.enumerate()) - before if t.name == "predlog-kafka")
        with pytest.raises(SpoolLockedError):
            Spool(spool_dir, max_bytes=1 << 20, exclusive=True)
        sink.close()
        sink.close()
        assert not loop.is_alive()
        assert not spool_dir.exists(), "an empty spool is removed at close"

    def test_a_sink_never_opened_closes_and_flushes_to_nothing(self, tmp_path):
        """close() of a sink never opened makes and starts nothing; flush() after it
        returns; export() after it is refused."""
        sink = KafkaSink(bootstrap_servers=closed_port(), topic="t", spool_dir=tmp_path / "s")
        sink.close()
        sink.close()
        sink.flush()
        assert sink.stats()["spool_bytes"] == 0
        with pytest.raises(SinkError, match="closed"):
            sink.export(a_batch(1, "late"))
        assert not (tmp_path / "s").exists()

    def test_a_spool_that_cannot_be_had_refuses_the_start(self, tmp_path):
        """A spool directory that cannot be made is a ConfigError naming spool_dir, at
        open(): the logger does not start."""
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        sink = KafkaSink(bootstrap_servers=closed_port(), topic="t", spool_dir=blocker / "spool")
        with pytest.raises(ConfigError, match=r"^spool_dir: no Kafka spool can be had"):
            predlog.PredictionLogger(sinks=[sink], install_signal_handlers=False)


class TestOwnLoop:
    def test_tasks_on_the_sink_loop_run_with_instrumentation_suppressed(self, tmp_path):
        """Whoever hands the sink's loop a coroutine, it runs with OpenTelemetry's
        suppression set, under the API's key and the plain string key."""
        from opentelemetry import context
        from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY

        async def suppression() -> tuple[object, object]:
            return (
                context.get_value(_SUPPRESS_INSTRUMENTATION_KEY),
                context.get_value("suppress_instrumentation"),
            )

        sink = KafkaSink(
            bootstrap_servers=closed_port(),
            topic="t",
            spool_dir=tmp_path / "spool",
            retry_interval_s=600,
        )
        sink.open()
        try:
            assert context.get_value(_SUPPRESS_INSTRUMENTATION_KEY) is None
            assert sink._loop.run(suppression(), timeout=5) == (True, True)
            seen: list[tuple[object, object]] = []
            done = threading.Event()

            def in_a_callback() -> None:
                seen.append(
                    (
                        context.get_value(_SUPPRESS_INSTRUMENTATION_KEY),
                        context.get_value("suppress_instrumentation"),
                    )
                )
                done.set()

            sink._loop.call_soon(in_a_callback)
            assert done.wait(5)
            assert seen[-1] == (True, True)
        finally:
            sink.close()


class TestCloseBudget:
    def test_close_is_bounded_and_keeps_what_it_did_not_send(self, tmp_path, monkeypatch):
        """With a last pass that never finishes and a producer that never stops, close()
        gives the pass delivery_timeout_s and the stop 2 s, then returns; the records
        stay in the spool, whose lock is released for the next owner."""
        import asyncio

        left_in_spool(tmp_path / "spool", 30, prefix="b", per_segment=10)
        delivery = 4.0
        sink = KafkaSink(
            bootstrap_servers=closed_port(),
            topic="t",
            spool_dir=tmp_path / "spool",
            delivery_timeout_s=delivery,
            retry_interval_s=600,
        )
        size = sink.spool.size
        lasted: dict[str, float] = {}

        async def forever(name: str) -> None:
            started = time.monotonic()
            try:
                await asyncio.sleep(3600)
            finally:
                lasted[name] = time.monotonic() - started

        class StuckProducer:
            async def stop(self) -> None:
                await forever("stop")

        async def send_forever(entries: object) -> None:
            await forever("send")

        monkeypatch.setattr(sink, "_send", send_forever)
        sink._producer = StuckProducer()
        started = time.monotonic()
        sink.close()
        took = time.monotonic() - started

        assert lasted["send"] < delivery + 0.5, "the last pass gets delivery_timeout_s"
        assert lasted["stop"] < 3, "the producer gets 2 s to stop"
        assert took < delivery + 3, f"close took {took:.1f} s"
        assert sink.spool.size == size
        kinds = sink.reporter.counts()
        assert kinds["kafka_replay_failed"] == 1 and kinds["kafka_close_failed"] == 1
        after = Spool(tmp_path / "spool", max_bytes=1 << 30, exclusive=True)
        assert sum(1 for seg in after.segments() for _ in after.read(seg)) == 30
        after.close()


class TestFork:
    def test_a_forked_child_sends_on_its_own_loop_into_its_own_spool(self, tmp_path):
        """After fork() and the sink's fork hook (the logger's flusher calls it), the
        child's export neither hangs nor touches the parent's spool: it spools to
        spool/<child pid>, beside the parent's, which stays locked."""
        root = tmp_path / "spool"
        parent_dir = root / str(os.getpid())
        sink = KafkaSink(
            bootstrap_servers=closed_port(),
            topic="t",
            spool_dir=parent_dir,
            delivery_timeout_s=1,
            retry_interval_s=600,
        )
        batch = a_batch(7, "f")
        sink.open()
        try:
            pid = os.fork()
            if pid == 0:  # the child: report what it saw in its exit status, and go
                code = 99
                try:
                    sink.after_fork_in_child()
                    code = _child_exports(sink, batch, root, parent_dir)
                finally:
                    os._exit(code)
            status = _wait_for(pid, timeout=60)
            assert status == 0, _FORK_FAILURES.get(status, f"child exit status {status}")
            child_dir = root / str(pid)
            assert len(list(child_dir.glob("*.seg"))) >= 1
            with pytest.raises(SpoolLockedError):
                Spool(parent_dir, max_bytes=1 << 20, exclusive=True)
            child_spool = Spool(child_dir, max_bytes=1 << 20, exclusive=True)
            keys = [k for seg in child_spool.segments() for k, _ in child_spool.read(seg)]
            assert keys == [f"f-{i}".encode() for i in range(7)]
            child_spool.close()
            assert not list(parent_dir.glob("*.seg"))
            sink.export(batch)
            assert sink.stats()["spooled"] == 7, "the parent's sink still works"
        finally:
            sink.close()


_FORK_FAILURES = {
    1: "the child's spool is not spool/<child pid>",
    2: "the child did not spool its batch",
    3: "the child wrote into the parent's spool",
    4: "the child's export raised (or hung until its timeout)",
    5: "the child's export took too long",
}


def _child_exports(sink: KafkaSink, batch: pa.RecordBatch, root: Path, parent_dir: Path) -> int:
    """In a forked child: export a batch; 0 if it went to the child's own spool, at once."""
    started = time.monotonic()
    try:
        sink.export(batch)
    except Exception:  # noqa: BLE001  # the status code is the report
        return 4
    if time.monotonic() - started > 8:
        return 5
    if sink.spool.directory != root / str(os.getpid()):
        return 1
    if sink.stats()["spooled"] != batch.num_rows or not sink.spool.segments():
        return 2
    if list(parent_dir.glob("*.seg")):
        return 3
    return 0


def _wait_for(pid: int, *, timeout: float) -> int:
    """The exit status of child ``pid``; kills it (and fails) if it outlives ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {timeout} s")


def a_batch(n: int, prefix: str) -> pa.RecordBatch:
    """``n`` prediction records with request ids ``<prefix>-<i>``."""
    keep = MemorySink()
    with predlog.PredictionLogger(sinks=[keep], install_signal_handlers=False) as log:
        for i in range(n):
            log.log(request_id=f"{prefix}-{i}", score=0.1)
    return pa.RecordBatch.from_pylist(keep.records, schema=predlog.arrow_schema())


def a_consumed_batch(**offsets: range) -> Batch:
    """A batch of messages at ``offsets`` per partition (``p0=range(10)``)."""
    batch = Batch()
    for name, span in offsets.items():
        messages = [SimpleNamespace(offset=o, value=b"v") for o in span]
        batch.add(int(name.removeprefix("p")), messages)
    return batch


class TestConsumerLoop:
    """The loop's side of the destination seam, on a consumer that needs no broker."""

    class _Consumer:
        def __init__(self, assigned: set[int], highwater: dict[int, int]) -> None:
            self._assigned = {TopicPartition("t", p) for p in assigned}
            self._highwater = highwater
            self.refuse_commits = False
            self.commits: list[dict[int, int]] = []
            self.seeks: dict[int, int] = {}

        def assignment(self) -> set[TopicPartition]:
            return self._assigned

        def highwater(self, tp: TopicPartition) -> int | None:
            return self._highwater.get(tp.partition)

        async def commit(self, offsets: dict) -> None:
            if self.refuse_commits:
                raise RuntimeError("the group is rebalancing")
            self.commits.append({tp.partition: o.offset for tp, o in offsets.items()})

        async def committed(self, tp: TopicPartition) -> int:
            return 5

        def seek(self, tp: TopicPartition, offset: int) -> None:
            self.seeks[tp.partition] = offset

        async def seek_to_beginning(self, tp: TopicPartition) -> None:
            self.seeks[tp.partition] = 0

    class _Destination:
        def __init__(self, *, keeps_offsets: bool, accept: bool = True) -> None:
            self.keeps_offsets, self.accept = keeps_offsets, accept
            self.own = {0: 3}
            self.stored: list[dict[int, int]] = []

        def open(self, consumer, *, topic: str, group: str) -> None:
            pass

        async def continues_at(self, partitions: list[int]) -> dict[int, int]:
            return {p: self.own[p] for p in partitions if p in self.own}

        def revoked(self, partitions: list[int]) -> None:
            pass

        async def store(self, batch: Batch, stats: ConsumerStats) -> bool:
            self.stored.append(dict(batch.end))
            return self.accept

        def close(self) -> None:
            pass

    def test_each_batch_is_stored_then_committed_and_reported_with_the_lag(self):
        """A batch's offsets go to the group only after the destination stored it; each
        commit is counted and told to on_commit with the lag: high-water mark past the
        commit, over assigned partitions the broker has reported on."""
        consumer = self._Consumer({0, 1}, {0: 12})
        destination = self._Destination(keeps_offsets=False)
        told = []
        loop = ConsumerLoop(
            consumer,
            destination,
            topic="t",
            on_commit=lambda stats, lag: told.append((stats.commits, lag, list(consumer.commits))),
        )
        asyncio.run(loop.deliver(a_consumed_batch(p0=range(10), p1=range(3))))
        asyncio.run(loop.deliver(a_consumed_batch(p0=range(10, 12))))
        assert destination.stored == [{0: 10, 1: 3}, {0: 12}]
        assert told == [
            (1, 2, [{0: 10, 1: 3}]),
            (2, 0, [{0: 10, 1: 3}, {0: 12}]),
        ]
        assert loop.stats.consumed == 15

    @pytest.mark.parametrize("keeps_offsets", [False, True])
    def test_a_group_commit_refused_counts_only_where_the_offsets_live(self, keeps_offsets):
        """When the group refuses a commit, the batch is a commit only for a destination
        that keeps the offsets with the data (the table); for the Parquet layout nothing
        was committed where it resumes from."""
        consumer = self._Consumer({0}, {0: 10})
        consumer.refuse_commits = True
        loop = ConsumerLoop(consumer, self._Destination(keeps_offsets=keeps_offsets), topic="t")
        asyncio.run(loop.deliver(a_consumed_batch(p0=range(10))))
        assert loop.stats.commits == (1 if keeps_offsets else 0)

    def test_a_refused_batch_commits_nothing_and_every_partition_is_sought_again(self):
        """A batch the destination refuses is never committed to the group; the loop
        drops what it holds and seeks each assigned partition to where the destination
        continues, else to the group's committed offset."""
        consumer = self._Consumer({0, 1}, {0: 10})
        loop = ConsumerLoop(
            consumer, self._Destination(keeps_offsets=True, accept=False), topic="t"
        )
        asyncio.run(loop.deliver(a_consumed_batch(p0=range(4, 10))))
        assert (consumer.commits, loop.stats.commits) == ([], 0)
        assert consumer.seeks == {0: 3, 1: 5}
        assert loop.moved

    def test_a_revocation_during_a_store_waits_for_it(self):
        """A rebalance that revokes partitions while a batch is being stored reaches the
        destination after the store: the table forgets where the revoked partitions end
        after the batch's commit has set it, so none of its later commits writes an old
        offset over the new owner's (which would have the new owner read, and commit,
        those records again)."""
        events: list[str] = []

        class Destination(self._Destination):
            async def store(self, batch: Batch, stats: ConsumerStats) -> bool:
                events.append("store begins")
                await release.wait()
                events.append("store ends")
                return True

            def revoked(self, partitions: list[int]) -> None:
                events.append(f"revoked {partitions}")

        async def run() -> None:
            loop = ConsumerLoop(
                self._Consumer({0, 1}, {}), Destination(keeps_offsets=True), topic="t"
            )
            storing = asyncio.create_task(loop.deliver(a_consumed_batch(p0=range(3))))
            await asyncio.sleep(0)
            revoking = asyncio.create_task(
                loop.on_partitions_revoked([TopicPartition("t", 0), TopicPartition("t", 1)])
            )
            await asyncio.sleep(0)
            release.set()
            await asyncio.gather(storing, revoking)
            assert loop.moved

        release = asyncio.Event()
        asyncio.run(run())
        assert events == ["store begins", "store ends", "revoked [0, 1]"]


def metric_values(text: str, topic: str) -> dict[str, float]:
    """The sink consumer's series for ``topic`` from a Prometheus text exposition."""
    values = {}
    for line in text.splitlines():
        match = re.fullmatch(r"predlog_sink_consumer_(\w+)\{(.*)\} (\S+)", line)
        if match and f'topic="{topic}"' in match.group(2):
            outcome = re.search(r'outcome="(\w+)"', match.group(2))
            name = match.group(1) + (f":{outcome.group(1)}" if outcome else "")
            values[name] = float(match.group(3))
    return values


@pytest.mark.integration
class TestConsumerMetrics:
    def test_metrics_port_shows_the_consumer_at_work(self, tmp_path):
        """While `predlog sink --metrics-port` consumes a real topic, /metrics shows what it
        consumed, wrote, dropped as duplicate, published and committed, and its lag."""
        import urllib.request

        from services.bentoserve import free_port

        bootstrap, topic = kafka_bootstrap(), fresh_topic("metrics")
        batch = a_batch(300, "m")
        sink = KafkaSink(bootstrap_servers=bootstrap, topic=topic, spool_dir=tmp_path / "spool")
        sink.export(batch)
        sink.export(batch.slice(0, 100))
        sink.close()
        port = free_port()
        argv = [sys.executable, "-m", "predlog", "sink", "--bootstrap", bootstrap]
        argv += ["--topic", topic, "--data", str(tmp_path / "data"), "--group", f"g-{topic}"]
        argv += ["--exit-when-idle", "30", "--max-wait", "1", "--metrics-port", str(port)]
        argv += ["-o", "json"]
        proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, text=True)
        try:
            values: dict[str, float] = {}
            deadline = time.monotonic() + 60
            while values.get("records_consumed_total") != 400 and time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    url = f"http://127.0.0.1:{port}/metrics"
                    with urllib.request.urlopen(url, timeout=5) as response:
                        values = metric_values(response.read().decode(), topic)
                except OSError:
                    assert proc.poll() is None, "predlog sink exited before it was scraped"
            time.sleep(0.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                values = metric_values(response.read().decode(), topic)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        assert values["records_consumed_total"] == 400, values
        assert values["records_total:written"] == 300
        assert values["records_total:duplicate"] == 100
        assert values["records_total:undecodable"] == 0
        assert values["files_published_total"] >= 1
        assert values["commits_total"] >= 1
        assert values["lag_records"] == 0
        assert values["last_commit_timestamp_seconds"] > time.time() - 120
        stats = json.loads(out.strip().splitlines()[-1])
        assert (stats["consumed"], stats["written"]) == (400, 300)
        assert stats["commits"] == values["commits_total"]


# -- messages other tools read: timestamp, CloudEvents, traceparent -------------------

#: Long before any test runs, so a timestamp taken at sending or replay cannot pass for it.
PREDICTED_AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def timed_batch(n: int, prefix: str, *, model: str = "fraud detector/v2") -> pa.RecordBatch:
    """``n`` records predicted at known times in the past; even ones carry a trace."""
    keep = MemorySink()
    with predlog.PredictionLogger(
        sinks=[keep], model_name=model, install_signal_handlers=False
    ) as log:
        for i in range(n):
            trace = {"trace_id": f"{i + 1:032x}", "span_id": f"{i + 1:016x}"} if i % 2 == 0 else {}
            log.log(
                request_id=f"{prefix}-{i}",
                score=0.5,
                timestamp=PREDICTED_AT + timedelta(milliseconds=7 * i),
                **trace,
            )
    return pa.RecordBatch.from_pylist(keep.records, schema=predlog.arrow_schema())


def expected_message(value: bytes) -> tuple[int, dict[str, str]]:
    """The timestamp (ms) and headers the documented format gives a record."""
    record = json.loads(value)
    stamp = datetime.fromisoformat(record["timestamp_utc"])
    headers = {
        "predlog-schema-version": "1",
        "content-type": "application/json",
        "ce_specversion": "1.0",
        "ce_id": record["prediction_id"],
        "ce_source": "predlog/" + quote(record["model_name"], safe=""),
        "ce_type": "dev.predlog.prediction.v1",
        "ce_time": record["timestamp_utc"],
    }
    if record["trace_id"] is not None:
        headers["traceparent"] = f"00-{record['trace_id']}-{record['span_id']}-01"
    return (stamp - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1), headers


class TestMessageFormat:
    def test_timestamp_and_headers_are_the_predictions(self):
        batch = timed_batch(6, "m")
        messages = _wire.encode(batch)
        for i, (key, value, stamp, headers) in enumerate(messages):
            assert key == f"m-{i}".encode()
            assert stamp == 1767323045678 + 7 * i  # PREDICTED_AT, in ms
            as_dict = {name: v.decode() for name, v in headers}
            assert len(as_dict) == len(headers), "no header twice"
            assert (stamp, as_dict) == expected_message(value)
            assert as_dict["ce_source"] == "predlog/fraud%20detector%2Fv2"
            assert ("traceparent" in as_dict) == (i % 2 == 0)
        assert dict(messages[2][3])["traceparent"] == (f"00-{'3':0>32}-{'3':0>16}-01".encode())
        assert list(messages[0][3])[:2] == _wire.HEADERS, "the format's own headers first"

    def test_the_producers_messages_are_the_formats(self):
        """What the producer appends (one headers list, rewritten per record) is, record
        by record, what encode() gives, traced and untraced records mixed; and so is any
        part of them."""
        batch = timed_batch(9, "p")
        columns = _wire.messages(batch)
        appended = [(k, v, t, list(h)) for k, v, t, h in columns.each()]
        for i, (key, value, stamp, headers) in enumerate(appended):
            assert key == f"p-{i}".encode()
            as_dict = {name: v.decode() for name, v in headers}
            assert len(as_dict) == len(headers), "no header twice"
            assert (stamp, as_dict) == expected_message(value)
            assert headers[:2] == _wire.HEADERS
        assert appended == _wire.encode(batch) == list(columns)
        assert list(columns.part(3, 7)) == appended[3:7]
        assert len(columns) == 9

    def test_a_batchs_messages_leave_no_container_per_record(self):
        """The messages the producer sends from hold no tuple or list per record (the
        collector would pass over every one, and everything the process holds, while
        the batch grows): the objects it tracks do not grow with the batch."""
        batch = timed_batch(2000, "g")
        collecting = gc.isenabled()
        gc.disable()
        try:
            gc.collect()
            before = len(gc.get_objects())
            columns = _wire.messages(batch)
            held = len(gc.get_objects()) - before
            sent = sum(1 for _ in columns.each())
        finally:
            if collecting:
                gc.enable()
        assert sent == 2000
        assert held < 100, f"{held} objects tracked for 2,000 records"

    @pytest.mark.parametrize(
        ("trace_id", "span_id"),
        [
            ("A" * 32, "b" * 16),  # W3C ids are lowercase
            ("a" * 31, "b" * 16),
            ("a" * 32, "b" * 17),
            ("0" * 32, "b" * 16),  # all zeros: invalid
            ("a" * 32, "0" * 16),
            ("a" * 32, None),
            ("g" * 32, "b" * 16),
            ("a" * 15 + "-" + "a" * 16, "b" * 16),
        ],
    )
    def test_no_traceparent_for_ids_w3c_refuses(self, trace_id, span_id):
        keep = MemorySink()
        with predlog.PredictionLogger(sinks=[keep], install_signal_handlers=False) as log:
            log.log(request_id="bad", trace_id=trace_id, span_id=span_id)
            log.log(request_id="good", trace_id="a" * 32, span_id="b" * 16)
        batch = pa.RecordBatch.from_pylist(keep.records, schema=predlog.arrow_schema())
        (_, bad_value, _, bad), (_, good_value, _, good) = _wire.encode(batch)
        assert "traceparent" not in dict(bad)
        assert dict(good)["traceparent"] == f"00-{'a' * 32}-{'b' * 16}-01".encode()
        # The one-record path (old spool entries) draws the same line.
        for key, value, headers in ((b"bad", bad_value, bad), (b"good", good_value, good)):
            assert _spooled.unpack([(key, value)])[0][0][3] == headers

    def test_spooled_messages_keep_timestamp_and_headers(self):
        messages = _wire.encode(timed_batch(5, "s"))
        entries = _spooled.pack(messages)
        assert all(value.startswith(_spooled.MAGIC) for _, value in entries)
        back, bad = _spooled.unpack(entries)
        assert bad == 0
        assert [(k, v, t, list(h)) for k, v, t, h in back] == [
            (k, v, t, list(h)) for k, v, t, h in messages
        ]
        assert _spooled.unpack(_spooled.pack([(b"k", b"v", None, [])])) == (
            [(b"k", b"v", None, [])],
            0,
        )

    def test_entries_of_the_old_format_are_rebuilt_from_their_records(self, tmp_path):
        """A segment written before entries kept timestamp and headers (the value alone,
        as spools of earlier versions hold) replays as the message it would be now."""
        messages = _wire.encode(timed_batch(8, "old"))
        spool = Spool(tmp_path / "old", max_bytes=1 << 20)
        spool.append([(key, value) for key, value, _, _ in messages])
        (segment,) = spool.segments()
        raw = segment.read_bytes()
        # The old layout exactly: length | crc32 | key length | key | the JSON value.
        length, _ = struct.unpack_from("<II", raw)
        assert raw[8:10] == struct.pack("<H", 5) and raw[10:15] == b"old-0"
        assert raw[15 : 8 + length] == messages[0][1] and raw[15:16] == b"{"
        back, bad = _spooled.unpack(spool.read(segment))
        assert bad == 0
        assert [(k, v, t, list(h)) for k, v, t, h in back] == [
            (k, v, t, list(h)) for k, v, t, h in messages
        ]

    def test_an_old_entry_that_is_no_record_goes_as_it_went(self):
        back, bad = _spooled.unpack([(b"k", b"not json"), (b"k", b'{"timestamp_utc": 1}')])
        assert bad == 0
        assert back == [
            (b"k", b"not json", None, list(_wire.HEADERS)),
            (b"k", b'{"timestamp_utc": 1}', None, list(_wire.HEADERS)),
        ]

    def test_a_malformed_new_entry_is_counted_and_left_out(self):
        (good,) = _spooled.pack(_wire.encode(timed_batch(1, "g")))
        torn = (b"t", good[1][:20])  # header count says more than there is
        back, bad = _spooled.unpack([torn, good])
        assert bad == 1 and [m[0] for m in back] == [b"g-0"]


def kcat_messages(bootstrap: str, topic: str) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """Per key: the message timestamp (ms), headers and value, as kcat reads them."""
    out = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-u", "-f", "%k\t%T\t%h\t%s\n"],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        if not line:
            continue
        key, stamp, headers, value = line.split(b"\t", 3)
        pairs = [h.decode().partition("=") for h in headers.split(b",")]
        found[key.decode()] = (int(stamp), {name: v for name, _, v in pairs}, value)
    return found


@pytest.mark.integration
class TestMessagesOtherToolsRead:
    def test_kcat_sees_the_predictions_time_and_headers_also_after_the_spool(self, tmp_path):
        """Sent at once, spooled while the broker was unreachable and replayed by the sink
        that adopted the spool, or left by an earlier version in the old spool format:
        kcat reads each message with the prediction's time and its CloudEvents and
        traceparent headers, and `predlog sink` still turns them into Parquet."""
        bootstrap, topic = kafka_bootstrap(), fresh_topic("cloudevents")
        direct = KafkaSink(bootstrap_servers=bootstrap, topic=topic, spool_dir=tmp_path / "d")
        direct.export(timed_batch(10, "direct"))
        assert direct.stats()["sent"] == 10
        direct.close()

        root = tmp_path / "spool"
        away = KafkaSink(
            bootstrap_servers=closed_port(),
            topic=topic,
            spool_dir=root / "away",
            delivery_timeout_s=1,
            retry_interval_s=600,
        )
        away.export(timed_batch(10, "spooled"))
        assert away.stats()["spooled"] == 10
        away.close()  # the broker is still unreachable: the records stay in its spool
        legacy = Spool(root / "legacy", max_bytes=1 << 20, exclusive=True)
        legacy.append([(k, v) for k, v, _, _ in _wire.encode(timed_batch(10, "legacy"))])
        legacy.close()

        started = time.time()
        sink = KafkaSink(
            bootstrap_servers=bootstrap,
            topic=topic,
            spool_dir=root / "new",
            retry_interval_s=600,  # only flush() starts a pass
        )
        sink.flush()
        stats = sink.stats()
        sink.close()
        assert (stats["adopted"], stats["replayed"], stats["replay_errors"]) == (2, 20, 0)

        found = kcat_messages(bootstrap, topic)
        assert set(found) == {
            f"{p}-{i}" for p in ("direct", "spooled", "legacy") for i in range(10)
        }
        for key, (stamp, headers, value) in found.items():
            i = int(key.rsplit("-", 1)[1])
            assert stamp == 1767323045678 + 7 * i, f"{key}: the prediction's time"
            assert stamp < started * 1000 - 86_400_000, f"{key}: not the time of replay"
            assert (stamp, headers) == expected_message(value), key
            assert ("traceparent" in headers) == (i % 2 == 0), key

        consumed = sink_to_parquet(bootstrap, topic, tmp_path / "data", group=f"g-{topic}")
        assert (consumed["consumed"], consumed["undecodable"], consumed["written"]) == (30, 0, 30)
