"""`predlog compact`: a day's small files rewritten into large ones, every row kept once.

The Parquet layout's promise is that a reader listing a day sees the old files or the
new ones, never both and never neither, and that files written late for the day are
kept. The Iceberg variant replaces a day's small files in one commit and then leaves
one snapshot.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from predlog import ParquetSink
from predlog.testing import build_batch
from predlog.tools.compact import CompactError, compact_layout
from tests.helpers import predlog_cli

DAY = datetime(2026, 11, 20, tzinfo=timezone.utc)
#: The snapshot summary key of a Kafka consumer's offsets (topic "topic", group "group").
OFFSETS = "predlog.kafka.offsets.topic.group"
#: A sink's file name; compacted files carry the same form.
NAME = re.compile(r"^part-\d{8}T\d{6}-.+-\d+-\d{6}\.parquet$")


def batch(prefix: str, n: int, when: datetime = DAY) -> pa.RecordBatch:
    return build_batch(
        [
            {
                "request_id": f"{prefix}-{i}",
                "score": (i % 97) / 97,
                "features": {"amount": i, "country": "FR"},
                "timestamp": when + timedelta(seconds=i),
            }
            for i in range(n)
        ]
    )


def write_files(data_dir: Path, files: int, rows: int, *, prefix: str = "r", when=DAY) -> None:
    """``files`` published files of ``rows`` rows each, as a logger that flushes often."""
    sink = ParquetSink(data_dir)
    for f in range(files):
        sink.export(batch(f"{prefix}{f}", rows, when))
        sink.flush()
    sink.close()


def day_dir(data_dir: Path, when: datetime = DAY) -> Path:
    return data_dir / "predictions" / f"date={when:%Y-%m-%d}"


def ids(directory: Path) -> Counter[str]:
    """prediction_id of every row in the published files of ``directory``, as text."""
    found: Counter[str] = Counter()
    for path in sorted(directory.glob("*.parquet")):
        column = pq.read_table(path, columns=["prediction_id"]).column(0)
        found.update(str(v) for v in column.to_pylist())
    return found


class TestParquetLayout:
    def test_small_files_become_one_with_every_row_once(self, data_dir):
        """40 small files of a past day become one of the sink's files, holding the same
        multiset of prediction ids; today's directory is left alone."""
        write_files(data_dir, 40, 250)
        today = datetime.now(tz=timezone.utc).replace(hour=0, minute=0, second=0)
        write_files(data_dir, 3, 10, prefix="today", when=today)
        before, today_before = ids(day_dir(data_dir)), sorted(day_dir(data_dir, today).iterdir())

        stages = []
        report = compact_layout(data_dir, progress=lambda *step: stages.append(step))

        assert stages == [("compacting days", 0, 1)]
        after = sorted(day_dir(data_dir).glob("*.parquet"))
        assert len(after) == 1 and NAME.match(after[0].name)
        assert ids(day_dir(data_dir)) == before and sum(before.values()) == 10_000
        assert sorted(day_dir(data_dir, today).iterdir()) == today_before
        [day] = report.days
        assert (day.date, day.files_before, day.files_after, day.rows) == (
            f"{DAY:%Y-%m-%d}",
            40,
            1,
            10_000,
        )
        assert day.bytes_after < day.bytes_before  # one footer and dictionary, not forty
        assert report.seconds_per_gb is not None and report.seconds_per_gb > 0
        # Nothing staged is left; the hidden staging directory is outside predictions/.
        assert [p.name for p in (data_dir / ".compact").iterdir()] == [".lock"]

    def test_a_reader_never_sees_both_nor_neither(self, data_dir):
        """A reader listing and reading the day in a loop while it is compacted gets every
        row exactly once on each complete read: old files or new, never a mix or none.
        (A listing taken before the exchange whose files are gone when opened is an
        error the reader retries, never a wrong answer.)"""
        write_files(data_dir, 120, 400)
        directory = day_dir(data_dir)
        expected = ids(directory)
        stop = threading.Event()
        seen: list[tuple[int, bool]] = []  # (files in the listing, rows matched)
        retried = 0

        def reader() -> None:
            nonlocal retried
            while not stop.is_set():
                files = sorted(p for p in directory.glob("*.parquet"))
                try:
                    got = Counter(
                        str(v)
                        for f in files
                        for v in pq.read_table(f, columns=["prediction_id"]).column(0).to_pylist()
                    )
                except FileNotFoundError:
                    retried += 1
                    continue
                seen.append((len(files), got == expected))

        listed: set[int] = set()

        def lister() -> None:  # listings only, many more of them than full reads
            while not stop.is_set():
                listed.add(len(list(directory.glob("*.parquet"))))

        threads = [threading.Thread(target=reader), threading.Thread(target=lister)]
        for thread in threads:
            thread.start()

        def wait_for_a_read(files: int) -> None:
            deadline = time.monotonic() + 60
            while not any(n == files for n, _ in seen) and time.monotonic() < deadline:
                time.sleep(0.01)

        try:
            wait_for_a_read(120)  # a complete read of the old files
            compact_layout(data_dir)
            wait_for_a_read(1)  # and of the new one
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert listed == {120, 1}
        assert all(ok for _, ok in seen), [n for n, ok in seen if not ok][:5]
        listings = {n for n, _ in seen}
        assert 120 in listings and 1 in listings  # it read both before and after
        assert listings == {120, 1}

    def test_files_written_late_for_the_day_are_kept(self, data_dir):
        """A file published into the day while it is being compacted, and a file a live
        writer holds open then and publishes afterwards, are both in the day's listing."""
        write_files(data_dir, 10, 100)
        live = ParquetSink(data_dir)

        def during(directory: Path) -> None:
            # Published by a writer on another host meanwhile...
            late = pa.Table.from_batches([batch("late", 7)])
            pq.write_table(late, directory / "part-20261121T000000-otherhost-4242-000001.parquet")
            # ...and open in a writer here, to be published after the exchange.
            live.export(batch("open", 5))

        compact_layout(data_dir, on_staged=during)
        live.flush()
        got = ids(day_dir(data_dir))
        assert sum(got.values()) == 10 * 100 + 7 + 5 and max(got.values()) == 1
        assert not list(day_dir(data_dir).glob(".*.tmp"))
        live.close()

    @pytest.mark.parametrize("dies", [False, True])
    def test_a_file_published_just_before_the_exchange_is_kept(self, data_dir, monkeypatch, dies):
        """A file published after the last linking pass and before the exchange is linked
        in after it; if the compaction dies right after the exchange, the next one does
        it (the old directory is kept in the stage until then)."""
        from predlog.tools.compact import _layout

        write_files(data_dir, 4, 30)
        late = pa.Table.from_batches([batch("late", 3)])
        exchange = _layout.exchange

        def publish_then_exchange(a: Path, b: Path) -> None:
            pq.write_table(late, a / "part-20261121T000000-otherhost-77-000001.parquet")
            exchange(a, b)

        def die(*args: object) -> int:
            raise KeyboardInterrupt  # as a SIGINT right after the exchange

        monkeypatch.setattr(_layout, "exchange", publish_then_exchange)
        if dies:
            monkeypatch.setattr(_layout, "_reconcile", die)
            with pytest.raises(KeyboardInterrupt):
                compact_layout(data_dir)
            assert sum(ids(day_dir(data_dir)).values()) == 120  # the late file is not seen
            monkeypatch.undo()
            compact_layout(data_dir)
        else:
            compact_layout(data_dir)
        got = ids(day_dir(data_dir))
        assert sum(got.values()) == 123 and max(got.values()) == 1
        assert [p.name for p in (data_dir / ".compact").iterdir()] == [".lock"]

    def test_older_schema_and_large_files_are_kept_as_they_are(self, data_dir):
        """A file of another schema is not rewritten (the sink writes today's schema only);
        it stays, beside the merged files."""
        write_files(data_dir, 5, 50)
        old = day_dir(data_dir) / "part-20261120T000000-old-1-000001.parquet"
        pq.write_table(pa.table({"request_id": ["x"], "raw_score": [0.5]}), old)
        report = compact_layout(data_dir, dates=["2026-11-20"])
        assert old.exists()
        assert (report.days[0].files_after, report.days[0].kept_files) == (2, 1)

    def test_an_object_store_is_refused_pointing_at_iceberg(self):
        with pytest.raises(CompactError, match="Iceberg"):
            compact_layout("s3://bucket/predlog")

    def test_command_reports_text_and_json(self, data_dir):
        write_files(data_dir, 6, 20)
        text = predlog_cli("compact", "--data", str(data_dir), "--date", "2026-11-20")
        assert text.returncode == 0, text.stderr
        assert "2026-11-20: 6 files" in text.stdout and "-> 1 files" in text.stdout
        assert "s per GB rewritten" in text.stdout
        again = predlog_cli("compact", "--data", str(data_dir), "-o", "json")
        answer = json.loads(again.stdout)
        assert (answer["files_before"], answer["files_after"], answer["rows"]) == (1, 1, 120)
        bad = predlog_cli("compact", "--data", str(data_dir), "--date", "2026-13-01")
        assert bad.returncode == 2 and "not a date" in bad.stderr
        url = predlog_cli("compact", "--data", "s3://bucket/x")
        assert url.returncode == 1 and "--table" in url.stderr


class TestIcebergTable:
    @pytest.fixture
    def table(self, data_dir):
        """Fifteen commits of one file each, as the committer makes them (files written by
        the sink's writer, added with add_files): thirteen on DAY, two the day after."""
        pytest.importorskip("pyiceberg")
        from predlog.sinks.iceberg import FILES_KEY, DataFile, FileWriter, Notes, open_table

        table = open_table("ns.preds", data_dir=data_dir)
        writer = FileWriter(table)
        day = int(DAY.timestamp()) // 86_400

        def commit(rows: pa.RecordBatch, days: int = 0, **properties: str) -> DataFile:
            written = writer.write(day + days, "model", rows)
            table.add_files([written.location], snapshot_properties=properties)
            return written

        # The first as a committer that died between its commit and deleting the note.
        written = writer.write(day, "model", batch("t0", 100))
        Notes(table).write(written, writer="dead")
        properties = {OFFSETS: '{"0": 10, "1": 5}', FILES_KEY: written.file_id}
        table.add_files([written.location], snapshot_properties=properties)
        for i in range(1, 12):
            commit(batch(f"t{i}", 100))
        for i in range(2):
            commit(batch(f"o{i}", 50, DAY + timedelta(days=1)), days=1)
        # Each commit of a Kafka consumer records the offsets of the partitions it read.
        commit(batch("last", 10), **{OFFSETS: '{"0": 41}'})
        return table

    @staticmethod
    def state(table):
        table.refresh()
        rows = table.scan().to_arrow()
        files = Counter(
            f"{task.file.partition[0]}" for task in table.scan().plan_files()
        )  # files per day partition
        return Counter(str(v) for v in rows.column("prediction_id").to_pylist()), files

    def test_a_day_is_rewritten_in_one_commit_and_one_snapshot_is_left(self, table, data_dir):
        from predlog.tools.compact import compact_table

        rows_before, files_before = self.state(table)
        assert sorted(files_before.values()) == [2, 13]
        report = compact_table(
            "ns.preds", data_dir=data_dir, dates=[f"{DAY:%Y-%m-%d}"], retain=timedelta(0)
        )

        rows_after, files_after = self.state(table)
        assert rows_after == rows_before and max(rows_after.values()) == 1
        assert sorted(files_after.values()) == [1, 2]  # the other day is not touched
        assert len(table.snapshots()) == 1 and report.expired_snapshots == 15
        assert report.deleted_files == 13
        # Where the consumer resumes is not lost with the snapshots that said so.
        from predlog.sinks.iceberg import table_offsets

        assert table_offsets(table, "topic", "group") == {0: 41, 1: 5}
        [day] = report.days
        assert (day.files_before, day.files_after, day.rows) == (13, 1, 1210)
        # The replaced files are deleted: the warehouse holds only the live ones.
        on_disk = list((data_dir / "iceberg" / "warehouse").rglob("data/**/*.parquet"))
        assert len(on_disk) == 3

    def test_a_commit_landing_meanwhile_is_kept(self, table, data_dir, monkeypatch):
        """The committer commits a file of the day while the compaction rewrites it: the
        compaction's commit is refused, it plans again, and every row is there once."""
        from predlog.sinks.iceberg import FileWriter
        from predlog.tools.compact import _table, compact_table

        commit = _table._commit
        raced: list[str] = []

        def racing(*args: object) -> int:
            if not raced:
                table.refresh()
                day = int(DAY.timestamp()) // 86_400
                written = FileWriter(table).write(day, "model", batch("racer", 20))
                table.add_files([written.location])
                raced.append(written.location)
            return commit(*args)

        monkeypatch.setattr(_table, "_commit", racing)
        rows_before, _ = self.state(table)
        report = compact_table("ns.preds", data_dir=data_dir, dates=[f"{DAY:%Y-%m-%d}"])
        rows_after, _ = self.state(table)
        assert raced  # the committer's commit did land in between
        assert sum(rows_after.values()) == sum(rows_before.values()) + 20
        assert max(rows_after.values()) == 1
        assert report.days[0].rows == sum(rows_after.values()) - 100  # the other day's 100

    def test_a_note_pending_for_a_committed_file_stays_answered(self, table, data_dir):
        """A note whose file was committed (its committer died before deleting it) is
        still recognised as committed after the snapshot that listed it is expired: the
        committer that runs next adds nothing twice."""
        from predlog.sinks.iceberg import Committer
        from predlog.tools.compact import compact_table

        rows_before, _ = self.state(table)
        compact_table("ns.preds", data_dir=data_dir, dates=[f"{DAY:%Y-%m-%d}"], retain=timedelta(0))
        table.refresh()  # as a committer starting now sees the table
        assert len(table.snapshots()) == 1
        committer = Committer(table)
        assert committer.commit_pending() == 0 and committer.stats.already_committed == 1
        rows_after, _ = self.state(table)
        assert rows_after == rows_before and max(rows_after.values()) == 1

    def test_command_compacts_the_table(self, table, data_dir):
        done = predlog_cli(
            "compact", "--data", str(data_dir), "--table", "ns.preds", "--no-expire", "-o", "json"
        )
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        # Both days are before today: each becomes one file, in a commit of its own.
        assert (answer["files_before"], answer["files_after"], answer["rows"]) == (15, 2, 1310)
        assert answer["expired_snapshots"] == 0
        table.refresh()
        assert len(table.snapshots()) == 15 + 2

    def test_retain_keeps_the_snapshots_within_the_window_and_their_files(self, table, data_dir):
        """--retain 1h: every snapshot is younger, so each one, and every file it reads,
        stays (a time-travel query still answers); --retain 0s then expires the snapshots
        before the compaction's and deletes the files replaced."""
        first = min(table.snapshots(), key=lambda s: s.timestamp_ms)
        files = data_dir / "iceberg" / "warehouse"
        day = f"{DAY:%Y-%m-%d}"
        kept = predlog_cli(
            "compact", "--data", str(data_dir), "--table", "ns.preds", "--date", day,
            "--retain", "1h", "-o", "json",
        )  # fmt: skip
        assert kept.returncode == 0, kept.stderr
        answer = json.loads(kept.stdout)
        assert (answer["expired_snapshots"], answer["deleted_files"]) == (0, 0)
        assert len(list(files.rglob("data/**/*.parquet"))) == 15 + 1
        table.refresh()
        assert len(table.snapshots()) == 15 + 1
        assert table.scan(snapshot_id=first.snapshot_id).to_arrow().num_rows == 100

        done = predlog_cli(
            "compact", "--data", str(data_dir), "--table", "ns.preds", "--date", day,
            "--retain", "0s",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "ns.preds: 15 snapshots expired, 13 replaced files deleted" in done.stdout
        assert len(list(files.rglob("data/**/*.parquet"))) == 3
        bad = predlog_cli("compact", "--table", "ns.preds", "--retain", "5 days")
        assert bad.returncode == 2 and "not a duration" in bad.stderr


class TestTableHousekeeping:
    """Expiry keeps a retention window; orphan removal deletes only what nothing can
    commit any more."""

    @pytest.fixture
    def table(self, data_dir):
        pytest.importorskip("pyiceberg")
        from predlog.sinks.iceberg import open_table

        return open_table("ns.kept", data_dir=data_dir)

    @staticmethod
    def write(table, prefix: str, days: int = 0):
        from predlog.sinks.iceberg import FileWriter

        day = int(DAY.timestamp()) // 86_400 + days
        return FileWriter(table).write(day, "model", batch(prefix, 10, DAY + timedelta(days=days)))

    @staticmethod
    def path(table, location: str) -> Path:
        from predlog.sinks.iceberg import filesystem

        return Path(filesystem(table, location)[1])

    def test_orphans_older_than_the_window_without_a_note_are_removed(self, table, data_dir):
        """A committed file stays, and so does an uncommitted one that is young, or old
        but named by a pending note (read, or listed and not readable); an old file that
        nothing names is removed."""
        from predlog.sinks.iceberg import Notes
        from predlog.tools.compact import remove_orphan_files

        committed = self.write(table, "committed")
        table.add_files([committed.location])
        names = ("orphan", "young", "noted", "unread")
        orphan, young, noted, unread = (self.write(table, name) for name in names)
        notes = Notes(table)
        notes.write(noted, writer="a writer that has not committed yet")
        note = notes.write(unread, writer="a note not readable now")
        self.path(table, f"{notes.location}/{note.file_id}.json").write_text("{not json")
        old = time.time() - 4 * 86_400
        for written in (committed, orphan, noted, unread):
            os.utime(self.path(table, written.location), (old, old))

        assert remove_orphan_files(table) == 1
        assert not self.path(table, orphan.location).exists()
        for written in (committed, young, noted, unread):
            assert self.path(table, written.location).exists(), written
        table.refresh()
        assert table.scan().to_arrow().num_rows == 10
        # A window the young file is older than: through the command's option.
        done = predlog_cli(
            "compact", "--data", str(data_dir), "--table", "ns.kept", "--no-expire",
            "--orphans-older-than", "0s",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "ns.kept: 1 orphan files removed" in done.stdout
        assert not self.path(table, young.location).exists()
        assert self.path(table, noted.location).exists()

    def test_expiry_keeps_what_the_window_reads(self, table, data_dir):
        """With the table's own window (history.expire.max-snapshot-age-ms): the
        snapshots older than it go, with the files only they read; a snapshot within it
        still reads its files, though a later compaction replaced them."""
        from predlog.tools.compact import compact_table, expire_snapshots

        first = [self.write(table, f"a{i}") for i in range(2)]
        for written in first:
            table.add_files([written.location])
        # No compaction snapshot yet: nothing carries what the older ones say.
        assert expire_snapshots(table, retain=timedelta(0)) == (0, 0)
        compact_table("ns.kept", data_dir=data_dir, dates=[f"{DAY:%Y-%m-%d}"], expire=False)
        table.refresh()
        _after(table.current_snapshot().timestamp_ms)
        second = [self.write(table, f"b{i}", days=1) for i in range(2)]
        table.add_files([second[0].location])
        window_start = table.current_snapshot()
        table.add_files([second[1].location])
        day2 = f"{DAY + timedelta(days=1):%Y-%m-%d}"
        compact_table("ns.kept", data_dir=data_dir, dates=[day2], expire=False)
        with table.transaction() as tx:
            tx.set_properties({"history.expire.max-snapshot-age-ms": "3600000"})
        now = datetime.fromtimestamp(window_start.timestamp_ms / 1000, tz=timezone.utc)

        expired, deleted = expire_snapshots(table, now=now + timedelta(hours=1))
        assert (expired, deleted) == (3, 2)  # a0, a1 and the first compaction's snapshot
        assert not any(self.path(table, w.location).exists() for w in first)
        assert all(self.path(table, w.location).exists() for w in second)
        table.refresh()
        within = table.scan(snapshot_id=window_start.snapshot_id).to_arrow()
        assert within.num_rows == 30  # the first compaction's file, and b0
        assert table.scan().to_arrow().num_rows == 40


@pytest.mark.integration
def test_expiry_keeps_a_consumer_commit_made_after_the_compaction(tmp_path):
    """Snapshots are expired up to the compaction's own, not to whatever is current: a
    Kafka consumer's commit landing after it (its own partitions' offsets only) must not
    take the compaction's snapshot, which carries every partition's, with it."""
    from predlog.sinks.iceberg import FileWriter, offsets_key, open_table, table_offsets
    from predlog.tools.compact import compact_table, expire_snapshots

    data = tmp_path / "data"
    table = open_table("ns.offsets", data_dir=data)
    day = int(DAY.timestamp()) // 86_400
    key = offsets_key("topic", "group")
    for partition in (0, 1):  # two consumers' commits, one partition each
        for n in range(2):
            written = FileWriter(table).write(day, "model", batch(f"p{partition}-{n}", 10))
            with table.transaction() as tx:
                tx.add_files(
                    [written.location],
                    snapshot_properties={key: json.dumps({str(partition): 10 * (n + 1)})},
                )
    compact_table("ns.offsets", data_dir=data, dates=[f"{DAY:%Y-%m-%d}"], expire=False)
    table.refresh()
    written = FileWriter(table).write(day, "model", batch("late", 5))
    compacted = table.current_snapshot()
    _after(compacted.timestamp_ms)
    with table.transaction() as tx:  # the consumer commits before the expiry runs
        tx.add_files([written.location], snapshot_properties={key: json.dumps({"0": 25})})
    assert expire_snapshots(table, retain=timedelta(0))[0] == 4
    table.refresh()
    assert table_offsets(table, "topic", "group") == {0: 25, 1: 20}
    assert table.snapshot_by_id(compacted.snapshot_id) is not None


def _after(ms: int) -> None:
    """Wait for the clock to pass ``ms``, so that the next snapshot is strictly newer."""
    while time.time() * 1000 <= ms + 1:
        time.sleep(0.001)
