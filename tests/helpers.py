"""Things several test modules need: running Python in a child process, reading Parquet."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from services.bentoserve import BentoServer

from predlog import arrow_schema
from predlog.testing import MemorySink

ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREDLOG_") or k.startswith("PREDLOG_TEST_")
    }
    env["PYTHONPATH"] = str(ROOT / "plugin")
    env.update(extra)
    return env


def bento_env(data_dir: Path, bentoml_home: Path, **extra: str) -> dict[str, str]:
    """The environment of a test's `bentoml serve`: predlog and this repository importable,
    records under ``data_dir``, BentoML's own state under ``bentoml_home``, no telemetry."""
    return child_env(
        PREDLOG_DATA_DIR=str(data_dir),
        BENTOML_HOME=str(bentoml_home),
        BENTOML_DO_NOT_TRACK="true",
        PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}",
        **extra,
    )


def predlog_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m predlog ARGS`` as a user would; the examples are importable."""
    return subprocess.run(
        [sys.executable, "-m", "predlog", *args],
        env=child_env(PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}", **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def start_python(code: str, **env: str) -> subprocess.Popen[str]:
    """Run ``code`` in a fresh interpreter with predlog importable."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def drop(held: list[object]) -> None:
    """Let go of the only references to what ``held`` holds, and collect: a finaliser's
    warning is then raised inside the caller's ``pytest.warns`` block."""
    held.clear()
    gc.collect()


def parquet_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "predictions").glob("date=*/*.parquet"))


def read_all(data_dir: Path) -> pa.Table:
    files = parquet_files(data_dir)
    if not files:
        return arrow_schema().empty_table()
    return pa.concat_tables(pq.read_table(f, schema=arrow_schema()) for f in files)


class BlockedSink(MemorySink):
    """Blocks every export until ``release`` is set: a sink that has stalled."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def export(self, batch: pa.RecordBatch) -> None:
        self.entered.set()
        self.release.wait()
        super().export(batch)


class SlowSink(MemorySink):
    """Takes 5 ms per batch: a sink slower than the producers."""

    def export(self, batch: pa.RecordBatch) -> None:
        time.sleep(0.005)
        super().export(batch)


class FailingSink(MemorySink):
    """Raises on every export."""

    def export(self, batch: pa.RecordBatch) -> None:
        raise OSError("disk on fire")


class Collect(logging.Handler):
    """An application's own handler that keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def start_bento(target: str, tmp_path: Path, data: Path, **env: str) -> BentoServer:
    """``bentoml serve TARGET`` started and ready, its records under ``data``; a start
    that fails fails the test, with the server's log."""
    server = BentoServer(
        target,
        log_path=tmp_path / "server.log",
        cwd=ROOT,
        env=bento_env(data, tmp_path / "bentoml", **env),
    )
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(f"{exc}\n{server.stop()}")
    return server


def local_spark(app: str, *, master: str = "local[2]", shuffle_partitions: int = 4):
    """A local SparkSession for a test module: a generator for a module-scoped fixture.

    The JVM outlives the session and serves every later one in this process, and what
    is fixed when it starts (the classpath, the driver's memory) is then fixed for
    tests/test_spark.py too: so it starts with the Iceberg jars that module needs
    (``PREDLOG_SPARK_JARS``, when the services set it) and the same memory. A session
    another module left active is reused.
    """
    import shutil

    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("PySpark needs Java")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    builder = (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
    )
    jars = os.environ.get("PREDLOG_SPARK_JARS")
    if jars:
        builder = builder.config("spark.jars", jars)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
