"""The Iceberg sink on the embedded SQLite catalog: table, files, committer, lock."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform

from predlog import arrow_schema
from predlog.errors import ConfigError, SinkError
from predlog.sinks.iceberg import (
    FILES_KEY,
    CommitLock,
    CommitStats,
    Committer,
    FileWriter,
    IcebergSink,
    Notes,
    commit_with_retry,
    load_catalog,
    offsets_key,
    open_table,
    parse_table_name,
    split,
    table_files,
    table_offsets,
    writer_tag,
)
from predlog.sinks.iceberg._catalog import embedded_catalog
from tests.helpers import predlog_cli
from tests.iceberg_child import make_batch
from tests.services import closed_port

TABLE = "preds.log"


def write_noted(table_name: str, data: Path, batch: pa.RecordBatch) -> list[str]:
    """Write the batch's files and notes as a worker does; their file ids."""
    table = open_table(table_name, data_dir=data)
    writer, notes = FileWriter(table), Notes(table)
    ids = []
    for (day, model), part in split(batch).items():
        ids.append(notes.write(writer.write(day, model, part), writer_tag()).file_id)
    return ids


def rows(table_name: str, data: Path) -> pa.Table:
    return open_table(table_name, data_dir=data, create=False).scan().to_arrow()


def ids_of(table: pa.Table) -> list[str]:
    return [str(v) for v in table.column("prediction_id").to_pylist()]


class TestTable:
    def test_schema_follows_the_record_and_partitions_by_day_and_model(
        self, tmp_path: Path
    ) -> None:
        table = open_table(TABLE, data_dir=tmp_path)
        names = [f.name for f in table.schema().fields]
        assert names == arrow_schema().names
        # int16 has no Iceberg type: schema_version is Iceberg's int.
        assert str(table.schema().find_field("schema_version").field_type) == "int"
        spec = table.spec()
        by_source = {table.schema().find_column_name(f.source_id): f.transform for f in spec.fields}
        assert set(by_source) == {"timestamp_utc", "model_name"}
        assert isinstance(by_source["timestamp_utc"], DayTransform)
        assert isinstance(by_source["model_name"], IdentityTransform)
        assert (tmp_path / "iceberg" / "catalog.db").is_file()

    def test_names_and_catalog_errors(self, tmp_path: Path) -> None:
        assert parse_table_name("prod.ns.t") == ("prod", "ns", "t")
        assert parse_table_name("ns.t") == (None, "ns", "t")
        with pytest.raises(ConfigError, match="iceberg_table"):
            parse_table_name("t")
        with pytest.raises(ConfigError, match="PYICEBERG_CATALOG__NOWHERE__URI"):
            load_catalog("nowhere", data_dir=tmp_path)
        # The embedded SQLite catalog cannot live in a bucket: a catalog must be named.
        with pytest.raises(ConfigError, match="name a catalog"):
            embedded_catalog("s3://bucket/prefix")

    def test_a_catalog_configured_after_pyiceberg_was_imported_is_found(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """pyiceberg reads its variables once, when first imported: a service that sets
        them in its own start-up code afterwards still gets its catalog."""
        import pyiceberg.catalog

        assert pyiceberg.catalog.load_catalog  # imported, and its configuration read
        monkeypatch.setenv("PYICEBERG_CATALOG__LATECOMER__URI", f"sqlite:///{tmp_path}/c.db")
        monkeypatch.setenv("PYICEBERG_CATALOG__LATECOMER__WAREHOUSE", tmp_path.as_uri())
        table = open_table("latecomer.ns.t", data_dir=tmp_path / "unused")
        assert table.name() == ("ns", "t")
        assert (tmp_path / "c.db").is_file()

    def test_evolution_is_additive_and_old_readers_still_read(self, tmp_path: Path) -> None:
        old_columns = [f for f in arrow_schema() if f.name not in ("extra", "channel")]
        old_schema = pa.schema(
            [f.with_type(pa.int32()) if f.name == "schema_version" else f for f in old_columns]
        )
        catalog = embedded_catalog(tmp_path)
        catalog.create_namespace("preds")
        old = catalog.create_table(("preds", "log"), schema=old_schema)
        old.append(pa.Table.from_batches([make_batch(5, schema=old_schema)]))
        old_snapshot = old.current_snapshot()
        assert old_snapshot is not None
        table = open_table(TABLE, data_dir=tmp_path)
        added = {f.name: f for f in table.schema().fields if f.name in ("extra", "channel")}
        assert set(added) == {"extra", "channel"}
        assert not any(f.required for f in added.values())
        # Nothing was dropped, retyped or made required.
        for before in old.schema().fields:
            after = table.schema().find_field(before.name)
            assert (after.field_id, after.field_type, after.required) == (
                before.field_id,
                before.field_type,
                before.required,
            )
        # New rows land; an old reader (the old snapshot) still reads its rows.
        write_noted(TABLE, tmp_path, make_batch(3, start=100))
        Committer(open_table(TABLE, data_dir=tmp_path)).commit_pending()
        assert rows(TABLE, tmp_path).num_rows == 8
        reread = open_table(TABLE, data_dir=tmp_path).scan(snapshot_id=old_snapshot.snapshot_id)
        assert reread.to_arrow().num_rows == 5
        assert open_table(TABLE, data_dir=tmp_path).schema() == table.schema()


class TestFilesAndCommits:
    def test_one_file_per_partition_committed_once(self, tmp_path: Path) -> None:
        batch = make_batch(40, model=lambda i: f"m{i % 2}", step_s=12 * 3600)  # 20 days, 2 models
        file_ids = write_noted(TABLE, tmp_path, batch)
        assert len(file_ids) == len(split(batch)) == 40
        committer = Committer(open_table(TABLE, data_dir=tmp_path))
        assert committer.commit_pending() == 40
        assert committer.commit_pending() == 0  # notes gone: nothing added twice
        table = open_table(TABLE, data_dir=tmp_path)
        snapshot = table.current_snapshot()
        assert snapshot is not None
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        assert sorted(summary[FILES_KEY].split(",")) == sorted(file_ids)
        assert summary["predlog.committer"] == writer_tag()
        assert len(table.snapshots()) == 1
        parts = table.inspect.partitions().to_pylist()
        assert len(parts) == 40 and all(p["file_count"] == 1 for p in parts)
        assert sorted(ids_of(rows(TABLE, tmp_path))) == sorted(ids_of(pa.table(batch)))
        assert committer.stats.commits == 1 and committer.stats.files == 40
        assert len(committer.stats.latencies_ms) == 1
        fs, paths = table_files(TABLE, data_dir=tmp_path)
        assert ds.dataset(paths, filesystem=fs, format="parquet").to_table().num_rows == 40

    def test_a_racing_committer_is_refused_retries_and_adds_nothing_twice(
        self, tmp_path: Path
    ) -> None:
        first = write_noted(TABLE, tmp_path, make_batch(10))
        a = Committer(open_table(TABLE, data_dir=tmp_path))
        b = Committer(open_table(TABLE, data_dir=tmp_path))
        listed = a.notes.pending

        def racing() -> list:  # type: ignore[type-arg]
            # a has listed the notes; b commits them (and one more) before a does.
            got = listed()
            write_noted(TABLE, tmp_path, make_batch(5, start=10))
            b.commit_pending()
            return got

        a.notes.pending = racing  # type: ignore[method-assign]
        assert a.commit_pending() == 0
        assert a.stats.conflicts == 1  # the catalog refused a's commit on a stale base
        assert a.stats.already_committed == len(first)
        assert b.stats.commits == 1
        got = ids_of(rows(TABLE, tmp_path))
        assert len(got) == len(set(got)) == 15

    def test_a_commit_whose_notes_survived_is_not_added_again(self, tmp_path: Path) -> None:
        """The committer died after its commit and before deleting the notes."""
        write_noted(TABLE, tmp_path, make_batch(10, model=lambda i: f"m{i % 3}"))
        dying = Committer(open_table(TABLE, data_dir=tmp_path))
        dying.notes.delete = lambda file_ids: None  # type: ignore[method-assign]
        assert dying.commit_pending() == 10
        write_noted(TABLE, tmp_path, make_batch(4, start=10))
        after = Committer(open_table(TABLE, data_dir=tmp_path))
        assert after.commit_pending() == 4
        assert after.stats.already_committed == 3
        assert not after.notes.pending()
        got = ids_of(rows(TABLE, tmp_path))
        assert len(got) == len(set(got)) == 14

    def test_commit_failed_is_retried_with_backoff(self, tmp_path: Path) -> None:
        write_noted(TABLE, tmp_path, make_batch(6))
        table = open_table(TABLE, data_dir=tmp_path)
        real = table.add_files
        failures = iter([CommitFailedException("conflict"), CommitFailedException("again")])
        calls: list[int] = []

        def flaky(*args: object, **kwargs: object) -> None:
            calls.append(1)
            error = next(failures, None)
            if error is not None:
                raise error
            real(*args, **kwargs)  # type: ignore[arg-type]

        table.add_files = flaky  # type: ignore[method-assign]
        slept: list[float] = []
        committer = Committer(table)
        stats = CommitStats()
        notes = committer.notes.pending()
        made = commit_with_retry(
            table,
            lambda t: ([n.location for n in notes], {FILES_KEY: "x"}),
            stats=stats,
            sleep=slept.append,
        )
        assert made and len(calls) == 3 and stats.conflicts == 2
        assert len(slept) == 2 and slept[1] > slept[0] * 0.5  # backing off, with jitter
        assert rows(TABLE, tmp_path).num_rows == 6

    def test_a_file_described_from_its_footer_commits_as_one_read_back(
        self, tmp_path: Path
    ) -> None:
        """A file committed from the footer its writer kept has the partition, counts,
        bounds and size that pyiceberg's add_files reads back from the same file; the
        first such commit sets the name mapping readers need, as add_files does."""
        batch = make_batch(30, model=lambda i: "m1")
        kept, read = (open_table(f"preds.t{i}", data_dir=tmp_path) for i in range(2))
        ((day, model), part), *_ = split(batch).items()
        described = FileWriter(kept).write(day, model, part)
        assert described.footer is not None and described.size > 0
        located = FileWriter(read).write(day, model, part)

        def attempt(location: str) -> Callable[[Table], tuple[list[str], dict[str, str]]]:
            return lambda table: ([location], {})

        assert kept.metadata.name_mapping() is None
        assert commit_with_retry(
            kept, attempt(described.location), stats=CommitStats(), written=[described]
        )
        assert commit_with_retry(read, attempt(located.location), stats=CommitStats())
        assert kept.metadata.name_mapping() is not None

        def entry(table: Table) -> dict[str, object]:
            (task,) = table.scan().plan_files()
            f = task.file
            return {
                "partition": f.partition,
                "spec_id": f.spec_id,
                "record_count": f.record_count,
                "file_size_in_bytes": f.file_size_in_bytes,
                "column_sizes": f.column_sizes,
                "value_counts": f.value_counts,
                "null_value_counts": f.null_value_counts,
                "lower_bounds": f.lower_bounds,
                "upper_bounds": f.upper_bounds,
                "split_offsets": f.split_offsets,
            }

        assert entry(kept) == entry(read)
        assert ids_of(kept.scan().to_arrow()) == ids_of(read.scan().to_arrow())

    def test_a_note_whose_file_is_gone_is_set_aside_and_counted(self, tmp_path: Path) -> None:
        write_noted(TABLE, tmp_path, make_batch(6, model=lambda i: f"m{i % 2}"))
        committer = Committer(open_table(TABLE, data_dir=tmp_path))
        victim = committer.notes.pending()[0]
        os.unlink(victim.location.removeprefix("file://"))
        assert committer.commit_pending() == 3
        assert (committer.stats.lost_files, committer.stats.lost_rows) == (1, 3)
        assert rows(TABLE, tmp_path).num_rows == 3
        lost = Path(committer.notes.location.removeprefix("file://")) / "lost"
        assert [p.stem for p in lost.iterdir()] == [victim.file_id]


class TestLock:
    def test_one_holder_and_the_next_takes_over(self, tmp_path: Path) -> None:
        a, b = CommitLock(tmp_path, TABLE), CommitLock(tmp_path, TABLE)
        assert a.try_acquire()
        # lockf locks are per process: a second process is refused.
        code = (
            "import sys; from pathlib import Path; from predlog.sinks.iceberg import "
            f"CommitLock; sys.exit(0 if CommitLock(Path({str(tmp_path)!r}), {TABLE!r})"
            ".try_acquire() else 3)"
        )
        from tests.helpers import start_python

        assert start_python(code).wait(60) == 3
        a.release()
        assert start_python(code).wait(60) == 0
        assert b.try_acquire()
        b.release()

    def test_a_forked_child_does_not_hold_its_parents_lock(self, tmp_path: Path) -> None:
        lock = CommitLock(tmp_path, TABLE)
        assert lock.try_acquire()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if not lock.held and not lock.try_acquire() else 1)
        _, status = os.waitpid(pid, 0)
        lock.release()
        assert os.waitstatus_to_exitcode(status) == 0


class TestSink:
    def test_workers_note_files_and_only_the_committer_commits(self, tmp_path: Path) -> None:
        """A worker that may not commit (iceberg_commit off) only notes its files; the
        committer commits everyone's, and the worker sees its rows committed."""
        spool = tmp_path / "spool"
        holder = IcebergSink(TABLE, data_dir=tmp_path, spool_dir=spool, commit_interval_s=60)
        worker = IcebergSink(
            TABLE, data_dir=tmp_path, spool_dir=spool, commit_interval_s=60, commit=False
        )
        worker.export(make_batch(7, model=lambda i: f"m{i % 2}"))
        assert worker.unpublished_rows == 7
        worker.flush()  # files published and noted; a worker does not commit
        assert worker.unpublished_rows == 7
        assert rows(TABLE, tmp_path).num_rows == 0
        holder.export(make_batch(3, start=100))
        holder.flush()  # takes the free lock and commits everyone's notes
        assert rows(TABLE, tmp_path).num_rows == 10
        assert holder.unpublished_rows == 0
        worker.flush()  # sees its notes gone: committed by another process
        assert worker.unpublished_rows == 0
        worker.export(make_batch(2, start=200))
        worker.close()  # noted, left for the committer
        assert worker.unpublished_rows == 2
        holder.close()  # the committer commits what is left before it goes
        got = ids_of(rows(TABLE, tmp_path))
        assert len(got) == len(set(got)) == 12
        assert worker.lost_rows == holder.lost_rows == 0

    def test_refuses_a_batch_of_another_schema(self, tmp_path: Path) -> None:
        sink = IcebergSink(TABLE, data_dir=tmp_path, spool_dir=tmp_path / "s")
        with pytest.raises(SinkError):
            sink.export(pa.record_batch({"x": [1]}))
        sink.close()

    def test_a_file_published_again_after_a_crash_is_committed_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A writer killed after noting a staged file, before removing it: whoever adopts
        it publishes it again under the same file id, and the committer adds it once."""
        catalog = tmp_path / "catalog"  # missing at first: the catalog does not answer
        monkeypatch.setenv("PYICEBERG_CATALOG__LATE__URI", f"sqlite:///{catalog / 'c.db'}")
        monkeypatch.setenv("PYICEBERG_CATALOG__LATE__WAREHOUSE", (tmp_path / "wh").as_uri())
        name, spool = "late.ns.t", tmp_path / "spool"

        def sink() -> IcebergSink:
            made = IcebergSink(name, data_dir=tmp_path, spool_dir=spool, commit_interval_s=60)
            made.open()
            return made

        def staged() -> list[Path]:
            return list(spool.glob("iceberg/*/data/*/*/*.parquet"))

        writer = sink()
        writer.export(make_batch(6))
        with pytest.raises(SinkError, match="wait in"):
            writer.close()  # the file stays staged
        [left] = staged()
        kept = tmp_path / "kept.parquet"
        shutil.copy(left, kept)
        catalog.mkdir()
        first = sink()
        assert first.stats()["adopted"] == 1
        first.close()  # published, noted and committed
        assert staged() == []
        shutil.copy(kept, left)  # as if its publisher died before removing it
        again = sink()
        assert again.stats()["adopted"] == 1
        again.close()
        assert again.committer is not None and again.committer.stats.already_committed == 1
        got = ids_of(rows(name, tmp_path))
        assert len(got) == len(set(got)) == 6

    def test_a_file_past_the_millionth_of_its_writer_is_published(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A server writing a file per partition every commit interval numbers its files
        past 999999 within weeks: such a file is adopted, published and committed like
        any other, not left staged forever (nor ahead of every file after it)."""
        catalog = tmp_path / "catalog"  # missing at first: the catalog does not answer
        monkeypatch.setenv("PYICEBERG_CATALOG__LATE__URI", f"sqlite:///{catalog / 'c.db'}")
        monkeypatch.setenv("PYICEBERG_CATALOG__LATE__WAREHOUSE", (tmp_path / "wh").as_uri())
        name, spool = "late.ns.t", tmp_path / "spool"
        writer = IcebergSink(name, data_dir=tmp_path, spool_dir=spool, commit_interval_s=60)
        writer.export(make_batch(6))
        with pytest.raises(SinkError, match="wait in"):
            writer.close()  # the file stays staged
        [left] = spool.glob("iceberg/*/data/*/*/*.parquet")
        left.rename(left.with_name(left.name.replace("-000001-", "-1000001-")))
        catalog.mkdir()
        sink = IcebergSink(name, data_dir=tmp_path, spool_dir=spool, commit_interval_s=60)
        sink.open()
        assert sink.stats()["adopted"] == 1
        sink.close()
        assert list(spool.glob("iceberg/*/data/*/*/*.parquet")) == []
        got = ids_of(rows(name, tmp_path))
        assert len(got) == len(set(got)) == 6

    def test_a_first_flush_opens_and_publishes_what_a_dead_writer_staged(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A sink used on its own opens at its first flush, as at its first export: the
        files a dead writer left staged are published and committed by that flush."""
        catalog = tmp_path / "catalog"  # missing at first: the catalog does not answer
        monkeypatch.setenv("PYICEBERG_CATALOG__LATE__URI", f"sqlite:///{catalog / 'c.db'}")
        monkeypatch.setenv("PYICEBERG_CATALOG__LATE__WAREHOUSE", (tmp_path / "wh").as_uri())
        name, spool = "late.ns.t", tmp_path / "spool"
        writer = IcebergSink(name, data_dir=tmp_path, spool_dir=spool, commit_interval_s=60)
        writer.export(make_batch(6))
        with pytest.raises(SinkError, match="wait in"):
            writer.close()  # the file stays staged
        catalog.mkdir()
        sink = IcebergSink(name, data_dir=tmp_path, spool_dir=spool, commit_interval_s=60)
        sink.flush()
        assert len(ids_of(rows(name, tmp_path))) == 6
        sink.close()

    def test_a_flush_after_close_leaves_the_commit_lock_free(self, tmp_path: Path) -> None:
        """close() lets go of the box's commit lock; a flush after it (a logger flushed
        after it was closed) does nothing, and never takes the lock back, which would
        stop every other process of the box from committing while this one lives."""
        spool = tmp_path / "s"
        sink = IcebergSink(TABLE, data_dir=tmp_path, spool_dir=spool, commit_interval_s=60)
        sink.export(make_batch(3))
        sink.close()
        sink.flush()
        lock = CommitLock(spool, TABLE)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if lock.try_acquire() else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the closed sink holds the lock"
        assert rows(TABLE, tmp_path).num_rows == 3

    def test_a_catalog_that_does_not_answer_stages_within_the_bound(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """open() does not refuse a catalog that does not answer; files wait on local
        disk, counted unpublished, until spool_max_bytes, past which batches are refused
        and counted; close() leaves them staged for the next process."""
        monkeypatch.setenv(
            "PYICEBERG_CATALOG__DOWN__URI", f"postgresql+psycopg2://u@{closed_port()}/d"
        )
        monkeypatch.setenv("PYICEBERG_CATALOG__DOWN__WAREHOUSE", (tmp_path / "wh").as_uri())
        spool = tmp_path / "spool"
        sink = IcebergSink("down.ns.t", data_dir=tmp_path, spool_dir=spool, spool_max_bytes=1)
        sink.open()
        sink.export(make_batch(5))
        with pytest.raises(SinkError, match="wait in"):
            sink.flush()
        assert sink.unpublished_rows == 5
        with pytest.raises(SinkError, match="batch refused"):
            sink.export(make_batch(3, start=5))
        assert sink.stats()["refused"] == 3 and sink.unpublished_rows == 5
        with pytest.raises(SinkError, match="wait in"):
            sink.close()
        sink.close()  # safe twice
        assert len(list(spool.glob("iceberg/*/data/*/*/*.parquet"))) == 1
        assert sink.lost_rows == 0

    def test_a_misconfigured_catalog_is_refused_at_open_not_before(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"^table: must name a table"):
            IcebergSink("not-a-table", data_dir=tmp_path, spool_dir=tmp_path / "s")
        sink = IcebergSink("nowhere.ns.t", data_dir=tmp_path, spool_dir=tmp_path / "s")
        assert not (tmp_path / "s").exists()  # the constructor touched nothing
        with pytest.raises(ConfigError, match="PYICEBERG_CATALOG__NOWHERE__URI"):
            sink.open()

    def test_a_sink_opened_and_never_closed_warns(self, tmp_path: Path) -> None:
        sink = IcebergSink(TABLE, data_dir=tmp_path, spool_dir=tmp_path / "s")
        sink.open()
        with pytest.warns(ResourceWarning, match="never closed"):
            sink.__del__()
        sink.close()

    def test_a_forked_child_writes_its_own_files_and_leaves_the_parents(
        self, tmp_path: Path
    ) -> None:
        """The parent's open file is the parent's: the child forgets it and writes and
        commits its own records; the parent's are committed by the parent, once."""
        sink = IcebergSink(TABLE, data_dir=tmp_path, spool_dir=tmp_path / "s", commit_interval_s=60)
        sink.export(make_batch(4))
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sink.after_fork_in_child()
                ok = sink.unpublished_rows == 0
                sink.export(make_batch(3, start=100))
                sink.close()
                code = 0 if ok and sink.unpublished_rows == 0 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert sink.unpublished_rows == 4
        sink.close()
        got = ids_of(rows(TABLE, tmp_path))
        assert len(got) == len(set(got)) == 7


class TestOffsetsAndCli:
    def test_table_offsets_newest_value_wins_per_partition(self, tmp_path: Path) -> None:
        table = open_table(TABLE, data_dir=tmp_path)
        key = offsets_key("t", "g")
        for offsets in ({"0": 10, "1": 5}, {"0": 20}, {"2": 7}):
            with (
                table.transaction() as tx,
                tx.update_snapshot(snapshot_properties={key: json.dumps(offsets)}).fast_append(),
            ):
                pass
        assert table_offsets(table, "t", "g") == {0: 20, 1: 5, 2: 7}
        assert table_offsets(table, "t", "other") == {}

    def test_predlog_commit_once(self, tmp_path: Path) -> None:
        write_noted(TABLE, tmp_path, make_batch(9, model=lambda i: f"m{i % 3}"))
        done = predlog_cli(
            "commit", "--table", TABLE, "--data", str(tmp_path), "--once", "-o", "json"
        )
        assert done.returncode == 0, done.stderr
        said = json.loads(done.stdout)
        assert (said["commits"], said["files"], said["rows"]) == (1, 3, 9)
        assert said["mean_ms"] > 0 and said["committer"].endswith(
            str(said["committer"]).split("-")[-1]
        )
        assert rows(TABLE, tmp_path).num_rows == 9


class TestLogger:
    def test_a_logger_with_iceberg_table_commits_every_record_once(self, tmp_path: Path) -> None:
        import predlog

        with predlog.PredictionLogger(
            data_dir=tmp_path,
            iceberg_table=TABLE,
            iceberg_commit_interval_s=0.2,
            flush_interval_s=0.05,
            install_signal_handlers=False,
        ) as log:
            for i in range(2000):
                log.log(request_id=f"q-{i}", features={"i": i}, score=0.25)
        got = rows(TABLE, tmp_path).column("request_id").to_pylist()
        assert sorted(str(v) for v in got) == sorted(f"q-{i}" for i in range(2000))
        assert log.stats()["failed"] == 0

    def test_iceberg_commit_false_leaves_committing_to_predlog_commit(self, tmp_path: Path) -> None:
        """With iceberg_commit off a server only writes and notes files: nothing is
        committed until a central committer runs, and the records stay pending."""
        import predlog

        with predlog.PredictionLogger(
            data_dir=tmp_path,
            iceberg_table=TABLE,
            iceberg_commit=False,
            iceberg_commit_interval_s=0.1,
            install_signal_handlers=False,
        ) as log:
            for i in range(50):
                log.log(request_id=f"c-{i}", score=0.5)
        assert log.stats()["pending"] == 50 and log.stats()["failed"] == 0
        assert rows(TABLE, tmp_path).num_rows == 0
        done = predlog_cli("commit", "--table", TABLE, "--data", str(tmp_path), "--once")
        assert done.returncode == 0, done.stderr
        assert rows(TABLE, tmp_path).num_rows == 50

    def test_preflight_names_the_setting(self, tmp_path: Path) -> None:
        """preflight alone (what BentoML's supervisor runs) refuses a bad table."""
        from predlog._logger import preflight

        with pytest.raises(ConfigError, match=r"iceberg_table.*PYICEBERG_CATALOG__NOWHERE__URI"):
            preflight({"data_dir": str(tmp_path), "iceberg_table": "nowhere.ns.t"})
        with pytest.raises(ConfigError, match="iceberg_table"):
            preflight({"data_dir": "s3://bucket/x", "iceberg_table": "ns.t"})
        assert preflight({"data_dir": str(tmp_path), "iceberg_table": "ns.t"}).iceberg_table
