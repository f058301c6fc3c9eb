"""Acceptance: a user's own FastAPI service, unlike predlog's examples, with the README's one
line and only the standard OpenTelemetry variables, under real uvicorn, against the real
Jaeger: every record holds the score and decision the service answered, and the trace id
of a trace Jaeger holds, whose server span carries the record's request id.

The service is tests/decide_service.py: ``POST /v1/decide`` with ``{"applicant": {...}}``
answering ``{"probability": p, "label": "approve" | "refer" | "decline"}``. It runs twice:
under plain ``uvicorn`` (predlog sets up the SDK from the variables) and under
``opentelemetry-instrument uvicorn`` (the distro sets it up, with its FastAPI
instrumentation; predlog must leave both alone and open no second server span).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from services.bentoserve import free_port

from tests.helpers import ROOT, child_env, read_all
from tests.services import jaeger_url

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
LABELS = {"approve", "refer", "decline"}


def applicants(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "income": round(rng.uniform(8_000, 180_000), 2),
            "age": rng.randrange(18, 80),
            "debt_ratio": round(rng.uniform(0.0, 0.9), 3),
            "employment": rng.choice(["salaried", "self_employed", "unemployed", "retired"]),
            "months_at_address": rng.randrange(0, 240),
        }
        for _ in range(n)
    ]


@contextlib.contextmanager
def serve(command: list[str], cwd: Path, **otel: str) -> Iterator[tuple[str, Any]]:
    """``command`` (ending in uvicorn's arguments) serving the decide service from ``cwd``
    with no PREDLOG_* variable and no OpenTelemetry variable but ``otel``. Yields the
    base URL and a function that stops it with SIGTERM, as a process manager would."""
    port = free_port()
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_")}
    env.update(otel, PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    log = (cwd / "server.log").open("wb")
    proc = subprocess.Popen(
        [*command, "tests.decide_service:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()

    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited:\n{(cwd / 'server.log').read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"not serving after 60 s:\n{(cwd / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield base, stop
    finally:
        stop()


def send(base: str, run: str) -> tuple[dict[str, dict[str, Any]], str]:
    """Thirty applications and one malformed request, each with its own X-Request-ID:
    the answers by request id, and the malformed one's id."""
    answers = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for i, applicant in enumerate(applicants(30, seed=23)):
            request_id = f"{run}-{i}"
            r = client.post(
                "/v1/decide", json={"applicant": applicant}, headers={"X-Request-ID": request_id}
            )
            assert r.status_code == 200, r.text
            answers[request_id] = r.json()
        malformed = f"{run}-malformed"
        r = client.post(
            "/v1/decide",
            json={"applicant": {"income": "plenty", "age": 12}},
            headers={"X-Request-ID": malformed},
        )
        assert r.status_code == 422
    assert {a["label"] for a in answers.values()} == LABELS, "the traffic covers every label"
    return answers, malformed


def trace_of(query: str, service: str, request_id: str, timeout: float = 60) -> str:
    """The id of the trace Jaeger holds for ``request_id``, found by its tag."""
    tags = json.dumps({"predlog.request.id": request_id})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(
            f"{query}/api/traces",
            params={"service": service, "tags": tags, "limit": 5, "lookback": "1h"},
            timeout=10,
        )
        found = r.json().get("data") if r.status_code == 200 else None
        if found:
            (trace,) = found
            return str(trace["traceID"])
        time.sleep(1)
    raise AssertionError(f"Jaeger holds no trace with predlog.request.id={request_id}")


def wait_for_records(data_dir: Path, request_ids: set[str], timeout: float = 60) -> None:
    """Until every request's record is in a published file (a process's first file is
    published within seconds), so that stopping the server cannot race the last one."""
    deadline = time.monotonic() + timeout
    while {r["request_id"] for r in read_all(data_dir).to_pylist()} < request_ids:
        assert time.monotonic() < deadline, f"not every record published after {timeout} s"
        time.sleep(0.5)


def check(data_dir: Path, answers: dict[str, dict[str, Any]], malformed: str, service: str) -> None:
    """Every request has one record with the answered score and decision, and a trace id
    Jaeger holds: one server span, of ``service``, carrying the record's request id."""
    query, _ = jaeger_url()
    records = {r["request_id"]: r for r in read_all(data_dir).to_pylist()}
    assert set(records) == {*answers, malformed}
    # Jaeger indexes what it receives in the background: found by tag first, waiting.
    traces = {request_id: trace_of(query, service, request_id) for request_id in records}
    for request_id, record in records.items():
        if request_id == malformed:
            assert "http_status_422" in record["data_quality"]
            assert json.loads(record["extra"])["http_status"] == 422
        else:
            assert record["raw_score"] == answers[request_id]["probability"]
            assert record["decision"] == answers[request_id]["label"]
            assert record["model_name"] == "credit-decisions"
            assert record["model_version"] == "2026.11.3"
            assert record["data_quality"] == []
        assert record["trace_id"] == traces[request_id]
        r = httpx.get(f"{query}/api/traces/{record['trace_id']}", timeout=10)
        assert r.status_code == 200, f"{request_id}: Jaeger has no trace {record['trace_id']}"
        (trace,) = r.json()["data"]
        tags = [{t["key"]: t["value"] for t in s["tags"]} for s in trace["spans"]]
        servers = [t for t in tags if t.get("span.kind") == "server"]
        assert len(servers) == 1, f"{request_id}: {len(servers)} server spans"
        assert servers[0]["predlog.request.id"] == request_id
        assert servers[0]["predlog.model.name"] == "credit-decisions"
        assert {p["serviceName"] for p in trace["processes"].values()} == {service}


class TestDecideService:
    def test_plain_uvicorn_with_the_standard_variables(self, tmp_path):
        """predlog sets up the SDK from OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME."""
        _, otlp = jaeger_url()
        service = f"credit-plain-{uuid.uuid4().hex[:8]}"
        command = [str(BIN / "uvicorn")]
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_SERVICE_NAME": service}
        with serve(command, tmp_path, **env) as (base, stop):
            answers, malformed = send(base, service)
            wait_for_records(tmp_path / "predlog-data", {*answers, malformed})
            stop()
        check(tmp_path / "predlog-data", answers, malformed, service)

    def test_under_opentelemetry_instrument(self, tmp_path):
        """The distro configures the provider and FastAPI's instrumentation; predlog leaves
        them, annotates their server span, and records its trace id."""
        query, otlp = jaeger_url()
        service = f"credit-auto-{uuid.uuid4().hex[:8]}"
        command = [str(BIN / "opentelemetry-instrument"), "uvicorn"]
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_SERVICE_NAME": service,
            # The distro's defaults are grpc and metrics and logs too; Jaeger takes traces
            # over OTLP/HTTP.
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        with serve(command, tmp_path, **env) as (base, stop):
            answers, malformed = send(base, service)
            # The distro's provider exports at exit, which uvicorn's re-raised SIGTERM
            # skips: its spans are waited for while the server runs.
            trace_of(query, service, malformed)
            wait_for_records(tmp_path / "predlog-data", {*answers, malformed})
            stop()
        log = (tmp_path / "server.log").read_text()
        assert "Overriding of current TracerProvider" not in log
        check(tmp_path / "predlog-data", answers, malformed, service)


def test_spans_still_queued_reach_jaeger_when_sigterm_ends_the_process(tmp_path):
    """The provider predlog sets up exports its queue on SIGTERM: uvicorn ends with the
    signal's default action, which skips the SDK's own export at exit."""
    query, otlp = jaeger_url()
    service = f"credit-sigterm-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp,
        OTEL_SERVICE_NAME=service,
        PREDLOG_DATA_DIR=str(tmp_path / "data"),
    )
    code = (
        "import os, signal\n"
        "from opentelemetry import trace\n"
        "from starlette.applications import Starlette\n"
        "import predlog\n"
        "predlog.instrument(Starlette(), model_name='credit')\n"
        "with trace.get_tracer('test').start_as_current_span('queued') as span:\n"
        "    span.set_attribute('predlog.request.id', 'queued-at-sigterm')\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr  # still ended by the signal
    trace_of(query, service, "queued-at-sigterm", timeout=30)
