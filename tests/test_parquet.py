from __future__ import annotations

import gc
import itertools
import os
import re
import subprocess
import time
import warnings
from datetime import datetime, timezone
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import predlog
from predlog import ParquetSink, SinkError, arrow_schema
from predlog.sinks import _parquet as parquet_module
from predlog.testing import build_batch
from tests.helpers import drop, parquet_files, read_all, start_python


def logger(data_dir, **kwargs):
    kwargs.setdefault("install_signal_handlers", False)
    return predlog.PredictionLogger(data_dir=str(data_dir), **kwargs)


class TestLayout:
    def test_files_are_partitioned_by_prediction_date(self, data_dir):
        """Records land under date=YYYY-MM-DD of their own UTC timestamp."""
        with logger(data_dir) as log:
            log.log(
                request_id="a",
                score=0.1,
                timestamp=datetime(2025, 12, 31, 23, 59, 59, 999_000, tzinfo=timezone.utc),
            )
            log.log(
                request_id="b",
                score=0.1,
                timestamp=datetime(2026, 1, 1, 0, 0, 0, tzinfo=timezone.utc),
            )
        by_dir = {
            f.parent.name: pq.read_table(f).column("request_id").to_pylist()
            for f in parquet_files(data_dir)
        }
        assert by_dir == {"date=2025-12-31": ["a"], "date=2026-01-01": ["b"]}

    def test_file_names_carry_host_and_pid(self, data_dir):
        """A file name says which process wrote it, so workers never collide."""
        with logger(data_dir) as log:
            log.log(request_id="a", score=0.1)
        (path,) = parquet_files(data_dir)
        assert f"-{os.getpid()}-" in path.name
        assert path.name.startswith("part-") and path.suffix == ".parquet"

    def test_data_dir_from_environment(self, tmp_path, monkeypatch):
        """PREDLOG_DATA_DIR chooses where the default Parquet sink writes."""
        target = tmp_path / "from-env"
        monkeypatch.setenv("PREDLOG_DATA_DIR", str(target))
        with predlog.PredictionLogger(install_signal_handlers=False) as log:
            log.log(request_id="a", score=0.1)
        assert len(parquet_files(target)) == 1


class TestReadBack:
    def test_pyarrow_reads_the_declared_schema(self, data_dir):
        """pyarrow reads every column with exactly the declared type."""
        with logger(data_dir, model_name="fraud") as log:
            for i in range(100):
                log.log(
                    request_id=f"r{i}", features={"amount": i}, score=i / 100, decision="approved"
                )
        table = pq.read_table(parquet_files(data_dir)[0])
        assert table.schema.equals(arrow_schema(), check_metadata=False)
        assert table.schema.metadata[b"predlog.schema_version"] == b"1"
        assert table.num_rows == 100

    def test_duckdb_reads_it(self, data_dir):
        """DuckDB reads the files with the expected SQL types and hive partitions."""
        with logger(data_dir, model_name="fraud") as log:
            for i in range(100):
                log.log(
                    request_id=f"r{i}", features={"amount": i}, score=i / 100, user_segment="hv"
                )
        glob = str(data_dir / "predictions" / "**" / "*.parquet")
        con = duckdb.connect()
        described = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning = true)"
        )
        types = {row[0]: row[1] for row in described.fetchall()}
        assert "date" in types
        assert types["prediction_id"] == "VARCHAR"
        assert types["timestamp_utc"] == "TIMESTAMP WITH TIME ZONE"
        assert types["raw_score"] == "DOUBLE"
        assert types["data_quality"] == "VARCHAR[]"
        assert types["feature_null_count"] == "INTEGER"
        n, total, seg = con.execute(
            "SELECT count(*), sum((features->>'amount')::INT), any_value(user_segment) "
            f"FROM read_parquet('{glob}')"
        ).fetchone()
        assert (n, total, seg) == (100, sum(range(100)), "hv")


class TestPublishing:
    def test_nothing_visible_until_published(self, data_dir):
        """An open file is hidden under a temporary name; flush() publishes it whole."""
        sink = ParquetSink(data_dir)
        sink.export(build_batch([{"request_id": "a", "score": 0.1}]))
        day_dir = next((data_dir / "predictions").glob("date=*"))
        assert parquet_files(data_dir) == []
        hidden = list(day_dir.iterdir())
        assert len(hidden) == 1 and hidden[0].name.startswith(".") and hidden[0].suffix == ".tmp"
        sink.flush()
        assert len(parquet_files(data_dir)) == 1
        assert list(day_dir.glob(".*")) == []
        assert read_all(data_dir).column("request_id").to_pylist() == ["a"]
        sink.close()

    def test_rolls_by_size(self, data_dir):
        """Files roll once they pass max_file_bytes; every row is in exactly one file."""
        sink = ParquetSink(data_dir, max_file_bytes=20_000)
        for start in range(0, 5_000, 100):
            sink.export(
                build_batch(
                    {
                        "request_id": f"r{i}",
                        "features": {"amount": i, "pad": "x" * 50},
                        "score": 0.1,
                    }
                    for i in range(start, start + 100)
                )
            )
        published_before_close = len(parquet_files(data_dir))
        sink.close()
        assert published_before_close > 3
        assert len(parquet_files(data_dir)) in (published_before_close, published_before_close + 1)
        ids = read_all(data_dir).column("request_id").to_pylist()
        assert sorted(ids) == sorted(f"r{i}" for i in range(5_000))

    def test_tick_publishes_only_files_past_their_age(self, data_dir):
        """tick() publishes a file once it has been open for its age, not before: 2 s
        for the sink's first file, twice the one before for each next, then
        max_file_age_s for every file after."""
        sink = ParquetSink(data_dir, max_file_age_s=60.0)
        for n, age in enumerate([2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0], 1):
            before = time.monotonic()
            sink.export(build_batch([{"request_id": f"r{n}", "score": 0.1}]))
            after = time.monotonic()
            sink.tick(before + age - 0.01)
            assert len(parquet_files(data_dir)) == n - 1, f"file {n} published before {age} s"
            sink.tick(after + age)
            assert len(parquet_files(data_dir)) == n, f"file {n} not published at {age} s"
        sink.close()

    def test_files_stay_few_under_steady_traffic(self, data_dir, monkeypatch):
        """An hour of steady traffic at the default age: the first file is out within
        3 s, and after the ramp files roll every 300 s, so the hour makes 12 files of
        300 s plus the ramp's 8, not one per few seconds."""
        clock = [1000.0]
        monkeypatch.setattr(
            parquet_module, "time", SimpleNamespace(monotonic=lambda: clock[0], time=time.time)
        )
        sink = ParquetSink(data_dir)
        published_at = []
        for second in range(3600):
            clock[0] = 1000.0 + second
            if second % 5 == 0:
                sink.export(build_batch([{"request_id": f"r{second}", "score": 0.1}]))
            sink.tick(clock[0])
            if sink.published_count > len(published_at):
                published_at.append(second)
        sink.close()
        assert published_at[0] <= 3
        assert len(published_at) <= 12 + 8
        gaps = [b - a for a, b in itertools.pairwise(published_at)]
        # A file opens at the first export after the last was published (every 5 s).
        assert all(300 <= gap <= 305 for gap in gaps[-3:]), gaps
        assert read_all(data_dir).num_rows == 720

    def test_a_logger_with_the_default_age_shows_records_within_seconds(self, data_dir):
        """With no setting at all, the first record is in a published file within a
        few seconds (the default file age is 300 s)."""
        with logger(data_dir) as log:
            log.log(request_id="first", score=0.1)
            logged = time.monotonic()
            while not parquet_files(data_dir) and time.monotonic() - logged < 10:
                time.sleep(0.02)
            waited = time.monotonic() - logged
            assert parquet_files(data_dir), "nothing published 10 s after the first record"
            assert waited < 5.0, f"the first record took {waited:.1f} s to be visible"
            assert read_all(data_dir).column("request_id").to_pylist() == ["first"]

    def test_rolls_by_age_when_idle(self, data_dir):
        """An idle file older than max_file_age_s is published without any new traffic."""
        sink = ParquetSink(data_dir, max_file_age_s=0.2)
        log = predlog.PredictionLogger(
            sinks=[sink], flush_interval_s=0.05, install_signal_handlers=False
        )
        log.log(request_id="a", score=0.1)
        deadline = time.monotonic() + 10
        while not parquet_files(data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(parquet_files(data_dir)) == 1
        log.close()

    def test_wrong_batch_is_refused_without_harm(self, data_dir):
        """A batch with another schema raises, and the rows already written survive."""
        sink = ParquetSink(data_dir)
        sink.export(build_batch([{"request_id": "a", "score": 0.1}]))
        now = pa.array([datetime.now(timezone.utc)], pa.timestamp("us", tz="UTC"))
        wrong = pa.RecordBatch.from_pydict({"timestamp_utc": now})
        with pytest.raises(SinkError, match="schema"):
            sink.export(wrong)
        sink.close()
        assert read_all(data_dir).column("request_id").to_pylist() == ["a"]

    def test_failed_write_publishes_nothing_broken(self, data_dir, monkeypatch):
        """An I/O error mid-write abandons the file: nothing partial is published, and
        the rows it held, taken earlier and counted pending until then, count failed.
        The error is injected into pyarrow's writer (the batches built with pyarrow);
        tests/test_disk_full.py fills a real disk under the extension's."""
        sink = ParquetSink(data_dir)
        log = predlog.PredictionLogger(
            sinks=[sink], install_signal_handlers=False, flush_interval_s=0.01, native_decode=False
        )
        log.log(request_id="a", score=0.1)
        deadline = time.monotonic() + 10
        while sink.unpublished_rows == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        # In the sink's open file, but not published: pending, not delivered.
        assert sink.unpublished_rows == 1
        assert (log.stats()["delivered"], log.stats()["pending"]) == (0, 1)

        def disk_full(self, batch):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(pq.ParquetWriter, "write_batch", disk_full)
        log.log(request_id="b", score=0.1)
        log.close()
        assert parquet_files(data_dir) == []
        assert list((data_dir / "predictions").rglob(".*.tmp")) == []
        assert sink.lost_rows == 1
        stats = log.stats()
        assert (stats["delivered"], stats["failed"], stats["pending"]) == (0, 2, 0)
        assert log.sink_stats()["ParquetSink[0]"]["errors"] == {"OSError": 1}

    def test_a_new_sink_removes_dead_writers_temporary_files(self, data_dir):
        """Temporary files a killed writer on this host left are removed when a sink
        opens, not when it is made; a live writer's, a recent one's, and another host's
        (even one whose name starts like this host's) are kept."""
        day = data_dir / "predictions" / "date=2026-11-26"
        day.mkdir(parents=True)
        dead = subprocess.Popen(["true"])  # a pid that has exited
        dead.wait()
        host = ParquetSink(data_dir / "probe").host
        stamp = ".part-20261126T000000"
        names = {
            "dead": f"{stamp}-{host}-{dead.pid}-000001.parquet.tmp",
            "dead, its millionth file": f"{stamp}-{host}-{dead.pid}-1000000.parquet.tmp",
            "live": f"{stamp}-{host}-{os.getpid()}-000001.parquet.tmp",
            "recent": f"{stamp}-{host}-{dead.pid}-000002.parquet.tmp",
            "elsewhere": f"{stamp}-otherhost-{dead.pid}-000001.parquet.tmp",
            "longer name": f"{stamp}-{host}-1-{dead.pid}-000001.parquet.tmp",
        }
        old = time.time() - 3600
        for what, name in names.items():
            (day / name).write_bytes(b"PAR1")
            if what != "recent":
                os.utime(day / name, (old, old))
        sink = ParquetSink(data_dir, max_file_age_s=300)
        assert sorted(p.name for p in day.iterdir()) == sorted(names.values())
        sink.open()
        sink.open()  # once
        assert sink.swept == 2
        kept = sorted(p.name for p in day.iterdir())
        assert kept == sorted(n for what, n in names.items() if not what.startswith("dead"))
        sink.close()

    def test_a_forked_child_does_not_count_the_parents_losses(self, data_dir):
        """lost_rows are the parent's: a child's flusher starts from 0 and would otherwise
        count them failed (and take them from delivered) a second time. The flusher
        calls the hook in the child; a sink used alone calls it itself."""
        sink = ParquetSink(data_dir)
        sink.lost_rows = 3
        pid = os.fork()
        if pid == 0:
            sink.after_fork_in_child()
            os._exit(0 if sink.lost_rows == 0 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert sink.lost_rows == 3

    def test_a_long_host_name_keeps_a_tag_of_its_own(self, data_dir, monkeypatch):
        """Pods of one deployment share a long name prefix: cut to 32 characters, their
        tags would collide, and one pod's sweep would take another's files for its own."""
        pod = "fraud-scoring-service-production-7d9f8b6c5-"
        tags = set()
        for suffix in ("abcde", "fghij"):
            monkeypatch.setattr("socket.gethostname", lambda s=suffix: pod + s)
            tags.add(ParquetSink(data_dir).host)
        assert len(tags) == 2
        assert all(len(tag) <= 32 for tag in tags)

    def test_the_constructor_touches_no_file(self, tmp_path):
        """Making a sink only checks its arguments: no directory is made, and nothing is
        swept or staged, until open() or the first export."""
        data = tmp_path / "data"
        sink = ParquetSink(data)
        assert not data.exists()
        sink.export(build_batch([{"request_id": "a", "score": 0.1}]))
        assert (data / "predictions").is_dir()
        sink.close()
        assert read_all(data).column("request_id").to_pylist() == ["a"]

    def test_close_is_safe_twice_and_on_a_sink_never_opened(self, tmp_path):
        """close() twice does nothing the second time; closing (or flushing, then
        closing) a sink nobody used leaves no file behind."""
        unused = ParquetSink(tmp_path / "unused")
        unused.close()
        unused.close()
        assert not (tmp_path / "unused").exists()
        used = ParquetSink(tmp_path / "used")
        used.export(build_batch([{"request_id": "a", "score": 0.1}]))
        used.close()
        used.close()
        assert len(parquet_files(tmp_path / "used")) == 1

    def test_an_opened_sink_dropped_unclosed_warns(self, tmp_path):
        """A sink opened and collected without close() says so with a ResourceWarning
        (its open file is never published); one never opened, or closed, says nothing."""
        held = [ParquetSink(tmp_path / "opened")]
        held[0].open()
        with pytest.warns(ResourceWarning, match="unclosed .*ParquetSink"):
            drop(held)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            ParquetSink(tmp_path / "never")
            closed = ParquetSink(tmp_path / "closed")
            closed.open()
            closed.close()
            del closed
            gc.collect()

    @pytest.mark.parametrize(
        ("argument", "value", "message"),
        [
            ("max_file_bytes", 0, "must be positive, got 0"),
            ("max_file_bytes", 1.5, "must be an integer, got 1.5"),
            ("max_file_age_s", float("nan"), "must be a finite number >= 0, got nan"),
            ("max_file_age_s", 0, "must be > 0, got 0"),
            ("spool_max_bytes", -1, "must be positive, got -1"),
            ("data_dir", "ftp://host/x", "cannot write to 'ftp://host/x'"),
        ],
    )
    def test_a_bad_argument_is_refused_as_its_setting_would_be(
        self, tmp_path, argument, value, message
    ):
        """Each argument is checked by the declared check of the setting it stands for
        (parquet_max_file_bytes...), and the ConfigError names the argument."""
        options = {"data_dir": tmp_path / "data", argument: value}
        with pytest.raises(predlog.ConfigError, match=rf"^{argument}: {re.escape(message)}"):
            ParquetSink(**options)

    def test_export_after_close_is_refused(self, data_dir):
        """A closed sink raises SinkError rather than writing a file nobody will publish."""
        sink = ParquetSink(data_dir)
        sink.close()
        with pytest.raises(SinkError, match="closed"):
            sink.export(build_batch([{"request_id": "a", "score": 0.1}]))
        assert not (data_dir / "predictions").exists()


WRITER = """
import sys, predlog
log = predlog.PredictionLogger(data_dir=sys.argv[1] if len(sys.argv) > 1 else {data!r},
                               parquet_max_file_bytes=30_000, batch_size=200,
                               flush_interval_s=0.01, install_signal_handlers=False)
for i in range({n}):
    log.log(request_id="{tag}-%d" % i, features={{"i": i, "pad": "y" * 40}}, score=0.2)
log.close()
print(log.stats()["delivered"])
"""


class TestProcesses:
    def test_two_writer_processes_never_collide(self, data_dir):
        """Two processes writing one data dir concurrently produce distinct, complete files."""
        procs = [
            start_python(WRITER.format(data=str(data_dir), n=20_000, tag=tag)) for tag in ("p", "q")
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        for proc, (out, err) in zip(procs, outs, strict=True):
            assert proc.returncode == 0, err
            assert out.strip() == "20000"
        files = parquet_files(data_dir)
        assert len({f.name for f in files}) == len(files)
        pids = {f.name.split("-")[-2] for f in files}
        assert len(pids) == 2
        ids = read_all(data_dir).column("request_id").to_pylist()
        assert len(ids) == 40_000 and len(set(ids)) == 40_000
        assert list((data_dir / "predictions").rglob(".*")) == []

    def test_forked_child_writes_its_own_files(self, data_dir):
        """After fork the child logs to new files; the parent's open file is unharmed."""
        code = f"""
import os, sys, predlog
log = predlog.PredictionLogger(data_dir={str(data_dir)!r}, flush_interval_s=0.01,
                               install_signal_handlers=False)
for i in range(500):
    log.log(request_id="parent-%d" % i, score=0.2)
log.flush()
for i in range(500, 1000):
    log.log(request_id="parent-%d" % i, score=0.2)
pid = os.fork()
if pid == 0:
    for i in range(300):
        log.log(request_id="child-%d" % i, score=0.2)
    log.close()
    os._exit(0 if log.stats()["delivered"] == 300 else 3)
_, status = os.waitpid(pid, 0)
for i in range(1000, 1200):
    log.log(request_id="parent-%d" % i, score=0.2)
log.close()
sys.exit(os.waitstatus_to_exitcode(status))
"""
        proc = start_python(code)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids = read_all(data_dir).column("request_id").to_pylist()
        assert sorted(i for i in ids if i.startswith("parent")) == sorted(
            f"parent-{i}" for i in range(1200)
        )
        assert sorted(i for i in ids if i.startswith("child")) == sorted(
            f"child-{i}" for i in range(300)
        )
