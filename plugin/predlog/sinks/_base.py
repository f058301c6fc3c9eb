"""The sink protocol: where decoded batches go.

A sink is any object with these three methods. The flusher calls them from its
own thread, one call at a time; a sink never sees the request path. A sink may
raise: the flusher counts the failure against that sink only and carries on.

A sink may also define ``tick(now: float) -> None``; the flusher calls it every
``flush_interval_s``, busy or idle, so that time-based work (rolling a file that has
been open too long) happens whether traffic goes on or stops.

A sink that takes records before readers can see them (rows in a Parquet file not
yet published) says how many with an ``unpublished_rows`` attribute, and how many it
lost after taking them with ``lost_rows``. ``stats()`` then counts the first pending,
not delivered (a crash would lose them), and the second failed.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pyarrow as pa


@runtime_checkable
class Sink(Protocol):
    """Receives batches of prediction records in :func:`predlog.arrow_schema`."""

    def export(self, batch: pa.RecordBatch) -> None:
        """Accept one batch. Return only when the sink has taken responsibility for it."""

    def flush(self) -> None:
        """Make everything exported so far durable and visible to readers."""

    def close(self) -> None:
        """Flush, then release resources. Safe to call twice."""
