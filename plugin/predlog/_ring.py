"""A preallocated, bounded ring of slots: many producers, one consumer, no locks.

This is the only structure the request path touches. It must never block, never
allocate in proportion to traffic, and never lose a record without counting it.

How it works. The slots are a list allocated once. Two deques of slot *indices*
move each slot between two states: ``free`` (owned by nobody) and ``ready``
(published, waiting for the consumer). A producer claims a slot with
``free.popleft()``, stores its value by reference, and publishes the index with
``ready.append()`` (:meth:`RingBuffer.put` does both). The consumer takes indices
with ``ready.popleft()``, reads and clears the slot, and returns the index with
``free.append()``. Each deque operation is one C call that holds the GIL from start
to end (and takes the deque's own critical section on free-threaded builds), so
exactly one thread ever owns a given slot: a claim is lock-free in CPython, and it
never waits.

Values are held by reference and nothing is copied. A caller that mutates an
array or dict after handing it over changes what will be logged, until the flusher
has decoded it (typically within one flush interval). Pass a fresh object per
prediction, or a copy when you reuse buffers.

Overflow. When no slot is free, ``drop_newest`` (the default) rejects the new value
and ``drop_oldest`` evicts the oldest published value in its favour. Either way
the drop is counted in :attr:`RingBuffer.dropped`.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from predlog._counter import AtomicCounter

T = TypeVar("T")


class RingBuffer(Generic[T]):
    """Fixed-capacity buffer between request threads and the flusher."""

    __slots__ = ("_capacity", "_drop_oldest", "_drops", "_free", "_ready", "_slots")

    def __init__(self, capacity: int, *, overflow: str = "drop_newest") -> None:
        if capacity <= 0:
            raise ValueError(f"capacity: must be positive, got {capacity!r}")
        if overflow not in ("drop_newest", "drop_oldest"):
            raise ValueError(f"overflow: must be drop_newest or drop_oldest, got {overflow!r}")
        self._capacity = capacity
        self._drop_oldest = overflow == "drop_oldest"
        self._drops = AtomicCounter()
        self._slots: list[T | None] = [None] * capacity
        self._free: deque[int] = deque(range(capacity))
        self._ready: deque[int] = deque()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def dropped(self) -> int:
        """Values rejected or evicted because the ring was full."""
        return self._drops.value

    def __len__(self) -> int:
        """Published values waiting for the consumer (a snapshot)."""
        return len(self._ready)

    def put(self, value: T) -> bool:
        """Hand ``value`` over without blocking. False when it was dropped."""
        try:
            index = self._free.popleft()
        except IndexError:
            return self._overflow(value)
        self._slots[index] = value
        self._ready.append(index)
        return True

    def _overflow(self, value: T) -> bool:
        self._drops.incr()
        if not self._drop_oldest:
            return False
        try:
            # Taking the index from `ready` makes this thread the slot's only owner,
            # exactly as a claim from `free` would.
            index = self._ready.popleft()
        except IndexError:
            # Every slot is claimed by producers that have not published yet.
            return False
        self._slots[index] = value
        self._ready.append(index)
        return True

    def drain(self, max_items: int) -> list[T]:
        """Take up to ``max_items`` published values, oldest first. Consumer only."""
        out: list[T] = []
        pop = self._ready.popleft
        release = self._free.append
        slots = self._slots
        append = out.append
        for _ in range(max_items):
            try:
                index = pop()
            except IndexError:
                break
            value = slots[index]
            slots[index] = None
            release(index)
            append(value)  # type: ignore[arg-type]  # a published slot is never None
        return out
