"""Serving the user's service for ``predlog bench``: which kind it is, start, CPU, stop.

A BentoML service runs under ``bentoml serve``, an ASGI app under ``python -m
uvicorn``, each with the server's own defaults, in its own process group, on a free
loopback port. Stopping is SIGTERM, as a process manager would, so predlog drains its
records before the bench counts them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs installed


@dataclass(frozen=True)
class Kind:
    """What the child that imported SERVICE found (see ``predlog.tools.bench._target``).

    ``name``: ``bentoml`` or ``asgi``; ``route``: a BentoML service's first API route;
    ``added``: the line the bench adds, None when the service has one; ``expect``: what
    predlog is asked to record of the bench's requests, and where.
    """

    name: str
    route: str | None
    added: str | None
    expect: Mapping[str, Any]


def detect(
    service: str, path: str | None, options: Mapping[str, Any], *, env: Mapping[str, str], cwd: Path
) -> Kind:
    """Import SERVICE in a child process (never in this one) and say what it is."""
    if ":" not in service:
        raise ValueError(f"SERVICE must be module:attribute, got {service!r}")
    done = subprocess.run(  # noqa: S603  # our own interpreter and module
        [
            sys.executable,
            "-m",
            "predlog.tools.bench._target",
            service,
            path or "",
            json.dumps(options),
        ],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ValueError(f"cannot load {service}: {last}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return Kind(found["kind"], found["route"], found["added"], found["expect"])


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One served copy of the service; ``start()`` returns once it answers."""

    def __init__(
        self, service: str, kind: Kind, *, env: Mapping[str, str], cwd: Path, log: Path
    ) -> None:
        self.port = free_port()
        self.kind = kind
        self.log = log
        if kind.name == "bentoml":
            bentoml = Path(sys.executable).parent / "bentoml"
            argv = [str(bentoml), "serve", service, "--host", "127.0.0.1"]
        else:
            argv = [sys.executable, "-m", "uvicorn", service, "--host", "127.0.0.1"]
        self._argv = [*argv, "--port", str(self.port)]
        self._env = dict(env)
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> None:
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603  # our own arguments
                self._argv,
                cwd=self._cwd,
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ready = "/readyz" if self.kind.name == "bentoml" else "/"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the server exited at start-up:\n{self.log_tail()}")
            if _answers(f"http://127.0.0.1:{self.port}{ready}"):
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server was not ready in {timeout:.0f} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int | None:
        """The server's process id once started (its worker's too, for a one-process server)."""
        return None if self._proc is None else self._proc.pid

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's output (its log lives in a temporary directory)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User and system CPU of the server and every process under it, so far.

        BentoML's workers leave the server's process group, so the tree is walked
        from the server's pid rather than taken by group.
        """
        if self._proc is None:
            return 0.0
        total = 0.0
        try:
            root = psutil.Process(self._proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, wait, then SIGKILL; safe to call twice."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310  # loopback
            return bool(reply.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False
