"""A writer for tests/test_crash.py to kill: it works until SIGKILL and reports what it did.

``python tests/crash_child.py TARGET DIR REPORT TAG [SEED]`` writes into ``DIR`` for ever
(or, with ``--finish``, for a short while and then closes cleanly). After each unit of
work that is acknowledged (a flush() that returned, an append that returned) it appends
one line to ``REPORT`` with a single ``os.write`` on an ``O_APPEND`` descriptor: the line
is in the kernel before the next instruction, so a SIGKILL can never leave a report of
work that was not acknowledged, nor lose the report of work that was.

Each target names its records ``TAG-<n>``, with ``n`` counting up from 0 within one
run, so the test knows exactly which records each run acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Each target imports what it needs inside its function: a child loads only that, and
# starts sooner, which matters over the many runs a test kills.

#: The audit log's signing key: fixed, so that the test can pin its public key.
AUDIT_SIGNING_KEY = bytes(range(32))


class Report:
    """Append-only report lines, each one write(2) on an O_APPEND descriptor."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def line(self, *words: object) -> None:
        os.write(self._fd, (" ".join(str(w) for w in words) + "\n").encode())


def expected_value(key: bytes, size: int) -> bytes:
    """The spool value stored under ``key``: its content follows from the key and size,
    so a reader can tell a whole value from a torn or foreign one."""
    return (key + b"|") * (size // (len(key) + 1)) + b"#" * (size % (len(key) + 1))


def parquet(data_dir: str, report: Report, tag: str, rng: random.Random, finish: bool) -> None:
    """Log records continuously through the default Parquet sink, rolling files often;
    report ``logged N pending P delivered D`` after each round and ``flushed N`` after
    each flush() that returned True (every record before N is then in a published file)."""
    import predlog  # imported late: the report file opens first

    log = predlog.PredictionLogger(
        data_dir=data_dir,
        parquet_max_file_bytes=32 << 10,
        parquet_max_file_age_s=0.05,
        flush_interval_s=0.02,
        batch_size=200,
        install_signal_handlers=False,
        metrics=False,
    )
    n = 0
    for round_no in range(40 if finish else 1 << 30):
        for _ in range(rng.randint(20, 120)):
            log.log(request_id=f"{tag}-{n}", features={"n": n, "pad": "x" * 200}, score=0.5)
            n += 1
        stats = log.stats()
        report.line("logged", n, "pending", stats["pending"], "delivered", stats["delivered"])
        if round_no % 3 == 2 and log.flush(timeout=30):
            report.line("flushed", n)
    if log.close():
        report.line("closed", n)


def delivered(data_dir: str, report: Report, tag: str, rng: random.Random, finish: bool) -> None:
    """Log records, wait until stats() counts every one delivered and none pending (the
    file is published when it is half a second old), report ``delivered N``, and wait
    to be killed."""
    import time

    import predlog

    del rng, finish
    log = predlog.PredictionLogger(
        data_dir=data_dir,
        flush_interval_s=0.02,
        parquet_max_file_age_s=0.5,
        install_signal_handlers=False,
        metrics=False,
    )
    for n in range(100):
        log.log(request_id=f"{tag}-{n}", features={"n": n}, score=0.5)
    while log.stats()["pending"] or log.stats()["delivered"] < 100:
        time.sleep(0.005)
    report.line("delivered", log.stats()["delivered"], "pending", log.stats()["pending"])
    time.sleep(60)


def audit(directory: str, report: Report, tag: str, rng: random.Random, finish: bool) -> None:
    """Append entries (some of them megabytes, so a kill can land inside a write), with a
    checkpoint every few; report ``appended INDEX TAG-n`` once each append returned."""
    from predlog.audit import AuditLog

    log = AuditLog(directory, signing_key=AUDIT_SIGNING_KEY, checkpoint_every=2)
    for n in range(6 if finish else 1 << 30):
        size = rng.choice([10, 1_000, 100_000, 600_000])
        index = log.append({"request_id": f"{tag}-{n}", "pad": "p" * size})
        report.line("appended", index, f"{tag}-{n}")
    if finish:
        log.checkpoint()
        log.close()
        report.line("closed")


def spool(directory: str, report: Report, tag: str, rng: random.Random, finish: bool) -> None:
    """Append batches of entries of up to a few megabytes to a spool; report
    ``spooled KEY:SIZE ...`` once each append (fsynced) returned."""
    from predlog.storage import Spool

    target = Spool(directory, max_bytes=1 << 40, segment_bytes=8 << 20)
    n = 0
    for _ in range(3 if finish else 1 << 30):
        batch = []
        for _ in range(rng.randint(1, 4)):
            key = f"{tag}-{n}".encode()
            batch.append((key, expected_value(key, rng.choice([100, 20_000, 600_000]))))
            n += 1
        target.append(batch)
        report.line("spooled", *(f"{k.decode()}:{len(v)}" for k, v in batch))
    if finish:
        report.line("closed")


def consumer(data_dir: str, report: Report, tag: str, rng: random.Random, finish: bool) -> None:
    """Run ``predlog sink``'s consumer with ``PREDLOG_CRASH_BOOTSTRAP``/``_TOPIC``; report
    ``committed WRITTEN`` after each offset commit. The consumer joins with a static
    group instance id, as a restarted pod would, so that a restart takes over the killed
    member's partitions at once instead of waiting out its session. Its polls are small,
    so that each run publishes and commits many times."""
    del rng  # the kill moments are the test's; this child only works
    import aiokafka

    from predlog.tools.sink import ParquetDestination, consume

    class StaticMember(aiokafka.AIOKafkaConsumer):  # type: ignore[misc]  # untyped library
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, group_instance_id="crash", **kwargs)

        async def getmany(self, *partitions: Any, **kwargs: Any) -> Any:
            # Small polls: many publish-and-commit rounds per run, so kills land in them.
            kwargs["max_records"] = 100
            return await super().getmany(*partitions, **kwargs)

    aiokafka.AIOKafkaConsumer = StaticMember

    def committed(stats: Any, lag: int | None) -> None:
        report.line("committed", stats.written, "lag", lag)

    asyncio.run(
        consume(
            destination=ParquetDestination(data_dir),
            bootstrap_servers=os.environ["PREDLOG_CRASH_BOOTSTRAP"],
            topic=os.environ["PREDLOG_CRASH_TOPIC"],
            group_id=f"g-{os.environ['PREDLOG_CRASH_TOPIC']}",
            max_batch=300,
            max_wait_s=0.05,
            exit_when_idle_s=4.0 if finish else None,
            pause_before_commit_s=0.0 if finish else 0.3,
            on_commit=committed,
        )
    )
    if finish:
        report.line("closed")


TARGETS: dict[str, Callable[[str, Report, str, random.Random, bool], None]] = {
    "parquet": parquet,
    "delivered": delivered,
    "audit": audit,
    "spool": spool,
    "consumer": consumer,
}


def main(argv: list[str]) -> None:
    finish = "--finish" in argv
    target, directory, report_path, tag, seed = [a for a in argv if a != "--finish"]
    report = Report(report_path)
    report.line("started", Path(directory).name)
    TARGETS[target](directory, report, tag, random.Random(int(seed)), finish)


if __name__ == "__main__":
    main(sys.argv[1:])
