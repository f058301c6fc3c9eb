"""Decoding an :class:`~predlog._exchange.Exchange` into an ordinary capture, in the flusher.

This is where request and response JSON is parsed, BentoML's wrapping undone, nested
objects flattened and the score and decision found under the names services give them
(:data:`SCORE_KEYS`, :data:`DECISION_KEYS`, :data:`EITHER_KEY`), each with the path it
was read from. Each middleware makes one :class:`ExchangeDecoder` from its own options
and every exchange it captures carries it, so apps with different ``score_field``
settings can share one logger. A body that cannot be decoded never loses its record:
the record is flagged instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from predlog._capture import (
    DECISION,
    EXTRA,
    FEATURES,
    FLAGS,
    POSITION,
    SCORE,
    SPAN_ID,
    TRACE_ID,
    Capture,
)
from predlog._exchange import Exchange, Report
from predlog.flush._decode import loads, non_finite_keys

#: Decodes a request body into features.
RequestExtractor = Callable[[bytes], Mapping[str, Any]]
#: Decodes a response body into a mapping with ``score`` and/or ``decision``.
ResponseExtractor = Callable[[bytes], Mapping[str, Any]]

#: Response keys holding the score, in order of precedence: the first present is read.
SCORE_KEYS: Final = ("score", "probability", "proba", "probabilities")
#: Response keys holding the decision, in order of precedence.
DECISION_KEYS: Final = ("decision", "label", "class", "outcome")
#: The key that is the score when it holds a number and the decision when it holds text
#: or a bool; read after every key above.
EITHER_KEY: Final = "prediction"
#: The score key holding one probability per class (an object or a list): one class's,
#: or the second of two, scikit-learn's positive class (``predict_proba(X)[:, 1]``).
CLASSES_KEY: Final = "probabilities"
#: The path recorded for a value that is the whole response body.
BODY_PATH: Final = "$"
#: The extra map's key naming the path each value was read from.
SOURCE_KEYS: Final = {"score": "score_field", "decision": "decision_field"}
_MAX_LIST: Final = 256
_MAX_INDEX_DIGITS: Final = 18
#: Fields predlog.record() may set that have their own place in a capture; any other
#: recorded field goes to the record's extra map.
RECORD_POSITIONS: Final = {
    name: position for name, position in POSITION.items() if FEATURES <= position < EXTRA
}


def flatten(value: Mapping[str, Any]) -> dict[str, Any]:
    """Scalar leaves of a JSON object, nested keys joined with dots.

    Lists of scalars become ``key.0``, ``key.1``...; deeper or longer structures
    are left out (they are rarely model features and would swamp the record).
    """
    for item in value.values():
        # Parsed JSON holds plain dicts and lists only: exact type checks, the cheapest.
        if type(item) is dict or type(item) is list:
            break
    else:
        # Already flat, as most model inputs are: a copy, 4x cheaper than the walk.
        return dict(value)
    out: dict[str, Any] = {}
    _flatten(value, "", out)
    return out


def _flatten(value: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    # A stack of iterators, not recursion: orjson parses objects nested 1,024 deep,
    # past Python's recursion limit.
    pending: list[tuple[str, Iterator[tuple[str, Any]]]] = [(prefix, iter(value.items()))]
    while pending:
        prefix, items = pending[-1]
        for key, item in items:
            name = f"{prefix}{key}"
            if isinstance(item, dict):
                pending.append((f"{name}.", iter(item.items())))
                break
            if isinstance(item, list):
                if len(item) <= _MAX_LIST and not any(isinstance(x, (dict, list)) for x in item):
                    for i, x in enumerate(item):
                        out[f"{name}.{i}"] = x
            else:
                out[name] = item
        else:
            pending.pop()


def unwrap(value: Any) -> Any:
    """BentoML wraps the argument under its parameter name: ``{"tx": {...}}``."""
    while isinstance(value, dict) and len(value) == 1:
        (inner,) = value.values()
        if not isinstance(inner, dict):
            break
        value = inner
    return value


def field_path(value: Any, path: str) -> Any:
    """``a.b.0`` into nested dicts and lists; None when any step is missing."""
    for step in path.split("."):
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and _is_index(step) and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def _is_index(step: str) -> bool:
    """ASCII digits int() takes: str.isdigit() also passes "²" and 5,000-digit steps."""
    return step.isascii() and step.isdigit() and len(step) <= _MAX_INDEX_DIGITS


def _is_json(content_type: bytes | None) -> bool:
    return content_type is None or b"json" in content_type.lower()


class ExchangeDecoder:
    """Turns captures holding an :class:`Exchange` into ordinary captures: the
    :class:`~predlog._exchange.BodyDecoder` each middleware gives its exchanges."""

    def __init__(
        self,
        *,
        features_field: str | None = None,
        score_field: str | None = None,
        decision_field: str | None = None,
        request_extractor: RequestExtractor | None = None,
        response_extractor: ResponseExtractor | None = None,
    ) -> None:
        self._features_field = features_field
        self._score_field = score_field
        self._decision_field = decision_field
        self._request_extractor = request_extractor
        self._response_extractor = response_extractor

    @property
    def native_options(self) -> tuple[str | None, str | None, str | None] | None:
        """What the native decoder needs to decode this middleware's exchanges as
        :meth:`resolve` does (features, score and decision paths), or None when it
        cannot: a user extractor is Python code, and so is anything a subclass overrides.
        An empty path is no path, as here."""
        if self._request_extractor is not None or self._response_extractor is not None:
            return None
        if type(self) is not ExchangeDecoder:
            return None
        return (
            self._features_field or None,
            self._score_field or None,
            self._decision_field or None,
        )

    def resolve(self, capture: Capture, report: Report) -> Capture:
        """The capture with the exchange decoded into features, score, decision and extra."""
        exchange: Exchange = capture[FEATURES]
        flags: list[str] = list(capture[FLAGS] or ())
        values = list(capture)
        extra = _http_extra(exchange, dict(capture[EXTRA] or {}), flags)
        body_features = self._request_features(exchange, flags, report)
        if "request_body_nonstandard_json" in flags and isinstance(body_features, dict):
            # NaN and Infinity are stored as null: say which features held them.
            non_finite = non_finite_keys(body_features)
            if non_finite:
                flags.append("features_non_finite")
                extra["non_finite_features"] = non_finite
        response = self._response_values(exchange, flags, report)
        values[FEATURES] = body_features
        if "score" in response:
            values[SCORE] = response["score"]
        if "decision" in response:
            values[DECISION] = response["decision"]
        for source in SOURCE_KEYS.values():
            if source in response:
                extra[source] = response[source]
        _apply_recorded(exchange.fields, body_features, values, extra)
        if values[DECISION] is None:
            # No decision recognised in the response, none recorded: said, as score_missing.
            flags.append("decision_missing")
        values[EXTRA] = extra
        values[FLAGS] = tuple(flags)
        # The middleware keeps ids as integers; formatting them is flusher work.
        if isinstance(values[TRACE_ID], int):
            values[TRACE_ID] = f"{values[TRACE_ID]:032x}"
        if isinstance(values[SPAN_ID], int):
            values[SPAN_ID] = f"{values[SPAN_ID]:016x}"
        return tuple(values)

    def _extract(
        self,
        extractor: Callable[[bytes], Mapping[str, Any]],
        body: bytes,
        flags: list[str],
        side: str,
        report: Report,
    ) -> dict[str, Any] | None:
        """Run a user extractor; a failure flags the record instead of losing it."""
        try:
            return dict(extractor(body))
        except Exception as exc:  # noqa: BLE001  # a user extractor never loses the record
            flags.append("extractor_failed")
            report("extractor_failed", f"{side} extractor raised {exc!r}", exc)
            return None

    def _request_features(self, exchange: Exchange, flags: list[str], report: Report) -> Any:
        if exchange.request_size > sum(len(c) for c in exchange.request_chunks):
            flags.append("request_body_truncated")
            return None
        body = b"".join(exchange.request_chunks)
        if not body:
            flags.append("request_body_empty")
            return None
        if self._request_extractor is not None:
            return self._extract(self._request_extractor, body, flags, "request", report)
        if not _is_json(exchange.request_content_type):
            flags.append("request_body_not_json")
            return None
        try:
            parsed, lenient = loads(body)
        except ValueError:
            flags.append("request_body_invalid_json")
            return None
        if lenient:
            flags.append("request_body_nonstandard_json")
        if self._features_field:
            parsed = field_path(parsed, self._features_field)
        else:
            parsed = unwrap(parsed)
        if not isinstance(parsed, dict):
            flags.append("request_body_not_object")
            return None
        return flatten(parsed)

    def _response_values(
        self, exchange: Exchange, flags: list[str], report: Report
    ) -> dict[str, Any]:
        if exchange.streamed and exchange.response_parts > 1:
            flags.append("response_streamed")
            return {}
        if exchange.response_size > sum(len(c) for c in exchange.response_chunks):
            flags.append("response_body_truncated")
            return {}
        body = b"".join(exchange.response_chunks)
        if not body:
            return {}
        if self._response_extractor is not None:
            return self._extract(self._response_extractor, body, flags, "response", report) or {}
        if not _is_json(exchange.response_content_type):
            flags.append("response_not_json")
            return {}
        try:
            parsed, lenient = loads(body)
        except ValueError:
            flags.append("response_invalid_json")
            return {}
        if lenient:
            flags.append("response_nonstandard_json")
        return self._score_and_decision(parsed)

    def _score_and_decision(self, parsed: Any) -> dict[str, Any]:
        """The configured paths first, then the names services use; each value found
        comes with the path it was read from."""
        out: dict[str, Any] = {}
        if _is_number(parsed):
            _found(out, "score", parsed, BODY_PATH)
            return out
        if self._score_field:
            _found(out, "score", field_path(parsed, self._score_field), self._score_field)
        if self._decision_field:
            _found(out, "decision", field_path(parsed, self._decision_field), self._decision_field)
        if "score" not in out or "decision" not in out:
            _by_name(parsed, out)
        return out


def _by_name(parsed: Any, out: dict[str, Any]) -> None:
    """The score and decision not found yet, by the names services give them, in the
    response unwrapped. The README's table states this rule for users."""
    value, prefix = _unwrap_response(parsed)
    if type(value) is dict:  # parsed JSON: plain dicts and lists, exact checks are cheapest
        if "score" not in out and (first := _first(value, SCORE_KEYS, prefix)) is not None:
            key, score, path = first
            if key == CLASSES_KEY:
                score, path = _of_classes(score, path)
            _found(out, "score", score, path)
        if "decision" not in out and (first := _first(value, DECISION_KEYS, prefix)) is not None:
            _found(out, "decision", first[1], first[2])
        if EITHER_KEY not in value:
            return
        value, path = _single(value[EITHER_KEY], prefix + EITHER_KEY)
    else:
        path = prefix[:-1] or BODY_PATH
    # `prediction`, or a response that is one bare value: its type says which it is.
    if _is_number(value):
        if "score" not in out:
            _found(out, "score", value, path)
    elif isinstance(value, (str, bool)) and "decision" not in out:
        _found(out, "decision", value, path)


def _first(
    value: dict[str, Any], keys: tuple[str, ...], prefix: str
) -> tuple[str, Any, str] | None:
    """The first of ``keys`` present: the key, its value and the value's path."""
    for key in keys:
        if key in value:
            return key, *_single(value[key], prefix + key)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _found(out: dict[str, Any], role: str, value: Any, path: str) -> None:
    """``value`` as the score or decision, and where it was read unless it is null. A
    bool decision is text as JSON spells it (``true``), as ``bentoml.monitor``'s is."""
    if isinstance(value, bool) and role == "decision":
        value = "true" if value else "false"
    out[role] = value
    if value is not None:
        out[SOURCE_KEYS[role]] = path


def _unwrap_response(value: Any) -> tuple[Any, str]:
    """A list of one item is that item; an object with one key holding an object is
    that object (BentoML's wrapping, ``{"result": {...}}``), unless the key is
    :data:`CLASSES_KEY`. With the path prefix it took to get there."""
    prefix = ""
    while True:
        if type(value) is list and len(value) == 1:
            value = value[0]
            prefix += "0."
        elif type(value) is dict and len(value) == 1:
            ((key, inner),) = value.items()
            if type(inner) is not dict or key == CLASSES_KEY:
                break
            value = inner
            prefix += f"{key}."
        else:
            break
    return value, prefix


def _single(value: Any, path: str) -> tuple[Any, str]:
    """A field holding a list of one value (``{"probability": [0.91]}``) holds that value."""
    while type(value) is list and len(value) == 1:
        value = value[0]
        path += ".0"
    return value, path


def _of_classes(value: Any, path: str) -> tuple[Any, str]:
    """One probability per class: the only class's, or the second of two (the order the
    service wrote them in). Anything else is left as it is, an invalid score."""
    if isinstance(value, dict) and 1 <= len(value) <= 2:
        key = next(reversed(value))
        return value[key], f"{path}.{key}"
    if isinstance(value, list) and len(value) == 2:
        return value[1], f"{path}.1"
    return value, path


def _http_extra(exchange: Exchange, extra: dict[str, Any], flags: list[str]) -> dict[str, Any]:
    """What the exchange says about itself: method, path, status, and flags for trouble."""
    extra["http_method"] = exchange.method
    extra["http_path"] = exchange.path
    extra["http_status"] = exchange.status
    if exchange.invalid_request_id is not None:
        flags.append("request_id_invalid")
        extra["invalid_request_id"] = exchange.invalid_request_id[:256]
    if exchange.request_id_repeated:
        flags.append("request_id_repeated")
    if exchange.handler_failed:
        flags.append("handler_exception")
    if exchange.status >= 400:
        flags.append(f"http_status_{exchange.status}")
    return extra


def _apply_recorded(
    recorded: Mapping[str, Any], body_features: Any, values: list[Any], extra: dict[str, Any]
) -> None:
    """What the handler recorded wins over what the bodies say; the rest goes to extra."""
    for name, value in recorded.items():
        if name == "features":
            if isinstance(value, Mapping) and isinstance(body_features, dict):
                values[FEATURES] = {**body_features, **value}
            else:
                values[FEATURES] = value
            continue
        position = RECORD_POSITIONS.get(name)
        if position is not None:
            values[position] = value
            if name in SOURCE_KEYS:
                extra.pop(SOURCE_KEYS[name], None)  # the handler's, not the response's
        else:
            extra[name] = value
