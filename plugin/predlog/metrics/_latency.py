"""How long the flusher takes per drained batch: count, sum and a fixed-bucket histogram.

Only the flusher writes here, while it holds its drain lock; anyone may read a
snapshot. The lock inside is held for a few instructions, never across a sink call,
so reading never waits on a stalled sink.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass

#: Upper bounds in seconds. Fixed so that every process, and every exporter, agrees on
#: them: a histogram merged across workers needs the same buckets everywhere.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


@dataclass(frozen=True)
class LatencySnapshot:
    """Batches so far: ``buckets[i]`` counts batches of at most ``bounds[i]`` seconds and
    more than ``bounds[i - 1]``; the last entry counts those over the largest bound."""

    count: int
    sum: float
    bounds: tuple[float, ...]
    buckets: tuple[int, ...]


class BatchLatency:
    """Seconds from the start of a batch's build to the return of its last sink."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS, *, recent: int = 4096) -> None:
        self.bounds = bounds
        self._lock = threading.Lock()
        self._buckets = [0] * (len(bounds) + 1)
        self._count = 0
        self._sum = 0.0
        # The latest observations themselves, so that an exporter whose histogram only
        # takes single observations (prometheus_client) can replay the exact values.
        self._recent: deque[float] = deque(maxlen=recent)

    def observe(self, seconds: float) -> None:
        """Count one batch; called by the flusher only."""
        index = bisect.bisect_left(self.bounds, seconds)
        with self._lock:
            self._buckets[index] += 1
            self._count += 1
            self._sum += seconds
            self._recent.append(seconds)

    def snapshot(self) -> LatencySnapshot:
        """Count, sum and buckets at one instant."""
        with self._lock:
            return LatencySnapshot(self._count, self._sum, self.bounds, tuple(self._buckets))

    def since(self, seen: int) -> tuple[int, list[float]]:
        """(count now, the observations after the first ``seen`` that are still held).

        At most ``recent`` are held; a reader that falls further behind loses the oldest.
        """
        with self._lock:
            new = min(max(self._count - seen, 0), len(self._recent))
            return self._count, list(self._recent)[len(self._recent) - new :]

    def reset(self) -> None:
        """Start from nothing: a forked child counts its own batches only."""
        self._lock = threading.Lock()
        self._buckets = [0] * (len(self.bounds) + 1)
        self._count = 0
        self._sum = 0.0
        self._recent.clear()
