from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
import orjson
import pytest

from predlog.flush import Pseudonymiser
from predlog.flush._decode import (
    FeatureEncoder,
    extra_json,
    json_extractor,
    loads,
    max_age_seconds,
    non_finite_keys,
)

KEY = "k" * 32


def encode(value, **options):
    options.setdefault("max_bytes", 1 << 20)
    flags: list[str] = []
    text, summary, nulls = FeatureEncoder(**options).encode(value, flags)
    return (json.loads(text) if text is not None else None), summary, nulls, flags


class Unserialisable:
    def __repr__(self) -> str:
        return "<Unserialisable>"


class TestFeatureEncoder:
    def test_mapping_is_encoded_with_its_nulls_counted(self):
        """A dict becomes its JSON; None and NaN values both count as nulls."""
        text, summary, nulls, flags = encode({"amount": 12.5, "age": None, "ratio": math.nan})
        assert text == {"amount": 12.5, "age": None, "ratio": None}
        assert (summary, nulls, flags) == (None, 2, [])

    def test_infinities_count_as_nulls_as_they_are_stored(self):
        """JSON has no infinity: stored as null, an infinite feature counts as one."""
        text, summary, nulls, flags = encode({"a": math.inf, "b": -math.inf, "c": 1.0})
        assert text == {"a": None, "b": None, "c": 1.0}
        assert (summary, nulls, flags) == (None, 2, [])

    def test_numpy_values_and_non_string_keys_are_encoded(self):
        """numpy scalars and arrays serialise as numbers; integer keys become strings."""
        text, _, nulls, flags = encode({"a": np.float32(0.5), 3: np.int64(7), "v": np.arange(2)})
        assert text == {"a": 0.5, "3": 7, "v": [0, 1]}
        assert (nulls, flags) == (0, [])

    def test_missing_features_are_flagged(self):
        """None gives no features and the features_missing flag."""
        assert encode(None) == (None, None, None, ["features_missing"])

    @pytest.mark.parametrize("value", ["amount=3", 42, 1.5, True])
    def test_scalar_is_an_invalid_type(self, value):
        """A bare scalar is not a feature set: flagged, not encoded."""
        assert encode(value) == (None, None, None, ["features_invalid_type"])

    def test_bytes_go_through_the_extractor(self):
        """Raw bytes, bytearray and memoryview are decoded by the extractor."""
        for raw in (b'{"x": 1}', bytearray(b'{"x": 1}'), memoryview(b'{"x": 1}')):
            assert encode(raw)[0] == {"x": 1}

    @pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
    def test_undecodable_bytes_are_flagged(self, raw):
        """Bytes the extractor rejects give no features and features_undecodable."""
        assert encode(raw) == (None, None, None, ["features_undecodable"])

    def test_raising_custom_extractor_is_flagged(self):
        """Whatever a user extractor raises becomes features_undecodable."""

        def extractor(body: bytes):
            raise KeyError("no features here")

        assert encode(b"{}", extractor=extractor)[3] == ["features_undecodable"]

    def test_sequence_is_named_by_feature_names(self):
        """A list or array of the right length is keyed by feature_names, in order."""
        names = ("amount", "age")
        assert encode([10.0, 30], feature_names=names)[0] == {"amount": 10.0, "age": 30}
        assert encode(np.array([1.5, 2.5]), feature_names=names)[0] == {"amount": 1.5, "age": 2.5}

    def test_sequence_without_names_is_keyed_by_position(self):
        """Without feature_names a sequence is keyed "0", "1"... and not flagged."""
        text, _, _, flags = encode((7, 8))
        assert (text, flags) == ({"0": 7, "1": 8}, [])

    def test_sequence_of_the_wrong_length_is_flagged(self):
        """A length that does not match feature_names keeps the values, keyed by position."""
        text, _, _, flags = encode([1, 2, 3], feature_names=("a", "b"))
        assert text == {"0": 1, "1": 2, "2": 3}
        assert flags == ["features_names_mismatch"]

    @pytest.mark.parametrize("value", [np.float64(3.0), np.array(3.0), object()])
    def test_non_sequence_objects_are_invalid(self, value):
        """A 0-d array, a numpy scalar or an opaque object is flagged, not guessed at."""
        assert encode(value)[3] == ["features_invalid_type"]

    def test_unserialisable_value_is_coerced_with_repr(self):
        """A value JSON cannot hold is written as its repr, and the record says so."""
        text, _, _, flags = encode({"obj": Unserialisable(), "n": 1})
        assert text == {"obj": "<Unserialisable>", "n": 1}
        assert flags == ["features_coerced"]

    def test_oversize_features_keep_only_the_summary(self):
        """Past max_bytes the features are dropped and flagged; summary and nulls survive."""
        value = {"amount": 5, "pad": "x" * 200, "gone": None}
        text, summary, nulls, flags = encode(value, max_bytes=100, summary_keys=("amount",))
        assert text is None
        assert json.loads(summary) == {"amount": 5}
        assert nulls == 1
        assert flags == ["features_oversize"]

    def test_at_max_bytes_is_not_oversize(self):
        """Exactly max_bytes of JSON is still kept."""
        value = {"pad": "x" * 10}
        size = len(orjson.dumps(value))
        assert encode(value, max_bytes=size)[0] == value
        assert encode(value, max_bytes=size - 1)[3] == ["features_oversize"]

    def test_summary_names_missing_keys_as_null(self):
        """Each summary key appears in the summary, null when the features lack it."""
        _, summary, _, _ = encode({"amount": 5, "x": 1}, summary_keys=("amount", "merchant"))
        assert json.loads(summary) == {"amount": 5, "merchant": None}

    def test_pii_is_pseudonymised_before_encoding(self):
        """A PII feature's value never reaches the JSON; its keyed pseudonym does."""
        pseudonymiser = Pseudonymiser(key=KEY, key_id="k1", pii_fields=("email",))
        text, _, _, _ = encode({"email": "a@example.com", "amount": 3}, pseudonymiser=pseudonymiser)
        assert text["amount"] == 3
        assert text["email"].startswith("hmac-sha256:k1:")
        assert "a@example.com" not in json.dumps(text)

    def test_inactive_pseudonymiser_is_not_kept(self):
        """A pseudonymiser with no PII fields and no allowlist costs nothing per record."""
        inactive = Pseudonymiser(key=None, key_id=None, pii_fields=())
        assert FeatureEncoder(max_bytes=100, pseudonymiser=inactive).pseudonymiser is None


class TestJsonExtractor:
    def test_object_is_returned(self):
        """A JSON object is the features mapping."""
        assert json_extractor(b'{"a": {"b": 1}}') == {"a": {"b": 1}}

    @pytest.mark.parametrize("body", [b"[1]", b"3", b'"text"', b"null"])
    def test_non_object_is_rejected(self, body):
        """Any JSON value but an object raises ValueError naming what it got."""
        with pytest.raises(ValueError, match="expected a JSON object"):
            json_extractor(body)

    def test_invalid_json_is_rejected(self):
        """Malformed JSON raises a ValueError, which the flusher flags and counts."""
        with pytest.raises(ValueError, match="not JSON"):
            json_extractor(b'{"a": ')

    def test_non_finite_literals_are_accepted(self):
        """NaN and Infinity, which Python's json and many servers accept, decode too."""
        value = json_extractor(b'{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1}')
        assert math.isnan(value["a"])
        assert value["b"] == math.inf and value["c"] == -math.inf and value["d"] == 1
        assert non_finite_keys(value) == ["a", "b", "c"]

    @pytest.mark.parametrize(
        "body", [b'{"a": 1', b"\xff\xfe", b"[" * 3000 + b"]" * 3000, b"", b"nan"]
    )
    def test_what_no_parser_accepts_is_a_value_error(self, body):
        """Broken, non-UTF-8, absurdly deep or empty bodies raise ValueError, nothing else."""
        with pytest.raises(ValueError, match="not JSON"):
            loads(body)


class TestMaxAgeSeconds:
    def test_age_of_the_oldest_feature(self):
        """The age is taken from the stalest timestamp, at the prediction's time."""
        flags: list[str] = []
        assert max_age_seconds({"a": 990.0, "b": 900, "c": 999.5}, 1000.0, flags) == 100.0
        assert flags == []

    def test_datetimes_and_numbers_mix(self):
        """Timezone-aware datetimes count as epoch seconds alongside plain numbers."""
        at = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
        stamps = {"a": datetime(2025, 1, 1, tzinfo=timezone.utc), "b": at - 60}
        assert max_age_seconds(stamps, at + 5, []) == 65.0

    def test_missing_timestamps_are_skipped(self):
        """None timestamps are ignored; all None gives no age and no flag."""
        flags: list[str] = []
        assert max_age_seconds({"a": None, "b": 950.0}, 1000.0, flags) == 50.0
        assert max_age_seconds({"a": None}, 1000.0, flags) is None
        assert max_age_seconds({}, 1000.0, flags) is None
        assert flags == []

    def test_future_timestamps_give_age_zero(self):
        """A feature stamped after the prediction (clock skew) is age 0, never negative."""
        assert max_age_seconds({"a": 1010.0}, 1000.0, []) == 0.0

    @pytest.mark.parametrize(
        "stamps", [[1.0, 2.0], "2025-01-01", {"a": "2025-01-01"}, {"a": True}, {"a": 1.0, "b": []}]
    )
    def test_malformed_timestamps_are_flagged(self, stamps):
        """Anything but a mapping of numbers and datetimes gives no age and a flag."""
        flags: list[str] = []
        assert max_age_seconds(stamps, 1000.0, flags) is None
        assert flags == ["feature_timestamps_invalid"]


class TestExtraJson:
    def test_empty_extra_is_null(self):
        """No extra fields gives no extra column value."""
        assert extra_json({}, []) is None

    def test_extra_is_json(self):
        """Extra fields are one JSON object; numpy values and integer keys are fine."""
        flags: list[str] = []
        text = extra_json({"campaign": "bf", "n": np.int32(2), 5: True}, flags)
        assert json.loads(text) == {"campaign": "bf", "n": 2, "5": True}
        assert flags == []

    def test_unserialisable_extra_is_coerced(self):
        """A value JSON cannot hold is written as its repr and flagged extra_coerced."""
        flags: list[str] = []
        assert json.loads(extra_json({"o": Unserialisable()}, flags)) == {"o": "<Unserialisable>"}
        assert flags == ["extra_coerced"]

    def test_pii_in_extra_is_pseudonymised_but_not_filtered(self):
        """Extra PII is pseudonymised; the feature allowlist does not remove extra fields."""
        pseudonymiser = Pseudonymiser(
            key=KEY, key_id="k1", pii_fields=("email",), allowlist=("amount",)
        )
        text = json.loads(extra_json({"email": "a@example.com", "note": "hi"}, [], pseudonymiser))
        assert text["note"] == "hi"
        assert text["email"].startswith("hmac-sha256:k1:")


def _at_depth(frames: int, body: bytes) -> str:
    """How ``loads`` answers ``body`` when called ``frames`` calls deep."""
    if frames:
        return _at_depth(frames - 1, body)
    try:
        loads(body)
    except ValueError:
        return "refused"
    return "read"


@pytest.mark.parametrize("levels", [100, 700])
def test_lenient_parsing_answers_the_same_from_any_stack(levels: int) -> None:
    """Python's parser recurses per level, so a deep body it reads from a shallow stack
    fails from a deep one (the flusher's): the same request would decode in one place
    and not in another. Past 512 levels the lenient path refuses wherever it is called."""
    body = b'{"a":' * levels + b"NaN" + b"}" * levels
    answers = {_at_depth(frames, body) for frames in (0, 300, 600)}
    assert answers == ({"read"} if levels <= 512 else {"refused"})
