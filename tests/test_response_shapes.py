"""Score and decision from responses shaped as users' services shape them, end to end.

Each shape is a response predlog's own examples never send. A Starlette service
answers it behind ``PredictionLogMiddleware``, and the record is read from the sink,
once through the native decoder and once through the Python one: the score, the
decision, the path each was read from (``score_field``/``decision_field`` in the
record's ``extra``) and the flags must be what the README's table says.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import predlog
from predlog import PredictionLogMiddleware
from predlog.flush import _native
from predlog.testing import MemorySink


@dataclass(frozen=True)
class Shape:
    name: str
    body: Any
    score: float | None
    decision: str | None
    score_path: str | None
    decision_path: str | None
    flags: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    #: What the handler records with predlog.record().
    recorded: dict[str, Any] = field(default_factory=dict)
    #: Whether the native decoder hands the record to Python (a score that is an object).
    declined: bool = False


SHAPES = [
    Shape("probability_label", {"probability": 0.82, "label": "decline"}, 0.82, "decline",
          "probability", "label"),
    Shape("proba_class", {"proba": 0.91, "class": "fraud"}, 0.91, "fraud", "proba", "class"),
    Shape("prediction_text_beside_score", {"prediction": "approve", "score": 0.12}, 0.12,
          "approve", "score", "prediction"),
    Shape("prediction_number", {"prediction": 0.3}, 0.3, None, "prediction", None,
          ("decision_missing",)),
    Shape("outcome_probability", {"outcome": "refer", "probability": 0.55}, 0.55, "refer",
          "probability", "outcome"),
    Shape("bare_list", [0.7], 0.7, None, "0", None, ("decision_missing",)),
    Shape("bare_text", "approve", None, "approve", None, "$", ("score_missing",)),
    Shape("probabilities_of_two_named_classes",
          {"probabilities": {"legit": 0.2, "fraud": 0.8}, "label": "fraud"}, 0.8, "fraud",
          "probabilities.fraud", "label"),
    Shape("probabilities_as_a_list", {"probabilities": [0.35, 0.65]}, 0.65, None,
          "probabilities.1", None, ("decision_missing",)),
    Shape("probabilities_of_one_class", {"probabilities": {"fraud": 0.7}, "decision": "hold"},
          0.7, "hold", "probabilities.fraud", "decision"),
    Shape("probabilities_of_three_classes",
          {"probabilities": {"approve": 0.2, "refer": 0.3, "decline": 0.5}, "label": "decline"},
          None, "decline", "probabilities", "label", ("score_invalid",), declined=True),
    Shape("bentoml_wrapped", {"result": {"probability": 0.4, "label": "approve"}}, 0.4,
          "approve", "result.probability", "result.label"),
    Shape("list_of_one_object", [{"score": 0.99, "label": "POSITIVE"}], 0.99, "POSITIVE",
          "0.score", "0.label"),
    Shape("nested_lists_of_one", {"data": {"model": {"probability": [0.66], "class": ["refer"]}}},
          0.66, "refer", "data.model.probability.0", "data.model.class.0"),
    Shape("prediction_bool", {"prediction": True, "score": 0.93}, 0.93, "true", "score",
          "prediction"),
    Shape("decision_bool", {"decision": False, "probability": 0.1}, 0.1, "false",
          "probability", "decision"),
    Shape("nulls", {"score": None, "label": None}, None, None, None, None,
          ("score_missing", "decision_missing")),
    Shape("no_decision", {"probability": 0.42, "risk_band": "B"}, 0.42, None, "probability",
          None, ("decision_missing",)),
    Shape("class_number_beside_probability", {"prediction": 1, "probability": 0.8}, 0.8, None,
          "probability", None, ("decision_missing",)),
    Shape("precedence", {"label": "x", "probability": 0.9, "decision": "approve", "score": 0.2},
          0.2, "approve", "score", "decision"),
    Shape("configured_paths", {"risk": {"value": 0.77}, "verdict": "hold", "score": 0.1,
                               "label": "x"}, 0.77, "hold", "risk.value", "verdict",
          options={"score_field": "risk.value", "decision_field": "verdict"}),
    Shape("configured_path_holding_nothing", {"score": 0.5, "label": "ok"}, None, "ok", None,
          "label", ("score_missing",), options={"score_field": "risk.value"}),
    Shape("recorded_by_the_handler", {"probability": 0.6}, 0.6, "refer", "probability", None,
          recorded={"decision": "refer"}),
]  # fmt: skip


def serve(shapes: list[Shape], options: dict[str, str], *, native: bool) -> dict[str, dict]:
    """Each shape answered by a Starlette service behind the middleware; its record by name."""
    by_name = {s.name: s for s in shapes}

    async def decide(request: Request) -> Response:
        await request.json()  # read, as a service reads its input
        shape = by_name[request.headers["x-request-id"]]
        if shape.recorded:
            predlog.record(**shape.recorded)
        return Response(json.dumps(shape.body), media_type="application/json")

    sink = MemorySink()
    logger = predlog.PredictionLogger(
        model_name="credit", sinks=[sink], install_signal_handlers=False, native_decode=native
    )
    app = Starlette(routes=[Route("/v1/decide", decide, methods=["POST"])])
    app.add_middleware(PredictionLogMiddleware, logger=logger, **options)

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            for shape in shapes:
                request = {"applicant": {"income": 52_000, "age": 41}}
                headers = {"X-Request-ID": shape.name}
                response = await client.post("/v1/decide", json=request, headers=headers)
                assert response.status_code == 200

    asyncio.run(go())
    logger.close()
    return {r["request_id"]: r for r in sink.records}


def _groups() -> list[dict[str, str]]:
    groups: list[dict[str, str]] = []
    for shape in SHAPES:
        if shape.options not in groups:
            groups.append(shape.options)
    return groups


@pytest.fixture(scope="module", params=[True, False], ids=["native", "python"])
def records(request: pytest.FixtureRequest) -> dict[str, dict]:
    """Every shape's record, from the decoder named by the parameter. On the native one,
    the extension must have taken each record it is meant to, or this would compare
    Python with itself."""
    native = request.param
    if not native:
        return {
            name: record
            for options in _groups()
            for name, record in serve(
                [s for s in SHAPES if s.options == options], options, native=False
            ).items()
        }
    assert _native.AVAILABLE, "predlog._rust is not built (pip install -e . needs cargo)"
    declined: list[str] = []
    resolve = _native.resolve

    def counting(captures, max_bytes, *, extra_maps):
        result = resolve(captures, max_bytes, extra_maps=extra_maps)
        for capture, resolved in zip(captures, result, strict=True):
            if resolved is None:
                declined.append(capture[1])  # the request id
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_native, "resolve", counting)
        out = {}
        for options in _groups():
            group = [s for s in SHAPES if s.options == options]
            out.update(serve(group, options, native=True))
    assert sorted(declined) == sorted(s.name for s in SHAPES if s.declined)
    return out


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_score_decision_and_their_paths(records: dict[str, dict], shape: Shape) -> None:
    """The score and decision are read where the rule says, and the record names the path."""
    record = records[shape.name]
    assert record["raw_score"] == shape.score
    assert record["decision"] == shape.decision
    extra = json.loads(record["extra"])
    assert extra.get("score_field") == shape.score_path
    assert extra.get("decision_field") == shape.decision_path


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_flags(records: dict[str, dict], shape: Shape) -> None:
    """A missing or unusable score or decision is flagged, and nothing else is."""
    assert sorted(records[shape.name]["data_quality"]) == sorted(shape.flags)
