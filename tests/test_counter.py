from __future__ import annotations

import threading

from predlog._counter import AtomicCounter


class TestAtomicCounter:
    def test_counts_calls(self):
        """value is the number of incr() calls."""
        c = AtomicCounter()
        assert c.value == 0
        for _ in range(1234):
            c.incr()
        assert c.value == 1234

    def test_no_lost_increments_across_threads(self):
        """Concurrent increments from many threads are never lost."""
        c = AtomicCounter()
        threads = [
            threading.Thread(target=lambda: [c.incr() for _ in range(50_000)]) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert c.value == 400_000

    def test_reset(self):
        """reset() starts again from zero."""
        c = AtomicCounter()
        c.incr()
        c.reset()
        c.incr()
        assert c.value == 1
