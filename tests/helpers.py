"""Things several test modules need: running Python in a child process, reading Parquet."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from predlog import arrow_schema

ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDLOG_")}
    env["PYTHONPATH"] = str(ROOT / "plugin")
    env.update(extra)
    return env


def start_python(code: str, **env: str) -> subprocess.Popen[str]:
    """Run ``code`` in a fresh interpreter with predlog importable."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def parquet_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "predictions").glob("date=*/*.parquet"))


def read_all(data_dir: Path) -> pa.Table:
    files = parquet_files(data_dir)
    if not files:
        return arrow_schema().empty_table()
    return pa.concat_tables(pq.read_table(f, schema=arrow_schema()) for f in files)
