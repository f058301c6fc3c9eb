"""The Apache Iceberg sink: prediction records in an Iceberg table.

Workers write Parquet data files into the table's data location and leave a small
pending note beside them; one committer adds the noted files to the table in one
commit per interval. ``_catalog`` finds and opens the table (the embedded SQLite
catalog under the data directory, or any pyiceberg catalog configured by name).

Everything here needs pyiceberg: ``pip install 'predlog[iceberg]'``. The names below
are what the rest of predlog (the logger, the CLI, compaction, the analytics) may
use; the ``_`` modules behind them are free to move. Each is imported on first use,
so importing this package costs nothing and never imports pyiceberg (the modules
import it inside the functions that need it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from predlog.sinks.iceberg._catalog import (
        CatalogUnreachableError,
        filesystem,
        load_catalog,
        open_table,
        parse_table_name,
        table_files,
    )
    from predlog.sinks.iceberg._commit import (
        COMMITTER_KEY,
        FILES_KEY,
        CommitStats,
        Committer,
        Refused,
        ancestors,
        commit_with_retry,
        no_blind_retry,
        summary_value,
    )
    from predlog.sinks.iceberg._files import DataFile, FileWriter, OpenFile, split, writer_tag
    from predlog.sinks.iceberg._kafka import OFFSETS_PREFIX, offsets_key, table_offsets
    from predlog.sinks.iceberg._lock import CommitLock
    from predlog.sinks.iceberg._notes import Note, Notes
    from predlog.sinks.iceberg._sink import IcebergSink

#: Each public name and the module that defines it.
_HOME: Final = {
    **dict.fromkeys(
        (
            "CatalogUnreachableError",
            "filesystem",
            "load_catalog",
            "open_table",
            "parse_table_name",
            "table_files",
        ),
        "_catalog",
    ),
    **dict.fromkeys(
        (
            "COMMITTER_KEY",
            "FILES_KEY",
            "CommitStats",
            "Committer",
            "Refused",
            "ancestors",
            "commit_with_retry",
            "no_blind_retry",
            "summary_value",
        ),
        "_commit",
    ),
    **dict.fromkeys(("DataFile", "FileWriter", "OpenFile", "split", "writer_tag"), "_files"),
    **dict.fromkeys(("OFFSETS_PREFIX", "offsets_key", "table_offsets"), "_kafka"),
    "CommitLock": "_lock",
    **dict.fromkeys(("Note", "Notes"), "_notes"),
    "IcebergSink": "_sink",
}

__all__ = [
    "COMMITTER_KEY",
    "FILES_KEY",
    "OFFSETS_PREFIX",
    "CatalogUnreachableError",
    "CommitLock",
    "CommitStats",
    "Committer",
    "DataFile",
    "FileWriter",
    "IcebergSink",
    "Note",
    "Notes",
    "OpenFile",
    "Refused",
    "ancestors",
    "commit_with_retry",
    "filesystem",
    "load_catalog",
    "no_blind_retry",
    "offsets_key",
    "open_table",
    "parse_table_name",
    "split",
    "summary_value",
    "table_files",
    "table_offsets",
    "writer_tag",
]


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # found once; later look-ups do not come here
    return value
