"""A FastAPI decision app without predlog's line, for ``predlog bench`` before adopting.

Unlike the fraud example: ``POST /v1/decide`` with ``{"applicant": {...}}``, answering
``{"probability": ..., "label": ...}``; and, as ``lined``, the same app with the line.
"""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI

import predlog


def _make() -> FastAPI:
    app = FastAPI(title="decide")

    @app.post("/v1/decide")
    def decide(applicant: dict[str, Any] = Body(embed=True)) -> dict[str, Any]:  # noqa: B008
        probability = min(1.0, float(applicant.get("debt", 0)) / 100_000)
        return {"probability": probability, "label": "refer" if probability > 0.5 else "approve"}

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


app = _make()
lined = _make()
predlog.instrument(lined, model_name="decide-lined")
