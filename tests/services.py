"""The integration services `make test` starts (services/with-services.sh): where they are."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections import Counter

import pytest
from services.bentoserve import free_port

from tests.helpers import ROOT


def kafka_bootstrap() -> str:
    address = os.environ.get("PREDLOG_TEST_KAFKA")
    if not address:
        pytest.fail("no Kafka: run the tests with `make test` (services/with-services.sh)")
    return address


def jaeger_url() -> tuple[str, str]:
    query, otlp = os.environ.get("PREDLOG_TEST_JAEGER"), os.environ.get("PREDLOG_TEST_OTLP")
    if not query or not otlp:
        pytest.fail("no Jaeger: run the tests with `make test` (services/with-services.sh)")
    return query, otlp


def fresh_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def broker(action: str) -> None:
    """Stop or start the Kafka broker (for outage tests)."""
    subprocess.run([str(ROOT / "services/kafka.sh"), action], check=True, timeout=90)


def wait_for_port(address: str, timeout: float = 90) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"{address} did not come back within {timeout} s")


def topic_keys(bootstrap: str, topic: str) -> Counter[str]:
    """How many messages the topic holds per key, as kcat (not our consumer) reads them."""
    out = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%k\n"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return Counter(line for line in out.splitlines() if line)


def closed_port() -> str:
    """An address on loopback where nothing listens: a broker that is away."""
    return f"127.0.0.1:{free_port()}"
