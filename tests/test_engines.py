"""The Parquet layout reads the same in every engine, and old files keep reading.

A data directory written by the real logger is read with PySpark, DuckDB, polars, pandas
and pyarrow: each gives ``prediction_id`` as the same canonical UUID text and the same
values in every other column. A directory mixing a file from before ids were text
(Arrow's ``uuid`` type, Parquet's UUID logical type) with new files is read by predlog's
analytics, by a pyarrow dataset opened with :func:`reading_schema`, and by the Kafka
consumer's memory of published ids.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import predlog
from predlog import ParquetSink, arrow_schema
from predlog._record import reading_schema
from predlog.flush import UUID7Factory, format_ids, ids_as_text
from predlog.sinks.kafka import decode, encode
from predlog.testing import MemorySink, build_batch
from predlog.tools.analytics import Predictions, investigate
from predlog.tools.sink import ParquetDestination
from tests.helpers import local_spark

CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DAY = datetime(2026, 3, 1, 23, 59, 50, tzinfo=timezone.utc)
NAMES = arrow_schema().names


def log_records(data_dir: Path) -> list[dict[str, Any]]:
    """Forty records over two days through the real logger and ParquetSink; the same
    records as the flusher handed them to the sinks."""
    memory = MemorySink()
    log = predlog.PredictionLogger(
        sinks=[ParquetSink(str(data_dir)), memory],
        model_name="fraud",
        model_version="v3",
        install_signal_handlers=False,
    )
    with log:
        for i in range(40):
            log.log(
                request_id=f"req-{i}",
                features={"amount": i * 1.5, "country": "FR" if i % 2 else None, "n": i},
                score=math.nan if i == 7 else i / 40,
                threshold=0.5,
                user_segment=None if i % 3 else "new",
                channel="web",
                trace_id=f"{i + 1:032x}",
                span_id=f"{i + 1:016x}",
                inference_ms=0.25 * i,
                timestamp=DAY + timedelta(seconds=i),  # crosses midnight: two partitions
                campaign="spring" if i % 5 == 0 else None,
            )
    assert len(memory.records) == 40
    return memory.records


def normal(value: Any) -> Any:
    """One cell as plain Python, whichever engine read it: instants as epoch
    microseconds, NaN (pandas' null) as None, arrays as lists."""
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(microseconds=1)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [normal(v) for v in value]
    if isinstance(value, np.generic):
        return normal(value.item())
    return value


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows keyed by prediction id, with only the schema's columns, normalised; the
    ids must be canonical UUID text (not bytes, not UUID objects)."""
    out = {}
    for row in rows:
        pid = row["prediction_id"]
        assert isinstance(pid, str) and CANONICAL.fullmatch(pid), repr(pid)
        out[pid] = {name: normal(row[name]) for name in NAMES}
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    data_dir = tmp_path_factory.mktemp("engines")
    records = log_records(data_dir)
    files = sorted((data_dir / "predictions").glob("date=*/*.parquet"))
    assert {f.parent.name for f in files} == {"date=2026-03-01", "date=2026-03-02"}
    # The truth is each id's text, whatever the sinks were handed.
    return data_dir, by_id([{**r, "prediction_id": str(r["prediction_id"])} for r in records])


class TestEveryEngineReadsTheFiles:
    def test_the_files_store_ids_as_plain_text(self, written):
        """No Parquet UUID logical type, no fixed-length bytes: a UTF-8 string column."""
        data_dir, _ = written
        for path in (data_dir / "predictions").glob("date=*/*.parquet"):
            column = pq.ParquetFile(path).schema.column(NAMES.index("prediction_id"))
            assert column.physical_type == "BYTE_ARRAY"
            assert str(column.logical_type) == "String"

    def test_pyarrow(self, written):
        data_dir, expected = written
        table = ds.dataset(data_dir / "predictions", format="parquet", partitioning="hive")
        assert by_id(table.to_table().to_pylist()) == expected

    def test_pandas(self, written):
        pd = pytest.importorskip("pandas")
        data_dir, expected = written
        frame = pd.read_parquet(data_dir / "predictions")
        assert by_id(frame.to_dict("records")) == expected

    def test_polars(self, written):
        pl = pytest.importorskip("polars")
        data_dir, expected = written
        frame = pl.read_parquet(
            str(data_dir / "predictions" / "**" / "*.parquet"), hive_partitioning=True
        )
        assert frame.schema["prediction_id"] == pl.String
        assert by_id(frame.to_dicts()) == expected

    def test_duckdb(self, written):
        data_dir, expected = written
        glob = str(data_dir / "predictions" / "**" / "*.parquet")
        relation = duckdb.connect().sql(f"SELECT * FROM read_parquet('{glob}')")
        rows = [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
        assert by_id(rows) == expected

    def test_duckdb_through_predlog_analytics(self, written):
        data_dir, expected = written
        data = Predictions(data_dir)
        relation = data.con.sql("SELECT * FROM predictions")
        rows = [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
        assert by_id(rows) == expected

    @pytest.mark.integration
    def test_pyspark(self, written, spark):
        """Spark reads the layout (it refused Parquet's UUID type) with the same values."""
        data_dir, expected = written
        frame = spark.read.parquet(str(data_dir / "predictions"))
        assert dict(frame.dtypes)["prediction_id"] == "string"
        # Spark hands timestamps to Python as naive local times; as epoch microseconds
        # they are the same instant in every engine.
        rows = [
            {**row.asDict(recursive=True), "timestamp_utc": row["micros"]}
            for row in frame.selectExpr("*", "unix_micros(timestamp_utc) AS micros").collect()
        ]
        assert by_id(rows) == expected


@pytest.fixture(scope="module")
def spark():
    """One local Spark for the module (the JVM start is the slow part), or the session
    another module already started (see ``local_spark``)."""
    yield from local_spark("predlog-engines", master="local[1]", shuffle_partitions=1)


def old_file(directory: Path, records: list[dict[str, Any]], ids: list[uuid.UUID]) -> Path:
    """A file as predlog wrote them before ids were text: ``prediction_id`` in Arrow's
    ``uuid`` type, so Parquet's UUID logical type."""
    batch = build_batch(records, model_name="fraud", model_version="v2")
    storage = pa.array([u.bytes for u in ids], pa.binary(16))
    index = batch.schema.get_field_index("prediction_id")
    old = batch.set_column(
        index,
        pa.field("prediction_id", pa.uuid(), nullable=False),
        pa.ExtensionArray.from_storage(pa.uuid(), storage),
    )
    path = directory / "part-20260228T120000-oldhost-42-000001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_batches([old]), path)
    return path


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[Path, list[uuid.UUID], dict[str, dict[str, Any]]]:
    """A data directory with one old file (three records) and new ones."""
    records = log_records(tmp_path)
    ids = [uuid.UUID(int=(0x0190_0000_0000_7000 << 64) + i) for i in range(3)]
    when = datetime(2026, 2, 28, 12, tzinfo=timezone.utc)
    old = [
        {"request_id": f"old-{i}", "score": 0.9, "features": {"amount": i}, "timestamp": when}
        for i in range(3)
    ]
    path = old_file(tmp_path / "predictions" / "date=2026-02-28", old, ids)
    assert pq.read_schema(path).field("prediction_id").type == pa.uuid()
    return tmp_path, ids, by_id(records)


class TestFilesFromBeforeIdsWereText:
    def test_predlog_analytics_read_both_kinds_as_text(self, mixed):
        """The predictions view unifies old and new files, ids as text, and `investigate`
        finds a request of the old file by it."""
        data_dir, ids, expected = mixed
        data = Predictions(data_dir)
        types = dict(
            data.query("SELECT column_name, column_type FROM (DESCRIBE predictions)").fetchall()
        )
        assert types["prediction_id"] == "VARCHAR"
        found = dict(data.query("SELECT prediction_id, request_id FROM predictions").fetchall())
        assert {k: v for k, v in found.items() if v.startswith("old-")} == {
            str(u): f"old-{i}" for i, u in enumerate(ids)
        }
        assert set(expected) <= set(found)
        (record,) = investigate("old-1", data_dir=data_dir)
        assert record["prediction_id"] == str(ids[1])
        (record,) = investigate("req-3", data_dir=data_dir)
        assert record["prediction_id"] in expected

    def test_pyarrow_dataset_with_the_reading_schema(self, mixed):
        """Declared as binary, both kinds read; ids_as_text makes them the same text."""
        data_dir, ids, expected = mixed
        dataset = ds.dataset(
            data_dir / "predictions",
            schema=reading_schema(),
            format="parquet",
            partitioning="hive",
        )
        table = dataset.to_table()
        text = ids_as_text(table.column("prediction_id"))
        got = dict(zip(text.to_pylist(), table.column("request_id").to_pylist(), strict=True))
        assert {str(u): f"old-{i}" for i, u in enumerate(ids)}.items() <= got.items()
        assert set(expected) <= set(got)
        assert len(got) == len(expected) + 3

    def test_the_text_schema_alone_is_not_enough(self, mixed):
        """Why reading_schema exists: Arrow reads the old ids' bytes as UTF-8 and fails."""
        data_dir, _, _ = mixed
        dataset = ds.dataset(data_dir / "predictions", schema=arrow_schema(), format="parquet")
        with pytest.raises(pa.ArrowInvalid):
            dataset.to_table()

    def test_consumer_remembers_ids_of_old_and_new_files(self, mixed):
        """After an upgrade, records of files published before it are still known, so a
        redelivery of them is dropped, not published twice."""
        data_dir, ids, expected = mixed
        destination = ParquetDestination(data_dir, remember_ids=1000)
        try:
            destination.open()
        finally:
            destination.close()
        recent = destination.recent
        again = [str(ids[0]), str(ids[2]), next(iter(expected))]
        fresh = str(uuid.uuid4())
        batch = pa.record_batch({"prediction_id": pa.array([*again, fresh])})
        assert recent.unseen(batch).column("prediction_id").to_pylist() == [fresh]


def _texts(offsets: np.ndarray, data: np.ndarray) -> list[str]:
    text = data.tobytes().decode()
    return [text[a:b] for a, b in itertools.pairwise(offsets)]


class TestIdText:
    def test_format_matches_python_uuid_for_every_byte_value(self):
        raw = np.frombuffer(bytes(range(256)) * 2 + os.urandom(16 * 500), np.uint8)
        rows = raw.reshape(-1, 16)
        expected = [str(uuid.UUID(bytes=row.tobytes())) for row in rows]
        assert format_ids(rows).to_pylist() == expected

    def test_batches_are_uuid7_text_in_order(self):
        factory = UUID7Factory()
        ms = [1_764_000_000_000] * 4000 + [1_764_000_000_001] * 10
        ids = [*_texts(*factory.batch(ms)), *_texts(*factory.batch(ms[-3:]))]
        assert len(set(ids)) == len(ids)
        assert ids == sorted(ids)  # the 12-bit counter orders ids within a millisecond
        for text in ids:
            u = uuid.UUID(text)
            assert str(u) == text
            assert u.version == 7 and u.variant == uuid.RFC_4122
        assert int(ids[0].replace("-", "")[:12], 16) == ms[0]

    def test_ids_as_text_of_every_stored_form(self):
        us = [uuid.uuid4() for _ in range(3)]
        text = [str(u) for u in us]
        storage = pa.array([u.bytes for u in us] + [None], pa.binary(16))
        old = pa.ExtensionArray.from_storage(pa.uuid(), storage)
        assert ids_as_text(old).to_pylist() == [*text, None]
        assert ids_as_text(old.slice(1, 2)).to_pylist() == text[1:]
        assert ids_as_text(storage).to_pylist() == [*text, None]
        assert ids_as_text(pa.array(text)).to_pylist() == text
        both = pa.array([us[0].bytes, text[1].encode(), None])
        assert ids_as_text(pa.chunked_array([both])).to_pylist() == [text[0], text[1], None]

    def test_wire_decode_writes_every_spelling_of_an_id_canonically(self):
        """A producer that sent upper case or braces does not make a second id."""
        batch = build_batch([{"request_id": "a", "score": 0.5}] * 3, model_name="m")
        values = [value for _, value, _, _ in encode(batch)]
        pid = batch.column("prediction_id")[0].as_py()
        spelt = [pid.upper(), "{" + pid + "}", pid.replace("-", "")]
        messages = [values[0].replace(pid.encode(), s.encode()) for s in spelt]
        assert decode(messages).column("prediction_id").to_pylist() == [pid] * 3
        assert decode(values).column("prediction_id") == batch.column("prediction_id")

    def test_wire_decode_reads_records_whole_and_with_fields_missing(self):
        """Every field round-trips; a record without an optional field (another writer's)
        decodes with it null, beside whole records in the same batch."""
        import orjson

        batch = build_batch(
            [{"request_id": f"r{i}", "score": i / 10, "features": {"a": i}} for i in range(4)],
            model_name="m",
        )
        values = [value for _, value, _, _ in encode(batch)]
        assert decode(values).equals(batch)
        partial = orjson.loads(values[1])
        del partial["channel"], partial["features"]
        mixed = decode([values[0], orjson.dumps(partial), values[2]])
        assert mixed.column("request_id").to_pylist() == ["r0", "r1", "r2"]
        assert mixed.column("features").to_pylist()[1] is None
        assert mixed.column("features").to_pylist()[2] == '{"a":2}'
        assert mixed.column("raw_score").to_pylist() == [0.0, 0.1, 0.2]

    def test_wire_decode_refuses_an_id_that_is_no_uuid(self):
        batch = build_batch([{"request_id": "a", "score": 0.5}], model_name="m")
        ((_, value, _, _),) = encode(batch)
        pid = batch.column("prediction_id")[0].as_py()
        for bad in ("not-a-uuid", pid[:-1] + "g", ""):
            with pytest.raises(ValueError, match="is not a UUID"):
                decode([value.replace(pid.encode(), bad.encode())])
