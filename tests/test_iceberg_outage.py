"""An Iceberg table on an object store that goes away: nothing is lost, nothing twice.

The table lives in a SQL catalog on SQLite (local, always answering) with its
warehouse on moto's S3 server. Between predlog and moto sits a :class:`Gate`, a TCP
proxy that can be shut: moto forgets every object when it stops, so the store is taken
away by refusing connections at the gate, never by stopping moto.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from services.bentoserve import free_port

import predlog
from predlog.sinks.iceberg import open_table
from tests.helpers import child_env
from tests.services import CREDENTIALS, Moto

CHILD = Path(__file__).with_name("iceberg_staging_child.py")
CATALOG = "lake"


class Gate:
    """A TCP proxy to ``127.0.0.1:<upstream>`` on a port of its own, which can be shut.

    Shut, nothing listens on its port and the connections through it are cut, so a
    client is refused at once, as by a store that is down; opened again, it listens on
    the same port.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._server: socket.socket | None = None
        self._links: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_open(self) -> bool:
        return self._server is not None

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        server.settimeout(0.1)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def shut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with self._lock:
            links, self._links = self._links, set()
        for link in links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()

    def _accept(self, server: socket.socket) -> None:
        while self._server is server:
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for link in (src, dst):
                with contextlib.suppress(OSError):
                    link.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._links.discard(src)
                self._links.discard(dst)


@pytest.fixture
def gate(moto: Moto) -> Iterator[Gate]:
    proxy = Gate(moto.port)
    proxy.open()
    yield proxy
    proxy.shut()


@pytest.fixture
def lake(moto: Moto, gate: Gate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh bucket, and the catalog ``lake`` configured as pyiceberg users do, with
    its store reached through the gate; the variables, for a child process too."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    prefix = f"PYICEBERG_CATALOG__{CATALOG.upper()}__"
    env = {
        **CREDENTIALS,
        f"{prefix}URI": f"sqlite:///{tmp_path / 'catalog.db'}",
        f"{prefix}WAREHOUSE": f"s3://{bucket}/warehouse",
        f"{prefix}S3__ENDPOINT": gate.url,
        f"{prefix}S3__REGION": CREDENTIALS["AWS_DEFAULT_REGION"],
        f"{prefix}S3__ACCESS_KEY_ID": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        f"{prefix}S3__SECRET_ACCESS_KEY": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def request_ids(table_name: str, data: Path) -> Counter[str]:
    """Every request id in the table, counted, read back by pyiceberg."""
    table = open_table(table_name, data_dir=data, create=False)
    column = table.scan(selected_fields=("request_id",)).to_arrow().column("request_id")
    return Counter(str(v) for v in column.to_pylist())


def staged_files(spool: Path) -> list[Path]:
    """Complete data files waiting in the staging directory."""
    return sorted((spool / "iceberg").glob("*/data/*/*/*.parquet"))


def wait_until(condition: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def own(log: predlog.PredictionLogger) -> dict[str, int]:
    figures: dict[str, int] = log.sink_stats()["IcebergSink[0]"]["own"]
    return figures


@pytest.mark.integration
def test_records_wait_through_an_outage_and_are_committed_once(
    lake: dict[str, str], gate: Gate, tmp_path: Path
) -> None:
    """3,000 records logged before, during and after a 30 s outage of the store: every
    one is in the table exactly once, none failed, none dropped, and close() returns."""
    table = f"{CATALOG}.preds.outage_{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    log = predlog.PredictionLogger(
        data_dir=data,
        spool_dir=tmp_path / "spool",
        iceberg_table=table,
        iceberg_commit_interval_s=1.0,
        flush_interval_s=0.2,
        install_signal_handlers=False,
    )
    sent = 0

    def pace(n: int, seconds: float) -> None:
        nonlocal sent
        for _ in range(n // 10):
            for _ in range(10):
                log.log(request_id=f"o-{sent}", features={"n": sent}, score=0.5)
                sent += 1
            time.sleep(seconds * 10 / n)

    try:
        pace(1000, 3.0)
        wait_until(lambda: log.stats()["delivered"] > 0, "a first commit")
        gate.shut()
        outage = time.monotonic()
        pace(1000, 30.0)
        outage_s = time.monotonic() - outage
        # While the store is away the records wait on local disk, counted pending.
        during = log.stats()
        assert during["failed"] == 0 and during["pending"] > 0, during
        assert staged_files(tmp_path / "spool"), "no file waits in the staging directory"
        gate.open()
        pace(1000, 3.0)
    finally:
        if not gate.is_open:
            gate.open()
        closed = log.close(timeout=120)
    stats = log.stats()
    figures = log.sink_stats()["IcebergSink[0]"]
    print(f"\niceberg outage: {sent} records, outage {outage_s:.1f} s, {stats}, {figures}")
    assert closed is True
    assert stats["failed"] == 0 and stats["dropped"] == 0, stats
    assert request_ids(table, data) == Counter({f"o-{i}": 1 for i in range(3000)})
    assert figures["own"]["upload_failures"] > 0, "the store never refused an upload"
    assert staged_files(tmp_path / "spool") == []


@pytest.mark.integration
def test_a_killed_writers_staged_files_are_committed_once_by_the_next(
    lake: dict[str, str], gate: Gate, tmp_path: Path
) -> None:
    """A writer killed (SIGKILL) while the store is away leaves complete files staged;
    the next writer on the same spool adopts them, and once the store is back every
    record that was in one of them is in the table exactly once."""
    table = f"{CATALOG}.preds.killed_{uuid.uuid4().hex[:8]}"
    data, spool = tmp_path / "data", tmp_path / "spool"
    open_table(table, data_dir=data)  # made while the store answers
    gate.shut()
    child = subprocess.Popen(
        [sys.executable, str(CHILD), table, str(data), str(spool)],
        env=child_env(**lake),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(staged_files(spool)) >= 4 or child.poll() is not None, "files")
        assert child.poll() is None, child.communicate()[1][-3000:]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=60)
    staged: Counter[str] = Counter()
    for path in staged_files(spool):
        staged.update(str(v) for v in pq.read_table(path).column("request_id").to_pylist())
    assert staged and max(staged.values()) == 1
    gate.open()
    with predlog.PredictionLogger(
        data_dir=data,
        spool_dir=spool,
        iceberg_table=table,
        iceberg_commit_interval_s=0.5,
        install_signal_handlers=False,
    ) as log:
        for i in range(100):
            log.log(request_id=f"n-{i}", score=0.5)
        adopted = own(log)["adopted"]
    found = request_ids(table, data)
    print(f"\nkilled writer: {len(staged)} records in {adopted} staged files adopted")
    assert adopted >= 4
    assert {rid: found[rid] for rid in staged} == dict.fromkeys(staged, 1)
    assert max(found.values()) == 1, "a record committed twice"
    assert sum(found[f"n-{i}"] for i in range(100)) == 100
    assert staged_files(spool) == []
    assert log.stats()["failed"] == 0


@pytest.mark.integration
def test_a_catalog_down_at_start_up_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog that does not answer when the service starts is not a refusal: the
    logger starts, records are staged, and once the catalog answers the table is
    opened (made, here) and every record committed once."""
    postgres = os.environ.get("PREDLOG_TEST_POSTGRES")
    if not postgres:
        pytest.fail("no PostgreSQL: run the tests with `make test` (services/with-services.sh)")
    address = postgres.split("@", 1)[1].split("/", 1)[0]
    gate = Gate(int(address.rsplit(":", 1)[1]))  # shut: nothing listens on its port yet
    monkeypatch.setenv(
        "PYICEBERG_CATALOG__PGDOWN__URI", postgres.replace(address, f"127.0.0.1:{gate.port}")
    )
    monkeypatch.setenv("PYICEBERG_CATALOG__PGDOWN__WAREHOUSE", (tmp_path / "wh").as_uri())
    table = f"pgdown.late_{uuid.uuid4().hex[:8]}.preds"
    data, spool = tmp_path / "data", tmp_path / "spool"
    log = predlog.PredictionLogger(
        data_dir=data,
        spool_dir=spool,
        iceberg_table=table,
        iceberg_commit_interval_s=0.5,
        flush_interval_s=0.1,
        install_signal_handlers=False,
    )
    try:
        for i in range(200):
            log.log(request_id=f"c-{i}", score=0.5)
        wait_until(lambda: staged_files(spool), "a staged file")
        assert log.stats()["pending"] == 200 and log.stats()["failed"] == 0
        gate.open()
        wait_until(lambda: log.stats()["delivered"] == 200, "the table opened and committed")
        assert log.close(timeout=60)
        assert request_ids(table, data) == Counter({f"c-{i}": 1 for i in range(200)})
    finally:
        log.close(timeout=10)
        gate.shut()
