"""Acceptance: many request threads, a small ring and a slow sink."""

from __future__ import annotations

import gc
import json
import threading
import tracemalloc

import predlog
from tests.helpers import BlockedSink, SlowSink

THREADS = 8
CALLS = 50_000


def small_ring_logger(sink):
    return predlog.PredictionLogger(
        sinks=[sink],
        ring_capacity=4096,
        batch_size=512,
        flush_interval_s=0.01,
        install_signal_handlers=False,
    )


class TestManyProducers:
    def test_eight_threads_into_a_small_ring(self):
        """8 x 50,000 calls into 4,096 slots: nothing duplicated or corrupted, drops exact."""
        sink = SlowSink()
        log = small_ring_logger(sink)
        start = threading.Barrier(THREADS)

        def worker(t: int) -> None:
            start.wait()
            for i in range(CALLS):
                log.log(
                    request_id=f"t{t}-{i}",
                    features={"t": t, "i": i},
                    score=(i % 100) / 100,
                    user_segment=f"seg{t}",
                )

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.close(timeout=120)

        ids = [r["request_id"] for r in sink.records]
        assert len(ids) == len(set(ids)), "a record was delivered twice"
        for r in sink.records:
            t, i = (int(part) for part in r["request_id"][1:].split("-"))
            assert json.loads(r["features"]) == {"t": t, "i": i}
            assert r["raw_score"] == (i % 100) / 100
            assert r["user_segment"] == f"seg{t}"
        stats = log.stats()
        total = THREADS * CALLS
        assert stats["captured"] == total
        assert stats["pending"] == 0 and stats["failed"] == 0 and stats["sampled_out"] == 0
        assert stats["delivered"] == len(sink.records)
        assert stats["dropped"] == total - len(sink.records)
        assert stats["dropped"] > 0, "the test must actually overflow the ring"
        assert len(sink.records) >= 4096

    def test_memory_is_flat_while_the_sink_is_stalled(self):
        """With the sink blocked, 200,000 more calls allocate nothing that stays."""
        sink = BlockedSink()
        log = small_ring_logger(sink)

        def burst(n: int, offset: int) -> None:
            for i in range(n):
                log.log(request_id=f"r{offset + i}", features={"x": float(i)}, score=0.3)

        burst(20_000, 0)  # fill the ring and the flusher's one in-flight batch
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            burst(200_000, 20_000)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        sink.release.set()
        log.close(timeout=60)
        assert after - before < 256 * 1024, f"grew by {after - before} bytes"
        stats = log.stats()
        assert stats["captured"] == 220_000
        assert stats["delivered"] + stats["dropped"] == 220_000
        assert stats["dropped"] >= 220_000 - 4096 - 512
