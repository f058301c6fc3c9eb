"""Compacting a day of the Parquet layout: small files rewritten into large ones.

The readers' guarantee is that a listing of ``date=YYYY-MM-DD`` holds either the old
files or the new ones, never both and never neither. So the new files are written by a
:class:`~predlog.ParquetSink` (the same names, schema and encodings as every other file)
into a staging directory under ``<data_dir>/.compact`` (outside ``predictions/``, so no
reader's glob finds it), and the two directories are exchanged in one system call
(:func:`predlog.tools.compact._swap.exchange`).

Writers keep writing meanwhile. A file published into the day after the compaction
listed it, and a temporary file a live writer still holds, are hard-linked into the new
directory before the exchange, and whatever arrived between that and the exchange is
linked in after it: a record written late for that day is never lost. A writer renames
its temporary file by path, so after the exchange its rename lands in the new directory.

Files of another schema than today's (written by an older predlog) are left as they
are, beside the merged ones: the sink writes one schema only.

Only a local data directory can be compacted this way: an object store has no atomic
rename of a directory. Use an Iceberg table there (``predlog compact --table``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.parquet as pq

from predlog._record import arrow_schema
from predlog._settings import local_path, url_scheme
from predlog.sinks import ParquetSink
from predlog.storage import fsync_dir
from predlog.tools.compact._rebatch import ROWS_PER_GROUP, rebatch
from predlog.tools.compact._report import CompactError, CompactReport, DayReport
from predlog.tools.compact._swap import exchange

if TYPE_CHECKING:
    from predlog.tools.analytics import Progress

#: Where compactions stage their files, under the data directory.
STAGING: Final = ".compact"
#: A compacted file's sequence number counts down from the last one, where a writer's
#: counts up from 1: a compaction run inside a process that also logs (same host, pid
#: and second) never takes the name of a file that process publishes.
_LAST_SEQ: Final = 999_999
_RESERVED: Final = re.compile(r"-\d{6}\.parquet$")
#: The file listing the inputs of a staged compaction, for recovery after a crash.
_INPUTS: Final = "inputs.txt"

#: Called with the day's directory after the new files are written and before the
#: exchange (tests use it to publish a file late).
OnStaged = Callable[[Path], None]


def local_root(data_dir: str | os.PathLike[str]) -> Path:
    """``data_dir`` as a local path; :class:`CompactError` for an object store URL."""
    text = os.fspath(data_dir)
    scheme = url_scheme(text)
    if scheme == "file":
        try:
            return local_path(text)
        except ValueError as exc:
            raise CompactError(str(exc)) from None
    if scheme is not None:
        raise CompactError(
            f"cannot compact the Parquet layout at {text}: an object store has no atomic "
            "rename, so readers would see old and new files together. Compact a local "
            "data directory, or log into an Iceberg table and run `predlog compact --table`"
        )
    return Path(text)


def compact_layout(
    data_dir: str | os.PathLike[str],
    *,
    dates: list[str] | None = None,
    target_bytes: int = 128 << 20,
    today: date | None = None,
    on_staged: OnStaged | None = None,
    progress: Progress | None = None,
) -> CompactReport:
    """Compact the days ``dates`` (default: every day before ``today``, UTC) under
    ``data_dir``. Files under ``target_bytes`` are merged into files of about that size."""
    root = local_root(data_dir)
    predictions = root / "predictions"
    if not predictions.is_dir():
        raise CompactError(f"no prediction files under {predictions}")
    if dates is None:
        before = (today or datetime.now(tz=timezone.utc).date()).isoformat()
        dates = sorted(
            d.name.removeprefix("date=")
            for d in predictions.glob("date=*")
            if d.is_dir() and d.name.removeprefix("date=") < before
        )
    for day in dates:
        try:
            datetime.strptime(day, "%Y-%m-%d")
        except ValueError:
            raise CompactError(f"{day!r} is not a date (2026-10-01)") from None
    report = CompactReport(target=str(predictions))
    staging = root / STAGING
    with _locked(staging):
        for leftover in sorted(staging.glob("*/")):
            _recover(leftover, predictions)
        for number, day in enumerate(dates):
            if progress is not None:
                progress("compacting days", number, len(dates))
            directory = predictions / f"date={day}"
            if not directory.is_dir():
                raise CompactError(f"no directory {directory} for --date {day}")
            report.days.append(
                _compact_day(directory, staging, target_bytes=target_bytes, on_staged=on_staged)
            )
    return report


@contextlib.contextmanager
def _locked(staging: Path) -> Iterator[None]:
    """One compaction at a time per data directory."""
    staging.mkdir(parents=True, exist_ok=True)
    fd = os.open(staging / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompactError(f"another compaction is running on {staging.parent}") from None
        yield
    finally:
        os.close(fd)


def _published(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("part-*.parquet") if p.is_file())


def _compact_day(
    directory: Path, staging: Path, *, target_bytes: int, on_staged: OnStaged | None
) -> DayReport:
    started = time.monotonic()
    day = directory.name.removeprefix("date=")
    listing = _published(directory)
    sizes = {p: p.stat().st_size for p in listing}
    schema = arrow_schema()
    small = [
        p
        for p in listing
        if sizes[p] < target_bytes and pq.read_schema(p).equals(schema, check_metadata=False)
    ]
    report = DayReport(date=day, files_before=len(listing), bytes_before=sum(sizes.values()))
    if len(small) < 2:  # nothing to merge
        report.files_after, report.bytes_after = report.files_before, report.bytes_before
        report.kept_files = len(listing)
        report.rows = sum(pq.read_metadata(p).num_rows for p in listing)
        report.seconds = time.monotonic() - started
        return report
    stage = staging / f"{day}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    inputs = {p.name for p in small}
    try:  # until the exchange, the day is untouched: a failure only removes the stage
        (stage / _INPUTS).write_text("".join(f"{name}\n" for name in sorted(inputs)))
        fresh = _rewrite(small, stage, day, target_bytes)
        for kept in listing:
            if kept.name not in inputs:
                os.link(kept, fresh / kept.name)
        if on_staged is not None:
            on_staged(directory)
        # Twice: the second pass takes what arrived during the first, so that what is
        # left for after the exchange is what arrived in the last few microseconds.
        late = _link_late(directory, fresh, inputs) + _link_late(directory, fresh, inputs)
        fsync_dir(fresh)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    exchange(directory, fresh)
    fsync_dir(directory)
    fsync_dir(fresh.parent)
    late += _reconcile(fresh, directory, inputs)
    shutil.rmtree(stage)
    after = _published(directory)
    report.files_after = len(after)
    report.bytes_after = sum(p.stat().st_size for p in after)
    report.rows = sum(pq.read_metadata(p).num_rows for p in after)
    report.bytes_rewritten = sum(sizes[p] for p in small)
    report.late_files = late
    report.kept_files = len(listing) - len(small)
    report.seconds = time.monotonic() - started
    return report


def _rewrite(small: list[Path], stage: Path, day: str, target_bytes: int) -> Path:
    """Write the rows of ``small`` into new files under ``stage``; the new day directory.

    Checked before anything is exchanged: every row is in the new files, all of this day.
    """
    sink = ParquetSink(stage, max_file_bytes=target_bytes, max_file_age_s=1e9)
    try:
        for chunk in _chunks(small):
            sink.export(chunk)
    finally:
        sink.close()
    made = [p.name for p in (stage / "predictions").iterdir()]
    if made != [f"date={day}"]:
        raise CompactError(f"date={day} holds rows of other days ({', '.join(sorted(made))})")
    fresh = stage / "predictions" / f"date={day}"
    expected = sum(pq.read_metadata(p).num_rows for p in small)
    outputs = _published(fresh)
    written = sum(pq.read_metadata(p).num_rows for p in outputs)
    if written != expected:
        raise CompactError(f"date={day}: wrote {written} rows of {expected}; nothing changed")
    for i, path in enumerate(outputs):
        path.rename(fresh / _RESERVED.sub(f"-{_LAST_SEQ - i:06d}.parquet", path.name))
    return fresh


def _chunks(files: list[Path]) -> Iterator[pa.RecordBatch]:
    """The rows of ``files`` in order, in large batches."""
    return rebatch(
        batch
        for path in files
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROWS_PER_GROUP)
    )


def _inodes(directory: Path) -> dict[int, str]:
    found = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                found[entry.inode()] = entry.name
    return found


def _link_late(source: Path, target: Path, inputs: set[str]) -> int:
    """Hard-link into ``target`` each file of ``source`` that is not an input and not
    there yet (by inode): files published late, and writers' open temporary files."""
    have = _inodes(target)
    linked = 0
    with os.scandir(source) as entries:
        for entry in entries:
            if entry.name in inputs or not entry.name.endswith((".parquet", ".parquet.tmp")):
                continue
            try:
                if entry.inode() in have:
                    continue
                os.link(entry.path, target / entry.name)
            except FileNotFoundError:
                continue  # published (renamed) meanwhile: the next pass sees its new name
            except FileExistsError:
                raise CompactError(
                    f"{entry.name} was written into {source} during the compaction under the "
                    "name of a compacted file; nothing changed"
                ) from None
            linked += 1
    return linked


def _reconcile(old: Path, new: Path, inputs: set[str]) -> int:
    """After the exchange: make ``new`` hold every file of ``old`` that is not an input.

    A file published into ``old`` after its temporary file was linked into ``new`` has
    its published name linked in and the stale temporary link removed (its writer has
    renamed it already and will not touch it again).
    """
    moved = 0
    for _ in range(2):  # the second pass sees what a writer renamed during the first
        have = _inodes(new)
        with os.scandir(old) as entries:
            for entry in entries:
                if entry.name in inputs or not entry.name.endswith((".parquet", ".parquet.tmp")):
                    continue
                there = have.get(entry.inode())
                if there == entry.name:
                    continue
                published = entry.name.endswith(".parquet")
                if there is None or published:
                    with contextlib.suppress(FileExistsError, FileNotFoundError):
                        os.link(entry.path, new / entry.name)
                        moved += 1 if there is None else 0
                if there is not None and published and there.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        (new / there).unlink()
    fsync_dir(new)
    return moved


def _recover(stage: Path, predictions: Path) -> None:
    """Finish or undo a compaction that died: if the exchange happened (the staged
    directory holds the inputs), keep every late file of the old directory; then
    remove the stage."""
    inputs_file = stage / _INPUTS
    days = list((stage / "predictions").glob("date=*"))
    if inputs_file.exists() and len(days) == 1:
        inputs = set(inputs_file.read_text().split())
        old, live = days[0], predictions / days[0].name
        if live.is_dir() and any((old / name).exists() for name in inputs):
            _reconcile(old, live, inputs)
    shutil.rmtree(stage)
