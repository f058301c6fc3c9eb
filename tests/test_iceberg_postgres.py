"""Many writers, one committer, on the SQL catalog in a real PostgreSQL.

Four writer processes (each a real PredictionLogger with ``iceberg_table``) log under
load into one table; one ``predlog commit`` holds their commit lock and commits their
files. A second committer, deliberately not sharing the lock, races it. Afterwards
every record is in the table exactly once, every noted file is committed (files in
the table = files the commits list), no note is left, and the race was real: commits
were refused and retried.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from predlog.sinks.iceberg import COMMITTER_KEY, FILES_KEY, Notes, open_table, summary_value
from tests.helpers import ROOT, child_env

CHILD = Path(__file__).with_name("iceberg_child.py")
WRITERS = 4
PER_WRITER = 25_000


def postgres_uri() -> str:
    uri = os.environ.get("PREDLOG_TEST_POSTGRES")
    if not uri:
        pytest.fail("no PostgreSQL: run the tests with `make test` (services/with-services.sh)")
    return uri


def catalog_env(tmp_path: Path) -> dict[str, str]:
    """The named catalog ``pg`` as pyiceberg users configure one: variables only."""
    return {
        "PYICEBERG_CATALOG__PG__URI": postgres_uri(),
        "PYICEBERG_CATALOG__PG__WAREHOUSE": (tmp_path / "warehouse").as_uri(),
    }


def committer(table: str, data: Path, spool: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "predlog",
            "commit",
            "--table",
            table,
            "--data",
            str(data),
            "--spool-dir",
            str(spool),
            "--interval",
            "0.3",
            "-o",
            "json",
        ],
        env=child_env(PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> dict[str, object]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    said: dict[str, object] = json.loads(out)
    return said


@pytest.mark.integration
def test_four_writers_one_committer_every_record_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = catalog_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    table_name = f"pg.writers_{uuid.uuid4().hex[:8]}.preds"
    data, spool = tmp_path / "data", tmp_path / "spool"
    open_table(table_name, data_dir=data)  # created once, before anyone writes
    main = committer(table_name, data, spool, env)
    time.sleep(1.5)  # it holds the box's commit lock before the writers start
    racer = committer(table_name, data, tmp_path / "elsewhere", env)
    started = time.monotonic()
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                "writer",
                table_name,
                str(data),
                str(spool),
                str(PER_WRITER),
                f"w{k}",
            ],
            env=child_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(WRITERS)
    ]
    reports = []
    for writer in writers:
        out, err = writer.communicate(timeout=600)
        assert writer.returncode == 0, err[-3000:]
        reports.append(json.loads(out.splitlines()[-1]))
    writing_s = time.monotonic() - started
    time.sleep(1.0)
    said = [stop(main), stop(racer)]

    table = open_table(table_name, data_dir=data, create=False)
    ids = Counter(
        table.scan(selected_fields=("request_id",)).to_arrow().column("request_id").to_pylist()
    )
    expected = {f"w{k}-{i}" for k in range(WRITERS) for i in range(PER_WRITER)}
    snapshots = table.snapshots()
    listed = [f for s in snapshots for f in (summary_value(s, FILES_KEY) or "").split(",") if f]
    live = list(table.scan().plan_files())
    committers = Counter(summary_value(s, COMMITTER_KEY) for s in snapshots)
    conflicts = sum(int(str(s["conflicts"])) for s in said)
    print(
        f"\niceberg writers: {WRITERS}x{PER_WRITER} records in {writing_s:.1f} s, "
        f"commits={len(snapshots)} by {dict(committers)}, files={len(live)}, "
        f"conflicts={conflicts}, committers={said}, writers={reports}"
    )
    assert set(ids) == expected and len(ids) == sum(ids.values()), "a record missing or twice"
    # No commit lost: the commits name exactly the files the table holds, once each.
    assert len(listed) == len(set(listed)) == len(live)
    assert not Notes(table).ids(), "notes left uncommitted"
    # The writers never committed: they share the committer's lock.
    assert set(committers) <= {s["committer"] for s in said}
    assert sum(int(str(s["commits"])) for s in said) == len(snapshots)
    # The race was real, and every refused commit was retried to success.
    assert conflicts + sum(int(str(s["already_committed"])) for s in said) > 0
