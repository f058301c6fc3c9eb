"""``predlog compact``: a day's small files rewritten into large ones.

Small files are what a logger that publishes every few minutes, or a committer that
commits every few seconds, leaves behind; every reader pays for each file it opens.

* The Parquet layout (a local data directory): :func:`compact_layout`. Readers see the
  old files or the new ones, never both and never neither (a directory exchange).
* An Iceberg table: :func:`compact_table`. One commit replaces exactly the small files
  of a day's partitions; older snapshots are then expired.
"""

from __future__ import annotations

from predlog.tools.compact._layout import compact_layout
from predlog.tools.compact._report import CompactError, CompactReport, DayReport

__all__ = ["CompactError", "CompactReport", "DayReport", "compact_layout", "compact_table"]


def __getattr__(name: str) -> object:
    # The Iceberg variant needs pyiceberg (the iceberg extra): imported on first use.
    if name == "compact_table":
        from predlog.tools.compact._table import compact_table  # noqa: PLC0415

        return compact_table
    raise AttributeError(name)
