"""A Starlette scoring service with predlog, for the disk-full test (run by uvicorn).

Records go to Parquet under ``PREDLOG_DATA_DIR`` (the flush and roll settings come from
``PREDLOG_*`` too). With ``DISK_FULL_AUDIT_DIR`` and ``DISK_FULL_AUDIT_KEY`` (an Ed25519
private key, 64 hex characters) declined decisions are also audited there, under the
``reject`` policy. ``GET /debug/stats`` shows the logger's own counts, which the test
checks against what is on disk; ``GET /debug/flush`` asks the logger to flush. Neither
is logged: the middleware logs only POST.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import predlog
from predlog.audit import AuditLog, AuditSink, ReasonTable
from predlog.sinks import ParquetSink

#: Seconds between the audit sink's retries of a failing store.
AUDIT_RETRY_S = 0.2
#: Seconds a Parquet file stays open before it is published.
PARQUET_AGE_S = 0.3


def _audit() -> AuditSink | None:
    """The audit sink, when the test asks for one: reject, so a full store means 503."""
    directory = os.environ.get("DISK_FULL_AUDIT_DIR")
    key = os.environ.get("DISK_FULL_AUDIT_KEY")
    if not directory or not key:
        return None
    return AuditSink(
        AuditLog(Path(directory), signing_key=bytes.fromhex(key), checkpoint_every=0),
        reasons=ReasonTable({"amount": "amount too high"}, features=["amount"]),
        decisions=("declined",),
        failure_policy="reject",
        queue_dir=Path(os.environ["PREDLOG_DATA_DIR"]) / "audit-queue",
        retry_interval_s=AUDIT_RETRY_S,
    )


#: Files roll within a fraction of a second, so the test sees records without a flush.
parquet = ParquetSink(os.environ["PREDLOG_DATA_DIR"], max_file_age_s=PARQUET_AGE_S)
audit = _audit()
logger = predlog.PredictionLogger(
    sinks=[parquet], audit=audit, model_name="diskfull", install_signal_handlers=False
)


async def predict(request: Request) -> JSONResponse:
    body = await request.json()
    score = min(1.0, float(body.get("amount", 0)) / 1000)
    decision = "declined" if score >= 0.5 else "approved"
    return JSONResponse({"score": score, "decision": decision, "echo": body.get("marker")})


def stats(request: Request) -> JSONResponse:
    figures: dict[str, Any] = {
        "stats": logger.stats(),
        "sink_stats": logger.sink_stats(),
        "errors": logger.errors(),
        "parquet": {"lost_rows": parquet.lost_rows, "published": parquet.published_count},
        "audit": audit.stats() if audit is not None else None,
    }
    return JSONResponse(figures)


def flush(request: Request) -> JSONResponse:
    return JSONResponse({"flushed": logger.flush(10.0)})


app = Starlette(
    routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/debug/stats", stats, methods=["GET"]),
        Route("/debug/flush", flush, methods=["GET"]),
    ]
)
app.add_middleware(predlog.PredictionLogMiddleware, logger=logger)
