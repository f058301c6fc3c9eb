"""From captured tuples to one Arrow record batch: decode, sample, build columns.

This is the flusher's work and the only place captures are interpreted. It is
columnar: ``zip(*captures)`` transposes the batch in C, whole columns go to
pyarrow and numpy at once, and only a column holding something odd (a string
score, a numpy array of features) falls back to value-by-value handling. Per-record
Python is kept to what must be per record: feature encoding and, below a sample
rate of 1, the sampling hash.

A capture that cannot be turned into a record becomes a record with a
``data_quality`` flag saying why; a capture that cannot even be unpacked is
counted as failed. Neither ever stops the rest of its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from predlog import _decode
from predlog._capture import FEATURES, FLAGS, Capture
from predlog._config import Settings
from predlog._exchange import Exchange, ExchangeDecoder
from predlog._ids import UUID7Factory
from predlog._pii import Pseudonymiser
from predlog._record import BAND_DECIMALS, SCHEMA_VERSION, arrow_schema
from predlog._report import ErrorReporter
from predlog._sampling import REASONS, Sampler

_SCHEMA: Final = arrow_schema()
_STRING: Final = pa.string()
_FLOAT: Final = pa.float64()
_ARROW_ERRORS: Final = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)
_BANDS: Final = pa.array(["high", "medium", "low"], type=_STRING)
_REASONS: Final = pa.array(REASONS, type=_STRING)

Flags = dict[int, list[str]]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What became of one drained list of captures."""

    batch: pa.RecordBatch | None
    kept: int
    sampled_out: int
    failed: int


def _flag(flags: Flags, index: int, flag: str) -> None:
    flags.setdefault(index, []).append(flag)


def _strings(column: Sequence[Any]) -> pa.Array:  # type: ignore[type-arg]
    try:
        return pa.array(column, type=_STRING)
    except _ARROW_ERRORS:
        return pa.array([_decode.optional_str(v) for v in column], type=_STRING)


def _floats(
    column: Sequence[Any], flags: Flags, *, missing: str | None, invalid: str, nan: str, inf: str
) -> FloatArray:
    """A float column as numpy, NaN where unusable, with a flag per unusable value."""
    try:
        arrow = pa.array(column, type=_FLOAT)
    except _ARROW_ERRORS:
        values: list[float | None] = []
        for i, raw in enumerate(column):
            if raw is None:
                values.append(None)
                continue
            try:
                values.append(float(raw))
            except (TypeError, ValueError, OverflowError):
                _flag(flags, i, invalid)
                values.append(None)
        arrow = pa.array(values, type=_FLOAT)
    result: FloatArray = np.array(arrow.to_numpy(zero_copy_only=False), dtype=np.float64)
    if arrow.null_count and missing is not None:
        for i in np.flatnonzero(np.asarray(arrow.is_null())).tolist():
            if column[i] is None:
                _flag(flags, i, missing)
    if np.isnan(result).any() or np.isinf(result).any():
        for i in np.flatnonzero(~np.isfinite(result)).tolist():
            raw = column[i]
            if raw is None or (i in flags and invalid in flags[i]):
                continue
            _flag(flags, i, nan if result[i] != result[i] else inf)
        result = np.where(np.isfinite(result), result, np.nan)
    return result


def _masked(values: FloatArray) -> pa.Array:  # type: ignore[type-arg]
    return pa.array(values, type=_FLOAT, mask=np.isnan(values))


def _bands(scores: FloatArray, thresholds: FloatArray) -> npt.NDArray[np.int8]:
    """Confidence band codes (0 high, 1 medium, 2 low, -1 none); see confidence_band."""
    with np.errstate(invalid="ignore"):
        distance = np.round(np.abs(scores - thresholds), BAND_DECIMALS)
        codes = np.where(distance > 0.3, 0, np.where(distance > 0.1, 1, 2)).astype(np.int8)
    codes[np.isnan(distance)] = -1
    return codes


def _codes_to_strings(codes: npt.NDArray[np.int8], labels: pa.Array) -> pa.Array:  # type: ignore[type-arg]
    indices = pa.array(codes, type=pa.int8(), mask=codes < 0)
    return labels.take(indices)


class BatchBuilder:
    """Decodes captures into columns; owns the sampler and the id factory."""

    def __init__(
        self,
        settings: Settings,
        *,
        sampler: Sampler,
        reporter: ErrorReporter,
        features: _decode.FeatureEncoder,
    ) -> None:
        self._settings = settings
        self._sampler = sampler
        self._reporter = reporter
        self._features = features
        self._ids = UUID7Factory()
        self._exchanges: ExchangeDecoder | None = None
        #: (decision, model name, extra) -> whether the audit log must have the record.
        self.audit_rule: Callable[[Any, Any, Any], bool] | None = None

    def decode_exchanges(self, decoder: ExchangeDecoder) -> None:
        """Decode middleware captures (holding an :class:`Exchange`) with ``decoder``."""
        self._exchanges = decoder

    def _resolve_exchanges(self, captures: Sequence[Capture]) -> list[Capture]:
        assert self._exchanges is not None
        resolve = self._exchanges.resolve
        out: list[Capture] = []
        for capture in captures:
            if type(capture[FEATURES]) is not Exchange:
                out.append(capture)
                continue
            try:
                out.append(resolve(capture))
            except Exception as exc:  # noqa: BLE001  # keep the record, say what failed
                self._reporter.report(
                    "exchange_invalid", f"could not decode an exchange: {exc!r}", exc=exc
                )
                flags = (*(capture[FLAGS] or ()), "exchange_undecodable")
                out.append((*capture[:FEATURES], None, *capture[FEATURES + 1 : FLAGS], flags))
        return out

    def build(self, captures: Sequence[Capture]) -> BuildResult:
        if not captures:
            return BuildResult(None, 0, 0, 0)
        if self._exchanges is not None:
            captures = self._resolve_exchanges(captures)
        try:
            return self._build(captures, 0)
        except Exception as exc:  # noqa: BLE001  # retry one by one to isolate the culprit
            self._reporter.report("batch_invalid", f"batch build failed: {exc!r}", exc=exc)
            return self._one_by_one(captures, 0)

    def _one_by_one(self, captures: Sequence[Capture], failed: int) -> BuildResult:
        batches: list[pa.RecordBatch] = []
        sampled_out = 0
        for capture in captures:
            try:
                result = self._build([capture], 0)
            except Exception as exc:  # noqa: BLE001  # this one capture is unusable
                failed += 1
                self._reporter.report("record_invalid", f"capture discarded: {exc!r}", exc=exc)
                continue
            sampled_out += result.sampled_out
            if result.batch is not None:
                batches.append(result.batch)
        if not batches:
            return BuildResult(None, 0, sampled_out, failed)
        table = pa.Table.from_batches(batches, schema=_SCHEMA).combine_chunks()
        batch = table.to_batches()[0]
        return BuildResult(batch, batch.num_rows, sampled_out, failed)

    def _build(self, captures: Sequence[Capture], failed: int) -> BuildResult:
        s = self._settings
        n = len(captures)
        (
            ts_ns,
            request_ids,
            features,
            raw_scores,
            decisions,
            thresholds,
            sessions,
            segments,
            channels,
            regions,
            names,
            versions,
            snapshots,
            freshness,
            feature_timestamps,
            fetch_ms,
            inference_ms,
            total_ms,
            extras,
            trace_ids,
            span_ids,
            capture_flags,
        ) = zip(*captures, strict=True)
        flags: Flags = {}
        if capture_flags.count(None) != n:
            for i, given in enumerate(capture_flags):
                if given:
                    flags[i] = list(given)

        stamps = np.fromiter(ts_ns, dtype=np.int64, count=n)
        at_s = stamps / 1e9
        scores = _floats(
            raw_scores,
            flags,
            missing="score_missing",
            invalid="score_invalid",
            nan="score_nan",
            inf="score_inf",
        )
        if thresholds.count(None) == n:
            cutoffs = np.full(n, s.decision_threshold)
        else:
            cutoffs = _floats(
                thresholds,
                flags,
                missing=None,
                invalid="threshold_invalid",
                nan="threshold_invalid",
                inf="threshold_invalid",
            )
            cutoffs[np.isnan(cutoffs)] = s.decision_threshold
        bands = _bands(scores, cutoffs)

        name_col = _strings(names) if names.count(None) != n else None
        version_col = _strings(versions) if versions.count(None) != n else None
        if name_col is None and version_col is None:
            models: Any = (s.model_name, s.model_version)
        else:
            name_py = name_col.to_pylist() if name_col is not None else [None] * n
            version_py = version_col.to_pylist() if version_col is not None else [None] * n
            models = [
                (a or s.model_name, b or s.model_version)
                for a, b in zip(name_py, version_py, strict=True)
            ]
        request_col = _strings(request_ids)
        request_py: list[str | None] | None = None

        def key_of(i: int) -> str:
            # Built only for records the base-rate rule must hash.
            nonlocal request_py
            if request_py is None:
                request_py = request_col.to_pylist()
            rid = request_py[i]
            return rid if rid is not None else f"{ts_ns[i]}:{i}"

        audited = None
        if self.audit_rule is not None:
            rule = self.audit_rule
            audited = np.fromiter(
                (rule(decisions[i], names[i] or s.model_name, extras[i]) for i in range(n)),
                dtype=np.bool_,
                count=n,
            )
        sample = self._sampler.decide(
            audited=audited,
            key_of=key_of,
            models=models,
            at_s=at_s,
            scores=scores,
            low_confidence=bands == 2,
        )
        kept_mask = sample.kept
        kept = int(kept_mask.sum())
        sampled_out = n - kept
        if not kept:
            return BuildResult(None, 0, sampled_out, failed)
        index = np.flatnonzero(kept_mask)
        all_kept = kept == n
        take = pa.array(index, type=pa.int64())

        def sel(array: pa.Array) -> pa.Array:  # type: ignore[type-arg]
            return array if all_kept else array.take(take)

        positions: list[int] = index.tolist()
        features_col, summary_col, nulls_col = self._encode_features(features, positions, flags)
        fresh = _floats(
            freshness,
            flags,
            missing=None,
            invalid="feature_freshness_invalid",
            nan="feature_freshness_invalid",
            inf="feature_freshness_invalid",
        )
        if feature_timestamps.count(None) != n:
            for i in positions:
                stamps_i = feature_timestamps[i]
                if stamps_i is not None and np.isnan(fresh[i]):
                    flag_list: list[str] = []
                    age = _decode.max_age_seconds(stamps_i, float(at_s[i]), flag_list)
                    if age is not None:
                        fresh[i] = age
                    for f in flag_list:
                        _flag(flags, i, f)
        timings = [
            _floats(
                col,
                flags,
                missing=None,
                invalid=f"{name}_invalid",
                nan=f"{name}_invalid",
                inf=f"{name}_invalid",
            )
            for name, col in (
                ("feature_fetch_ms", fetch_ms),
                ("inference_ms", inference_ms),
                ("total_ms", total_ms),
            )
        ]
        extra_col = self._encode_extras(extras, positions, flags, self._features.pseudonymiser)

        columns: dict[str, pa.Array] = {  # type: ignore[type-arg]
            "schema_version": pa.array(np.full(kept, SCHEMA_VERSION, dtype=np.int16)),
            "prediction_id": self._ids.batch(stamps[index] // 1_000_000),
            "request_id": sel(request_col),
            "session_id": sel(_strings(sessions)),
            "trace_id": sel(_strings(trace_ids)),
            "span_id": sel(_strings(span_ids)),
            "timestamp_utc": pa.array(
                stamps[index] // 1_000, type=_SCHEMA.field("timestamp_utc").type
            ),
            "model_name": (
                pa.array([m[0] for m in models], type=_STRING).take(take)
                if isinstance(models, list)
                else pa.array([s.model_name] * kept, type=_STRING)
            ),
            "model_version": (
                pa.array([m[1] for m in models], type=_STRING).take(take)
                if isinstance(models, list)
                else pa.array([s.model_version] * kept, type=_STRING)
            ),
            "model_framework": pa.array([s.model_framework] * kept, type=_STRING),
            "features": features_col,
            "features_summary": summary_col,
            "feature_store_snapshot_id": sel(_strings(snapshots)),
            "raw_score": _masked(scores[index]),
            "decision": sel(_strings(decisions)),
            "decision_threshold": pa.array(cutoffs[index], type=_FLOAT),
            "model_confidence": _codes_to_strings(bands[index], _BANDS),
            "feature_freshness_max_age_seconds": _masked(fresh[index]),
            "feature_null_count": nulls_col,
            "user_segment": sel(_strings(segments)),
            "channel": sel(_strings(channels)),
            "geographic_region": sel(_strings(regions)),
            "feature_fetch_ms": _masked(timings[0][index]),
            "inference_ms": _masked(timings[1][index]),
            "total_ms": _masked(timings[2][index]),
            "sample_weight": pa.array(sample.weights[index], type=_FLOAT),
            "sampling_reason": _codes_to_strings(sample.reasons[index], _REASONS),
            "data_quality": self._quality(flags, positions),
            "extra": extra_col,
        }
        batch = pa.RecordBatch.from_arrays(
            [columns[name] for name in _SCHEMA.names], schema=_SCHEMA
        )
        return BuildResult(batch, kept, sampled_out, failed)

    def _encode_features(
        self, features: Sequence[Any], positions: list[int], flags: Flags
    ) -> tuple[pa.Array, pa.Array, pa.Array]:  # type: ignore[type-arg]
        encoder = self._features
        dumps = orjson.dumps
        limit = encoder.max_bytes
        simple = not encoder.summary_keys and encoder.pseudonymiser is None
        # Decode each result to str at once: holding on to orjson's bytes objects is
        # six times slower here (measured), whatever pyarrow would save on them.
        texts: list[str | None] = []
        summaries: list[str | None] = []
        nulls: list[int | None] = []
        for i in positions:
            value = features[i]
            if simple and type(value) is dict:
                # Fast path: a plain dict that encodes cleanly, small, without nulls.
                try:
                    # Without OPT_NON_STR_KEYS first: ~0.1 µs less per record, and
                    # string keys are the rule; anything else takes the full path.
                    encoded = dumps(value)
                except TypeError:
                    pass
                else:
                    if len(encoded) <= limit and b"null" not in encoded:
                        texts.append(encoded.decode())
                        summaries.append(None)
                        nulls.append(0)
                        continue
            record_flags: list[str] = []
            text, summary, count = encoder.encode(value, record_flags)
            for f in record_flags:
                _flag(flags, i, f)
            texts.append(text)
            summaries.append(summary)
            nulls.append(count)
        return (
            pa.array(texts, type=_STRING),
            pa.array(summaries, type=_STRING),
            pa.array(nulls, type=pa.int32()),
        )

    @staticmethod
    def _encode_extras(
        extras: Sequence[Any],
        positions: list[int],
        flags: Flags,
        pseudonymiser: Pseudonymiser | None,
    ) -> pa.Array:  # type: ignore[type-arg]
        if not any(extras):
            return pa.nulls(len(positions), type=_STRING)
        out: list[str | None] = []
        for i in positions:
            extra = extras[i]
            if not extra:
                out.append(None)
                continue
            record_flags: list[str] = []
            out.append(_decode.extra_json(extra, record_flags, pseudonymiser))
            for f in record_flags:
                _flag(flags, i, f)
        return pa.array(out, type=_STRING)

    @staticmethod
    def _quality(flags: Flags, positions: list[int]) -> pa.Array:  # type: ignore[type-arg]
        kept = len(positions)
        if not flags:
            return pa.ListArray.from_arrays([0] * (kept + 1), pa.array([], type=_STRING))
        return pa.array([flags.get(i, []) for i in positions], type=pa.list_(_STRING))
