"""A near-zero-work FastAPI app, for bench_fastapi.py: the bare variant.

It never imports predlog, so the bare server pays nothing of predlog's, not even an
import. The handler takes the JSON body and answers a fixed score: what is left per
request is uvicorn's and FastAPI's own work, where predlog's share shows most.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/predict")
async def predict(transaction: dict[str, Any]) -> dict[str, Any]:
    return {"score": 0.42, "decision": "approved"}


if os.environ.get("BENCH_GC_CLOCK"):
    # Defined after /predict, so that route is still the router's first match.
    from benchmarks.servers.gc_clock import install

    install(app)
