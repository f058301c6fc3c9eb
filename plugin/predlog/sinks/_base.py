"""The sink protocol: where decoded batches go.

A sink is any object with these three methods. The flusher calls them from its
own thread, one call at a time; a sink never sees the request path. A sink may
raise: the flusher counts the failure against that sink only and carries on.

A sink may also define ``tick(now: float) -> None``; the flusher calls it when it
is idle, so that time-based work (rolling a file that has been open too long)
happens even when traffic stops.
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
