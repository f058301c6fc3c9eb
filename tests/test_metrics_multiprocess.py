"""predlog's Prometheus metrics under prometheus_client's multiprocess mode, as BentoML
runs its workers: each process writes its own files, the scraper adds them up."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.helpers import child_env

WORKER = """
    import sys
    import predlog
    from predlog.testing import MemorySink

    log = predlog.PredictionLogger(
        model_name="mp", sinks=[MemorySink()], ring_capacity=256, install_signal_handlers=False
    )
    for i in range(int(sys.argv[1] if len(sys.argv) > 1 else {n})):
        log.log(request_id=f"r{{i}}", features={{"x": 1.0}}, score=0.5)
    assert log.flush(10)
    print("ready", flush=True)
    sys.stdin.readline()
    log.close()
"""


def _worker(n: int, directory: object) -> subprocess.Popen[str]:
    """A worker that logs ``n`` records, then holds its logger open until told to stop."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WORKER.format(n=n))],
        env=child_env(PROMETHEUS_MULTIPROC_DIR=str(directory)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class TestMultiprocess:
    def test_two_workers_add_up(self, tmp_path):
        """Counters and livesum gauges from two worker processes are summed on scrape."""
        workers = [_worker(n, tmp_path) for n in (30, 12)]
        try:
            for worker in workers:
                assert worker.stdout is not None
                assert worker.stdout.readline().strip() == "ready", worker.stderr
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(tmp_path))
            labels = {"model": "mp", "outcome": "delivered"}
            assert registry.get_sample_value("predlog_records_total", labels) == 42
            assert registry.get_sample_value("predlog_ring_capacity", {"model": "mp"}) == 512
            count = registry.get_sample_value(
                "predlog_flusher_batch_seconds_count", {"model": "mp"}
            )
            assert count is not None and count >= 2
            for worker in workers:
                _, err = worker.communicate("\n", timeout=30)
                assert worker.returncode == 0, err
            # Closed loggers withdraw their ring; what they counted stays counted.
            assert registry.get_sample_value("predlog_ring_capacity", {"model": "mp"}) == 0
            assert registry.get_sample_value("predlog_records_total", labels) == 42
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.communicate()
