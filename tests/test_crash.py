"""Crash consistency: writers killed with SIGKILL at seeded random moments, then read back.

Each target runs tests/crash_child.py, waits until it has reported real progress, kills
it at a random moment, checks what a reader sees, and starts the next run in the same
directory (the restart). A last run finishes cleanly. What each run acknowledged (the
child's report lines) must survive; what it had not acknowledged may be lost, and how
much was is counted. One summary line per target is printed (``pytest -s`` shows it).

The kill moments come from ``random.Random(seed)``; the seed is ``PREDLOG_CRASH_SEED``
or a fresh one, and every failure message names it. Timing still varies from run to
run, so a seed replays the schedule, not the exact interleaving.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import predlog
from predlog import KafkaSink
from predlog.audit import verify
from predlog.audit._store import ReadOnlyStore
from predlog.storage import Spool
from predlog.tools.analytics import Predictions
from tests.crash_child import AUDIT_SIGNING_KEY, expected_value
from tests.helpers import child_env, predlog_cli
from tests.services import fresh_topic, kafka_bootstrap

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 20


def _seed() -> int:
    return int(os.environ.get("PREDLOG_CRASH_SEED") or random.SystemRandom().randrange(1 << 31))


@dataclass
class Tally:
    """What one target's runs did, for the summary line."""

    target: str
    seed: int
    kills: int = 0
    reported: int = 0
    found: int = 0
    lost_beyond_bound: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.extra.items())
        return (
            f"crash {self.target}: kills={self.kills} reported={self.reported} "
            f"found={self.found} lost_beyond_bound={self.lost_beyond_bound}{extra} "
            f"seed={self.seed}"
        )


@dataclass
class Runs:
    """Children of one target, all writing into ``directory``, each with its own report."""

    target: str
    directory: Path
    reports: Path
    rng: random.Random
    tally: Tally
    env: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    def start(self, *, finish: bool = False) -> subprocess.Popen[bytes]:
        tag = f"{self.target[0]}{len(self.tags)}"
        self.tags.append(tag)
        argv = [sys.executable, str(CHILD), self.target, str(self.directory)]
        argv += [str(self.reports / f"{tag}.txt"), tag, str(self.rng.randrange(1 << 30))]
        return subprocess.Popen(
            [*argv, *(["--finish"] if finish else [])],
            env=child_env(PYTHONPATH=f"{CHILD.parent.parent / 'plugin'}", **self.env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def lines(self, tag: str) -> list[list[str]]:
        path = self.reports / f"{tag}.txt"
        text = path.read_text() if path.exists() else ""
        return [line.split() for line in text.splitlines()]

    def kill_during_work(self, progress: int, most_delay_s: float) -> list[list[str]]:
        """Start a run, wait for ``progress`` acknowledged units of work, wait a random
        moment more, SIGKILL it; its report lines."""
        proc = self.start()
        tag = self.tags[-1]
        deadline = time.monotonic() + 60
        while len(self.lines(tag)) < 1 + progress:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                _, err = proc.communicate()
                pytest.fail(f"seed={self.tally.seed}: {tag} made no progress:\n{err.decode()}")
            time.sleep(0.005)
        time.sleep(self.rng.uniform(0, most_delay_s))
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL, f"seed={self.tally.seed}: {tag} exited early"
        self.tally.kills += 1
        return self.lines(tag)

    def finish(self) -> list[list[str]]:
        """A last run in the same directory, which must work and close cleanly."""
        proc = self.start(finish=True)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"seed={self.tally.seed}: restart failed:\n{err.decode()}"
        lines = self.lines(self.tags[-1])
        assert lines[-1][0] == "closed", f"seed={self.tally.seed}: {lines[-1:]}"
        return lines


def runs(target: str, tmp_path: Path, **env: str) -> Runs:
    seed = _seed()
    (tmp_path / "reports").mkdir()
    return Runs(
        target,
        tmp_path / "data",
        tmp_path / "reports",
        random.Random(seed),
        Tally(target, seed),
        env,
    )


# -- Parquet -----------------------------------------------------------------------


def check_published(data_dir: Path, checked: set[Path], seed: int) -> int:
    """Every ``*.parquet`` a reader can see reads whole; anything else under the layout is
    a hidden temporary file no reader globs. Published files never change, so each is
    read once. Returns how many temporary files are lying there."""
    root = data_dir / "predictions"
    temps = 0
    for path in sorted(root.rglob("*")) if root.exists() else []:
        if path.is_dir():
            continue
        if path.suffix != ".parquet":
            assert path.name.startswith(".") and path.name.endswith(".tmp"), (
                f"seed={seed}: {path.name} is neither published nor hidden"
            )
            temps += 1
        elif path not in checked:
            try:
                pq.read_table(path)
            except Exception as exc:  # noqa: BLE001  # any failure to read is the finding
                pytest.fail(f"seed={seed}: a reader sees a broken file {path.name}: {exc!r}")
            checked.add(path)
    return temps


def request_ids(data_dir: Path) -> Counter[str]:
    """Request ids as predlog's analytics see them: DuckDB over the published files."""
    rows = Predictions(data_dir).query("SELECT request_id FROM predictions").fetchall()
    return Counter(str(row[0]) for row in rows)


def indexes(ids: Counter[str], tag: str) -> set[int]:
    prefix = f"{tag}-"
    return {int(i[len(prefix) :]) for i in ids if i.startswith(prefix)}


def parquet_losses(run: list[list[str]], found: set[int]) -> tuple[int, int, int]:
    """One killed run: (records it reported logging, lost below its last returned flush,
    lost beyond the ``pending`` it last reported)."""
    logged = [line for line in run if line[0] == "logged"]
    flushed = [int(line[1]) for line in run if line[0] == "flushed"]
    if not logged:
        return 0, 0, 0
    last = logged[-1]
    count, pending = int(last[1]), int(last[3])
    lost = [i for i in range(count) if i not in found]
    below_flush = sum(i < (flushed[-1] if flushed else 0) for i in lost)
    return count, below_flush, max(0, len(lost) - pending)


class TestParquetCrash:
    def test_killed_writers_leave_only_whole_files(self, tmp_path: Path) -> None:
        """Killed at random, the Parquet writer leaves only whole files under their
        published names; every record a returned flush() covered survives, none twice;
        and a new logger writes and closes in the same directory."""
        r = runs("parquet", tmp_path)
        checked: set[Path] = set()
        for _ in range(KILLS):
            r.kill_during_work(progress=r.rng.randint(1, 8), most_delay_s=0.3)
            temps = check_published(r.directory, checked, r.tally.seed)
        last = r.finish()
        temps = check_published(r.directory, checked, r.tally.seed)
        ids = request_ids(r.directory)
        seed = r.tally.seed
        assert max(ids.values()) == 1, f"seed={seed}: duplicated {ids.most_common(3)}"
        below_flush = beyond_pending = 0
        for tag in r.tags[:-1]:
            count, lost_flushed, lost_pending = parquet_losses(r.lines(tag), indexes(ids, tag))
            r.tally.reported += count
            below_flush += lost_flushed
            beyond_pending += lost_pending
        closed = int(last[-1][1])
        assert indexes(ids, r.tags[-1]) == set(range(closed)), f"seed={seed}: restart lost"
        r.tally.reported += closed
        r.tally.found = sum(ids.values())
        r.tally.lost_beyond_bound = below_flush
        r.tally.extra = {"lost_beyond_pending": beyond_pending, "temp_files_left": temps}
        print(r.tally.line())
        assert below_flush == 0, f"seed={seed}: {below_flush} records a returned flush covered"
        assert beyond_pending == 0, f"seed={seed}: {beyond_pending} lost beyond stats() pending"
        assert temps == 0, f"seed={seed}: the restart left {temps} dead writers' temporary files"

    def test_a_record_counted_delivered_survives_a_kill(self, tmp_path: Path) -> None:
        """What stats() counts delivered, and not pending, is in a published file even
        if the writer is killed at once: loss is bounded by ``pending``."""
        r = runs("delivered", tmp_path)
        lines = r.kill_during_work(progress=1, most_delay_s=0.0)
        count = int(lines[-1][1])
        assert (count, int(lines[-1][3])) == (100, 0)
        check_published(r.directory, set(), r.tally.seed)
        root = r.directory / "predictions"
        published = [pq.read_table(p).num_rows for p in root.glob("date=*/*.parquet")]
        assert sum(published) == count, f"{count} delivered, {sum(published)} published"


# -- Audit log ---------------------------------------------------------------------


def public_key_hex() -> str:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(AUDIT_SIGNING_KEY).public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def audit_entries(directory: Path) -> Iterator[tuple[int, str]]:
    """(index, request id) of every whole entry, as a read-only reader sees them."""
    for record in ReadOnlyStore(directory).records():
        yield record.position, str(json.loads(record.data)["request_id"])


def acknowledged(lines: list[list[str]]) -> dict[int, str]:
    return {int(line[1]): line[2] for line in lines if line[0] == "appended"}


class TestAuditCrash:
    def test_killed_appends_keep_every_acknowledged_entry(self, tmp_path: Path) -> None:
        """Killed at random (inside megabyte writes and between entries and their
        checkpoint), the audit log keeps every entry whose append returned, verifies
        against the pinned public key, and reopens for appending."""
        r = runs("audit", tmp_path)
        key, seed = public_key_hex(), r.tally.seed
        expected: dict[int, str] = {}
        torn = 0
        for _ in range(KILLS):
            expected |= acknowledged(r.kill_during_work(r.rng.randint(1, 4), 0.25))
            report = verify(r.directory, public_key=key)
            assert report.ok, f"seed={seed}: {report.problem}"
            torn += report.torn_tail > 0
        expected |= acknowledged(r.finish())
        entries = dict(audit_entries(r.directory))
        missing = {i: rid for i, rid in expected.items() if entries.get(i) != rid}
        unacknowledged = len(entries) - len(expected)
        r.tally.reported, r.tally.found = len(expected), len(entries)
        r.tally.lost_beyond_bound = len(missing)
        r.tally.extra = {"torn_tails": torn, "unacknowledged_kept": unacknowledged}
        print(r.tally.line())
        assert not missing, f"seed={seed}: acknowledged entries lost: {sorted(missing)[:5]}"
        assert len(set(entries.values())) == len(entries), f"seed={seed}: an entry twice"
        # At most the one append each kill interrupted is on disk unacknowledged.
        assert 0 <= unacknowledged <= r.tally.kills, f"seed={seed}"
        final = verify(r.directory, public_key=key)
        assert (final.ok, final.torn_tail, final.entries) == (True, 0, len(entries))
        cli = predlog_cli("audit", "verify", str(r.directory), "--public-key", key)
        assert cli.returncode == 0, f"seed={seed}: {cli.stdout}{cli.stderr}"


# -- Spool -------------------------------------------------------------------------


def spooled(lines: list[list[str]]) -> list[str]:
    return [word.split(":")[0] for line in lines if line[0] == "spooled" for word in line[1:]]


def read_spool(directory: Path, seed: int) -> tuple[list[str], int]:
    """Every entry a replay would read, in order, each checked whole; and how many
    segments ended in an entry whose checksum failed (a torn tail, skipped)."""
    reader = Spool(directory, max_bytes=1 << 40)
    keys = []
    for segment in reader.segments():
        for key, value in reader.read(segment):
            assert value == expected_value(key, len(value)), f"seed={seed}: {key!r} torn"
            keys.append(key.decode())
    return keys, reader.corrupt


def tear(directory: Path, rng: random.Random) -> None:
    """Leave the last segment as a kill inside ``write(2)`` does, when the kill itself
    did not: the first bytes of one more entry (``length | crc32 | key length | key |
    value``, the format the spool module documents), cut at a random byte."""
    key = b"torn"
    payload = struct.pack("<H", len(key)) + key + expected_value(key, rng.randint(10, 100_000))
    entry = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    last = Spool(directory, max_bytes=1 << 40).segments()[-1]
    with last.open("ab") as f:
        f.write(entry[: rng.randint(1, len(entry) - 1)])


def spool_order(read: list[str], runs_reported: list[tuple[str, list[str]]], seed: int) -> None:
    """Replay order is append order: run after run, each run's entries from its first,
    with nothing it reported missing (one unreported batch may follow a run's last)."""
    position = 0
    for tag, reported in runs_reported:
        mine = [k for k in read[position:] if k.startswith(f"{tag}-")]
        expected = [f"{tag}-{i}" for i in range(len(mine))]
        assert read[position : position + len(mine)] == expected, f"seed={seed}: {tag} order"
        assert mine[: len(reported)] == reported, f"seed={seed}: {tag} lost spooled batches"
        position += len(mine)
    assert position == len(read), f"seed={seed}: foreign entries in the spool"


class TestSpoolCrash:
    def test_killed_appends_replay_in_order(self, tmp_path: Path) -> None:
        """Killed at random (inside multi-megabyte appends), a spool reopened in the same
        directory replays every batch whose append returned, in order; a torn tail is
        caught by its checksum, counted and skipped. Kills tear a write only now and then,
        so some kills that did not are followed by a tear made by hand."""
        r = runs("spool", tmp_path)
        reported: list[tuple[str, list[str]]] = []
        injected = torn = 0
        for _ in range(KILLS):
            lines = r.kill_during_work(progress=r.rng.randint(1, 4), most_delay_s=0.2)
            reported.append((r.tags[-1], spooled(lines)))
            _, before = read_spool(r.directory, r.tally.seed)
            if before == torn and r.rng.random() < 0.3:
                tear(r.directory, r.rng)
                injected += 1
            read, torn = read_spool(r.directory, r.tally.seed)
            spool_order(read, reported, r.tally.seed)
        lines = r.finish()
        reported.append((r.tags[-1], spooled(lines)))
        read, torn = read_spool(r.directory, r.tally.seed)
        spool_order(read, reported, r.tally.seed)
        r.tally.reported = sum(len(keys) for _, keys in reported)
        r.tally.found = len(read)
        r.tally.extra = {"torn_tails_skipped": torn, "of_them_injected": injected}
        print(r.tally.line())


# -- predlog sink ------------------------------------------------------------------


def produce(bootstrap: str, topic: str, n: int, spool_dir: Path) -> None:
    """``n`` records with request ids ``k-0`` .. into ``topic``, all sent."""
    sink = KafkaSink(bootstrap_servers=bootstrap, topic=topic, spool_dir=spool_dir)
    with predlog.PredictionLogger(sinks=[sink], install_signal_handlers=False) as log:
        for i in range(n):
            log.log(request_id=f"k-{i}", features={"i": i}, score=0.5)
    assert sink.stats()["sent"] == n


@pytest.mark.integration
class TestSinkConsumerCrash:
    def test_killed_consumer_publishes_each_record_once(self, tmp_path: Path) -> None:
        """``predlog sink`` killed at random, many times between publishing a file and
        committing its offsets: after restarts every produced record is in the
        Parquet layout, and readers see none twice."""
        bootstrap, topic, n = kafka_bootstrap(), fresh_topic("crash"), 15_000
        produce(bootstrap, topic, n, tmp_path / "spool")
        r = runs("consumer", tmp_path, PREDLOG_CRASH_BOOTSTRAP=bootstrap, PREDLOG_CRASH_TOPIC=topic)
        checked: set[Path] = set()
        for _ in range(KILLS):
            r.kill_during_work(progress=r.rng.randint(1, 3), most_delay_s=0.4)
            check_published(r.directory, checked, r.tally.seed)
        r.finish()
        check_published(r.directory, checked, r.tally.seed)
        ids = request_ids(r.directory)
        missing = n - len(indexes(ids, "k"))
        duplicated = sum(c - 1 for c in ids.values())
        r.tally.reported, r.tally.found, r.tally.lost_beyond_bound = n, sum(ids.values()), missing
        r.tally.extra = {"duplicated": duplicated, "files": len(checked)}
        print(r.tally.line())
        assert missing == 0, f"seed={r.tally.seed}: {missing} produced records missing"
        assert duplicated == 0, f"seed={r.tally.seed}: {duplicated} records seen twice"
