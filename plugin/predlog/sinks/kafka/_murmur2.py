"""Kafka's key partitioner (murmur2, as in the Java client), for a whole batch at once.

Consumers and stream processors assume that a key always lands on the partition the
Java client would choose: ``(murmur2(key) & 0x7fffffff) % partitions``. aiokafka's
own implementation hashes one key at a time in Python, several µs per key, which was
the largest single cost of sending a batch. Here the keys are grouped by length and
hashed column by column with numpy's wrapping uint32 arithmetic, about 0.1 µs
per key for a batch of thousands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

_SEED: Final = 0x9747B28C
_M: Final = np.uint32(0x5BD1E995)
_U32 = npt.NDArray[np.uint32]


def murmur2(keys: Sequence[bytes]) -> _U32:
    """The 32-bit murmur2 hash of each key, as Kafka's ``Utils.murmur2`` computes it."""
    out = np.empty(len(keys), dtype=np.uint32)
    if not keys:
        return out
    lengths = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
    for length in np.unique(lengths).tolist():
        where = np.flatnonzero(lengths == length)
        group = b"".join(keys[i] for i in where.tolist())
        data = np.frombuffer(group, dtype=np.uint8).reshape(len(where), length)
        out[where] = _hash_group(data, length)
    return out


def partitions(keys: Sequence[bytes], count: int) -> npt.NDArray[np.int64]:
    """Partition index (0 .. count-1) of each key, as Kafka's default partitioner."""
    positive = (murmur2(keys) & np.uint32(0x7FFFFFFF)).astype(np.int64)
    result: npt.NDArray[np.int64] = positive % count
    return result


def _hash_group(data: npt.NDArray[np.uint8], length: int) -> _U32:
    """murmur2 of n keys of the same ``length``, given as an (n, length) byte array."""
    h = np.full(data.shape[0], (_SEED ^ length) & 0xFFFFFFFF, dtype=np.uint32)
    whole = length // 4 * 4
    if whole:
        blocks = np.ascontiguousarray(data[:, :whole]).view("<u4").astype(np.uint32)
        for column in range(whole // 4):
            k = blocks[:, column] * _M
            k ^= k >> np.uint32(24)
            k *= _M
            h *= _M
            h ^= k
    extra = length - whole
    if extra:
        if extra == 3:
            h ^= data[:, whole + 2].astype(np.uint32) << np.uint32(16)
        if extra >= 2:
            h ^= data[:, whole + 1].astype(np.uint32) << np.uint32(8)
        h ^= data[:, whole].astype(np.uint32)
        h *= _M
    h ^= h >> np.uint32(13)
    h *= _M
    h ^= h >> np.uint32(15)
    return h
