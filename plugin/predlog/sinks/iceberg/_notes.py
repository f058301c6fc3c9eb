"""Pending notes: the handoff from the writers of data files to the one committer.

A data file is uploaded whole into the table's data location, then a small JSON note
naming it is written under ``<table location>/predlog-pending/<file id>.json`` (by the
sink's upload thread once the file is there, see ``_publish``). The committer lists the notes,
adds the files they name in one commit, and deletes the notes after the commit. A
writer that dies after its note is written loses nothing: the note waits for the next
commit. A file without a note is never committed; the sink's file whose upload or note
failed stays staged on local disk and is published again (same key, same file id) by
whoever adopts it, so a note written twice is one note, and a file committed already is
known by its id (see ``_commit``).

Notes live beside the data, not on a writer's disk, so that any committer that can see
the table (on another host, after this pod is gone) can commit them.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import pyarrow.fs as pafs

from predlog.sinks.iceberg._catalog import filesystem
from predlog.sinks.iceberg._files import DataFile

if TYPE_CHECKING:
    from pyiceberg.table import Table

_SUFFIX: Final = ".json"


@dataclass(frozen=True)
class Note:
    """A data file waiting to be committed."""

    file_id: str
    location: str
    rows: int
    writer: str
    created_ms: int


class Notes:
    """The pending notes of one table."""

    def __init__(self, table: Table) -> None:
        self.location = table.location().rstrip("/") + "/predlog-pending"
        self._fs, self._dir = filesystem(table, self.location)
        self._local = self._fs.type_name == "local"
        with contextlib.suppress(OSError):
            self._fs.create_dir(self._dir, recursive=True)

    def write(self, data_file: DataFile, writer: str, *, created_ms: int | None = None) -> Note:
        """Note a complete data file for the committer.

        ``created_ms`` is no later than the file could have been committed: the time the
        file was started, for a note written again after a restart, so that the
        committer looks back far enough to find the file if it is committed already.
        """
        created = int(time.time() * 1000) if created_ms is None else created_ms
        note = Note(data_file.file_id, data_file.location, data_file.rows, writer, created)
        body = json.dumps(note.__dict__).encode()
        final = f"{self._dir}/{note.file_id}{_SUFFIX}"
        # On a local disk a reader could list a half-written file: write aside, rename.
        # An object store's put is all or nothing already.
        target = f"{self._dir}/.{note.file_id}.tmp" if self._local else final
        with self._fs.open_output_stream(target) as out:
            out.write(body)
        if target != final:
            self._fs.move(target, final)
        return note

    def pending(self) -> list[Note]:
        """Every readable pending note, oldest first."""
        selector = pafs.FileSelector(self._dir, allow_not_found=True)
        notes = []
        for info in self._fs.get_file_info(selector):
            name = info.base_name
            if not name.endswith(_SUFFIX) or name.startswith("."):
                continue
            try:
                with self._fs.open_input_stream(info.path) as src:
                    raw = json.loads(src.read())
                notes.append(Note(**raw))
            except (OSError, ValueError, TypeError):
                continue  # deleted meanwhile, or not a note: never guessed at
        return sorted(notes, key=lambda n: n.created_ms)

    def ids(self) -> set[str]:
        """The file ids of the pending notes (names only, no note read)."""
        selector = pafs.FileSelector(self._dir, allow_not_found=True)
        return {
            info.base_name[: -len(_SUFFIX)]
            for info in self._fs.get_file_info(selector)
            if info.base_name.endswith(_SUFFIX) and not info.base_name.startswith(".")
        }

    def delete(self, file_ids: list[str]) -> None:
        """Remove notes whose files are committed (a note already gone is fine)."""
        for file_id in file_ids:
            with contextlib.suppress(FileNotFoundError):
                self._fs.delete_file(f"{self._dir}/{file_id}{_SUFFIX}")

    def set_aside(self, note: Note) -> None:
        """Move a note whose data file is missing to ``lost/``: it is reported, not
        retried forever, and kept for whoever investigates."""
        with contextlib.suppress(OSError):
            self._fs.create_dir(f"{self._dir}/lost", recursive=True)
        self._fs.move(
            f"{self._dir}/{note.file_id}{_SUFFIX}", f"{self._dir}/lost/{note.file_id}{_SUFFIX}"
        )

    def exists(self, location: str, table: Table) -> bool:
        """Whether a data file is there."""
        fs, path = filesystem(table, location)
        return bool(fs.get_file_info(path).type != pafs.FileType.NotFound)
