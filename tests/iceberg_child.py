"""Batches for the Iceberg tests, and the processes they start.

``python tests/iceberg_child.py writer TABLE DATA_DIR SPOOL N TAG``: a real
PredictionLogger writing ``N`` records (request ids ``TAG-0`` ..) into the Iceberg
table, then closing; it prints one JSON line of its sink's counts.

``python tests/iceberg_child.py sink BOOTSTRAP TOPIC TABLE DATA_DIR IDLE_S|-``: the
Kafka consumer of ``predlog sink --table``, printing its counts as JSON at the end.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugin"))

from predlog import arrow_schema

_CONSTANT = {
    "schema_version": 1,
    "model_version": "v1",
    "sample_weight": 1.0,
    "sampling_reason": "all",
}
DAY0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def prediction_ids(start: int, n: int) -> list[uuid.UUID]:
    """The ids :func:`make_batch` gives rows ``start .. start + n``."""
    return [uuid.UUID(int=(1 << 100) + start + i) for i in range(n)]


def make_batch(
    n: int,
    *,
    start: int = 0,
    model: Callable[[int], str] = lambda i: "m1",
    step_s: float = 1.0,
    schema: pa.Schema | None = None,
    day0: datetime = DAY0,
) -> pa.RecordBatch:
    """``n`` prediction records in ``schema`` (the record schema by default), whatever
    Arrow type it gives ``prediction_id``; row ``i`` is at ``day0 + i * step_s``."""
    schema = schema or arrow_schema()
    ids = prediction_ids(start, n)
    columns = []
    for f in schema:
        if f.name == "prediction_id":
            if f.type == pa.uuid():
                storage = pa.array([u.bytes for u in ids], pa.binary(16))
                columns.append(pa.ExtensionArray.from_storage(f.type, storage))
            else:
                columns.append(pa.array([str(u) for u in ids], f.type))
        elif f.name == "timestamp_utc":
            times = [day0 + timedelta(seconds=(start + i) * step_s) for i in range(n)]
            columns.append(pa.array(times, f.type))
        elif f.name == "model_name":
            columns.append(pa.array([model(start + i) for i in range(n)], f.type))
        elif f.name == "request_id":
            columns.append(pa.array([f"r-{start + i}" for i in range(n)], f.type))
        elif f.name == "data_quality":
            columns.append(pa.array([[] for _ in range(n)], f.type))
        elif f.name == "raw_score":
            columns.append(pa.array([((start + i) % 100) / 100 for i in range(n)], f.type))
        elif f.name in _CONSTANT:
            columns.append(pa.array([_CONSTANT[f.name]] * n, f.type))
        else:
            columns.append(pa.nulls(n, f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def writer(table: str, data_dir: str, spool: str, n: int, tag: str) -> None:
    """A real logger under load: ``n`` records as fast as it takes them."""
    import predlog

    with predlog.PredictionLogger(
        data_dir=data_dir,
        spool_dir=spool,
        iceberg_table=table,
        iceberg_commit_interval_s=0.5,
        flush_interval_s=0.1,
        install_signal_handlers=False,
        ring_capacity=1 << 20,
    ) as log:
        for i in range(n):
            log.log(request_id=f"{tag}-{i}", features={"i": i}, score=(i % 100) / 100)
            if i % 5000 == 4999:
                log.flush()
        stats = log.stats()
    print(json.dumps({"tag": tag, **{k: v for k, v in stats.items() if isinstance(v, int)}}))


def sink(bootstrap: str, topic: str, table: str, data_dir: str, exit_when_idle: str) -> None:
    """``predlog sink --table`` as the CLI runs it, with the group's commit held back
    0.3 s after each table commit: the window the crash test kills in."""
    from predlog.tools.sink import TableDestination, consume_until_signalled

    stats = consume_until_signalled(
        {
            "destination": TableDestination(table, data_dir=data_dir),
            "bootstrap_servers": bootstrap,
            "topic": topic,
            "group_id": f"{topic}-g",
            "max_batch": 20_000,
            "max_wait_s": 0.5,
            "exit_when_idle_s": float(exit_when_idle) if exit_when_idle != "-" else None,
            "pause_before_commit_s": 0.3,
        }
    )
    print(json.dumps({k: v for k, v in stats.__dict__.items() if k != "commit_ms"}))


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
    elif sys.argv[1] == "sink":
        sink(*sys.argv[2:7])
    else:
        raise SystemExit(f"unknown role {sys.argv[1]!r}")
