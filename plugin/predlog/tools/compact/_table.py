"""Compacting a day of the Iceberg table: its small data files replaced in one commit.

Per partition of the day (``day(timestamp_utc)``, ``model_name``), the data files under
the target size are read and written again as files of about that size, and one
snapshot removes exactly those files and adds the new ones. The commit names the files
it removes, so a file the committer appends meanwhile is never touched; if another
commit removed one of them first, the commit fails and the day is planned again.

Then the table is kept bounded (:mod:`._housekeeping`): snapshots older than a retention
window and than the compaction's own are expired, the files only they referenced (small
files replaced long enough ago) deleted, and orphan files removed. What predlog's writers
read back from snapshot summaries is carried into the compaction's snapshot (see
:func:`_carried`), so that expiring the older ones loses neither where a Kafka consumer
resumes nor the committer's record of which noted files it committed.

The new files are written by the sink's own writer (one partition per file, no field
ids) and described to Iceberg from their footers, as the committer's ``add_files``
does. The snapshot's operation is ``overwrite`` (pyiceberg 0.12 offers no
``replace``); its rows are the same.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from predlog.sinks.iceberg import (
    FILES_KEY,
    OFFSETS_PREFIX,
    FileWriter,
    Notes,
    OpenFile,
    ancestors,
    open_table,
)
from predlog.tools.compact._housekeeping import (
    COMPACTION_KEY,
    DEFAULT_ORPHAN_AGE,
    expire_snapshots,
    remove_orphan_files,
)
from predlog.tools.compact._rebatch import rebatch
from predlog.tools.compact._report import CompactError, CompactReport, DayReport

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import FileScanTask, Table

    from predlog.tools.analytics import Progress

#: Summary keys Iceberg computes for every snapshot; any other key is the writer's own.
_ICEBERG_SUMMARY: Final = re.compile(
    r"^(operation|(added|deleted|removed|total|changed)-.*|partitions\..*"
    r"|partition-summaries-included|engine-.*|iceberg-version)$"
)
_ATTEMPTS: Final = 8


def compact_table(
    name: str,
    *,
    data_dir: str | Path,
    dates: list[str] | None = None,
    target_bytes: int = 128 << 20,
    today: date | None = None,
    expire: bool = True,
    retain: timedelta | None = None,
    orphans_older_than: timedelta = DEFAULT_ORPHAN_AGE,
    progress: Progress | None = None,
) -> CompactReport:
    """Compact the days ``dates`` (default: every day before ``today``, UTC) of the table
    ``name``; then expire the snapshots older than ``retain`` (default: the table's
    ``history.expire.max-snapshot-age-ms``, else 5 days) and the last compaction, and
    remove the orphan files older than ``orphans_older_than``."""
    table = open_table(name, data_dir=data_dir, create=False)
    if dates is None:
        before = today or datetime.now(tz=timezone.utc).date()
        dates = _days_before(table, before)
    report = CompactReport(target=name)
    for number, day in enumerate(dates):
        if progress is not None:
            progress("compacting days", number, len(dates))
        report.days.append(_compact_day(table, day, target_bytes))
    if expire:
        if progress is not None:
            progress("expiring snapshots")
        report.expired_snapshots, report.deleted_files = expire_snapshots(table, retain=retain)
    if progress is not None:
        progress("removing orphan files")
    report.orphan_files = remove_orphan_files(table, older_than=orphans_older_than)
    return report


def _day_range(day: str) -> tuple[str, str]:
    try:
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise CompactError(f"--date {day!r} is not a date (2026-10-01)") from None
    return start.isoformat(), (start + timedelta(days=1)).isoformat()


def _days_before(table: Table, before: date) -> list[str]:
    start = datetime(before.year, before.month, before.day, tzinfo=timezone.utc).isoformat()
    days = set()
    for task in table.scan(row_filter=f"timestamp_utc < '{start}'").plan_files():
        days.add(_partition_day(table, task))
    return sorted(days)


def _partition_of(table: Table, task: FileScanTask) -> tuple[int, str]:
    """The file's partition: (day since the epoch, model name)."""
    spec = table.specs()[task.file.spec_id]
    schema = table.schema()
    day: int | None = None
    model: str | None = None
    for position, field in enumerate(spec.fields):
        source = schema.find_field(field.source_id).name
        if source == "timestamp_utc" and str(field.transform) == "day":
            day = int(task.file.partition[position])
        elif source == "model_name" and str(field.transform) == "identity":
            model = str(task.file.partition[position])
    if day is None or model is None:
        raise CompactError(f"{table.name()} is not partitioned by day(timestamp_utc), model_name")
    return day, model


def _partition_day(table: Table, task: FileScanTask) -> str:
    days = _partition_of(table, task)[0]
    return (date(1970, 1, 1) + timedelta(days=days)).isoformat()


def _compact_day(table: Table, day: str, target_bytes: int) -> DayReport:
    """Plan, rewrite and commit one day; replanned from the start if a commit conflicts."""
    from pyiceberg.exceptions import (  # noqa: PLC0415
        CommitFailedException,
        ValidationException,
    )

    for attempt in range(_ATTEMPTS):
        started = time.monotonic()
        table.refresh()
        tasks = _tasks_of(table, day)
        report = DayReport(
            date=day,
            files_before=len(tasks),
            bytes_before=sum(t.file.file_size_in_bytes for t in tasks),
            rows=sum(t.file.record_count for t in tasks),
        )
        groups = _small_groups(tasks, target_bytes)
        if not groups:
            report.files_after, report.bytes_after = report.files_before, report.bytes_before
            report.kept_files = len(tasks)
            report.seconds = time.monotonic() - started
            return report
        old = [t.file for group in groups for t in group]
        new = [f for group in groups for f in _rewrite(table, group, target_bytes)]
        try:
            _commit(table, old, new, day)
        except (CommitFailedException, ValidationException):
            # Refused: another commit landed first (or removed one of these files). The
            # new files are in no snapshot; plan again. (Any other failure may have
            # committed after all, so its files are left where they are.)
            _delete(table, [f.file_path for f in new])
            time.sleep(min(2.0, 0.05 * 2**attempt))
            continue
        report.files_after = report.files_before - len(old) + len(new)
        report.bytes_after = (
            report.bytes_before
            - sum(f.file_size_in_bytes for f in old)
            + sum(f.file_size_in_bytes for f in new)
        )
        report.bytes_rewritten = sum(f.file_size_in_bytes for f in old)
        report.kept_files = report.files_before - len(old)
        report.seconds = time.monotonic() - started
        return report
    raise CompactError(f"{day}: every commit of {_ATTEMPTS} conflicted with another writer's")


def _tasks_of(table: Table, day: str) -> list[FileScanTask]:
    start, end = _day_range(day)  # checked dates: safe to put in the filter's text
    scan = table.scan(row_filter=f"timestamp_utc >= '{start}' AND timestamp_utc < '{end}'")
    tasks = [t for t in scan.plan_files() if _partition_day(table, t) == day]
    if any(t.delete_files for t in tasks):
        raise CompactError(f"{day} has delete files, which this compaction does not rewrite")
    return tasks


def _small_groups(tasks: list[FileScanTask], target_bytes: int) -> list[list[FileScanTask]]:
    """The small files of each partition, where a partition has two or more of them."""
    by_partition: dict[Any, list[FileScanTask]] = defaultdict(list)
    for task in tasks:
        if task.file.file_size_in_bytes < target_bytes:
            by_partition[(task.file.spec_id, repr(task.file.partition))].append(task)
    return [group for group in by_partition.values() if len(group) >= 2]


def _rewrite(table: Table, group: list[FileScanTask], target_bytes: int) -> list[DataFile]:
    """New data files of about ``target_bytes`` holding every row of ``group`` (one
    partition), written as the sink writes them; checked to hold as many rows."""
    from pyiceberg.expressions import AlwaysTrue  # noqa: PLC0415
    from pyiceberg.io.pyarrow import ArrowScan, parquet_file_to_data_file  # noqa: PLC0415

    day, model = _partition_of(table, group[0])
    writer = FileWriter(table)
    scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
    written: list[str] = []
    handle: OpenFile | None = None
    try:
        for batch in rebatch(scan.to_record_batches(group)):
            if handle is None:
                handle = writer.open(day, model)
            handle.write(batch)
            if handle.size >= target_bytes:
                written.append(handle.close().location)
                handle = None
        if handle is not None:
            written.append(handle.close().location)
            handle = None
        new = [parquet_file_to_data_file(table.io, table.metadata, path) for path in written]
    except BaseException:
        if handle is not None:
            handle.abandon()
            written.append(handle.location)
        _delete(table, written)
        raise
    expected = sum(t.file.record_count for t in group)
    if sum(f.record_count for f in new) != expected:
        _delete(table, written)
        raise CompactError(f"rewrote {sum(f.record_count for f in new)} rows of {expected}")
    return new


def _carried(table: Table) -> dict[str, str]:
    """The summary properties the compaction's snapshot carries, so that expiring the
    snapshots before it loses nothing a writer reads back:

    * the current snapshot's own (not Iceberg's) properties;
    * each Kafka consumer's offsets merged over every ancestor (a commit records only
      the partitions it consumed; newest wins), where the consumer resumes;
    * among the file ids the committer listed in ancestors, those whose note is still
      pending (a committer that died between its commit and deleting the note): the
      committer drops such a note only if some snapshot it reads lists its file.
    """
    current = table.current_snapshot()
    summary = current.summary if current is not None else None
    carried = {
        key: str(value)
        for key, value in (summary.additional_properties if summary is not None else {}).items()
        if not _ICEBERG_SUMMARY.match(key)
    }
    pending = Notes(table).ids()
    files = set(filter(None, carried.get(FILES_KEY, "").split(",")))
    offsets: dict[str, dict[str, int]] = {}
    for snapshot in ancestors(table):
        properties = snapshot.summary.additional_properties if snapshot.summary else {}
        for key, value in properties.items():
            if key.startswith(OFFSETS_PREFIX):
                merged = offsets.setdefault(key, {})
                for partition, offset in json.loads(value).items():
                    merged.setdefault(str(partition), int(offset))
            elif key == FILES_KEY and pending:
                files.update(pending.intersection(str(value).split(",")))
    for key, merged in offsets.items():
        carried[key] = json.dumps(dict(sorted(merged.items(), key=lambda po: int(po[0]))))
    if files:
        carried[FILES_KEY] = ",".join(sorted(files))
    return carried


def _commit(table: Table, old: list[DataFile], new: list[DataFile], day: str) -> None:
    """Replace ``old`` by ``new`` in one snapshot, marked as the compaction of ``day``."""
    properties = {**_carried(table), COMPACTION_KEY: day}
    with (
        table.transaction() as transaction,
        transaction.update_snapshot(snapshot_properties=properties).overwrite() as overwrite,
    ):
        for data_file in old:
            overwrite.delete_data_file(data_file)
        for data_file in new:
            overwrite.append_data_file(data_file)


def _delete(table: Table, paths: list[str]) -> None:
    for path in paths:
        try:
            table.io.delete(path)
        except FileNotFoundError:
            continue
