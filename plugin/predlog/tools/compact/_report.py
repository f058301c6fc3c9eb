"""What a compaction did: files and bytes before and after, per day, and its speed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from predlog.errors import PredlogError


class CompactError(PredlogError):
    """A compaction cannot run here, or stopped before changing anything; says why."""


@dataclass
class DayReport:
    """One day (one partition of the table, or one ``date=`` directory)."""

    date: str
    files_before: int = 0
    bytes_before: int = 0
    files_after: int = 0
    bytes_after: int = 0
    rows: int = 0
    #: Bytes read and rewritten (the small files): what the speed is measured on.
    bytes_rewritten: int = 0
    #: Files that arrived while the day was being compacted, kept beside the new ones.
    late_files: int = 0
    #: Files left as they were: large already, or of an older schema.
    kept_files: int = 0
    seconds: float = 0.0


@dataclass
class CompactReport:
    """Every day compacted, and the totals."""

    target: str
    days: list[DayReport] = field(default_factory=list)
    #: The Iceberg table only: snapshots expired after the rewrite, the files only they
    #: referenced (deleted with them), and orphan files removed.
    expired_snapshots: int = 0
    deleted_files: int = 0
    orphan_files: int = 0

    def total(self, name: str) -> int:
        return sum(int(getattr(day, name)) for day in self.days)

    @property
    def seconds(self) -> float:
        return sum(day.seconds for day in self.days)

    @property
    def seconds_per_gb(self) -> float | None:
        """Seconds per GB (10^9 bytes) rewritten; None when nothing was rewritten."""
        rewritten = self.total("bytes_rewritten")
        return self.seconds / (rewritten / 1e9) if rewritten else None

    def as_dict(self) -> dict[str, Any]:
        names = ("files_before", "bytes_before", "files_after", "bytes_after", "rows")
        return {
            "target": self.target,
            "days": [asdict(day) for day in self.days],
            **{name: self.total(name) for name in names},
            "bytes_rewritten": self.total("bytes_rewritten"),
            "late_files": self.total("late_files"),
            "expired_snapshots": self.expired_snapshots,
            "deleted_files": self.deleted_files,
            "orphan_files": self.orphan_files,
            "seconds": self.seconds,
            "seconds_per_gb": self.seconds_per_gb,
        }
