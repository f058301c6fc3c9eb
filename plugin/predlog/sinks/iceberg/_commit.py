"""The committer: noted data files into the table, one commit per interval.

Iceberg commits are optimistic: a commit names the snapshot it was built on, and the
catalog refuses it (``CommitFailedException``) when another commit landed first. Many
committers on one table therefore fail under load (apache/iceberg-python#1084), which
is why predlog has one per table: workers only write files and notes.

Never twice, never lost:

* each commit's snapshot summary lists the file ids it added (``predlog.files``) and
  who committed (``predlog.committer``);
* before every attempt the committer walks the snapshots newer than the ones it has
  already read and drops the files they list. A retry after a refused or unknown
  outcome, a second committer racing this one, or a committer that died between its
  commit and deleting the notes, therefore never adds a file again;
* a note is deleted only after its file is committed, so a file written and noted is
  committed later by whoever commits next, whatever died in between.

A file this process has just written is described to Iceberg from the footer its writer
kept (:func:`append_written`); any other is read back by pyiceberg's ``add_files``.
Either way the commit holds the same statistics and partition.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from predlog.sinks.iceberg._files import DataFile, writer_tag
from predlog.sinks.iceberg._notes import Note, Notes

if TYPE_CHECKING:
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

#: Snapshot summary keys predlog writes.
FILES_KEY: Final = "predlog.files"
COMMITTER_KEY: Final = "predlog.committer"
#: Notes older than this before a snapshot's time are never looked for in it: a note is
#: written before its file is committed, allowing for clocks that disagree this much.
_CLOCK_SLACK_MS: Final = 3_600_000


class Refused(Exception):  # noqa: N818  # a decision, not an error of the caller's
    """A commit attempt found that it must not go ahead (raised by a ``prepare``)."""


def ancestors(table: Table, *, until: int | None = None) -> Iterator[Snapshot]:
    """The current snapshot and its ancestors, newest first, stopping before ``until``."""
    snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id != until:
        yield snapshot
        if snapshot.parent_snapshot_id is None:
            return
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id)


def summary_value(snapshot: Snapshot, key: str) -> str | None:
    """One property of a snapshot's summary, or None."""
    if snapshot.summary is None:
        return None
    value = snapshot.summary.additional_properties.get(key)
    return None if value is None else str(value)


def _is_conflict(exc: Exception) -> bool:
    from pyiceberg.exceptions import (  # noqa: PLC0415  # optional dependency
        CommitFailedException,
        CommitStateUnknownException,
    )

    return isinstance(exc, (CommitFailedException, CommitStateUnknownException))


@dataclass
class CommitStats:
    """What a committer did: commits, files, rows, and how long each commit took."""

    commits: int = 0
    files: int = 0
    rows: int = 0
    #: Attempts refused because another commit landed first (then retried).
    conflicts: int = 0
    #: Attempts that failed otherwise (catalog or store away), retried with backoff.
    errors: int = 0
    #: Files found already committed when about to add them (a race, or a restart).
    already_committed: int = 0
    #: Notes whose data file was missing, set aside under ``lost/`` and counted here.
    lost_files: int = 0
    lost_rows: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


def no_blind_retry(table: Table) -> None:
    """Turn off pyiceberg's own retry for this table object (not for the table).

    On a refused commit pyiceberg (0.12) re-applies the same append on the new base by
    itself, without asking whether the files or offsets are still to be added: after a
    racing committer, or another consumer's commit of the same offsets, that adds them
    twice. predlog retries itself, after ``prepare`` has looked. The property is set on
    this in-memory copy of the metadata only; the catalog builds the next metadata from
    its own copy, so the table's setting (which Spark's writers honour) is untouched.
    """
    properties = {**table.metadata.properties, "commit.retry.num-retries": "0"}
    table.metadata = table.metadata.model_copy(update={"properties": properties})


def append_written(table: Table, files: Sequence[DataFile], properties: dict[str, str]) -> None:
    """Add ``files`` in one commit, each described from the footer its writer kept.

    What pyiceberg's ``add_files`` does, without reading each file back from the store
    (a footer read and a size request per file): the statistics and the partition come
    from the same footer, the name mapping is set as ``add_files`` sets it, and the
    table's choice of fast or merging append is honoured.
    """
    from pyiceberg.io.pyarrow import (  # noqa: PLC0415  # optional dependency
        compute_statistics_plan,
        data_file_statistics_from_parquet_metadata,
        parquet_path_to_id_mapping,
    )
    from pyiceberg.manifest import DataFile as IcebergFile  # noqa: PLC0415
    from pyiceberg.manifest import DataFileContent, FileFormat  # noqa: PLC0415
    from pyiceberg.table import TableProperties  # noqa: PLC0415
    from pyiceberg.utils.properties import property_as_bool  # noqa: PLC0415

    with table.transaction() as tx:
        if tx.table_metadata.name_mapping() is None:
            mapping = tx.table_metadata.schema().name_mapping.model_dump_json()
            tx.set_properties({TableProperties.DEFAULT_NAME_MAPPING: mapping})
        metadata = tx.table_metadata
        schema = metadata.schema()
        plan = compute_statistics_plan(schema, metadata.properties)
        columns = parquet_path_to_id_mapping(schema)
        update = tx.update_snapshot(snapshot_properties=properties)
        merge = property_as_bool(
            metadata.properties,
            TableProperties.MANIFEST_MERGE_ENABLED,
            TableProperties.MANIFEST_MERGE_ENABLED_DEFAULT,
        )
        with update.merge_append() if merge else update.fast_append() as append:
            for file in files:
                if file.footer is None:
                    raise ValueError(f"no footer kept for {file.location}")
                statistics = data_file_statistics_from_parquet_metadata(
                    parquet_metadata=file.footer,
                    stats_columns=plan,
                    parquet_column_mapping=columns,
                )
                append.append_data_file(
                    IcebergFile.from_args(
                        content=DataFileContent.DATA,
                        file_path=file.location,
                        file_format=FileFormat.PARQUET,
                        partition=statistics.partition(metadata.spec(), schema),
                        file_size_in_bytes=file.size,
                        sort_order_id=None,
                        spec_id=metadata.default_spec_id,
                        equality_ids=None,
                        key_metadata=None,
                        **statistics.to_serialized_dict(),
                    )
                )


def commit_with_retry(
    table: Table,
    prepare: Callable[[Table], tuple[list[str], dict[str, str]]],
    *,
    stats: CommitStats,
    written: Sequence[DataFile] = (),
    attempts: int = 8,
    backoff_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Add files in one commit; on refusal refresh, ``prepare`` again, back off, retry.

    ``prepare(table)`` returns the file locations and summary properties of the next
    attempt against the table as it now is (an empty list: nothing left to add), or
    raises :class:`Refused`. ``written``: files this process wrote, whose footers it
    kept; an attempt made only of them is described from those footers, any other is
    read back. Returns whether a commit was made by this call.
    """
    kept = {f.location: f for f in written if f.footer is not None}
    for attempt in range(attempts):
        locations, properties = prepare(table)
        no_blind_retry(table)
        if not locations:
            return False
        try:
            if all(location in kept for location in locations):
                append_written(table, [kept[loc] for loc in locations], properties)
            else:
                table.add_files(
                    locations, snapshot_properties=properties, check_duplicate_files=False
                )
        except FileNotFoundError:
            raise
        except Exception as exc:
            if attempt == attempts - 1:
                raise
            if _is_conflict(exc):
                stats.conflicts += 1
            else:
                stats.errors += 1
            delay = min(backoff_s * 2**attempt, 5.0)
            sleep(delay * (0.5 + random.random()))  # noqa: S311  # jitter, not secrecy
            table.refresh()
            continue
        return True
    return False


class Committer:
    """Commits the table's pending notes; one instance per committing process."""

    def __init__(self, table: Table, *, attempts: int = 8, backoff_s: float = 0.05) -> None:
        self.table = table
        self.notes = Notes(table)
        self.stats = CommitStats()
        self.tag = writer_tag()
        self._attempts = attempts
        self._backoff = backoff_s
        #: File ids seen in snapshots already read, and the newest snapshot read.
        self._committed: set[str] = set()
        self._read_until: int | None = None
        self._oldest_read_ms: int | None = None
        #: Called with the file ids of each commit this committer makes.
        self.on_commit: Callable[[list[str]], None] | None = None

    def _read_snapshots(self, since_ms: int) -> None:
        """Learn the file ids of snapshots not read yet (back to ``since_ms``)."""
        newest = self.table.current_snapshot()
        back_to = self._read_until
        if self._oldest_read_ms is not None and since_ms < self._oldest_read_ms:
            back_to = None  # an older note than any read for: read further back
        for snapshot in ancestors(self.table, until=back_to):
            if snapshot.timestamp_ms < since_ms - _CLOCK_SLACK_MS:
                break
            listed = (
                snapshot.summary.additional_properties.get(FILES_KEY) if snapshot.summary else None
            )
            if listed:
                self._committed.update(listed.split(","))
        self._read_until = newest.snapshot_id if newest is not None else None
        if self._oldest_read_ms is None or since_ms < self._oldest_read_ms:
            self._oldest_read_ms = since_ms

    def commit_pending(self) -> int:
        """Commit every pending note in one commit; return the rows committed."""
        pending = self.notes.pending()
        if not pending:
            return 0
        since = min(n.created_ms for n in pending)
        chosen: list[Note] = []

        def prepare(table: Table) -> tuple[list[str], dict[str, str]]:
            self._read_snapshots(since)
            already = [n for n in pending if n.file_id in self._committed]
            if already:
                self.stats.already_committed += len(already)
                self.notes.delete([n.file_id for n in already])
                for n in already:
                    pending.remove(n)
            chosen[:] = pending
            properties = {
                FILES_KEY: ",".join(n.file_id for n in pending),
                COMMITTER_KEY: self.tag,
            }
            return [n.location for n in pending], properties

        started = time.perf_counter()
        while True:
            try:
                made = commit_with_retry(
                    self.table,
                    prepare,
                    stats=self.stats,
                    attempts=self._attempts,
                    backoff_s=self._backoff,
                )
                break
            except FileNotFoundError:
                if not self._set_aside_missing(pending):
                    raise
        if not made:
            return 0
        self.stats.latencies_ms.append((time.perf_counter() - started) * 1000)
        ids = [n.file_id for n in chosen]
        self._committed.update(ids)
        rows = sum(n.rows for n in chosen)
        self.stats.commits += 1
        self.stats.files += len(chosen)
        self.stats.rows += rows
        self.notes.delete(ids)
        if self.on_commit is not None:
            self.on_commit(ids)
        return rows

    def _set_aside_missing(self, pending: list[Note]) -> int:
        """Set aside the notes whose data file is gone; return how many."""
        missing = 0
        for note in list(pending):
            if not self.notes.exists(note.location, self.table):
                self.notes.set_aside(note)
                pending.remove(note)
                self.stats.lost_files += 1
                self.stats.lost_rows += note.rows
                missing += 1
        return missing
