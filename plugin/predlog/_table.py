"""Columns to an Arrow record batch: natively where the extension is built, with pyarrow
where it is not.

The batch builder (:mod:`predlog.flush._batch`) decides every value and hands each
column over as a :data:`Spec`, a tuple whose first item names its form. This module
owns what happens next, and never decides a value:

* natively (``predlog._rust``, Rust with the ``arrow`` crates): the batch stays a
  :class:`NativeBatch`, which :class:`~predlog.sinks.ParquetSink` writes without
  pyarrow. A server that only writes the Parquet layout never imports pyarrow (about
  50 MiB a process);
* with pyarrow, the reference: a ``pyarrow.RecordBatch``. It is the path without the
  extension, or with ``native_decode`` off, and what the differential tests
  (``tests/test_native_table.py``) hold the native path to.

:func:`as_arrow` gives any sink that needs pyarrow (a user's own sink, Kafka, Iceberg,
the audit log) a ``pyarrow.RecordBatch`` of a native batch through the Arrow C Data
Interface, without copying the columns.

The forms of a :data:`Spec`:

* ``("strings", values)``: str or None; anything else (and a str with lone
  surrogates) is made text by the builder's ``coerce``;
* ``("constant", value)``: one value (str, int or None) for every row;
* ``("float64", array, nan_is_null)``: a numpy float64 array;
* ``("int32", values)``: int or None; ``("int32s", array)``: numpy int32, no nulls;
* ``("timestamps", array)``: numpy int64 microseconds since the epoch;
* ``("text", offsets, data, valid)``: a string column's int32 offsets (numpy) and
  UTF-8 bytes, with a numpy bool validity array or None;
* ``("codes", array, labels)``: numpy int8 indexes into ``labels``, negative for null;
* ``("lists", values)``: lists of str, or None for an empty list in every row.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Union, cast

import numpy as np
from typing_extensions import TypeIs

from predlog._record import COLUMNS, SCHEMA_METADATA, arrow_schema

try:
    from predlog import _rust
except ImportError:  # not built: no Rust toolchain where predlog was installed
    _rust = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import pyarrow as pa

    from predlog._rust import NativeBatch, NativeSchema, ParquetFile

#: One column as the builder gives it (see the module docstring for the forms).
Spec = tuple[Any, ...]
#: A built batch: native, or pyarrow's.
Batch = Union["NativeBatch", "pa.RecordBatch"]

#: Whether this build of the extension makes Arrow batches and Parquet files.
AVAILABLE: Final = _rust is not None


@functools.cache
def native_schema() -> NativeSchema:
    """The record schema as the extension holds it, built once. Requires :data:`AVAILABLE`."""
    return _rust.NativeSchema(
        [(c.name, c.kind, c.nullable) for c in COLUMNS], list(SCHEMA_METADATA.items())
    )


def is_native(batch: object) -> TypeIs[NativeBatch]:
    """Whether ``batch`` is the extension's (and so needs :func:`as_arrow` for pyarrow)."""
    return AVAILABLE and type(batch) is _rust.NativeBatch


def as_arrow(batch: Batch) -> pa.RecordBatch:
    """The batch as a ``pyarrow.RecordBatch``: a native one through the C Data Interface,
    sharing its buffers; a pyarrow one as it is."""
    if not is_native(batch):
        return batch
    import pyarrow as pa  # noqa: PLC0415  # only where a sink needs pyarrow's objects

    return pa.record_batch(batch)


def as_native(batch: Batch) -> NativeBatch:
    """The batch as the extension's: a pyarrow one through the C Data Interface.
    Requires :data:`AVAILABLE`."""
    if is_native(batch):
        return batch
    return _rust.NativeBatch.from_arrow(batch)


def has_record_schema(batch: Batch) -> bool:
    """Whether the batch has the prediction record's columns (metadata aside)."""
    if is_native(batch):
        return bool(batch.has_schema(native_schema()))
    return bool(batch.schema.equals(arrow_schema(), check_metadata=False))


_US_PER_DAY: Final = 86_400_000_000


def by_day(batch: Batch, column: str) -> list[tuple[int, Batch]]:
    """The batch's rows by UTC day of a timestamp column: (days since the epoch, rows)."""
    if is_native(batch):
        return list(batch.by_day(column))
    import pyarrow as pa  # noqa: PLC0415

    days = batch.column(column).cast(pa.int64()).to_numpy() // _US_PER_DAY
    first, last = int(days.min()), int(days.max())
    if first == last:
        return [(first, batch)]
    return [(int(day), batch.filter(pa.array(days == day))) for day in np.unique(days)]


def native_parquet_file(
    path: os.PathLike[str] | str,
    compression: str,
    *,
    dictionary: Sequence[str],
    statistics: Sequence[str],
) -> ParquetFile:
    """A Parquet file the extension writes, one row group per batch; ``compression`` is
    zstd or none, ``dictionary`` and ``statistics`` name the columns (dotted Parquet
    paths) that get them. Requires :data:`AVAILABLE`."""
    return _rust.ParquetFile(
        os.fspath(path), native_schema(), compression, list(dictionary), list(statistics)
    )


def decode_json_records(
    values: list[bytes], *, json_columns: Sequence[str], uuid_columns: Sequence[str], version: int
) -> NativeBatch | None:
    """JSON records, one object per value, as a batch of the record schema, parsed and
    built by the extension without the GIL; None where any value is outside what it
    reads exactly as the Python decoder would (that decoder then decides the batch).
    ``json_columns`` hold nested JSON, stored as its text; ``uuid_columns`` canonical
    UUIDs; ``schema_version`` must be ``version``. Requires :data:`AVAILABLE`."""
    return _rust.decode_records(
        native_schema(), values, list(json_columns), list(uuid_columns), ("schema_version", version)
    )


class Tables:
    """Builds batches one way for a whole process: natively or with pyarrow."""

    __slots__ = ("coerce", "native")

    def __init__(self, *, native: bool, coerce: Callable[[Any], str | None]) -> None:
        self.native = native and AVAILABLE
        #: Makes a string column's value that is not text into text (or None).
        self.coerce = coerce

    def build(self, specs: Sequence[Spec], rows: int) -> Batch:
        """One batch of ``rows`` records from one spec per column, in schema order."""
        if self.native:
            columns = [tuple(_bytes(v) for v in spec) for spec in specs]
            return _rust.build_batch(native_schema(), columns, rows, self.coerce)
        return to_arrow(specs, rows, self.coerce)

    def concat(self, batches: Sequence[Batch]) -> Batch:
        """Batches built by this object, as one."""
        if self.native:
            return _rust.concat_batches(native_schema(), cast("list[NativeBatch]", list(batches)))
        import pyarrow as pa  # noqa: PLC0415

        arrow = cast("list[pa.RecordBatch]", list(batches))
        table = pa.Table.from_batches(arrow, schema=arrow_schema()).combine_chunks()
        return table.to_batches()[0]


def _bytes(value: Any) -> Any:
    return value.tobytes() if isinstance(value, np.ndarray) else value


def to_arrow(
    specs: Sequence[Spec], rows: int, coerce: Callable[[Any], str | None]
) -> pa.RecordBatch:
    """The reference: the same batch, made with pyarrow."""
    import pyarrow as pa  # noqa: PLC0415  # this path is the one without the extension

    schema = arrow_schema()
    arrays = [
        _arrow(spec, field.type, rows, coerce) for spec, field in zip(specs, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


_ARROW_ERRORS: Final = (TypeError, ValueError, OverflowError)


def _arrow(
    spec: Spec, kind: pa.DataType, rows: int, coerce: Callable[[Any], str | None]
) -> pa.Array:  # type: ignore[type-arg]
    import pyarrow as pa  # noqa: PLC0415

    form = spec[0]
    if form == "strings":
        try:
            return pa.array(spec[1], type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, *_ARROW_ERRORS):
            return pa.array([coerce(v) for v in spec[1]], type=kind)
    if form == "constant":
        return pa.array([spec[1]] * rows, type=kind)
    if form == "float64":
        values = spec[1]
        return pa.array(values, type=kind, mask=np.isnan(values) if spec[2] else None)
    if form in ("int32", "int32s", "timestamps"):
        return pa.array(spec[1], type=kind)
    if form == "text":
        _, offsets, data, valid = spec
        texts = pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(data))
        if valid is None:
            return texts
        import pyarrow.compute as pc  # noqa: PLC0415

        masked: pa.Array = pc.if_else(pa.array(valid), texts, pa.scalar(None, kind))  # type: ignore[type-arg]
        return masked
    if form == "codes":
        codes = spec[1]
        indices = pa.array(codes, type=pa.int8(), mask=codes < 0)
        return pa.array(spec[2], type=kind).take(indices)
    if form == "lists":
        if spec[1] is None:
            return pa.ListArray.from_arrays([0] * (rows + 1), pa.array([], type=pa.string()))
        return pa.array(spec[1], type=kind)
    raise ValueError(f"unknown column form {form!r}")
