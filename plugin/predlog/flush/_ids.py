"""Prediction ids: UUIDv7 (RFC 9562), made in the flusher a whole batch at a time.

Layout: 48-bit Unix milliseconds of the prediction, version 7, a 12-bit counter
(RFC 9562 section 6.2, method 1) so that ids of one process stay ordered within a
millisecond, the variant bits, and 62 random bits.

They are stored as their canonical text (lower-case 8-4-4-4-12, see
:mod:`predlog._record` for why). The text of a whole batch is built with numpy from
the 16 bytes of each id (:func:`format_ids`): about 50 ns a record for bytes and
text together, where formatting strings one by one in Python costs 900 ns (and
``str(uuid.UUID(...))`` 1,900), which matters at 300,000 records a second.

Files written before the change hold the ids in Arrow's ``uuid`` type (16 bytes);
:func:`ids_as_text` turns any of the stored forms into the same text.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pyarrow as pa

_VERSION = np.uint64(0x7000)
_RAND_B = np.uint64(0x3FFF_FFFF_FFFF_FFFF)
_VARIANT = np.uint64(0x8000_0000_0000_0000)
_COUNTER = np.uint64(0x0FFF)
_SHIFT = np.uint64(16)

#: Characters in the canonical text of one id.
TEXT_LENGTH: Final = 36


def _hex_quads() -> npt.NDArray[np.uint32]:
    """Each 16-bit value's four lower-case hex digits, as one little-endian word."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    value = np.arange(1 << 16, dtype=np.uint32)
    nibbles = np.stack([value >> 12, (value >> 8) & 15, (value >> 4) & 15, value & 15], axis=1)
    return digits[nibbles].view("<u4").reshape(-1)


_HEX_QUADS: Final = _hex_quads()
_DASH: Final = np.uint32(ord("-"))


#: An Arrow string column's two buffers: int32 offsets and the UTF-8 text.
TextBuffers = tuple[npt.NDArray[np.int32], npt.NDArray[np.uint32]]


def format_ids(raw: npt.NDArray[np.uint8]) -> pa.StringArray:
    """Canonical text of ids given as an ``(n, 16)`` array of their bytes, as Arrow."""
    import pyarrow as pa  # noqa: PLC0415  # the analytics' function; the flusher needs none

    offsets, words = id_buffers(raw)
    return pa.StringArray.from_buffers(
        len(raw), pa.py_buffer(offsets.data), pa.py_buffer(words.data), None, 0
    )


def id_buffers(raw: npt.NDArray[np.uint8]) -> TextBuffers:
    """The canonical text of ids given as an ``(n, 16)`` array of their bytes, as the
    two buffers of an Arrow string column.

    The text of one id is nine 32-bit words: the groups of 8 and 12 digits are whole
    words of the lookup (8 bytes of the id make 16 digits at 4 per word); the 16
    characters between them (``-xxxx-xxxx-xxxx-``) are the three 4-digit words shifted
    byte-wise around the dashes. Copying those groups byte by byte costs twice as much.
    String offsets are 32-bit, which bounds one call to 59 million ids: far more than
    a flush batch or a file holds.
    """
    n = len(raw)
    quads = np.take(_HEX_QUADS, raw.view(">u2").reshape(n, 8))
    words = np.empty((n, TEXT_LENGTH // 4), dtype="<u4")
    words[:, 0:2] = quads[:, 0:2]
    words[:, 6:9] = quads[:, 5:8]
    second, third, fourth = quads[:, 2], quads[:, 3], quads[:, 4]
    words[:, 2] = (second << 8) | _DASH
    words[:, 3] = (second >> 24) | (_DASH << 8) | (third << 16)
    words[:, 4] = (third >> 16) | (_DASH << 16) | (fourth << 24)
    words[:, 5] = (fourth >> 8) | (_DASH << 24)
    offsets = np.arange(0, (n + 1) * TEXT_LENGTH, TEXT_LENGTH, dtype=np.int32)
    return offsets, words.reshape(-1)


class UUID7Factory:
    """Makes batches of time-ordered ids; one per flusher."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = itertools.count()

    def batch(self, unix_ms: Sequence[int] | npt.NDArray[np.int64]) -> TextBuffers:
        """One UUIDv7 per timestamp, as canonical text in a string column's buffers."""
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
        return id_buffers(words.view(np.uint8).reshape(n, 16))


def ids_as_text(column: pa.Array | pa.ChunkedArray) -> pa.StringArray:  # type: ignore[type-arg]
    """Prediction ids of any stored form as their canonical text.

    Takes text (returned as it is), Arrow's ``uuid`` type or its 16-byte storage (the
    files written before ids were text), or variable-length binary holding either
    form, which is what a pyarrow dataset with ``prediction_id`` declared as binary
    reads from a directory mixing both (see :func:`predlog._record.reading_schema`).
    Nulls stay null.
    """
    import pyarrow as pa  # noqa: PLC0415  # the analytics' function; the flusher needs none
    import pyarrow.compute as pc  # noqa: PLC0415

    array: Any = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return cast("pa.StringArray", array.cast(pa.string()))
    if isinstance(kind, pa.BaseExtensionType):
        array = array.storage
        kind = array.type
    if pa.types.is_fixed_size_binary(kind) and kind.byte_width == 16:
        return _format_fixed(array)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        raw16: Any = pc.equal(pc.binary_length(array), pa.scalar(16, pa.int32()))
        if not pc.any(raw16).as_py():
            return cast("pa.StringArray", array.cast(pa.string()))
        # Format every row as if it were 16 bytes, keep that text where it was.
        fixed = pc.if_else(raw16, array, pa.scalar(bytes(16), kind)).cast(pa.binary(16))
        formatted = _format_fixed(fixed).cast(kind)
        return cast("pa.StringArray", pc.if_else(raw16, formatted, array).cast(pa.string()))
    raise TypeError(f"prediction_id of type {kind} is not a form predlog wrote")


def _format_fixed(array: Any) -> pa.StringArray:
    """Text of a ``fixed_size_binary(16)`` array, nulls kept."""
    import pyarrow as pa  # noqa: PLC0415  # the analytics' function; the flusher needs none
    import pyarrow.compute as pc  # noqa: PLC0415

    n = len(array)
    if not n:
        return pa.array([], pa.string())
    raw = np.frombuffer(array.buffers()[1], dtype=np.uint8)
    text = format_ids(raw[array.offset * 16 : (array.offset + n) * 16].reshape(n, 16))
    if array.null_count:
        return cast(
            "pa.StringArray", pc.if_else(array.is_valid(), text, pa.scalar(None, pa.string()))
        )
    return text
