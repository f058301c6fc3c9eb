"""Publishing a staged data file into the table: upload it whole, then note it.

This is the Iceberg sink's :class:`predlog.storage.Destination`. The upload thread of
:class:`predlog.storage.Uploads` calls it, one file at a time; whatever fails (the
catalog not answering, the store refusing the upload or the note) leaves the file
staged on local disk, retried with backoff. Nothing here runs in the flusher's thread.

A file is published when its pending note is written, not when its upload completes:
a file uploaded and not noted would never be committed. So an upload that succeeds
and a note that fails keep the file queued, its rows not counted published, and the
next try uploads it again before noting it: the same bytes under the same name, and a
fresh modification time, so that orphan removal (which spares files younger than its
window) never takes a file whose note is late.

The table is opened here, on the upload thread, when the sink could not open it at
start-up (a catalog that did not answer yet): the flusher never waits on a catalog.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from predlog.sinks.iceberg._catalog import filesystem
from predlog.sinks.iceberg._files import DataFile, parse_name
from predlog.sinks.iceberg._notes import Note, Notes
from predlog.storage import Location, Staged

if TYPE_CHECKING:
    from pyiceberg.table import Table


class TablePublisher:
    """Uploads staged files into a table's location and notes them for the committer.

    ``load`` opens the table (called again until it succeeds); ``on_noted`` is told of
    each note written and whether the file's rows were this process's own.
    """

    def __init__(self, load: Callable[[], Table], on_noted: Callable[[Note, bool], None]) -> None:
        self._load = load
        self._on_noted = on_noted
        #: Where files go and where they are noted, once the table is open here.
        self._target: tuple[Location, Notes] | None = None

    def use(self, table: Table) -> None:
        """Publish into ``table`` (opened already); no I/O beyond the notes directory."""
        base = table.location().rstrip("/")
        fs, path = filesystem(table, base)
        store = Location(base, fs, path.rstrip("/"), urlsplit(base).scheme or None)
        self._target = (store, Notes(table))

    def forget(self) -> None:
        """Drop the table (a forked child's catalog connections are its parent's)."""
        self._target = None

    def publish(self, staged: Staged) -> None:
        name = parse_name(staged.local.name)
        if name is None:
            raise ValueError(f"{staged.local} is not named as a data file")
        if self._target is None:
            self.use(self._load())
        assert self._target is not None
        store, notes = self._target
        target = store.join(staged.key)
        with contextlib.suppress(OSError):  # an object store has no directories
            store.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        store.put_file(staged.local, target)
        data_file = DataFile(f"{store.url}/{staged.key}", staged.rows, name.file_id)
        note = notes.write(data_file, name.writer, created_ms=name.started_ms)
        self._on_noted(note, staged.own)
