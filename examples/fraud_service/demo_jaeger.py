"""Jaeger for ``make demo``: one already running, or the one services/ builds, or none.

The demo is about predlog, not Jaeger: when Jaeger cannot be built or started, the demo
says so in one line and carries on without traces.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
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


def start(query: str, otlp: str, log_path: Path, *, may_start: bool) -> Jaeger | None:
    """The running Jaeger at ``query``, else (``may_start``) the one services/ builds.

    Only a Jaeger on its default ports can be started here, so a ``query`` of the user's
    own that does not answer means no traces rather than a Jaeger somewhere else.
    """
    if answers(query):
        print(f"traces: exporting to the Jaeger running at {query}")
        return Jaeger(query, otlp)
    if not may_start:
        print(f"traces: no Jaeger answers at {query}; carrying on without traces")
        return None
    print("traces: building Jaeger if it is not cached (services/jaeger-build.sh; ~4 min once)")
    built = subprocess.run(
        [str(ROOT / "services/jaeger-build.sh")], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        reason = (built.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"traces: Jaeger could not be built ({reason}); carrying on without traces")
        return None
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # the binary services/jaeger-build.sh built
            [built.stdout.strip()], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    jaeger = Jaeger(query, otlp, process)
    deadline = time.monotonic() + 60
    while not answers(query):
        if process.poll() is not None or time.monotonic() > deadline:
            jaeger.stop()
            print(f"traces: Jaeger did not start (see {log_path}); carrying on without traces")
            return None
        time.sleep(0.5)
    print(f"traces: started Jaeger ({built.stdout.strip()}), query {query}, log {log_path}")
    return jaeger


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
    print(f"  UI        {jaeger.query}/trace/{trace_id}")
    print(
        "            (the Jaeger built here has no UI; for the UI, run Jaeger from its image:\n"
        "             docker run --rm -p 16686:16686 -p 4318:4318 jaegertracing/jaeger:2.11.0)"
    )
    return True
