"""The integration services `make test` starts (services/with-services.sh): where they are."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3
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


class PrivateBroker:
    """A Kafka broker of one test's own, on free loopback ports, data under ``root``.

    Outage tests stop and start it; the shared broker other tests (and other test
    runs) use is never touched. It is the same Kafka the services script starts, KRaft
    with one node; ``start()`` after ``stop()`` brings it back on the same ports and data.
    """

    def __init__(self, root: Path) -> None:
        self.port, controller = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._props = root / "server.properties"
        self._log = root / "broker.log"
        self._props.write_text(
            "process.roles=broker,controller\nnode.id=1\n"
            f"controller.quorum.voters=1@127.0.0.1:{controller}\n"
            f"listeners=PLAINTEXT://{self.address},CONTROLLER://127.0.0.1:{controller}\n"
            f"advertised.listeners=PLAINTEXT://{self.address}\n"
            "controller.listener.names=CONTROLLER\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            "inter.broker.listener.name=PLAINTEXT\n"
            f"log.dirs={root / 'data'}\nnum.partitions=3\n"
            "offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=true\n"
        )
        self._classpath = f"{_kafka_home()}/libs/*"
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        tool = ["java", "-cp", self._classpath, "kafka.tools.StorageTool"]
        subprocess.run(
            [*tool, "format", "-t", cluster, "-c", str(self._props)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                ["java", "-Xmx256m", "-cp", self._classpath, "kafka.Kafka", str(self._props)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.address)

    def stop(self) -> None:
        """Stop it as services/kafka.sh does: asked to end, killed if it does not."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def _kafka_home() -> str:
    """Where the services script keeps Kafka's jars (services/env.sh says)."""
    return subprocess.run(
        ["bash", "-c", f'source {ROOT / "services/env.sh"} && printf %s "$KAFKA_HOME"'],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


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


#: What moto's S3 server accepts, and what boto3 and pyarrow are given for it.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class Moto:
    """moto's S3 server on a port of its own, which a test may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"moto_server did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def client(self) -> object:
        return boto3.client("s3", endpoint_url=self.url, **_boto_credentials())


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }
