"""A counter that many threads may increment without a lock.

``itertools.count.__next__`` is a single C call that holds the GIL throughout, so
concurrent increments are never lost; ``x += 1`` on an attribute is three bytecodes
and does lose them under contention. The current value is read from the count's
``repr``, which is stable across CPython versions; reading is for statistics only
and never happens on the request path.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable


class AtomicCounter:
    """Monotonic counter: :meth:`incr` from any thread, :attr:`value` to read."""

    __slots__ = ("_count", "incr")

    def __init__(self) -> None:
        count = itertools.count()
        self._count = count
        #: Increment by one. Bound once so that a call costs one C call.
        self.incr: Callable[[], int] = count.__next__

    @property
    def value(self) -> int:
        """How many times :meth:`incr` has been called."""
        # repr is "count(N)"; N is the next value to be returned, i.e. the count.
        return int(repr(self._count)[6:-1])

    def reset(self) -> None:
        """Start again from zero (after fork; never while other threads increment)."""
        count = itertools.count()
        self._count = count
        self.incr = count.__next__
