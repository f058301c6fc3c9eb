"""The prediction record: one production prediction, as it is stored.

:class:`PredictionRecord` is the schema's single source of truth. :data:`COLUMNS`
describes its columns in plain words (name, kind, nullable), derived from the field
annotations, and the Arrow schema that every Parquet file carries is built from
:data:`COLUMNS` by :func:`arrow_schema`, so none of the three can drift apart.

Nothing here imports pyarrow at module level. Every process that loads the service
module imports this one (BentoML's arbiter among them, which never logs a record),
and pyarrow with the numpy it pulls in is about 90 MiB of resident memory there.
:func:`arrow_schema` and :func:`reading_schema` import it on their first call, in
the process that writes.

Storage decisions, and why:

* ``features``, ``features_summary`` and ``extra`` are JSON text. A model's inputs mix
  numbers, categories and nulls, and differ between models; a typed Arrow struct
  would change the file schema with every model. JSON keeps every value losslessly
  and DuckDB, Spark and BigQuery all query it (``features->>'amount'``).
* ``raw_score`` is null when the model gave NaN, inf or no number at all; the reason
  is in ``data_quality``. A NaN in a score column silently poisons every AUC later.
* ``timestamp_utc`` is microseconds since the epoch, UTC, taken on the request path.
* ``prediction_id`` is a UUIDv7 (RFC 9562), time-ordered, stored as its canonical
  text (lower-case ``8-4-4-4-12``) in a plain string column. Every engine reads text
  the same way; Parquet's UUID logical type (which files before this change used,
  through Arrow's ``uuid`` type) is refused by Spark and shown as raw bytes by polars.
  Text sorts in the same order as the bytes. The cost is small once compressed:
  with zstd, the default, the column takes 12.2 bytes a row instead of 11.0, and a
  whole file 2% more (100,000 records of the fraud example; 21.9 instead of 13.0
  bytes a row with snappy). Readers of a directory holding both kinds of file turn
  the old ones into the same text (:func:`reading_schema`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    import pyarrow as pa

#: Bumped whenever a field is added, removed or changes meaning. Readers use it to
#: pick a decoder; it is stored in every row and in the Parquet schema metadata.
SCHEMA_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One prediction, decoded. Field order is column order in the files."""

    schema_version: int
    prediction_id: str
    request_id: str | None
    session_id: str | None
    trace_id: str | None
    span_id: str | None
    timestamp_utc: datetime
    model_name: str
    model_version: str
    model_framework: str | None
    features: str | None
    features_summary: str | None
    feature_store_snapshot_id: str | None
    raw_score: float | None
    decision: str | None
    decision_threshold: float | None
    model_confidence: str | None
    feature_freshness_max_age_seconds: float | None
    feature_null_count: int | None
    user_segment: str | None
    channel: str | None
    geographic_region: str | None
    feature_fetch_ms: float | None
    inference_ms: float | None
    total_ms: float | None
    sample_weight: float
    sampling_reason: str
    data_quality: list[str] = field(default_factory=list)
    extra: str | None = None


#: What a column holds, in words any writer can map to its own types: Arrow's
#: ``int16``, ``int32``, ``int64``, ``float64``, ``string``, ``timestamp("us",
#: tz="UTC")`` and ``list_(string())``.
ColumnKind = Literal[
    "int16", "int32", "int64", "float64", "string", "timestamp_us_utc", "list_string"
]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the stored record: its name, what it holds, whether it may be null."""

    name: str
    kind: ColumnKind
    nullable: bool


#: Columns whose Python type alone does not say which kind they take.
_SPECIAL: Final[dict[str, ColumnKind]] = {
    "schema_version": "int16",
    "feature_null_count": "int32",
}

_BY_ANNOTATION: Final[dict[str, ColumnKind]] = {
    "str": "string",
    "float": "float64",
    "int": "int64",
    "list[str]": "list_string",
    "datetime": "timestamp_us_utc",
}

#: Columns written as JSON text; named here so readers can decode them.
JSON_COLUMNS: Final = ("features", "features_summary", "extra")


def _column(name: str, annotation: str) -> Column:
    # With postponed evaluation the annotations are the strings written above,
    # which is exactly the vocabulary _BY_ANNOTATION maps.
    nullable = annotation.endswith("| None")
    base = annotation.removesuffix("| None").strip()
    kind = _SPECIAL.get(name) or _BY_ANNOTATION[base]
    return Column(name, kind, nullable)


#: Every column of the stored record, in file order.
COLUMNS: Final[tuple[Column, ...]] = tuple(
    _column(f.name, str(f.type)) for f in dataclasses.fields(PredictionRecord)
)

#: Column names in file order.
FIELD_NAMES: Final[tuple[str, ...]] = tuple(c.name for c in COLUMNS)

#: The key-value metadata every file's schema carries.
SCHEMA_METADATA: Final[dict[str, str]] = {
    "predlog.schema_version": str(SCHEMA_VERSION),
    "predlog.json_columns": ",".join(JSON_COLUMNS),
}


def _arrow_type(kind: ColumnKind) -> pa.DataType:
    import pyarrow as pa  # noqa: PLC0415  # loaded by the writing process only (docstring)

    match kind:
        case "int16":
            return pa.int16()
        case "int32":
            return pa.int32()
        case "int64":
            return pa.int64()
        case "float64":
            return pa.float64()
        case "string":
            return pa.string()
        case "timestamp_us_utc":
            return pa.timestamp("us", tz="UTC")
        case "list_string":
            return pa.list_(pa.string())


@functools.cache
def arrow_schema() -> pa.Schema:
    """The Arrow schema of a prediction log batch, as written to every sink.

    Built from :data:`COLUMNS` and :data:`SCHEMA_METADATA` on the first call, which
    imports pyarrow; every later call returns the same object.
    """
    import pyarrow as pa  # noqa: PLC0415  # loaded by the writing process only (docstring)

    return pa.schema(
        [pa.field(c.name, _arrow_type(c.kind), nullable=c.nullable) for c in COLUMNS],
        metadata={k.encode(): v.encode() for k, v in SCHEMA_METADATA.items()},
    )


@functools.cache
def reading_schema() -> pa.Schema:
    """:func:`arrow_schema` with ``prediction_id`` as binary, for opening files of
    both kinds as one pyarrow dataset.

    Files written before ids were text hold them in Arrow's ``uuid`` type; a dataset
    declared with the text type fails on them (or worse, takes 16 random bytes that
    happen to be valid UTF-8 as a 16-character id). Binary is the one type both kinds
    cast to: 16 bytes from the old files, the 36 bytes of text from the new.
    :func:`predlog.flush._ids.ids_as_text` turns that column into text::

        table = ds.dataset(root, schema=reading_schema(), partitioning="hive").to_table()
        ids = ids_as_text(table.column("prediction_id"))
    """
    import pyarrow as pa  # noqa: PLC0415  # loaded by the writing process only (docstring)

    schema = arrow_schema()
    return schema.set(
        schema.get_field_index("prediction_id"),
        pa.field("prediction_id", pa.binary(), nullable=False),
    )


#: Decimals the score-to-threshold distance is rounded to before banding.
BAND_DECIMALS: Final = 9


def confidence_band(score: float, threshold: float) -> str:
    """How far the score is from the decision threshold.

    ``high`` when ``|score - threshold| > 0.3``, ``medium`` when ``> 0.1``, ``low``
    otherwise. A low-confidence decision is the one most worth keeping: it is the
    one most likely to flip with a small change in the features.

    The distance is rounded to 9 decimals first, so that 0.8 against 0.5 is
    exactly 0.3 (``medium``) and not 0.30000000000000004 (``high``).
    """
    distance = round(abs(score - threshold), BAND_DECIMALS)
    if distance > 0.3:
        return "high"
    if distance > 0.1:
        return "medium"
    return "low"
