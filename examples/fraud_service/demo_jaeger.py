"""Jaeger for ``make demo``: one already running, or the one services/ builds, or none.

The one services/ builds is Jaeger with its UI, started with services/jaeger.yaml as
services/up.sh starts it. The demo is about predlog, not Jaeger: when Jaeger cannot be
built or started, the demo says so in one line and carries on without traces, and when
only the UI cannot be built, it says so and carries on with Jaeger's API.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
#: Jaeger's config as services/up.sh starts it: loopback ports, memory, the UI's assets.
CONFIG = ROOT / "services" / "jaeger.yaml"
#: Where the Jaeger that services/up.sh starts (and the demo's own) listens.
DEFAULT_QUERY = "http://127.0.0.1:16686"
DEFAULT_OTLP = "http://127.0.0.1:4318"
#: The spans the fraud example opens inside each request (scoring.py).
EXPECTED_SPANS = ("feature_fetch", "inference")


@dataclass
class Jaeger:
    """A Jaeger the demo exports to: its query URL (API and UI) and OTLP/HTTP endpoint."""

    query: str
    otlp: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop Jaeger if the demo started it; one that was already running stays."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def answers(query: str) -> bool:
    try:
        return httpx.get(f"{query.rstrip('/')}/api/services", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def built(script: str) -> tuple[str | None, str]:
    """Run one of services/' build scripts (each builds once, then answers from the cache):
    what it printed, or None and the last line it said on failure."""
    done = subprocess.run(
        [str(ROOT / "services" / script)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, said.removeprefix("[services] ")
    return done.stdout.strip(), ""


def start(query: str, otlp: str, log_path: Path, *, may_start: bool) -> Jaeger | None:
    """The running Jaeger at ``query``, else (``may_start``) the one services/ builds,
    started as services/up.sh starts it: with services/jaeger.yaml and the UI's assets.

    Only a Jaeger on its default ports can be started here, so a ``query`` of the user's
    own that does not answer means no traces rather than a Jaeger somewhere else.
    """
    if answers(query):
        print(f"traces: exporting to the Jaeger running at {query}")
        return Jaeger(query, otlp)
    if not may_start:
        print(f"traces: no Jaeger answers at {query}; carrying on without traces")
        return None
    print(
        "traces: building Jaeger and its UI unless cached (services/jaeger-build.sh,"
        " services/jaeger-ui-build.sh; minutes, once)"
    )
    binary, reason = built("jaeger-build.sh")
    if binary is None:
        print(f"traces: Jaeger could not be built ({reason}); carrying on without traces")
        return None
    assets, reason = built("jaeger-ui-build.sh")
    if assets is None:
        print(f"traces: the Jaeger UI could not be built ({reason}); Jaeger's API only")
    env = dict(os.environ, JAEGER_UI_ASSETS=assets or "")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, "--config", str(CONFIG)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    jaeger = Jaeger(query, otlp, process)
    deadline = time.monotonic() + 60
    while not answers(query):
        if process.poll() is not None or time.monotonic() > deadline:
            jaeger.stop()
            print(f"traces: Jaeger did not start (see {log_path}); carrying on without traces")
            return None
        time.sleep(0.5)
    print(f"traces: started Jaeger ({binary}), query {query}, log {log_path}")
    return jaeger


def serves_ui(query: str) -> bool:
    """Whether Jaeger's page is its UI: the element the UI's app mounts into, which the
    placeholder page of a Jaeger built without the UI's assets does not have."""
    try:
        return 'id="jaeger-ui-root"' in httpx.get(query, timeout=5).text
    except httpx.HTTPError:
        return False


def find_trace(query: str, trace_id: str, timeout: float = 30) -> dict[str, Any] | None:
    """The trace from Jaeger's API once it holds every expected span (export is batched)."""
    url = f"{query.rstrip('/')}/api/traces/{trace_id}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(url, timeout=5)
            data = r.json().get("data") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            data = None
        if data and set(EXPECTED_SPANS) <= {s["operationName"] for s in data[0]["spans"]}:
            return dict(data[0])
        if time.monotonic() > deadline:
            return None
        time.sleep(1)


def show_trace(jaeger: Jaeger, trace_id: str | None, request_id: str) -> bool:
    """Print the declined prediction's trace as Jaeger holds it; False if it is not there."""
    if not trace_id:
        print(f"\ntrace: the record of {request_id} has no trace id")
        return False
    trace = find_trace(jaeger.query, trace_id)
    if trace is None:
        print(f"\ntrace {trace_id}: not in Jaeger at {jaeger.query} with {EXPECTED_SPANS}")
        return False
    processes = trace.get("processes", {})
    print(f"\nthe same prediction's trace, as Jaeger holds it ({request_id}):")
    print(f"  trace id  {trace_id}")
    for span in sorted(trace["spans"], key=lambda s: s["startTime"]):
        service = processes.get(span.get("processID"), {}).get("serviceName", "?")
        print(f"    {service:10s} {span['operationName']:40s} {span['duration'] / 1000:8.2f} ms")
    print(f"  API       {jaeger.query}/api/traces/{trace_id}")
    if serves_ui(jaeger.query):
        print(f"  UI        {jaeger.query}/trace/{trace_id}")
    else:
        print(f"  UI        none: {jaeger.query} serves no UI (services/jaeger-ui-build.sh)")
    return True
