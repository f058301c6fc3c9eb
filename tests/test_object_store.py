"""The Parquet layout on an object store (moto's S3 server), and the analytics reading it.

Each test module run starts its own moto server on a free port; the outage test stops
it and starts it again on the same port (moto keeps objects in memory, so the test
reads what was uploaded before stopping it, and recreates the bucket after).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import predlog
from predlog.errors import ConfigError
from predlog.storage import Location, UnreachableError, locate, probe
from predlog.testing import build_batch
from predlog.tools.analytics import Predictions, evaluate, investigate
from tests.helpers import child_env, predlog_cli, start_python
from tests.services import CREDENTIALS, Moto, closed_port, fresh_topic, kafka_bootstrap

#: A published object's key: the same layout and file name as on a local disk.
KEY = re.compile(
    r"^(?P<prefix>.+)/predictions/date=(?P<date>\d{4}-\d{2}-\d{2})/"
    r"part-\d{8}T\d{6}-(?P<host>.+)-(?P<pid>\d+)-(?P<seq>\d{6})\.parquet$"
)


JANUARY = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def store(moto: Moto, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Store:
    """A fresh bucket, and the environment that points predlog at it."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    bucket = f"predlog-{time.time_ns()}"
    client = moto.client()
    client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    return Store(moto, client, bucket, tmp_path / "spool")


class Store:
    def __init__(self, moto: Moto, client: object, bucket: str, spool: Path) -> None:
        self.moto = moto
        self.client = client
        self.bucket = bucket
        self.spool = spool
        self.url = f"s3://{bucket}/fleet/a"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child process using this store."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.moto.url, **extra}

    def object_keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)  # type: ignore[attr-defined]
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def request_ids(self) -> Counter[str]:
        """Every request id in every published object, counted."""
        filesystem = locate(self.url).filesystem
        found: Counter[str] = Counter()
        for key in self.object_keys():
            table = pq.read_table(f"{self.bucket}/{key}", filesystem=filesystem)
            found.update(str(rid) for rid in table.column("request_id").to_pylist())
        return found

    def staged(self) -> list[Path]:
        return sorted((self.spool / "parquet").glob("*/predictions/date=*/part-*.parquet"))


def logger(store: Store, **kwargs: object) -> predlog.PredictionLogger:
    kwargs.setdefault("install_signal_handlers", False)
    return predlog.PredictionLogger(
        data_dir=store.url,
        spool_dir=str(store.spool),
        **kwargs,  # type: ignore[arg-type]
    )


def own(log: predlog.PredictionLogger) -> dict[str, int]:
    """The ParquetSink's own figures."""
    figures: dict[str, int] = log.sink_stats()["ParquetSink[0]"]["own"]
    return figures


def wait_until(condition: object, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


class TestLocation:
    """Turning a data_dir into a filesystem: no network, standard variables."""

    def test_endpoint_and_region_come_from_the_aws_variables(self) -> None:
        env = {
            "AWS_ENDPOINT_URL": "http://minio.local:9000",
            "AWS_REGION": "eu-west-3",
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
        }
        where = locate("s3://bucket/a/b/", env)
        assert (where.base, where.bucket, where.is_local) == ("bucket/a/b", "bucket", False)
        assert isinstance(where.filesystem, pafs.S3FileSystem)
        assert where.filesystem.region == "eu-west-3"
        assert "minio.local:9000" in repr(where.filesystem.__reduce__())
        assert (
            where.join("predictions", "date=2026-01-01") == "bucket/a/b/predictions/date=2026-01-01"
        )
        assert where.uri("bucket/a/b/x") == "s3://bucket/a/b/x"

    def test_the_s3_specific_endpoint_wins(self) -> None:
        env = {"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "http://b:2"}
        assert "b:2" in repr(locate("s3://x", env).filesystem.__reduce__())

    def test_file_urls_and_paths_are_local(self, tmp_path: Path) -> None:
        assert locate(f"file://{tmp_path}").local_path == tmp_path
        assert locate(str(tmp_path)).local_path == tmp_path

    def test_published_files_come_newest_first(self, tmp_path: Path) -> None:
        """What a consumer restarting reads its recent ids from: the newest partition
        first, and the newest file first within one."""
        sink = predlog.ParquetSink(tmp_path)
        for day, name in ((1, "a"), (2, "b"), (2, "c"), (1, "d")):
            when = datetime(2026, 1, day, tzinfo=timezone.utc)
            sink.export(build_batch([{"request_id": name, "timestamp": when}]))
            sink.flush()
            time.sleep(0.01)  # distinct modification times

        def order() -> list[str]:
            return [
                pq.read_table(path, filesystem=sink.location.filesystem)["request_id"][0].as_py()
                for path in sink.published_files()
            ]

        assert order() == ["c", "b", "d", "a"]
        # By time of publication, not by name: another process's file published last
        # may sort first by name.
        b_file = sorted(tmp_path.glob("predictions/date=2026-01-02/*.parquet"))[0]
        os.utime(b_file, (time.time() + 60, time.time() + 60))
        assert order() == ["b", "c", "d", "a"]

    @pytest.mark.parametrize(
        ("error", "refused"),
        [
            ("AWS Error ACCESS_DENIED during HeadBucket operation: HTTP response code: 403", True),
            ("AWS Error NETWORK_CONNECTION during HeadBucket operation: curlCode: 7", False),
            ("AWS Error SERVICE_UNAVAILABLE during HeadBucket operation: code: 503", False),
        ],
    )
    def test_denied_access_is_a_refusal_and_silence_is_not(self, error: str, refused: bool) -> None:
        class Answering:
            """Answers HEAD as the store would, with pyarrow's error."""

            def get_file_info(self, path: str) -> pafs.FileInfo:
                raise OSError(error)

        where = Location("s3://b/x", cast(pafs.FileSystem, Answering()), "b/x", "s3")
        if refused:
            assert "refused access" in (probe(where) or "")
        else:
            with pytest.raises(UnreachableError):
                probe(where)

    def test_a_file_url_writes_the_local_layout(self, tmp_path: Path) -> None:
        with predlog.PredictionLogger(
            data_dir=f"file://{tmp_path}", install_signal_handlers=False
        ) as log:
            log.log(request_id="f-1", score=0.5)
        assert len(list(tmp_path.glob("predictions/date=*/part-*.parquet"))) == 1


@pytest.mark.integration
class TestLoggerOnS3:
    def test_the_logger_writes_the_same_layout_and_names(self, store: Store) -> None:
        """Records of two UTC days land as two objects under the same hive layout and
        file names a local data_dir gets; nothing stays staged."""
        with logger(store, model_name="fraud") as log:
            for i in range(50):
                log.log(
                    request_id=f"a-{i}",
                    score=i / 50,
                    timestamp=datetime(2025, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
                )
                log.log(
                    request_id=f"b-{i}",
                    score=i / 50,
                    timestamp=datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc),
                )
        stats = log.stats()
        assert stats["delivered"] == 100 and stats["pending"] == 0 and stats["failed"] == 0
        keys = store.object_keys()
        matches = [KEY.match(k) for k in keys]
        assert all(matches), keys
        assert {m["date"] for m in matches if m} == {"2025-12-31", "2026-01-01"}
        assert {m["prefix"] for m in matches if m} == {"fleet/a"}
        assert {m["pid"] for m in matches if m} == {str(os.getpid())}
        found = store.request_ids()
        assert found == Counter({f"{p}-{i}": 1 for p in "ab" for i in range(50)})
        assert store.staged() == []
        assert (own(log)["uploaded"], own(log)["spool_bytes"]) == (2, 0)

    def test_the_first_record_reaches_the_bucket_within_seconds(self, store: Store) -> None:
        """With the default file age (300 s), a logger's first file is uploaded a few
        seconds after its first record, as on a local disk."""
        with logger(store) as log:
            log.log(request_id="first", score=0.1)
            logged = time.monotonic()
            wait_until(store.object_keys, timeout=10, what="the first object")
            waited = time.monotonic() - logged
            assert waited < 6.0, f"the first record took {waited:.1f} s to reach the bucket"
            assert store.request_ids() == Counter({"first": 1})

    def test_investigate_evaluate_and_drift_read_the_bucket(
        self, store: Store, tmp_path: Path
    ) -> None:
        with logger(store, model_name="fraud") as log:
            for i in range(400):
                log.log(
                    request_id=f"r-{i}",
                    features={"amount": float(i % 37), "country": "FR" if i % 2 else "DE"},
                    score=(i % 10) / 10,
                    user_segment="retail" if i % 3 else "business",
                    timestamp=JANUARY if i % 2 else None,
                )
        # The library, then the command a person runs.
        [record] = investigate("r-7", data_dir=store.url)
        assert record["request_id"] == "r-7" and record["score"] == pytest.approx(0.7)
        outcomes = tmp_path / "outcomes.csv"
        with outcomes.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["request_id", "fraud"])
            for i in range(400):
                writer.writerow([f"r-{i}", int(i % 10 >= 5)])
        report = evaluate(outcomes, data_dir=store.url, label=("fraud", None), min_cohort=10)
        assert report["overall"]["n"] == 400
        assert report["overall"]["auc"] == pytest.approx(1.0)
        env = store.env()
        answer = predlog_cli("investigate", "r-9", "--data", store.url, "-o", "json", **env)
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)[0]["request_id"] == "r-9"
        day = datetime.now(tz=timezone.utc).date().isoformat()
        drift = predlog_cli(
            "drift",
            "--baseline",
            "2026-01-01..2026-01-02",
            "--current",
            f"{day}..2100-01-01",
            "--data",
            store.url,
            "-o",
            "json",
            **env,
        )
        assert drift.returncode == 0, drift.stderr
        said = json.loads(drift.stdout)
        assert (said["baseline"]["n"], said["current"]["n"]) == (200, 200)

    def test_projection_and_filters_reach_the_files(self, store: Store) -> None:
        """DuckDB reads the bucket through an Arrow dataset: a filter on the partition
        column opens only that day's objects."""
        sink = predlog.ParquetSink(store.url, spool_dir=store.spool)
        for day in (1, 2, 3):
            when = datetime(2026, 1, day, tzinfo=timezone.utc)
            sink.export(build_batch([{"request_id": f"d{day}", "timestamp": when}]))
        sink.close()
        data = Predictions(store.url)
        # Spoil the other days' objects after the view is made: a query that opened
        # them would fail; one whose filter reached the dataset never does.
        for key in store.object_keys():
            if "date=2026-01-02" not in key:
                store.client.put_object(Bucket=store.bucket, Key=key, Body=b"garbage")  # type: ignore[attr-defined]
        query = "SELECT request_id FROM predictions WHERE date = '2026-01-02'"
        assert data.query(query).fetchall() == [("d2",)]
        with pytest.raises(duckdb.Error):
            data.query("SELECT request_id FROM predictions").fetchall()

    def test_files_written_before_ids_became_text_are_read_beside_new_ones(
        self, store: Store
    ) -> None:
        """A file holding prediction_id in Arrow's uuid type (as predlog wrote them
        before) and one holding text: both read, both as the same canonical text."""
        sink = predlog.ParquetSink(store.url, spool_dir=store.spool)
        sink.export(build_batch([{"request_id": "new", "score": 0.5}]))
        sink.close()
        where = locate(store.url)
        [path] = list(sink.published_files())
        new = pq.read_table(path, filesystem=where.filesystem)
        text = new.column("prediction_id")[0].as_py()
        as_uuid = pa.ExtensionArray.from_storage(
            pa.uuid(), pa.array([uuid.UUID(text).bytes], pa.binary(16))
        )
        old = new.set_column(
            new.schema.get_field_index("prediction_id"), "prediction_id", as_uuid
        ).set_column(new.schema.get_field_index("request_id"), "request_id", pa.array(["old"]))
        pq.write_table(
            old,
            where.join("predictions/date=2020-01-01/part-old.parquet"),
            filesystem=where.filesystem,
        )
        rows = (
            Predictions(store.url)
            .query("SELECT request_id, prediction_id FROM predictions ORDER BY request_id")
            .fetchall()
        )
        assert rows == [("new", text), ("old", text)]

    def test_a_missing_prefix_says_nothing_was_logged(self, store: Store) -> None:
        with pytest.raises(predlog.PredlogError, match="no prediction files under s3://"):
            Predictions(f"s3://{store.bucket}/nothing-here")


@pytest.mark.integration
class TestStartup:
    @pytest.mark.parametrize("url", ["ftp://host/x", "hdfs://namenode/predictions"])
    def test_a_scheme_predlog_cannot_write_is_refused(self, url: str, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"^data_dir: cannot write to"):
            predlog.PredictionLogger(data_dir=url, install_signal_handlers=False)

    def test_a_missing_bucket_is_refused_naming_the_setting(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PREDLOG_DATA_DIR", "s3://no-such-bucket-here/x")
        monkeypatch.setenv("PREDLOG_SPOOL_DIR", str(store.spool))
        with pytest.raises(ConfigError, match=r"^PREDLOG_DATA_DIR: bucket s3://no-such-bucket"):
            predlog.PredictionLogger(install_signal_handlers=False)

    def test_an_unreachable_store_does_not_stop_the_start(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Records can wait: the logger starts, takes them, and counts them pending."""
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{closed_port()}")
        log = logger(store, flush_interval_s=0.1)
        try:
            log.log(request_id="wait-1", score=0.1)
            log.flush(timeout=30)
            stats = log.stats()
            assert stats["pending"] == 1 and stats["delivered"] == 0, stats
            assert len(store.staged()) == 1
        finally:
            log.close(timeout=30)
        assert log.stats()["pending"] == 1  # still waiting on disk, never counted delivered

    def test_an_unwritable_spool_is_refused(self, store: Store, tmp_path: Path) -> None:
        occupied = tmp_path / "file"
        occupied.write_text("not a directory")
        with pytest.raises(ConfigError, match=r"^spool_dir: files waiting"):
            predlog.PredictionLogger(
                data_dir=store.url, spool_dir=str(occupied / "x"), install_signal_handlers=False
            )


@pytest.mark.integration
class TestOutage:
    def test_records_wait_through_an_outage_and_arrive_once(self, store: Store) -> None:
        """The store goes away mid-run: files stay staged and their rows pending; once it
        is back every record is there exactly once, none lost, none twice."""
        log = logger(store, flush_interval_s=0.1, parquet_max_file_age_s=0.3, batch_size=50)
        sent = 0

        def burst(n: int) -> None:
            nonlocal sent
            for _ in range(n):
                log.log(request_id=f"o-{sent}", score=0.5)
                sent += 1

        try:
            burst(200)
            wait_until(lambda: log.stats()["delivered"] == 200, what="first uploads")
            before = store.request_ids()  # moto forgets objects when it stops
            store.moto.stop()
            burst(300)
            wait_until(lambda: len(store.staged()) == 1, what="a file staged in the outage")
            burst(100)
            wait_until(lambda: len(store.staged()) == 2, what="a second staged file")
            wait_until(lambda: log.stats()["pending"] == 400, what="400 pending")
            stats = log.stats()
            assert stats["delivered"] == 200 and stats["failed"] == 0, stats
            wait_until(lambda: own(log)["upload_failures"] >= 1, what="a failed upload")
            assert own(log)["spool_bytes"] > 0
            store.moto.start()
            store.client.create_bucket(Bucket=store.bucket)  # type: ignore[attr-defined]
            wait_until(lambda: log.stats()["pending"] == 0, timeout=90, what="retries")
            assert log.close(timeout=60)
        finally:
            if store.moto.proc is None:
                store.moto.start()
            log.close(timeout=10)
        stats = log.stats()
        assert stats == {**stats, "captured": 600, "delivered": 600, "pending": 0, "failed": 0}
        after = store.request_ids()
        assert not set(before) & set(after), "a record published twice"
        assert before + after == Counter({f"o-{i}": 1 for i in range(600)})
        assert store.staged() == []

    def test_a_store_that_hangs_never_holds_the_flusher(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Uploads have a thread of their own: while one hangs on a store that accepts
        connections and never answers, the flusher keeps taking batches and staging
        files (done in its thread, the second file would wait for the first upload)."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)
            monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
            log = logger(store, flush_interval_s=0.1, parquet_max_file_age_s=0.2)
            try:
                log.log(request_id="h-1", score=0.1)
                wait_until(lambda: len(store.staged()) == 1, what="the first file")
                log.log(request_id="h-2", score=0.1)
                wait_until(lambda: len(store.staged()) == 2, timeout=4, what="a second file")
                assert log.stats()["pending"] == 2
            finally:
                silent.close()  # refused from now on: close() gives up quickly
                log.close(timeout=30)
        assert log.stats()["pending"] == 2 and log.stats()["delivered"] == 0

    def test_staging_is_bounded_and_refusals_are_counted(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the store away long enough to fill spool_max_bytes, new batches are
        refused and counted failed; what was staged keeps waiting."""
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{closed_port()}")
        sink = predlog.ParquetSink(store.url, spool_dir=store.spool, spool_max_bytes=1)
        sink.export(build_batch([{"request_id": "x-1"}]))
        with pytest.raises(predlog.SinkError, match="wait in"):
            sink.flush()
        assert sink.unpublished_rows == 1
        with pytest.raises(predlog.SinkError, match="batch refused"):
            sink.export(build_batch([{"request_id": "x-2"}]))
        assert sink.stats()["refused"] == 1 and sink.unpublished_rows == 1
        assert len(store.staged()) == 1


CRASHING_WRITER = """
import os, sys, time
import predlog
log = predlog.PredictionLogger(install_signal_handlers=False, flush_interval_s=0.1)
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 120):
    log.log(request_id=f"k-{i}", score=0.25)
log.flush(timeout=30)
print("staged", log.stats()["pending"], flush=True)
time.sleep(600)
"""


@pytest.mark.integration
class TestCrash:
    def test_staged_files_of_a_killed_writer_are_uploaded_by_the_next(self, store: Store) -> None:
        """A writer killed while its files wait for the store leaves them staged; the
        next sink on this host uploads them (it does not delete them) when it opens,
        never when it is only made."""
        child = start_python(
            CRASHING_WRITER,
            **store.env(
                AWS_ENDPOINT_URL=f"http://{closed_port()}",
                PREDLOG_DATA_DIR=store.url,
                PREDLOG_SPOOL_DIR=str(store.spool),
            ),
        )
        try:
            line = child.stdout.readline() if child.stdout else ""
            assert line.strip() == "staged 120", (line, child.stderr.read() if child.stderr else "")
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert len(store.staged()) == 1
        assert store.object_keys() == []
        sink = predlog.ParquetSink(store.url, spool_dir=store.spool)
        assert sink.stats()["adopted"] == 0 and len(store.staged()) == 1
        sink.open()
        assert sink.stats()["adopted"] == 1
        sink.flush()  # the upload thread takes it at once; flush() waits for it
        assert sink.stats()["uploaded"] == 1
        assert sink.unpublished_rows == 0  # the dead writer's rows are not this sink's
        sink.close()
        assert store.request_ids() == Counter({f"k-{i}": 1 for i in range(120)})
        assert store.staged() == []
        [key] = store.object_keys()
        assert KEY.match(key) and KEY.match(key)["pid"] == str(child.pid)  # type: ignore[index]

    def test_a_restarted_process_with_the_same_pid_adopts_and_no_other_bucket_does(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A container restarted after a crash is often the same pid (1): the staged
        files named with it are a dead predecessor's, and are adopted. A sink for another
        data_dir sharing the spool never takes them to its own bucket."""
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{closed_port()}")
        dead = predlog.ParquetSink(store.url, spool_dir=store.spool)
        dead.export(build_batch([{"request_id": f"p-{i}"} for i in range(7)]))
        with pytest.raises(predlog.SinkError):
            dead.close()  # the store is away: the file stays staged, as after a crash
        assert len(store.staged()) == 1
        monkeypatch.setenv("AWS_ENDPOINT_URL", store.moto.url)
        store.client.create_bucket(Bucket="other-bucket")  # type: ignore[attr-defined]
        other = predlog.ParquetSink("s3://other-bucket/x", spool_dir=store.spool)
        other.open()
        assert other.stats()["adopted"] == 0
        other.close()
        again = predlog.ParquetSink(store.url, spool_dir=store.spool)  # same pid
        again.open()
        assert again.stats()["adopted"] == 1
        again.close()
        assert store.request_ids() == Counter({f"p-{i}": 1 for i in range(7)})
        assert store.staged() == []


UPLOADER = """
import sys
from pathlib import Path
from typing import cast
from predlog.storage import Location, UnreachableError, locate, probe
where = locate(sys.argv[1])
print("uploading", flush=True)
where.put_file(Path(sys.argv[2]), where.join("big.parquet"))
print("done", flush=True)
"""


@pytest.mark.integration
class TestAtomicUpload:
    def test_no_partial_object_is_ever_listed(self, store: Store, tmp_path: Path) -> None:
        """A 48 MiB upload is multipart: while it runs the object is not listed, and a
        writer killed in the middle leaves no object at all."""
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(48 << 20))
        url = f"s3://{store.bucket}/atomic"
        proc = subprocess.Popen(
            [sys.executable, "-c", UPLOADER, url, str(big)],
            env=child_env(**store.env()),
            stdout=subprocess.PIPE,
            text=True,
        )
        client = store.client
        seen_upload = False
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                uploads = client.list_multipart_uploads(Bucket=store.bucket)  # type: ignore[attr-defined]
                listed = client.list_objects_v2(Bucket=store.bucket).get("Contents", [])  # type: ignore[attr-defined]
                assert listed == [], "an object was listed before its upload completed"
                if uploads.get("Uploads"):
                    seen_upload = True
                    os.kill(proc.pid, signal.SIGKILL)
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        assert seen_upload, "the upload finished before a part of it was seen"
        assert client.list_objects_v2(Bucket=store.bucket).get("KeyCount") == 0  # type: ignore[attr-defined]

    def test_a_listing_during_the_upload_sees_all_or_nothing(
        self, store: Store, tmp_path: Path
    ) -> None:
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(32 << 20))
        where = locate(f"s3://{store.bucket}/whole")
        sizes: list[int] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                listed = store.client.list_objects_v2(Bucket=store.bucket)  # type: ignore[attr-defined]
                sizes.extend(o["Size"] for o in listed.get("Contents", []))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            where.put_file(big, where.join("big.bin"))
        finally:
            done.set()
            watcher.join()
        assert set(sizes) <= {32 << 20}
        info = where.filesystem.get_file_info(where.join("big.bin"))
        assert info.size == 32 << 20


@pytest.mark.integration
class TestSinkFromKafka:
    def test_predlog_sink_writes_the_topic_into_the_bucket(self, store: Store) -> None:
        bootstrap, topic = kafka_bootstrap(), fresh_topic("objectstore")
        with predlog.PredictionLogger(
            kafka_bootstrap=bootstrap,
            kafka_topic=topic,
            data_dir=str(store.spool / "producer"),
            install_signal_handlers=False,
        ) as log:
            for i in range(2_000):
                log.log(request_id=f"kf-{i}", score=i / 2_000)
        assert log.stats()["delivered"] == 2_000
        answer = predlog_cli(
            "sink",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--data",
            store.url,
            "--group",
            f"g-{topic}",
            "--exit-when-idle",
            "4",
            "--max-wait",
            "2",
            "-o",
            "json",
            **store.env(PREDLOG_SPOOL_DIR=str(store.spool / "consumer")),
        )
        assert answer.returncode == 0, answer.stderr
        stats = json.loads(answer.stdout.strip().splitlines()[-1])
        assert stats["written"] == 2_000
        assert store.request_ids() == Counter({f"kf-{i}": 1 for i in range(2_000)})
        assert all(KEY.match(k) for k in store.object_keys())
        assert not list((store.spool / "consumer").glob("parquet/*/predictions/*/*.parquet"))
