"""The prediction record: one production prediction, as it is stored.

:class:`PredictionRecord` is the schema's single source of truth. The Arrow schema
that every Parquet file carries is derived from its field annotations by
:func:`arrow_schema`, so the two cannot drift apart.

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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

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


#: Columns whose Python type alone does not say which Arrow type they take.
_SPECIAL: Final[dict[str, pa.DataType]] = {
    "schema_version": pa.int16(),
    "feature_null_count": pa.int32(),
}

_BY_ANNOTATION: Final[dict[str, pa.DataType]] = {
    "str": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "list[str]": pa.list_(pa.string()),
    "datetime": pa.timestamp("us", tz="UTC"),
}

#: Columns written as JSON text; named here so readers can decode them.
JSON_COLUMNS: Final = ("features", "features_summary", "extra")


def _arrow_type(name: str, annotation: str) -> tuple[pa.DataType, bool]:
    nullable = annotation.endswith("| None")
    base = annotation.removesuffix("| None").strip()
    if name in _SPECIAL:
        return _SPECIAL[name], nullable
    return _BY_ANNOTATION[base], nullable


def _build_schema() -> pa.Schema:
    # With postponed evaluation the annotations are the strings written above,
    # which is exactly the vocabulary _BY_ANNOTATION maps.
    arrow_fields = []
    for f in dataclasses.fields(PredictionRecord):
        arrow_type, nullable = _arrow_type(f.name, str(f.type))
        arrow_fields.append(pa.field(f.name, arrow_type, nullable=nullable))
    metadata: dict[bytes | str, bytes | str] = {
        b"predlog.schema_version": str(SCHEMA_VERSION).encode(),
        b"predlog.json_columns": ",".join(JSON_COLUMNS).encode(),
    }
    return pa.schema(arrow_fields, metadata=metadata)


_SCHEMA: Final = _build_schema()

#: Column names in file order.
FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in dataclasses.fields(PredictionRecord))


def arrow_schema() -> pa.Schema:
    """The Arrow schema of a prediction log batch, as written to every sink."""
    return _SCHEMA


_READING_SCHEMA: Final = _SCHEMA.set(
    _SCHEMA.get_field_index("prediction_id"),
    pa.field("prediction_id", pa.binary(), nullable=False),
)


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
    return _READING_SCHEMA


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
