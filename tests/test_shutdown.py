"""Acceptance: records logged before SIGTERM or exit are all in Parquet afterwards."""

from __future__ import annotations

import signal

import pytest

from tests.helpers import read_all, start_python

N = 25_000

LOG_THEN_WAIT = """
import signal, sys, time, predlog
{prelude}
log = predlog.PredictionLogger(data_dir={data!r}, flush_interval_s=60, batch_size=50_000,
                               ring_capacity=65_536)
for i in range({n}):
    log.log(request_id="r%d" % i, features={{"i": i}}, score=0.3)
print("ready", flush=True)
{ending}
"""


def run(data_dir, *, ending, prelude=""):
    code = LOG_THEN_WAIT.format(data=str(data_dir), n=N, ending=ending, prelude=prelude)
    return start_python(code)


class TestSigterm:
    def test_sigterm_drains_everything(self, data_dir):
        """A process killed by SIGTERM while records are pending writes them all first."""
        proc = run(data_dir, ending="time.sleep(600)")
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGTERM, err
        ids = read_all(data_dir).column("request_id").to_pylist()
        assert sorted(ids) == sorted(f"r{i}" for i in range(N))

    def test_sigterm_chains_an_existing_handler(self, data_dir):
        """A handler installed before predlog still runs, after the records are durable."""
        prelude = (
            "def mine(signum, frame):\n"
            "    print('handler ran', flush=True)\n"
            "    sys.exit(7)\n"
            "signal.signal(signal.SIGTERM, mine)"
        )
        proc = run(data_dir, ending="time.sleep(600)", prelude=prelude)
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 7, err
        assert "handler ran" in out
        assert read_all(data_dir).num_rows == N

    def test_handler_not_installed_when_disabled(self, data_dir):
        """install_signal_handlers=False leaves SIGTERM's default action alone."""
        code = f"""
import signal, predlog
predlog.PredictionLogger(data_dir={str(data_dir)!r}, install_signal_handlers=False)
print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
"""
        out, err = start_python(code).communicate(timeout=60)
        assert out.strip() == "True", err


class TestExit:
    @pytest.mark.parametrize("ending", ["pass", "sys.exit(0)", "raise SystemExit(3)"])
    def test_exit_without_close_drains(self, data_dir, ending):
        """Leaving the interpreter without close() still delivers every record."""
        proc = run(data_dir, ending=ending)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 3), err
        assert read_all(data_dir).num_rows == N
