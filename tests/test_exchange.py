from __future__ import annotations

import json

import orjson
import pytest

from predlog.flush import ExchangeDecoder
from predlog.testing import CAPTURE_FIELDS, Exchange


def capture(**values):
    """A capture tuple with the named values and None everywhere else."""
    unknown = set(values) - set(CAPTURE_FIELDS)
    assert not unknown, unknown
    values.setdefault("timestamp_ns", 1_700_000_000_000_000_000)
    return tuple(values.get(name) for name in CAPTURE_FIELDS)


def field(resolved, name):
    return resolved[CAPTURE_FIELDS.index(name)]


def exchange(
    decoder=None,
    *,
    request=None,
    response=None,
    request_type=b"application/json",
    response_type=b"application/json",
    status=200,
):
    """An exchange as the middleware leaves it: whole bodies, each in one chunk."""
    ex = Exchange("POST", "/predict", decoder or ExchangeDecoder())
    if request is not None:
        body = request if isinstance(request, bytes) else orjson.dumps(request)
        ex.request_chunks.append(body)
        ex.request_size = len(body)
    ex.request_content_type = request_type
    if response is not None:
        body = response if isinstance(response, bytes) else orjson.dumps(response)
        ex.response_chunks.append(body)
        ex.response_size = len(body)
        ex.response_parts = 1
    ex.response_content_type = response_type
    ex.status = status
    return ex


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, BaseException | None]] = []

    def __call__(self, kind: str, message: str, exc: BaseException | None) -> None:
        self.calls.append((kind, message, exc))


def resolve(ex, **values):
    reports = Reports()
    resolved = ex.decoder.resolve(capture(request_id="req-1", features=ex, **values), reports)
    return resolved, reports


def flags_of(resolved):
    return list(field(resolved, "flags"))


class TestExchangeDecoder:
    def test_bentoml_wrapping_is_undone_and_objects_flattened(self):
        """{"tx": {...}} yields the inner object's leaves, nested keys joined by dots."""
        ex = exchange(
            request={"tx": {"amount": 5, "merchant": {"cat": "grocery"}, "tags": [1, 2]}},
            response={"result": {"probability": 0.8, "decision": "declined"}},
        )
        resolved, reports = resolve(ex)
        assert field(resolved, "features") == {
            "amount": 5,
            "merchant.cat": "grocery",
            "tags.0": 1,
            "tags.1": 2,
        }
        assert field(resolved, "score") == 0.8
        assert field(resolved, "decision") == "declined"
        assert flags_of(resolved) == []
        assert reports.calls == []

    def test_http_facts_go_to_extra(self):
        """Method, path and status land in extra beside what the capture already had."""
        resolved, _ = resolve(exchange(request={"a": 1}), extra={"given": True})
        assert field(resolved, "extra") == {
            "given": True,
            "http_method": "POST",
            "http_path": "/predict",
            "http_status": 200,
        }

    def test_configured_field_paths(self):
        """features_field, score_field and decision_field pick values by dotted path."""
        decoder = ExchangeDecoder(
            features_field="inputs.0",
            score_field="output.probs.1",
            decision_field="output.label",
        )
        ex = exchange(
            decoder,
            request={"inputs": [{"amount": 3}], "meta": {"client": "web"}},
            response={"output": {"probs": [0.1, 0.9], "label": "fraud"}, "score": 0.5},
        )
        resolved, _ = resolve(ex)
        assert field(resolved, "features") == {"amount": 3}
        assert field(resolved, "score") == 0.9
        assert field(resolved, "decision") == "fraud"

    def test_missing_field_path_gives_none(self):
        """A configured path that is absent yields no value, not a guess from other keys."""
        decoder = ExchangeDecoder(score_field="output.score")
        resolved, _ = resolve(exchange(decoder, request={"a": 1}, response={"score": 0.7}))
        assert field(resolved, "score") is None

    def test_bare_number_response_is_the_score(self):
        """A response that is just a number is the score."""
        resolved, _ = resolve(exchange(request={"a": 1}, response=b"0.25"))
        assert field(resolved, "score") == 0.25

    @pytest.mark.parametrize(
        ("changes", "flag"),
        [
            ({"request": b"{not json"}, "request_body_invalid_json"),
            ({"request": b"a=1&b=2", "request_type": b"text/plain"}, "request_body_not_json"),
            ({"request": b"[1, 2, 3]"}, "request_body_not_object"),
            ({"request": b""}, "request_body_empty"),
        ],
    )
    def test_unusable_request_body_is_flagged(self, changes, flag):
        """A request body that yields no features flags the record and keeps it."""
        ex = exchange(response={"score": 0.4, "decision": "approve"}, **changes)
        resolved, _ = resolve(ex)
        assert field(resolved, "features") is None
        assert field(resolved, "request_id") == "req-1"
        assert field(resolved, "score") == 0.4
        assert flags_of(resolved) == [flag]

    def test_truncated_request_body_is_flagged(self):
        """A body longer than what was kept (max_body_bytes) is never parsed in part."""
        ex = exchange(request=b'{"a": 1}', response={"score": 0.4, "decision": "approve"})
        ex.request_size = 10_000
        resolved, _ = resolve(ex)
        assert field(resolved, "features") is None
        assert flags_of(resolved) == ["request_body_truncated"]

    @pytest.mark.parametrize(
        ("changes", "flag"),
        [
            ({"response": b"<html>", "response_type": b"text/html"}, "response_not_json"),
            ({"response": b'{"score": 0.'}, "response_invalid_json"),
        ],
    )
    def test_unusable_response_body_is_flagged(self, changes, flag):
        """A response body that yields no score flags the record and keeps its features;
        it yields no decision either."""
        resolved, _ = resolve(exchange(request={"a": 1}, **changes))
        assert field(resolved, "features") == {"a": 1}
        assert field(resolved, "score") is None
        assert flags_of(resolved) == [flag, "decision_missing"]

    def test_truncated_response_is_flagged(self):
        """A response longer than what was kept is not parsed."""
        ex = exchange(request={"a": 1}, response={"score": 0.4})
        ex.response_size = 10_000
        resolved, _ = resolve(ex)
        assert field(resolved, "score") is None
        assert flags_of(resolved) == ["response_body_truncated", "decision_missing"]

    def test_streamed_response_is_flagged(self):
        """An unsized response in several parts is a stream: flagged, not parsed."""
        ex = exchange(request={"a": 1})
        for part in (b'{"score": ', b"0.4}"):
            ex.response_chunks.append(part)
            ex.response_size += len(part)
            ex.response_parts += 1
        ex.streamed = True
        resolved, _ = resolve(ex)
        assert field(resolved, "score") is None
        assert flags_of(resolved) == ["response_streamed", "decision_missing"]

    def test_sized_response_in_parts_is_parsed_whole(self):
        """A sized body that arrives in pieces is joined and parsed."""
        ex = exchange(request={"a": 1})
        for part in (b'{"score": ', b'0.4, "label": "ok"}', b""):
            ex.response_chunks.append(part)
            ex.response_size += len(part)
            ex.response_parts += 1
        resolved, _ = resolve(ex)
        assert field(resolved, "score") == 0.4
        assert flags_of(resolved) == []

    @pytest.mark.parametrize("side", ["request", "response"])
    def test_raising_extractor_is_flagged_and_reported(self, side):
        """A user extractor that raises flags extractor_failed and reports the exception."""
        error = RuntimeError("extractor bug")

        def broken(body: bytes):
            raise error

        decoder = ExchangeDecoder(**{f"{side}_extractor": broken})
        ex = exchange(decoder, request={"a": 1}, response={"score": 0.4})
        resolved, reports = resolve(ex)
        assert "extractor_failed" in flags_of(resolved)
        assert field(resolved, "request_id") == "req-1"
        ((kind, message, exc),) = reports.calls
        assert kind == "extractor_failed"
        assert side in message
        assert exc is error

    def test_user_extractors_replace_json_parsing(self):
        """Request and response extractors decide features and score for non-JSON bodies."""
        decoder = ExchangeDecoder(
            request_extractor=lambda body: dict(p.split("=") for p in body.decode().split("&")),
            response_extractor=lambda body: {"score": float(body), "decision": "review"},
        )
        ex = exchange(
            decoder,
            request=b"amount=3&merchant=x",
            response=b"0.61",
            request_type=b"text/plain",
            response_type=b"text/plain",
        )
        resolved, _ = resolve(ex)
        assert field(resolved, "features") == {"amount": "3", "merchant": "x"}
        assert (field(resolved, "score"), field(resolved, "decision")) == (0.61, "review")
        assert flags_of(resolved) == []

    def test_recorded_fields_win_over_bodies(self):
        """predlog.record() values beat the bodies; recorded features extend body features."""
        ex = exchange(
            request={"amount": 5, "merchant": "a"},
            response={"score": 0.9, "decision": "declined"},
        )
        ex.fields = {
            "score": 0.1,
            "decision": "approved",
            "features": {"merchant": "b", "risk": 2},
            "inference_ms": 1.5,
            "feature_cache_hit": True,
        }
        resolved, _ = resolve(ex)
        assert field(resolved, "score") == 0.1
        assert field(resolved, "decision") == "approved"
        assert field(resolved, "features") == {"amount": 5, "merchant": "b", "risk": 2}
        assert field(resolved, "inference_ms") == 1.5
        assert field(resolved, "extra")["feature_cache_hit"] is True

    def test_recorded_non_mapping_features_replace_body_features(self):
        """Recorded features that are not a mapping replace the body's outright."""
        ex = exchange(request={"amount": 5})
        ex.fields = {"features": [1.0, 2.0]}
        resolved, _ = resolve(ex)
        assert field(resolved, "features") == [1.0, 2.0]

    def test_failure_facts_are_flagged(self):
        """An error status, a handler exception and a bad request id each flag the record."""
        ex = exchange(request={"a": 1}, status=500)
        ex.handler_failed = True
        ex.invalid_request_id = "\x00" * 1000
        resolved, _ = resolve(ex)
        assert flags_of(resolved) == [
            "request_id_invalid",
            "handler_exception",
            "http_status_500",
            "decision_missing",
        ]
        assert field(resolved, "extra")["invalid_request_id"] == "\x00" * 256

    def test_given_flags_are_kept(self):
        """Flags the capture arrived with stay, ahead of the decoder's own."""
        resolved, _ = resolve(exchange(request=b"{", response={"label": "ok"}), flags=("earlier",))
        assert flags_of(resolved) == ["earlier", "request_body_invalid_json"]

    def test_integer_trace_ids_become_hex(self):
        """Trace and span ids kept as integers are formatted as W3C hex."""
        resolved, _ = resolve(exchange(request={"a": 1}), trace_id=255, span_id=16)
        assert field(resolved, "trace_id") == "0" * 30 + "ff"
        assert field(resolved, "span_id") == "0" * 14 + "10"

    def test_resolved_capture_has_the_capture_layout(self):
        """The result is an ordinary capture: same length, JSON-ready features."""
        resolved, _ = resolve(exchange(request={"a": 1}, response={"score": 0.4}))
        assert len(resolved) == len(CAPTURE_FIELDS)
        assert json.loads(orjson.dumps(field(resolved, "features"))) == {"a": 1}
