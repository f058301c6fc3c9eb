"""The same fraud service as a FastAPI app, with the same one line of predlog.

PREDLOG_PSEUDONYM_KEY=... uvicorn examples.fraud_service.fastapi_app:app
"""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI

import predlog
from examples.fraud_service.scoring import PREDLOG_OPTIONS, Scorer, Transaction

app = FastAPI(title="fraud")
scorer = Scorer()


@app.post("/predict")
def predict(transaction: Transaction = Body(embed=True)) -> dict[str, Any]:  # noqa: B008
    # Embedded, so the body is {"transaction": {...}} exactly as BentoML expects.
    return scorer.score(transaction)


@app.get("/healthz")
def healthz() -> str:
    return "ok"


predlog.instrument(app, **PREDLOG_OPTIONS)
