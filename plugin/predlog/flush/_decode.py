"""Turning captured values into column values, in the flusher.

Everything a caller might hand to ``log()`` is accepted here, however odd: NaN
scores, numpy scalars, arrays instead of dicts, raw JSON bytes, unserialisable
objects, a 10 MB vector. Each oddity becomes a ``data_quality`` flag on the record
rather than an exception. Nothing here runs on the request path.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from itertools import accumulate
from typing import Any, Final

import orjson

from predlog.flush._pii import Pseudonymiser

#: Decodes a raw body into features. The default parses JSON.
Extractor = Callable[[bytes], Mapping[str, Any]]

#: orjson options for every JSON column: numpy values and non-string keys are fine.
JSON_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
#: The integers orjson reads as integers; the rest it reads as floats.
_MIN_INT: Final = -(2**63)
_MAX_INT: Final = 2**64 - 1
_MAX_INT_DIGITS: Final = 21


def loads(body: bytes) -> tuple[Any, bool]:
    """Parse JSON as leniently as the server that accepted it may have: the value, and
    whether it needed more than strict JSON.

    orjson first (strict, fast); on failure Python's ``json``, which takes what many
    servers take: ``NaN`` and ``Infinity`` literals and lone surrogate escapes. A body
    the server scored must not lose its features because predlog was stricter. What
    that parser returns is made writable as orjson's would be: lone surrogates become
    U+FFFD and integers beyond 64 bits floats.
    Raises ``ValueError`` when neither parser accepts the body.
    """
    try:
        return orjson.loads(body), False
    except orjson.JSONDecodeError:
        pass
    if _deeper_than(body, _DEEPEST):
        # Python's parser recurses per level, so how deep it can go depends on the stack
        # it is called from: the same body could pass in one place and fail in another.
        raise ValueError(f"not JSON predlog reads: nested deeper than {_DEEPEST}")
    try:
        value = json.loads(body, parse_int=_json_int)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"not JSON: {exc}") from None
    return _without_lone_surrogates(value), True


#: The deepest nesting the lenient parser is given: well inside the recursion limit
#: from any caller, so that a body decodes the same wherever it is decoded.
_DEEPEST: Final = 512
_STRINGS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _deeper_than(body: bytes, limit: int) -> bool:
    """Whether ``body``'s brackets, outside strings, nest deeper than ``limit``."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    text = _STRINGS.sub(b"", body)
    steps = (_STEP[c] for c in text if c in _STEP)
    return max(accumulate(steps), default=0) > limit


def _json_int(text: str) -> int | float:
    """An integer as orjson reads it: beyond 64 bits, a float (no column takes more)."""
    if len(text) <= _MAX_INT_DIGITS:
        value = int(text)
        if _MIN_INT <= value <= _MAX_INT:
            return value
    return float(text)


def _replace_surrogates(text: str) -> str:
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with each lone surrogate in its strings and keys replaced by U+FFFD.

    Python's parser takes ``"\\ud800"`` escapes and UTF-8-encoded surrogates, but no
    encoder writes such a string back out, so the record would be lost when its
    columns are encoded. Iterative: the value may be nested as deep as the parser
    allows.
    """
    if isinstance(value, str):
        return _replace_surrogates(value)
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pairs = list(item.items())
            item.clear()
            for key, child in pairs:
                item[_replace_surrogates(key)] = (
                    _replace_surrogates(child) if isinstance(child, str) else child
                )
                if isinstance(child, (dict, list)):
                    pending.append(child)
        elif isinstance(item, list):
            for i, child in enumerate(item):
                if isinstance(child, str):
                    item[i] = _replace_surrogates(child)
                elif isinstance(child, (dict, list)):
                    pending.append(child)
    return value


def non_finite_keys(features: Mapping[str, Any]) -> list[str]:
    """The keys whose values are NaN or infinite floats (stored as null in JSON)."""
    return [
        key
        for key, value in features.items()
        if isinstance(value, float) and not math.isfinite(value)
    ]


def json_extractor(body: bytes) -> Mapping[str, Any]:
    """Default extractor: the body is a JSON object of features."""
    value, _ = loads(body)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def optional_str(value: Any) -> str | None:
    """Text for a string column: lone surrogates replaced, bytes read as UTF-8 (what is
    not UTF-8 replaced), and a value that cannot be printed (nested past the recursion
    limit, a failing ``__str__``) named by its type."""
    if value is None:
        return None
    text: str
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        # A request id or a decision given as bytes is that text, not its repr.
        return bytes(value).decode(errors="replace")
    else:
        try:
            text = str(value)
        except Exception:  # noqa: BLE001  # the record is kept; only this value is lost
            return f"<unprintable {type(value).__name__}>"
    try:
        text.encode()
    except UnicodeEncodeError:
        return _replace_surrogates(text)
    return text


def is_null(value: Any) -> bool:
    """Whether a feature is stored as null: None, NaN, and a float infinity (JSON has
    no infinity; orjson writes null for it, as for NaN)."""
    if value is None:
        return True
    if isinstance(value, float):
        return not math.isfinite(value)
    # `value != value` is the NaN test that works for numpy floats and Decimal alike
    # without importing numpy.
    try:
        return bool(value != value)  # noqa: PLR0124  # NaN is the value unequal to itself
    except Exception:  # noqa: BLE001  # arrays and odd objects: not a null scalar
        return False


def _dumps(value: Any, flags: list[str], what: str) -> bytes | None:
    """JSON for a column, or None (flagged ``<what>_unencodable``) when even the
    coercing retry fails: nested past orjson's depth limit, an integer beyond 64 bits,
    a lone surrogate. The record is kept either way."""
    try:
        return orjson.dumps(value, option=JSON_OPTIONS)
    except TypeError:
        pass
    try:
        encoded = orjson.dumps(value, option=JSON_OPTIONS, default=repr)
    except TypeError:
        flags.append(f"{what}_unencodable")
        return None
    flags.append(f"{what}_coerced")
    return encoded


class FeatureEncoder:
    """Encodes a features value as JSON text and computes its quality signals."""

    __slots__ = ("_extractor", "_max_bytes", "_names", "_summary", "pseudonymiser")

    def __init__(
        self,
        *,
        max_bytes: int,
        summary_keys: tuple[str, ...] = (),
        feature_names: tuple[str, ...] = (),
        extractor: Extractor = json_extractor,
        pseudonymiser: Pseudonymiser | None = None,
    ) -> None:
        #: Applied to every features mapping before it is encoded, when active.
        self.pseudonymiser = pseudonymiser if pseudonymiser and pseudonymiser.active else None
        self._max_bytes = max_bytes
        self._summary = summary_keys
        self._names = feature_names
        self._extractor = extractor

    def encode(self, value: Any, flags: list[str]) -> tuple[str | None, str | None, int | None]:
        """Return (features JSON, summary JSON, null count) for one record."""
        if value is None:
            flags.append("features_missing")
            return None, None, None
        if isinstance(value, (bytes, bytearray, memoryview)):
            try:
                value = self._extractor(bytes(value))
            except Exception:  # noqa: BLE001  # malformed bodies are flagged, not raised
                flags.append("features_undecodable")
                return None, None, None
        mapping: Mapping[Any, Any] | None
        if isinstance(value, Mapping):
            mapping = value
        elif isinstance(value, (str, int, float, bool)):
            flags.append("features_invalid_type")
            return None, None, None
        else:
            mapping = self._from_sequence(value, flags)
            if mapping is None:
                return None, None, None
        if self.pseudonymiser is not None:
            mapping = self.pseudonymiser.apply(mapping)
        encoded = _dumps(mapping if isinstance(mapping, dict) else dict(mapping), flags, "features")
        if encoded is None:
            return None, self._summary_json(mapping, flags), None
        nulls = sum(1 for v in mapping.values() if is_null(v)) if b"null" in encoded else 0
        if len(encoded) > self._max_bytes:
            flags.append("features_oversize")
            return None, self._summary_json(mapping, flags), nulls
        return encoded.decode(), self._summary_json(mapping, flags), nulls

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def summary_keys(self) -> tuple[str, ...]:
        return self._summary

    def _from_sequence(self, value: Any, flags: list[str]) -> Mapping[str, Any] | None:
        tolist = getattr(value, "tolist", None)
        try:
            items = tolist() if callable(tolist) else list(value)
        except TypeError:
            flags.append("features_invalid_type")
            return None
        if not isinstance(items, list):  # a 0-d array's tolist() is a scalar
            flags.append("features_invalid_type")
            return None
        if self._names and len(self._names) == len(items):
            return dict(zip(self._names, items, strict=True))
        if self._names:
            flags.append("features_names_mismatch")
        return {str(i): v for i, v in enumerate(items)}

    def _summary_json(self, mapping: Mapping[str, Any], flags: list[str]) -> str | None:
        if not self._summary:
            return None
        picked = {key: mapping.get(key) for key in self._summary}
        encoded = _dumps(picked, flags, "features_summary")
        return None if encoded is None else encoded.decode()


def max_age_seconds(timestamps: Any, at_s: float, flags: list[str]) -> float | None:
    """Age of the stalest feature, from per-feature timestamps (epoch s or datetime)."""
    if not isinstance(timestamps, Mapping):
        flags.append("feature_timestamps_invalid")
        return None
    oldest: float | None = None
    for stamp in timestamps.values():
        if stamp is None:
            continue
        if isinstance(stamp, datetime):
            seconds = stamp.timestamp()
        elif isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
            seconds = float(stamp)
        else:
            flags.append("feature_timestamps_invalid")
            return None
        if oldest is None or seconds < oldest:
            oldest = seconds
    if oldest is None:
        return None
    return max(0.0, at_s - oldest)


def extra_json(
    extra: Mapping[str, Any], flags: list[str], pseudonymiser: Pseudonymiser | None = None
) -> str | None:
    if not extra:
        return None
    mapping = pseudonymiser.apply_extra(extra) if pseudonymiser is not None else dict(extra)
    encoded = _dumps(mapping, flags, "extra")
    return None if encoded is None else encoded.decode()
