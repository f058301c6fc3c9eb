"""``predlog compact``: a day's small files rewritten into large ones.

Small files are what a logger that publishes every few minutes, or a committer that
commits every few seconds, leaves behind; every reader pays for each file it opens.

* The Parquet layout (a local data directory): :func:`compact_layout`. Readers see the
  old files or the new ones, never both and never neither (a directory exchange).
* An Iceberg table: :func:`compact_table`. One commit replaces exactly the small files
  of a day's partitions; then snapshots older than a retention window are expired
  (:func:`expire_snapshots`) and orphan files removed (:func:`remove_orphan_files`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from predlog._lazy import attach
from predlog.tools.compact._layout import compact_layout
from predlog.tools.compact._report import CompactError, CompactReport, DayReport

if TYPE_CHECKING:
    from predlog.tools.compact._housekeeping import expire_snapshots, remove_orphan_files
    from predlog.tools.compact._table import compact_table

__all__ = [
    "CompactError",
    "CompactReport",
    "DayReport",
    "compact_layout",
    "compact_table",
    "expire_snapshots",
    "remove_orphan_files",
]


#: The Iceberg variants, and their modules: imported on first use.
_ICEBERG: Final = {
    "compact_table": "predlog.tools.compact._table",
    "expire_snapshots": "predlog.tools.compact._housekeeping",
    "remove_orphan_files": "predlog.tools.compact._housekeeping",
}

__getattr__, __dir__ = attach(__name__, globals(), _ICEBERG)
