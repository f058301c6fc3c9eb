"""Give freed heap memory back to the system after a batch went to the spool.

While the broker is away the ring is full, and each batch the sink spools is made,
written and freed in a few megabytes of short-lived objects. glibc keeps the pages of
freed memory in its arenas, one per thread that allocated, at each arena's high-water
mark: measured in ``benchmarks/bench_outage_memory.py``, about 20 MiB (a quarter of
the ring bound) for as long as an outage lasted. ``malloc_trim(0)`` returns the free
pages of every arena; it cost well under a millisecond (measured: 0.1 ms beside
600,000 live objects), once per spooled batch, and only while spooling.

On a C library without ``malloc_trim`` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, found on first use: from the symbols already loaded into
    the process (no ``ldconfig`` subprocess, and nothing at import)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> None:
    """Return the C library's free pages to the system, where it can.

    Arrow's own pool (mimalloc) is left alone: asking it to release (``release_unused``)
    gave nothing measurable here, and it is best not called from several threads.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
