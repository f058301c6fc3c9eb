"""Keeping an Iceberg table's storage bounded: old snapshots expired, orphan files removed.

Both delete only what no reader and no writer can still need.

* **Expiry keeps a retention window**: the table's ``history.expire.max-snapshot-age-ms``
  (Iceberg's default, 5 days) unless given. Snapshots younger than it, and every file
  they reference, stay, so a query planned on one (a reader mid-scan, a time-travel
  query) still finds its files. Expiry never goes past the newest compaction snapshot
  (marked :data:`COMPACTION_KEY`): it carries what writers read back from the snapshots
  before it (a Kafka consumer's offsets, the committer's file ids), and the snapshots
  after it hold only their own. pyiceberg's expiry leaves the data files, so the ones
  that only the expired snapshots referenced are deleted here.
* **Orphan removal** deletes the files under the table's data location that no snapshot
  references and no pending note names, and that are older than a window (3 days, as
  Iceberg's ``remove_orphan_files``): what a writer killed mid-file, a Kafka consumer
  killed before its commit, or a compaction refused by the catalog left behind. A file
  a live writer may still commit is named by a note (the committer commits only noted
  files) or is younger than the window (a consumer's batch or a compaction being
  written, a file uploaded just before its note).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Final

import pyarrow.fs as pafs

from predlog.sinks.iceberg import Notes, ancestors, filesystem, summary_value

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

#: The summary key of a compaction's snapshot (its value: the day compacted).
COMPACTION_KEY: Final = "predlog.compaction"
#: Iceberg's table property for how long snapshots are kept, and its default.
SNAPSHOT_AGE_PROPERTY: Final = "history.expire.max-snapshot-age-ms"
DEFAULT_RETAIN: Final = timedelta(days=5)
#: How old an unreferenced file must be to be removed (Iceberg's default).
DEFAULT_ORPHAN_AGE: Final = timedelta(days=3)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def retention(table: Table) -> timedelta:
    """How long the table keeps snapshots: its own setting, else Iceberg's default."""
    value = table.properties.get(SNAPSHOT_AGE_PROPERTY)
    return timedelta(milliseconds=int(value)) if value else DEFAULT_RETAIN


def expire_snapshots(
    table: Table, *, retain: timedelta | None = None, now: datetime | None = None
) -> tuple[int, int]:
    """Expire the snapshots older than ``retain`` (default :func:`retention`) and older
    than the newest compaction snapshot (a branch head or tag is kept); delete the files
    that only they referenced. Returns (snapshots expired, files deleted)."""
    table.refresh()
    carrier = next((s for s in ancestors(table) if summary_value(s, COMPACTION_KEY)), None)
    if carrier is None:
        return 0, 0  # nothing carries what the older snapshots say
    window = retention(table) if retain is None else retain
    oldest_kept = (now or datetime.now(tz=timezone.utc)) - window
    cutoff_ms = min(carrier.timestamp_ms, (oldest_kept - _EPOCH) // timedelta(milliseconds=1))
    expiring = [s for s in table.snapshots() if s.timestamp_ms < cutoff_ms]
    if not expiring:
        return 0, 0
    candidates = _referenced(table, expiring)
    cutoff = datetime.fromtimestamp(cutoff_ms / 1000, tz=timezone.utc)
    table.maintenance.expire_snapshots().older_than(cutoff).commit()
    table.refresh()
    remaining = table.snapshots()
    unreferenced = candidates - _referenced(table, remaining)
    for location in unreferenced:
        with contextlib.suppress(FileNotFoundError):
            table.io.delete(location)
    expired = {s.snapshot_id for s in expiring} - {s.snapshot_id for s in remaining}
    return len(expired), len(unreferenced)


def remove_orphan_files(table: Table, *, older_than: timedelta = DEFAULT_ORPHAN_AGE) -> int:
    """Delete the data files no snapshot references and no pending note names, last
    modified more than ``older_than`` ago. Returns how many were deleted."""
    fs, data = filesystem(table, table.location().rstrip("/") + "/data")
    cutoff = datetime.now(tz=timezone.utc) - older_than
    selector = pafs.FileSelector(data, recursive=True, allow_not_found=True)
    old = [
        info
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.mtime is not None and info.mtime < cutoff
    ]
    if not old:
        return 0
    # The notes before the snapshots: a note deleted since was deleted after its file's
    # commit, which the snapshots read next then hold.
    notes = Notes(table)
    ids = notes.ids()
    pending = notes.pending()
    noted = {filesystem(table, note.location)[1] for note in pending}
    # A note listed but not read (deleted meanwhile, or unreadable now): its file is
    # recognised by the id in its name.
    unread = ids - {note.file_id for note in pending}
    table.refresh()
    referenced = {filesystem(table, loc)[1] for loc in _referenced(table, table.snapshots())}
    orphans = [
        info.path
        for info in old
        if info.path not in referenced
        and info.path not in noted
        and not any(file_id in info.base_name for file_id in unread)
    ]
    for path in orphans:
        with contextlib.suppress(FileNotFoundError):
            fs.delete_file(path)
    return len(orphans)


def _referenced(table: Table, snapshots: Iterable[Snapshot]) -> set[str]:
    """The locations of the files (data and deletes) live in any of ``snapshots``; a
    manifest that several of them share is read once."""
    manifests = {m.manifest_path: m for s in snapshots for m in s.manifests(table.io)}
    return {
        entry.data_file.file_path
        for manifest in manifests.values()
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
    }
