"""Rows regrouped into large batches: a Parquet writer makes one row group per batch,
and the small files being compacted hold small groups that would otherwise carry over."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

import pyarrow as pa

#: Rows per row group of a compacted file: large enough for fast scans, small enough
#: that one group of wide feature JSON stays well within memory.
ROWS_PER_GROUP: Final = 128_000


def rebatch(
    batches: Iterable[pa.RecordBatch], rows: int = ROWS_PER_GROUP
) -> Iterator[pa.RecordBatch]:
    """The rows of ``batches`` in order, as batches of about ``rows`` rows."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield _combined(pending)
            pending, count = [], 0
    if pending:
        yield _combined(pending)


def _combined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    table = pa.Table.from_batches(batches).combine_chunks()
    return table.to_batches(max_chunksize=max(table.num_rows, 1))[0]
