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
import ctypes.util
from collections.abc import Callable
from typing import Final


def _find() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM: Final = _find()


def release_free_memory() -> None:
    """Return the C library's free pages to the system, where it can.

    Arrow's own pool (mimalloc) is left alone: asking it to release (``release_unused``)
    gave nothing measurable here, and it is best not called from several threads.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
