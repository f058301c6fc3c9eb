"""The extension's Arrow batches and Parquet files against pyarrow's: the same records.

The batch builder decides every value and hands columns over as specs
(predlog._table); pyarrow's path is the reference. Each test builds the same
``log()`` captures both ways, values of every odd kind included (strings for numbers,
NaN, infinities, lone surrogates, numpy scalars, markup, ints past 64 bits), and
compares the batches column by column, then the files each path writes, read back,
and their layout (row groups, codecs, which columns carry dictionaries and statistics).
``prediction_id`` is a fresh UUIDv7 per record: compared by form, not value.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predlog import ParquetSink, PredictionLogger, arrow_schema
from predlog.flush import (
    BatchBuilder,
    as_arrow,
    as_native,
    by_day,
    is_native,
    native_parquet_file,
)
from predlog.testing import CAPTURE_FIELDS, ErrorReporter, resolve

AT_NS = 1_767_225_600_000_000_000
DAY_NS = 86_400 * 10**9

odd_text = st.one_of(
    st.none(),
    st.binary(max_size=6),
    st.builds(bytearray, st.binary(max_size=4)),
    st.builds(memoryview, st.binary(max_size=4)),
    st.text(max_size=12),
    st.sampled_from(["a\ud800b", "<script>x</script>", "\x00", "é", ""]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.booleans(),
    st.builds(np.float32, st.floats(width=32, allow_nan=False)),
)
odd_number = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(["0.5", "nan", "abc", "1e400", "", b"0.25"]),
    st.booleans(),
    st.builds(np.float64, st.floats(allow_nan=True)),
    st.lists(st.floats(allow_nan=False), max_size=2),
    st.builds(np.array, st.lists(st.floats(allow_nan=False), min_size=1, max_size=2)),
)
features = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=5), st.one_of(st.none(), st.floats(), st.text(max_size=5))),
    st.sampled_from([b'{"a": 1}', "not json", {"x": float("nan")}, [1, 2]]),
)


@st.composite
def capture(draw) -> tuple:
    values = {
        "timestamp_ns": AT_NS + draw(st.integers(min_value=0, max_value=3)) * DAY_NS,
        "request_id": draw(odd_text),
        "session_id": draw(odd_text),
        "features": draw(features),
        "score": draw(odd_number),
        "decision": draw(odd_text),
        "threshold": draw(odd_number),
        "user_segment": draw(odd_text),
        "channel": draw(odd_text),
        "geographic_region": draw(odd_text),
        "model_name": draw(st.one_of(st.none(), st.sampled_from(["m2", "x\ud800"]))),
        "model_version": draw(st.one_of(st.none(), st.just("v2"))),
        "feature_freshness_max_age_seconds": draw(odd_number),
        "feature_fetch_ms": draw(odd_number),
        "inference_ms": draw(odd_number),
        "total_ms": draw(odd_number),
        "extra": draw(st.one_of(st.none(), st.just({"k": "<b>v</b>"}))),
    }
    return tuple(values.get(name) for name in CAPTURE_FIELDS)


def builder(*, native: bool, **options) -> BatchBuilder:
    s = resolve({"model_name": "m", "model_version": "v", "native_decode": native, **options})
    return BatchBuilder.from_settings(s, reporter=ErrorReporter())


def comparable(batch: pa.RecordBatch) -> dict:
    """The batch's values, NaN made comparable, prediction_id checked and set aside."""
    for text in batch.column("prediction_id").to_pylist():
        assert uuid.UUID(text).version == 7 and str(uuid.UUID(text)) == text
    table = pa.Table.from_batches([batch]).drop_columns(["prediction_id"]).to_pydict()
    return {
        name: [("nan" if isinstance(v, float) and math.isnan(v) else v) for v in values]
        for name, values in table.items()
    }


def built_both(captures: list[tuple], **options) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    reference = builder(native=False, **options).build(list(captures))
    native = builder(native=True, **options).build(list(captures))
    assert reference.batch is not None and native.batch is not None
    assert not is_native(reference.batch) and is_native(native.batch)
    assert (reference.kept, reference.sampled_out, reference.failed) == (
        native.kept,
        native.sampled_out,
        native.failed,
    )
    return reference.batch, as_arrow(native.batch)


class TestBatches:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(capture(), min_size=1, max_size=12))
    def test_the_same_columns_for_any_captures(self, captures):
        """Odd values of every column give the same records both ways, flags included."""
        reference, native = built_both(captures)
        assert native.schema.equals(arrow_schema(), check_metadata=True)
        assert comparable(native) == comparable(reference)

    def test_sampled_batches_agree(self):
        """Below a sample rate of 1 the kept rows (picked by position) are the same."""
        captures = [
            tuple(
                {"timestamp_ns": AT_NS, "request_id": f"r{i}", "score": i / 500}.get(n)
                for n in CAPTURE_FIELDS
            )
            for i in range(50)
        ]
        reference, native = built_both(captures, sample_rate=0.3, new_version_window_s=0)
        assert 0 < native.num_rows < 50
        assert comparable(native) == comparable(reference)


def log_capture(**values) -> tuple:
    return tuple({"timestamp_ns": AT_NS, **values}.get(n) for n in CAPTURE_FIELDS)


class TestOddValues:
    def test_an_array_score_keeps_its_record_flagged(self):
        """A score given as predict_proba's row is no number: the record is kept with
        score_invalid, on both paths, and the rest of the batch is untouched."""
        captures = [
            log_capture(request_id="a", score=np.array([0.2, 0.8])),
            log_capture(request_id="b", score=0.4),
        ]
        for native in (True, False):
            result = builder(native=native).build(captures)
            assert (result.kept, result.failed) == (2, 0)
            rows = as_arrow(result.batch).to_pylist()
            assert rows[0]["raw_score"] is None and "score_invalid" in rows[0]["data_quality"]
            assert rows[1]["raw_score"] == 0.4 and "score_invalid" not in rows[1]["data_quality"]

    def test_bytes_are_stored_as_their_text(self):
        """A request id, decision or channel given as bytes is that text, not its repr;
        what is not UTF-8 is replaced, on both paths."""
        captures = [
            log_capture(request_id=b"req-1", decision=bytearray(b"ok"), channel=memoryview(b"web")),
            log_capture(request_id=b"\xffx", decision=7, channel=None),
        ]
        reference, native = built_both(captures)
        assert comparable(native) == comparable(reference)
        assert native.column("request_id").to_pylist() == ["req-1", "\ufffdx"]
        assert native.column("decision").to_pylist() == ["ok", "7"]
        assert native.column("channel").to_pylist() == ["web", None]


class TestInterchange:
    def test_a_native_batch_goes_to_pyarrow_and_back_unchanged(self):
        """Through the C Data Interface both ways, schema metadata included."""
        batch = builder(native=True).build(
            [tuple({"timestamp_ns": AT_NS, "request_id": "a"}.get(n) for n in CAPTURE_FIELDS)]
        )
        arrow = as_arrow(batch.batch)
        again = as_arrow(as_native(arrow))
        assert again.equals(arrow) and again.schema.equals(arrow.schema, check_metadata=True)

    def test_days_split_the_same_way(self):
        captures = [
            tuple(
                {"timestamp_ns": AT_NS + (i % 3) * DAY_NS, "request_id": str(i)}.get(n)
                for n in CAPTURE_FIELDS
            )
            for i in range(9)
        ]
        native = builder(native=True).build(captures).batch
        reference = as_arrow(native)
        native_days = [(d, as_arrow(b)) for d, b in by_day(native, "timestamp_utc")]
        reference_days = by_day(reference, "timestamp_utc")
        assert [d for d, _ in native_days] == [d for d, _ in reference_days]
        for (_, a), (_, b) in zip(native_days, reference_days, strict=True):
            assert a.equals(b)


class TestSinks:
    def test_a_subclass_overriding_export_gets_pyarrow_batches(self, tmp_path):
        """ParquetSink takes native batches; a user's subclass whose export() reads
        pyarrow columns is given pyarrow's batches, as any sink of the user's is."""
        seen: list[str] = []

        class Counting(ParquetSink):
            def export(self, batch) -> None:
                seen.append(type(batch).__module__)
                batch.column("request_id")  # a pyarrow method
                super().export(batch)

        log = PredictionLogger(sinks=[Counting(tmp_path)], install_signal_handlers=False)
        log.log(request_id="a", score=0.5)
        assert log.flush(10)
        log.close()
        assert seen == ["pyarrow.lib"]
        assert log.stats()["delivered"] == 1

    def test_opening_a_file_never_holds_the_gil(self, tmp_path):
        """A file whose open blocks (a FIFO with no reader yet, as a hung volume would)
        stalls the thread opening it, not the threads serving requests."""
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        gaps: list[float] = []
        stop = threading.Event()

        def tick() -> None:
            last = time.monotonic()
            while not stop.is_set():
                time.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = threading.Thread(target=tick)
        ticker.start()
        opener = threading.Thread(
            target=lambda: native_parquet_file(fifo, "zstd", dictionary=[], statistics=[])
        )
        opener.start()
        time.sleep(0.5)
        with open(fifo, "rb"):  # the reader arrives: the open completes
            opener.join(5)
        stop.set()
        ticker.join()
        assert max(gaps) < 0.25, f"the ticker stalled {max(gaps):.2f} s"


def written(directory: Path, batches: list) -> tuple[pa.Table, list[pq.FileMetaData]]:
    sink = ParquetSink(directory)
    for batch in batches:
        sink.export(batch)
    sink.close()
    paths = sorted(directory.rglob("*.parquet"))
    assert paths, "nothing published"
    tables = [pq.read_table(p) for p in paths]
    return pa.concat_tables(tables), [pq.ParquetFile(p).metadata for p in paths]


def layout(metadata: pq.FileMetaData) -> list[tuple]:
    """Per column of each row group: path, codec, dictionary or not, statistics or not."""
    out = []
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            out.append(
                (
                    g,
                    column.path_in_schema,
                    column.compression,
                    column.has_dictionary_page,
                    column.is_stats_set,
                    column.num_values,
                )
            )
    return out


class TestFiles:
    @pytest.mark.parametrize("spread_days", [1, 3])
    def test_the_extension_writes_what_pyarrow_writes(self, tmp_path, spread_days):
        """The same records, schema and layout: row group per batch, zstd, dictionaries
        and statistics on the same columns, lists as the Parquet spec names them."""
        captures = [
            tuple(
                {
                    "timestamp_ns": AT_NS + (i % spread_days) * DAY_NS,
                    "request_id": f"r{i}",
                    "features": {"amount": i, "note": "<i>x</i>"},
                    "score": i / 300,
                    "decision": "decline" if i % 2 else "approve",
                    "channel": "web",
                }.get(n)
                for n in CAPTURE_FIELDS
            )
            for i in range(300)
        ]
        native = [builder(native=True).build(captures[k : k + 100]).batch for k in (0, 100, 200)]
        reference = [as_arrow(b) for b in native]
        got, got_meta = written(tmp_path / "native", native)
        want, want_meta = written(tmp_path / "pyarrow", reference)
        assert got.schema.equals(want.schema, check_metadata=True)
        assert got.sort_by("request_id").equals(want.sort_by("request_id"))
        assert [layout(m) for m in got_meta] == [layout(m) for m in want_meta]
        assert [m.schema.to_arrow_schema() for m in got_meta] == [
            m.schema.to_arrow_schema() for m in want_meta
        ]
