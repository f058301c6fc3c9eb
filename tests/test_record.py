from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

import predlog
from predlog import PredictionRecord, arrow_schema, confidence_band
from predlog.flush._batch import _bands

BAND_NAMES = ("high", "medium", "low")


class TestSchema:
    def test_schema_follows_the_dataclass(self):
        """The Arrow schema has exactly the record's fields, in order."""
        names = [f.name for f in dataclasses.fields(PredictionRecord)]
        assert arrow_schema().names == names

    def test_types_of_key_columns(self):
        """Scores are doubles, time is UTC microseconds, ids are UUID text, flags a list."""
        schema = arrow_schema()
        assert schema.field("raw_score").type == pa.float64()
        assert schema.field("timestamp_utc").type == pa.timestamp("us", tz="UTC")
        assert schema.field("prediction_id").type == pa.string()
        assert schema.field("data_quality").type == pa.list_(pa.string())
        assert not schema.field("sample_weight").nullable
        assert schema.field("raw_score").nullable

    def test_schema_version_in_metadata(self):
        """Files carry the schema version so readers can pick a decoder."""
        meta = arrow_schema().metadata
        assert meta[b"predlog.schema_version"] == str(predlog.SCHEMA_VERSION).encode()


class TestConfidenceBand:
    def test_boundaries(self):
        """high above 0.3 from the threshold, medium above 0.1, low otherwise."""
        assert confidence_band(0.81, 0.5) == "high"
        assert confidence_band(0.8, 0.5) == "medium"
        assert confidence_band(0.19, 0.5) == "high"
        assert confidence_band(0.61, 0.5) == "medium"
        assert confidence_band(0.6, 0.5) == "low"
        assert confidence_band(0.45, 0.5) == "low"

    @given(
        scores=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=50),
        threshold=st.floats(min_value=0, max_value=1),
    )
    def test_vectorised_band_agrees_with_definition(self, scores, threshold):
        """The flusher's numpy banding equals confidence_band for every score."""
        codes = _bands(np.array(scores), np.full(len(scores), threshold))
        assert [BAND_NAMES[c] for c in codes] == [confidence_band(s, threshold) for s in scores]

    def test_no_score_no_band(self):
        """A missing score (NaN in the flusher) has no confidence band."""
        assert _bands(np.array([np.nan]), np.array([0.5])).tolist() == [-1]
