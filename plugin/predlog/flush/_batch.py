"""From captured tuples to one Arrow record batch: decode, sample, build columns.

This is the flusher's work and the only place captures are interpreted. It is
columnar: a batch is read as whole columns (:mod:`predlog.flush._columns`), either
transposed from the capture tuples in C or, for a batch of middleware captures the
extension resolves whole, written by the extension straight into Arrow buffers. Whole
columns go to numpy at once, and only a column holding something odd (a string score,
a numpy array of features) falls back to value-by-value handling. Per-record Python is
kept to what must be per record: feature encoding of tuples and, below a sample rate
of 1, the sampling hash.

Every value is decided here; the columns leave as :data:`~predlog._table.Spec`
forms, and :mod:`predlog._table` makes them Arrow: natively where the extension
is built (no pyarrow in the process), with pyarrow otherwise.

A capture that cannot be turned into a record becomes a record with a
``data_quality`` flag saying why; a capture that cannot even be unpacked is
counted as failed. Neither ever stops the rest of its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
import numpy.typing as npt
import orjson

from predlog import _table
from predlog._capture import FEATURES, FLAGS, Capture
from predlog._exchange import Exchange
from predlog._record import BAND_DECIMALS, FIELD_NAMES, SCHEMA_VERSION
from predlog._report import ErrorReporter
from predlog._settings import Settings
from predlog._table import Batch, Spec
from predlog.flush import _decode, _native
from predlog.flush._columns import Flags, FloatArray, NativeColumns, Source, Tuples, flag
from predlog.flush._ids import UUID7Factory
from predlog.flush._pii import Pseudonymiser
from predlog.flush._sampling import REASONS, Sampler, SampleResult

if TYPE_CHECKING:
    from predlog._rust import Encoded, EncodedExtra

_BANDS: Final = ("high", "medium", "low")
_NO_STRINGS: Final[Spec] = ("constant", None)

_features_of: Final = itemgetter(FEATURES)


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What became of one drained list of captures."""

    batch: Batch | None
    kept: int
    sampled_out: int
    failed: int


def _masked(values: FloatArray) -> Spec:
    """A float column whose NaN are null."""
    return ("float64", values, True)


def _bands(scores: FloatArray, thresholds: FloatArray) -> npt.NDArray[np.int8]:
    """Confidence band codes (0 high, 1 medium, 2 low, -1 none); see confidence_band."""
    with np.errstate(invalid="ignore"):
        distance = np.round(np.abs(scores - thresholds), BAND_DECIMALS)
        codes = np.where(distance > 0.3, 0, np.where(distance > 0.1, 1, 2)).astype(np.int8)
    codes[np.isnan(distance)] = -1
    return codes


#: (decision, model name, extra) -> whether the audit log must have the record.
AuditRule = Callable[[Any, Any, Any], bool]


def _floats_flagged(source: Source, flags: Flags, column: str, name: str) -> FloatArray:
    """An optional float column whose every unusable value is flagged ``<name>_invalid``."""
    bad = f"{name}_invalid"
    return source.floats(column, flags, missing=None, invalid=bad, nan=bad, inf=bad)


def _exchange_of(capture: Capture) -> Exchange | None:
    """The middleware's exchange in a capture, or None (a malformed capture included)."""
    try:
        value = capture[FEATURES]
    except (IndexError, KeyError, TypeError):
        return None
    return value if type(value) is Exchange else None


def _exchanges_in(captures: Sequence[Capture]) -> tuple[bool, bool]:
    """Whether every capture, and whether any, came from the middleware; in C, as log()'s
    batches have none."""
    try:
        kinds = set(map(type, map(_features_of, captures)))
    except (IndexError, KeyError, TypeError):
        # A capture too short to unpack: look one by one; the build fails it alone.
        return False, any(_exchange_of(capture) is not None for capture in captures)
    return kinds == {Exchange}, Exchange in kinds


@dataclass(slots=True)
class _Decoded:
    """One batch between the build steps: the capture columns and what was derived."""

    source: Source
    n: int
    flags: Flags
    stamps: npt.NDArray[np.int64]
    scores: FloatArray
    cutoffs: FloatArray
    bands: npt.NDArray[np.int8]
    #: One (name, version) for the whole batch, or one per record.
    models: tuple[str, str] | list[tuple[str, str]]


class BatchBuilder:
    """Decodes captures into columns; owns the sampler and the id factory."""

    #: Batches built one tuple per record after the extension declined one for its
    #: values, before it is asked again: a service whose handler records a value only
    #: Python writes (an int segment, a numpy float32) would otherwise have every batch
    #: decoded twice.
    COLUMNS_BACKOFF: Final = 16

    def __init__(
        self,
        settings: Settings,
        *,
        sampler: Sampler,
        reporter: ErrorReporter,
        features: _decode.FeatureEncoder,
        audit_rule: AuditRule | None = None,
    ) -> None:
        self._settings = settings
        self._sampler = sampler
        self._reporter = reporter
        self._features = features
        self._ids = UUID7Factory()
        self._audit_rule = audit_rule
        self._native = settings.native_decode and _native.AVAILABLE
        self._table = _table.Tables(native=self._native, coerce=_decode.optional_str)
        #: Batches left to build without the extension's columns (see COLUMNS_BACKOFF).
        self._columns_backoff = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        reporter: ErrorReporter,
        feature_names: Sequence[str] = (),
        extractor: _decode.Extractor = _decode.json_extractor,
        pseudonymiser: Pseudonymiser | None = None,
        audit_rule: AuditRule | None = None,
    ) -> BatchBuilder:
        """The builder a logger with these settings runs: one place, for the logger and
        for ``predlog.testing.build_batch``."""
        s = settings
        return cls(
            s,
            sampler=Sampler(
                sample_rate=s.sample_rate,
                high_risk_score=s.high_risk_score,
                new_version_window_s=s.new_version_window_s,
            ),
            reporter=reporter,
            features=_decode.FeatureEncoder(
                max_bytes=s.max_feature_bytes,
                summary_keys=s.summary_features,
                feature_names=tuple(feature_names),
                extractor=extractor,
                pseudonymiser=pseudonymiser or Pseudonymiser.from_settings(s),
            ),
            audit_rule=audit_rule,
        )

    def _report(self, kind: str, message: str, exc: BaseException | None) -> None:
        self._reporter.report(kind, message, exc=exc)

    def _decodes_natively(self) -> bool:
        """Whether the native decoder may be used: only while features are written as
        they are parsed (pseudonyms and summary features need them as Python values)."""
        encoder = self._features
        return self._native and encoder.pseudonymiser is None and not encoder.summary_keys

    def _resolve_columns(self, captures: Sequence[Capture]) -> NativeColumns | None:
        """The batch (every capture an exchange) resolved natively into columns, when
        the extension takes every capture whole and no audit rule needs each record's
        values; None when not."""
        if not self._decodes_natively() or self._audit_rule is not None:
            return None
        if self._columns_backoff:
            self._columns_backoff -= 1
            return None
        try:
            columns = _native.resolve_columns(captures)
        except Exception as exc:  # noqa: BLE001  # the batch goes the way of one tuple each
            self._report("native_failed", f"native decoding failed: {exc!r}", exc)
            columns = None
        if columns is None:
            self._columns_backoff = self.COLUMNS_BACKOFF
        return columns

    def _resolve_natively(self, captures: Sequence[Capture]) -> list[Capture | None] | None:
        """The batch through the native decoder, when it can be used; None when not."""
        encoder = self._features
        if not self._decodes_natively():
            return None
        try:
            return _native.resolve(
                captures, encoder.max_bytes, extra_maps=self._audit_rule is not None
            )
        except Exception as exc:  # noqa: BLE001  # the Python decoder takes the whole batch
            self._report("native_failed", f"native decoding failed: {exc!r}", exc)
            return None

    def _resolve_exchanges(self, captures: Sequence[Capture]) -> list[Capture]:
        """Decode each middleware capture with the decoder its exchange carries: natively
        where the extension takes it, in Python otherwise."""
        out = list(captures)
        native = self._resolve_natively(captures)
        for i, capture in enumerate(captures):
            if native is not None:
                resolved = native[i]
                if resolved is not None:
                    out[i] = resolved
                    continue
            exchange = _exchange_of(capture)
            if exchange is None:
                continue
            try:
                out[i] = exchange.decoder.resolve(capture, self._report)
            except Exception as exc:  # noqa: BLE001  # keep the record, say what failed
                self._report("exchange_invalid", f"could not decode an exchange: {exc!r}", exc)
                flags = (*(capture[FLAGS] or ()), "exchange_undecodable")
                out[i] = (*capture[:FEATURES], None, *capture[FEATURES + 1 : FLAGS], flags)
        return out

    def build(self, captures: Sequence[Capture]) -> BuildResult:
        """One Arrow batch of the records kept, and how many were sampled out or failed."""
        if not captures:
            return BuildResult(None, 0, 0, 0)
        every, some = _exchanges_in(captures)
        if every:
            columns = self._resolve_columns(captures)
            if columns is not None:
                try:
                    return self._build(columns)
                except Exception as exc:  # noqa: BLE001  # the batch goes one tuple each
                    self._report("native_failed", f"native batch failed: {exc!r}", exc)
        if some:
            captures = self._resolve_exchanges(captures)
        try:
            return self._build(Tuples(captures))
        except Exception as exc:  # noqa: BLE001  # retry one by one to isolate the culprit
            self._reporter.report("batch_invalid", f"batch build failed: {exc!r}", exc=exc)
            return self._one_by_one(captures)

    def _one_by_one(self, captures: Sequence[Capture]) -> BuildResult:
        batches: list[Batch] = []
        sampled_out = 0
        failed = 0
        for capture in captures:
            try:
                result = self._build(Tuples([capture]))
            except Exception as exc:  # noqa: BLE001  # this one capture is unusable
                failed += 1
                self._reporter.report("record_invalid", f"capture discarded: {exc!r}", exc=exc)
                continue
            sampled_out += result.sampled_out
            if result.batch is not None:
                batches.append(result.batch)
        if not batches:
            return BuildResult(None, 0, sampled_out, failed)
        batch = self._table.concat(batches)
        return BuildResult(batch, batch.num_rows, sampled_out, failed)

    def _build(self, source: Source) -> BuildResult:
        """Decode, sample, assemble: the three steps, each over whole columns."""
        decoded = self._decode(source)
        sample = self._sample(decoded)
        kept = int(sample.kept.sum())
        if not kept:
            return BuildResult(None, 0, decoded.n, 0)
        batch = self._assemble(decoded, sample, kept)
        return BuildResult(batch, kept, decoded.n - kept, 0)

    def _decode(self, source: Source) -> _Decoded:
        """Decode what sampling needs, over whole columns."""
        s = self._settings
        n = source.n
        flags = source.given_flags()
        scores = source.floats(
            "score",
            flags,
            missing="score_missing",
            invalid="score_invalid",
            nan="score_nan",
            inf="score_inf",
        )
        if source.all_none("threshold"):
            cutoffs = np.full(n, s.decision_threshold)
        else:
            cutoffs = _floats_flagged(source, flags, "threshold", "threshold")
            cutoffs[np.isnan(cutoffs)] = s.decision_threshold
        return _Decoded(
            source=source,
            n=n,
            flags=flags,
            stamps=source.stamps(),
            scores=scores,
            cutoffs=cutoffs,
            bands=_bands(scores, cutoffs),
            models=self._models(source),
        )

    def _models(self, source: Source) -> tuple[str, str] | list[tuple[str, str]]:
        s = self._settings
        if source.all_none("model_name") and source.all_none("model_version"):
            return (s.model_name, s.model_version)
        name_py = source.texts("model_name")
        version_py = source.texts("model_version")
        return [
            (a or s.model_name, b or s.model_version)
            for a, b in zip(name_py, version_py, strict=True)
        ]

    def _sample(self, d: _Decoded) -> SampleResult:
        """Which records to keep, with their weights and reasons."""
        source = d.source
        request_py: list[str | None] | None = None

        def key_of(i: int) -> str:
            # Built only for records the base-rate rule must hash.
            nonlocal request_py
            if request_py is None:
                request_py = source.texts("request_id")
            rid = request_py[i]
            return rid if rid is not None else f"{d.stamps[i]}:{i}"

        audited = None
        if self._audit_rule is not None:
            # Only over tuples: a batch resolved into columns has no audit rule.
            rule = self._audit_rule
            tuples = cast("Tuples", source)
            decisions, names, extras = (tuples[k] for k in ("decision", "model_name", "extra"))
            default_name = self._settings.model_name
            audited = np.fromiter(
                (rule(decisions[i], names[i] or default_name, extras[i]) for i in range(d.n)),
                dtype=np.bool_,
                count=d.n,
            )
        return self._sampler.decide(
            audited=audited,
            key_of=key_of,
            models=d.models,
            at_s=d.stamps / 1e9,
            scores=d.scores,
            low_confidence=d.bands == 2,
        )

    def _freshness(self, d: _Decoded, positions: list[int]) -> FloatArray:
        """The given freshness, or the oldest feature timestamp's age where none was given."""
        fresh = _floats_flagged(
            d.source, d.flags, "feature_freshness_max_age_seconds", "feature_freshness"
        )
        if not d.source.all_none("feature_timestamps"):
            # Only in tuples: a batch resolved into columns has none.
            stamps = cast("Tuples", d.source)["feature_timestamps"]
            for i in positions:
                stamps_i = stamps[i]
                if stamps_i is not None and np.isnan(fresh[i]):
                    flag_list: list[str] = []
                    age = _decode.max_age_seconds(stamps_i, float(d.stamps[i]) / 1e9, flag_list)
                    if age is not None:
                        fresh[i] = age
                    for f in flag_list:
                        flag(d.flags, i, f)
        return fresh

    def _assemble(self, d: _Decoded, sample: SampleResult, kept: int) -> Batch:
        """The kept records as one batch in the schema's column order."""
        s = self._settings
        source = d.source
        index = np.flatnonzero(sample.kept)
        positions: list[int] = index.tolist()

        def strings(name: str) -> Spec:
            return source.strings(name, positions)

        def model(part: int, default: str) -> Spec:
            if isinstance(d.models, list):
                return ("strings", [d.models[i][part] for i in positions])
            return ("constant", default)

        features_col: Spec
        summary_col: Spec
        extra_col: Spec
        if isinstance(source, NativeColumns):
            features_col, nulls_col = source.features(positions, d.flags, self._features.max_bytes)
            summary_col = _NO_STRINGS
        else:
            features_col, summary_col, nulls_col = self._encode_features(
                source["features"], positions, d.flags
            )
        fresh = self._freshness(d, positions)
        timing = {
            name: _masked(_floats_flagged(source, d.flags, name, name)[index])
            for name in ("feature_fetch_ms", "inference_ms", "total_ms")
        }
        if isinstance(source, NativeColumns):
            extra_col = source.text("extra", positions)
        else:
            extra_col = self._encode_extras(
                source["extra"], positions, d.flags, self._features.pseudonymiser
            )
        specs: dict[str, Spec] = {
            "schema_version": ("constant", SCHEMA_VERSION),
            "prediction_id": ("text", *self._ids.batch(d.stamps[index] // 1_000_000), None),
            "request_id": strings("request_id"),
            "session_id": strings("session_id"),
            "trace_id": strings("trace_id"),
            "span_id": strings("span_id"),
            "timestamp_utc": ("timestamps", d.stamps[index] // 1_000),
            "model_name": model(0, s.model_name),
            "model_version": model(1, s.model_version),
            "model_framework": ("constant", s.model_framework),
            "features": features_col,
            "features_summary": summary_col,
            "feature_store_snapshot_id": strings("feature_store_snapshot_id"),
            "raw_score": _masked(d.scores[index]),
            "decision": strings("decision"),
            "decision_threshold": ("float64", d.cutoffs[index], False),
            "model_confidence": ("codes", d.bands[index], _BANDS),
            "feature_freshness_max_age_seconds": _masked(fresh[index]),
            "feature_null_count": nulls_col,
            "user_segment": strings("user_segment"),
            "channel": strings("channel"),
            "geographic_region": strings("geographic_region"),
            **timing,
            "sample_weight": ("float64", sample.weights[index], False),
            "sampling_reason": ("codes", sample.reasons[index], REASONS),
            "data_quality": self._quality(d.flags, positions),
            "extra": extra_col,
        }
        return self._table.build([specs[name] for name in FIELD_NAMES], kept)

    def _encode_features(
        self, features: Sequence[Any], positions: list[int], flags: Flags
    ) -> tuple[Spec, Spec, Spec]:
        encoder = self._features
        dumps = orjson.dumps
        limit = encoder.max_bytes
        simple = not encoder.summary_keys and encoder.pseudonymiser is None
        if simple and self._native:
            batch = self._encode_dicts(features, positions, flags)
            if batch is not None:
                return batch
        native_type = _native.ENCODED_TYPE
        # Decode each result to str at once: holding on to orjson's bytes objects is
        # six times slower here (measured), whatever pyarrow would save on them.
        texts: list[str | None] = []
        summaries: list[str | None] = []
        nulls: list[int | None] = []
        for i in positions:
            value = features[i]
            if type(value) is native_type:
                # Written by the native decoder; null count and size already known.
                written = cast("Encoded", value)
                if written.oversize:
                    flag(flags, i, "features_oversize")
                    texts.append(None)
                else:
                    texts.append(written.text)
                summaries.append(None)
                nulls.append(written.nulls)
                continue
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
                flag(flags, i, f)
            texts.append(text)
            summaries.append(summary)
            nulls.append(count)
        return ("strings", texts), ("strings", summaries), ("int32", nulls)

    def _encode_dicts(
        self, features: Sequence[Any], positions: list[int], flags: Flags
    ) -> tuple[Spec, Spec, Spec] | None:
        """Every kept features value a plain dict (``log()``'s usual batch): one orjson
        call for them all, cut into the column by the native extension. The texts are
        orjson's, as one call per record would write them. None when the batch is
        anything else, and the values are encoded one by one."""
        values = [features[i] for i in positions]
        if set(map(type, values)) != {dict}:
            return None
        try:
            text = orjson.dumps(values)
        except TypeError:  # a value only the coercing path writes
            return None
        cut = _native.cut_objects(text)
        if cut is None:
            return None
        data, offsets, null_counts = cut
        n = len(values)
        if len(offsets) != 4 * (n + 1):  # a value orjson wrote as is (a Fragment) misled the cut
            return None
        bounds = np.frombuffer(offsets, dtype=np.int32)
        oversize = np.diff(bounds) > self._features.max_bytes
        valid = None
        if oversize.any():
            for k in np.flatnonzero(oversize).tolist():
                flag(flags, positions[k], "features_oversize")
            valid = ~oversize
        counts = np.frombuffer(null_counts, dtype=np.int32).copy()
        for k in np.flatnonzero(counts).tolist():
            # The cut counts nulls in the text; a feature is null by its value (an Enum
            # whose value is None is written null but is not one), as one by one.
            counts[k] = sum(1 for v in values[k].values() if _decode.is_null(v))
        return ("text", bounds, data, valid), _NO_STRINGS, ("int32s", counts)

    @staticmethod
    def _encode_extras(
        extras: Sequence[Any],
        positions: list[int],
        flags: Flags,
        pseudonymiser: Pseudonymiser | None,
    ) -> Spec:
        if not any(extras):
            return _NO_STRINGS
        native_type = _native.ENCODED_EXTRA_TYPE
        out: list[str | None] = []
        for i in positions:
            extra = extras[i]
            if type(extra) is native_type:
                out.append(cast("EncodedExtra", extra).text)  # written by the native decoder
                continue
            if not extra:
                out.append(None)
                continue
            record_flags: list[str] = []
            out.append(_decode.extra_json(extra, record_flags, pseudonymiser))
            for f in record_flags:
                flag(flags, i, f)
        return ("strings", out)

    @staticmethod
    def _quality(flags: Flags, positions: list[int]) -> Spec:
        if not flags:
            return ("lists", None)
        return ("lists", [flags.get(i, []) for i in positions])
