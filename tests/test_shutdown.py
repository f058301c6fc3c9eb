"""Acceptance: records logged before SIGTERM or exit are all in Parquet afterwards."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from services.bentoserve import free_port

from tests.helpers import child_env, read_all, start_python

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


SLOW_APP = """
import asyncio
import predlog
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def assess(request):
    await asyncio.sleep(1.5)
    return JSONResponse({"risk": 0.4, "verdict": "hold"})

async def ping(request):
    return JSONResponse("ok")

app = Starlette(routes=[Route("/assess", assess, methods=["POST"]), Route("/ping", ping)])
predlog.instrument(app, model_name="slow", score_field="risk", decision_field="verdict")
"""


class TestServerShutdown:
    def test_request_in_flight_at_sigterm_is_recorded(self, tmp_path, data_dir):
        """uvicorn answers the request it was serving when SIGTERM came, then ends the
        process by re-raising SIGTERM, which skips exit hooks: its record is kept."""
        (tmp_path / "slow_app.py").write_text(SLOW_APP)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "slow_app:app", "--port", str(port)],
            cwd=tmp_path,
            env=child_env(
                PYTHONPATH=f"{tmp_path}:{child_env()['PYTHONPATH']}",
                PREDLOG_DATA_DIR=str(data_dir),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/ping").status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
            answers: list[httpx.Response] = []
            client = threading.Thread(
                target=lambda: answers.append(
                    httpx.post(
                        f"{base}/assess",
                        json={"amount": 12},
                        headers={"X-Request-ID": "in-flight"},
                        timeout=30,
                    )
                )
            )
            client.start()
            time.sleep(0.5)
            server.send_signal(signal.SIGTERM)
            client.join(30)
            _, err = server.communicate(timeout=60)
        finally:
            server.kill()
        assert [a.status_code for a in answers] == [200], err
        records = read_all(data_dir).to_pylist()
        assert [(r["request_id"], r["raw_score"], r["decision"]) for r in records] == [
            ("in-flight", 0.4, "hold")
        ], err
