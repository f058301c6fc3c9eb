"""Disk full: the Parquet sink, the audit store and the Kafka spool on a filesystem that fills up.

What must hold: the server keeps answering (under the audit ``reject`` policy with 503);
failures are counted; nothing is half-published; delivery resumes by itself once space
is freed. Each test mounts its own size-limited tmpfs (the machine runs as root), fills
it with a filler file until a write fails with ENOSPC, and later deletes the filler.
The counts the service reports are checked against the records found on disk, never
against each other alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from services.bentoserve import free_port

import predlog
import predlog.testing
from predlog.audit import AuditLog, verify
from predlog.sinks import KafkaSink
from predlog.storage import Spool
from tests.helpers import ROOT, child_env
from tests.services import closed_port, fresh_topic, kafka_bootstrap, topic_keys

#: Size of each test's tmpfs: large enough for a few Parquet files, small enough to fill.
DISK_KIB = 1024
WAIT_S = 15.0


# -- the filesystem that fills up ------------------------------------------------------


@dataclass
class TinyDisk:
    """A mounted tmpfs and the filler file that fills it."""

    root: Path
    filler: Path = field(init=False)

    def __post_init__(self) -> None:
        self.filler = self.root / "filler"

    def fill(self) -> int:
        """Write the filler until the kernel answers ENOSPC; the bytes it holds.

        Files already on the disk keep the unused rest of their last page, so a write
        there may still be cut short part way: the torn write the code must survive.
        """
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 16, 1 << 12, 1):
                with contextlib.suppress(OSError):
                    while True:
                        written += os.write(fd, b"\0" * chunk)
        finally:
            os.close(fd)
        probe = self.root / "probe"
        with pytest.raises(OSError, match="No space left") as full:
            probe.write_bytes(b"x" * 8192)
        probe.unlink(missing_ok=True)
        assert full.value.errno == errno.ENOSPC
        return written

    def free(self) -> None:
        self.filler.unlink()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[TinyDisk]:
    """A tmpfs of DISK_KIB under tmp_path, unmounted afterwards whatever happened."""
    root = tmp_path / "tiny"
    root.mkdir()
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={DISK_KIB}k", "tmpfs", str(root))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield TinyDisk(root)
    finally:
        if _run("umount", str(root)).returncode != 0:
            _run("umount", "-l", str(root))  # still busy: detach it anyway


def wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- the server ------------------------------------------------------------------------


@contextlib.contextmanager
def serve(data_dir: Path, **env: str) -> Iterator[httpx.Client]:
    """uvicorn running tests/disk_full_service.py in its own process, stopped afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.disk_full_service:app",
            *("--port", str(port), "--log-level", "warning"),
        ],
        cwd=ROOT,
        env=child_env(
            PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}",
            PREDLOG_DATA_DIR=str(data_dir),
            PREDLOG_FLUSH_INTERVAL_S="0.05",
            PREDLOG_BATCH_SIZE="16",
            PREDLOG_METRICS="false",
            **env,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_for("the server to start", lambda: _up(client, proc), timeout=30)
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _up(client: httpx.Client, proc: subprocess.Popen[str]) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
    try:
        return client.get("/debug/stats").status_code == 200
    except httpx.TransportError:
        return False


def expected(amount: int, marker: str) -> dict[str, Any]:
    """What the service answers when the disk has space (and the audit store works)."""
    score = min(1.0, amount / 1000)
    return {"score": score, "decision": "declined" if score >= 0.5 else "approved", "echo": marker}


def post(client: httpx.Client, marker: str, amount: int) -> httpx.Response:
    return client.post(
        "/predict", json={"amount": amount, "marker": marker}, headers={"X-Request-ID": marker}
    )


def post_all(client: httpx.Client, prefix: str, n: int, amount: int = 200) -> list[str]:
    """n requests that must all get their normal answer; their request ids."""
    ids = [f"{prefix}-{i}" for i in range(n)]
    for marker in ids:
        response = post(client, marker, amount)
        assert response.status_code == 200, (marker, response.text)
        assert response.json() == expected(amount, marker)
    return ids


def figures(client: httpx.Client) -> dict[str, Any]:
    found: dict[str, Any] = client.get("/debug/stats").json()
    return found


def settled(client: httpx.Client) -> bool:
    return int(figures(client)["stats"]["pending"]) == 0


# -- what is on disk -------------------------------------------------------------------


def parquet_ids(data_dir: Path) -> list[str]:
    """Request ids of every visible Parquet file (as the analytics glob them), each file
    read whole: one that does not read is a half-published file and fails the test."""
    ids: list[str] = []
    for path in sorted(data_dir.rglob("*.parquet")):
        table = pq.read_table(path)
        ids.extend(str(v) for v in table.column("request_id").to_pylist())
    return ids


def stray_temp_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.rglob("*.tmp"))


# -- the scenarios ---------------------------------------------------------------------


class TestParquetServer:
    def test_server_answers_counts_and_resumes_when_space_is_freed(
        self, tiny_disk: TinyDisk
    ) -> None:
        """Requests keep their answers on a full disk; every record is on disk or counted
        failed or lost; no visible file is partial; delivery resumes without a restart."""
        data = tiny_disk.root / "data"
        with serve(data) as client:
            before = post_all(client, "before", 60)
            wait_for("the first records on disk", lambda: len(parquet_ids(data)) == 60)
            tiny_disk.fill()
            during = post_all(client, "during", 200)
            wait_for("the full-disk batches to settle", lambda: settled(client))
            full = figures(client)
            half_published = _unreadable(data)
            strays_while_full = stray_temp_files(data)
            tiny_disk.free()
            after = post_all(client, "after", 60)
            # No flush asked for: files roll by age in the background.
            wait_for("records after the disk freed", lambda: set(after) <= set(parquet_ids(data)))
            assert client.get("/debug/flush").json() == {"flushed": True}
            final = figures(client)
        on_disk = parquet_ids(data)
        stats, lost = final["stats"], final["parquet"]["lost_rows"]
        failed_batches = final["sink_stats"]["ParquetSink[0]"]["errors"]
        print(
            f"\ndisk-full parquet: requests={len(before) + len(during) + len(after)} "
            f"answered={len(before) + len(during) + len(after)} "
            f"failed_records={stats['failed']} lost_rows={lost} errors={failed_batches} "
            f"delivered_after_free={len(set(after) & set(on_disk))} "
            f"during_on_disk={len(set(during) & set(on_disk))} "
            f"half_published={len(half_published)} stray_tmp_while_full={len(strays_while_full)}"
        )
        assert half_published == []
        assert stray_temp_files(data) == []
        assert full["stats"]["failed"] > 0, "the full disk must show as failed records"
        assert failed_batches.get("OSError", 0) > 0, full["sink_stats"]
        assert full["errors"].get("sink_export_failed:ParquetSink[0]", 0) > 0, full["errors"]
        assert len(on_disk) == len(set(on_disk)), "a record published twice"
        assert set(before) | set(after) <= set(on_disk)
        assert set(on_disk) <= set(before) | set(during) | set(after)
        assert stats["captured"] == len(before) + len(during) + len(after)
        assert stats["pending"] == stats["dropped"] == stats["sampled_out"] == 0
        # Counted against the files: what is there plus what was lost after being taken
        # is what was delivered, and the rest was counted failed.
        assert len(on_disk) + lost == stats["delivered"]
        assert stats["delivered"] + stats["failed"] == stats["captured"]


def _unreadable(data: Path) -> list[str]:
    """Visible Parquet files that do not read whole, with why."""
    broken = []
    for path in sorted(data.rglob("*.parquet")):
        try:
            pq.read_table(path)
        except Exception as exc:  # noqa: BLE001  # any failure to read is the finding
            broken.append(f"{path.name}: {exc!r}")
    return broken


class TestParquetSinkOnFullDisk:
    def test_a_file_that_cannot_be_closed_is_abandoned_and_counted(
        self, tiny_disk: TinyDisk
    ) -> None:
        """Publishing writes the footer: refused by a full disk, the file is removed, its
        rows counted lost, and the next file is published once there is space."""
        data = tiny_disk.root / "data"
        sink = predlog.ParquetSink(data)
        sink.export(_batch("open", 50))
        tiny_disk.fill()
        with pytest.raises(predlog.SinkError, match="publish failed"):
            sink.flush()
        tiny_disk.free()
        sink.export(_batch("later", 5))
        sink.close()
        on_disk = parquet_ids(data)
        print(
            f"\ndisk-full parquet publish: rows_in_open_file=50 lost_rows={sink.lost_rows} "
            f"published={sink.published_count} on_disk={len(on_disk)} "
            f"stray_tmp={len(stray_temp_files(data))}"
        )
        assert stray_temp_files(data) == []
        assert sink.lost_rows == 50
        assert on_disk == [f"later-{i}" for i in range(5)]


def _batch(prefix: str, n: int) -> Any:
    """n records with request ids ``<prefix>-<i>``, as the flusher builds them."""
    keep = predlog.testing.MemorySink()
    with predlog.PredictionLogger(sinks=[keep], install_signal_handlers=False) as log:
        for i in range(n):
            log.log(request_id=f"{prefix}-{i}", score=0.1, features={"pad": "x" * 200})
    return pa.RecordBatch.from_pylist(keep.records, schema=predlog.arrow_schema())


def _key() -> tuple[str, ed25519.Ed25519PublicKey]:
    """A signing key the test holds: the private half as hex, and the public key."""
    private = ed25519.Ed25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return raw.hex(), private.public_key()


DECLINED = 900  # an amount the service declines: an audited decision
UNAVAILABLE = {"error": "audit log unavailable; decision not made"}


class TestAuditRejectServer:
    def test_full_store_answers_503_then_audits_again_when_freed(
        self, tiny_disk: TinyDisk, tmp_path: Path
    ) -> None:
        """Under reject, a full audit store turns decisions into 503s; once space is freed
        the service decides and audits again by itself, and the log verifies."""
        private_hex, public = _key()
        audit_dir = tiny_disk.root / "audit"
        env = {"DISK_FULL_AUDIT_DIR": str(audit_dir), "DISK_FULL_AUDIT_KEY": private_hex}
        with serve(tmp_path / "data", **env) as client:
            before = post_all(client, "before", 30, DECLINED)
            wait_for("the first decisions audited", lambda: _appended(client) == 30)
            tiny_disk.fill()
            answered, rejected = _until_rejected(client)
            wait_for("the failed batches to settle", lambda: settled(client))
            full = figures(client)
            tiny_disk.free()
            reopened = _until_answered(client)
            after = post_all(client, "after", 30, DECLINED)
            assert client.get("/debug/flush").json() == {"flushed": True}
            final = figures(client)
        report = verify(audit_dir, public_key=public)
        with AuditLog(audit_dir, signing_key=bytes.fromhex(private_hex)) as log:
            audited = {rid for rid in [*before, *answered, reopened, *after] if log.find(rid)}
        stats = final["stats"]
        print(
            f"\ndisk-full audit reject: answered_before={len(before)} "
            f"answered_while_full={len(answered)} rejected_503={rejected} "
            f"store_failures={final['audit']['failures']} failed_records={stats['failed']} "
            f"audited_after_free={len(audited & {reopened, *after})} entries={report.entries} "
            f"verify_ok={report.ok} torn_tail={report.torn_tail}"
        )
        assert full["audit"]["accepting"] is False and full["audit"]["failures"] > 0
        assert rejected > 0
        assert report.ok, report.problem
        assert report.torn_tail == 0
        assert set(before) | {reopened} | set(after) <= audited
        # Each answered decision is in the verified log or counted failed, never both.
        assert stats["captured"] == len(before) + len(answered) + 1 + len(after)
        assert report.entries == len(audited) == stats["delivered"]
        assert stats["delivered"] + stats["failed"] == stats["captured"]
        assert stats["pending"] == stats["dropped"] == 0


def _appended(client: httpx.Client) -> int:
    return int(figures(client)["audit"]["appended"])


def _until_rejected(client: httpx.Client) -> tuple[list[str], int]:
    """Decisions on the full disk until the service starts refusing them: the ones it
    answered (normally) before it noticed, and how many 503s it gave at the end."""
    answered: list[str] = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        marker = f"during-{len(answered)}"
        response = post(client, marker, DECLINED)
        if response.status_code == 503:
            assert response.json() == UNAVAILABLE
            rejected = 1 + sum(
                post(client, f"refused-{i}", DECLINED).status_code == 503 for i in range(9)
            )
            return answered, rejected
        assert response.status_code == 200 and response.json() == expected(DECLINED, marker)
        answered.append(marker)
        time.sleep(0.02)
    pytest.fail("the service never refused a decision it could not audit")


def _until_answered(client: httpx.Client) -> str:
    """Retry one decision until the service answers it again; its request id."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        response = post(client, "reopened", DECLINED)
        if response.status_code == 200:
            assert response.json() == expected(DECLINED, "reopened")
            return "reopened"
        assert response.status_code == 503 and response.json() == UNAVAILABLE
        time.sleep(0.05)
    pytest.fail("the service did not take decisions again after space was freed")


def _spool_on_full_disk(tiny_disk: TinyDisk, topic: str) -> tuple[Path, dict[str, Any]]:
    """Records to a Kafka sink whose broker is away, spooling on a disk that fills up
    and is freed again; the spool directory and the counts, after the sink closed."""
    spool_dir = tiny_disk.root / "spool" / "first"
    sink = KafkaSink(
        bootstrap_servers=closed_port(),
        topic=topic,
        spool_dir=spool_dir,
        delivery_timeout_s=0.5,
        retry_interval_s=60,
    )
    log = predlog.PredictionLogger(sinks=[sink], install_signal_handlers=False, batch_size=25)
    phases: dict[str, dict[str, int]] = {}
    for phase in ("before", "during", "after"):
        if phase == "during":
            tiny_disk.fill()
        for i in range(100):
            log.log(request_id=f"{phase}-{i}", score=0.1, features={"pad": "x" * 200})
        log.flush()
        phases[phase] = log.stats()
        if phase == "during":
            tiny_disk.free()
    figures = {"stats": log.stats(), "sink": log.sink_stats()["KafkaSink[0]"], "phases": phases}
    log.close()
    return spool_dir, figures


def _spooled_keys(spool_dir: Path) -> tuple[list[str], int]:
    """Every entry a replay would send, by key, and how many corrupt entries it met."""
    spool = Spool(spool_dir, max_bytes=1 << 30)
    keys = [key.decode() for segment in spool.segments() for key, _ in spool.read(segment)]
    return keys, spool.corrupt


class TestKafkaSpoolOnFullDisk:
    def test_failed_spool_writes_are_counted_and_leave_no_torn_entry(
        self, tiny_disk: TinyDisk
    ) -> None:
        """With the broker away and the disk full, spooling fails and is counted; the
        spool holds exactly the records before and after, every entry whole."""
        spool_dir, figures = _spool_on_full_disk(tiny_disk, "disk-full")
        keys, corrupt = _spooled_keys(spool_dir)
        stats, sink = figures["stats"], figures["sink"]
        print(
            f"\ndisk-full kafka spool: records=300 spooled={sink['own']['spooled']} "
            f"failed={stats['failed']} errors={sink['errors']} in_spool={len(keys)} "
            f"corrupt={corrupt} spooled_after_free="
            f"{sum(k.startswith('after-') for k in keys)}"
        )
        assert figures["phases"]["during"]["failed"] > 0
        assert sink["errors"].get("OSError", 0) > 0, sink
        assert corrupt == 0
        assert len(keys) == len(set(keys)) == sink["own"]["spooled"]
        assert {f"before-{i}" for i in range(100)} | {f"after-{i}" for i in range(100)} <= set(keys)
        assert stats["captured"] == 300 and stats["pending"] == stats["dropped"] == 0
        # Counted against the spool: what is in it was delivered; the rest failed.
        assert stats["delivered"] == len(keys)
        assert stats["delivered"] + stats["failed"] == 300

    @pytest.mark.integration
    def test_the_spool_replays_once_the_broker_answers(self, tiny_disk: TinyDisk) -> None:
        """A sink that reaches the broker adopts the spool left on the once-full disk and
        sends exactly the records it holds, each once."""
        bootstrap, topic = kafka_bootstrap(), fresh_topic("disk-full")
        spool_dir, figures = _spool_on_full_disk(tiny_disk, topic)
        keys, _ = _spooled_keys(spool_dir)
        sink = KafkaSink(
            bootstrap_servers=bootstrap,
            topic=topic,
            spool_dir=spool_dir.with_name("second"),
            retry_interval_s=60,  # only flush() starts a pass
        )
        sink.flush()
        replayed = sink.stats()
        sink.close()
        counts = topic_keys(bootstrap, topic)
        print(
            f"\ndisk-full kafka replay: in_spool={len(keys)} replayed={replayed['replayed']} "
            f"on_topic={len(counts)} failed_while_full={figures['stats']['failed']}"
        )
        assert len(keys) == figures["sink"]["own"]["spooled"], "every spooled record is kept"
        assert replayed["replayed"] == len(keys) and replayed["replay_errors"] == 0
        assert set(counts) == set(keys) and set(counts.values()) == {1}
        assert not spool_dir.exists(), "the replayed spool is removed"
