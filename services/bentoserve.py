"""Run ``bentoml serve`` in a test, a demo or a benchmark, and stop it as a supervisor would.

The server runs in its own process group, its output goes to a log file, readiness is
BentoML's ``/readyz``, and stopping is SIGTERM (so predlog drains its records, as it
would under a process manager), then SIGKILL if it takes longer than the timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BentoServer:
    """``bentoml serve TARGET`` on 127.0.0.1; a context manager that waits until ready."""

    def __init__(
        self,
        target: str,
        *,
        log_path: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        port: int | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.target = target
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BentoServer:
        bentoml = Path(sys.executable).parent / "bentoml"
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603  # our own arguments
                [
                    str(bentoml),
                    "serve",
                    self.target,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=self._cwd,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"bentoml serve was not ready in {self._ready_timeout} s; see {self.log_path}"
        )

    def stop(self, timeout: float = 60.0) -> str:
        """SIGTERM, wait, SIGKILL if needed; returns the server's log. Safe to call twice."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> BentoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
