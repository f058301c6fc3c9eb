"""Prediction ids: UUIDv7 (RFC 9562), made in the flusher a whole batch at a time.

Layout: 48-bit Unix milliseconds of the prediction, version 7, a 12-bit counter
(RFC 9562 section 6.2, method 1) so that ids of one process stay ordered within a
millisecond, the variant bits, and 62 random bits. Building them with numpy costs
about 60 ns a record; formatting strings one by one in Python costs fifteen times
that, which matters at 300,000 records a second.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

_VERSION = np.uint64(0x7000)
_RAND_B = np.uint64(0x3FFF_FFFF_FFFF_FFFF)
_VARIANT = np.uint64(0x8000_0000_0000_0000)
_COUNTER = np.uint64(0x0FFF)
_SHIFT = np.uint64(16)
_UUID = pa.uuid()


class UUID7Factory:
    """Makes batches of time-ordered ids; one per flusher."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = itertools.count()

    def batch(self, unix_ms: Sequence[int] | npt.NDArray[np.int64]) -> pa.ExtensionArray:  # type: ignore[type-arg]
        """One UUIDv7 per timestamp, as an Arrow ``uuid`` array."""
        n = len(unix_ms)
        start = next(self._next)
        if n > 1:
            # Advance the shared counter past this batch in one step.
            self._next = itertools.count(start + n)
        ms = np.asarray(unix_ms, dtype=np.uint64)
        counter = np.arange(start, start + n, dtype=np.uint64) & _COUNTER
        random = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
        words = np.empty((n, 2), dtype=">u8")
        words[:, 0] = (ms << _SHIFT) | _VERSION | counter
        words[:, 1] = (random & _RAND_B) | _VARIANT
        storage = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(16), n, [None, pa.py_buffer(words.tobytes())]
        )
        return pa.ExtensionArray.from_storage(_UUID, storage)
