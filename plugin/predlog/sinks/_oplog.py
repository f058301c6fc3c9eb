"""Operational logs: structlog JSON lines for on-call engineers (and Loki).

Logging configuration belongs to the application. predlog changes none of it unless
asked: its own errors are plain :mod:`logging` records on the ``predlog`` logger
(see :mod:`predlog._report`), which propagate to whatever handlers the application
set up, and the prediction lines below go through the application's structlog
configuration if it has one.

:func:`configure_logging` is the asking: it sets structlog up the fast way its
performance guide recommends (orjson rendering straight to bytes, cached loggers, a
filtering bound logger), adds the keys every line must carry (timestamp, level,
logger, request_id, model_version, trace_id, span_id), and also writes predlog's own
errors as JSON lines. Inside a request the middleware has bound request_id and
model_version into structlog's contextvars, and the current span gives trace_id and
span_id, so your own log lines in a handler carry them too.

:class:`OperationalLogSink` writes ``prediction_complete`` per record, plus
warnings for scores near the threshold and stale features. It is a sink, so it
runs on the flusher thread, after pseudonymisation, and logs only the summary
features, never the full vector and never a PII field.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import orjson
import structlog
from opentelemetry import trace

if TYPE_CHECKING:
    import pyarrow as pa

_LEVELS: Final = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_REQUIRED: Final = ("request_id", "model_version", "trace_id", "span_id")


def add_trace_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: trace_id and span_id of the current span, if any."""
    if "trace_id" not in event:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event["trace_id"] = f"{ctx.trace_id:032x}"
            event["span_id"] = f"{ctx.span_id:016x}"
    return event


def _required_keys(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Every line has every key, so LogQL filters never have to test for absence.
    event.setdefault("logger", "app")
    for key in _REQUIRED:
        event.setdefault(key, None)
    return event


class _Bridge(logging.Handler):
    """Sends predlog's own stdlib log records (rate-limited errors) out as JSON lines,
    with the exception's traceback."""

    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger().bind(logger=record.name)
        fields: dict[str, Any] = {"error_kind": getattr(record, "predlog_error_kind", None)}
        if record.exc_info and record.exc_info[1] is not None:
            fields["exc_info"] = record.exc_info  # rendered by format_exc_info
        log.log(record.levelno, record.getMessage(), **fields)


def _processors(render: Callable[..., Any]) -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_trace_context,
        _required_keys,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(serializer=render),
    ]


def configure_logging(level: str = "info", *, stream: BinaryIO | None = None) -> None:
    """Configure structlog for JSON lines on stdout (or ``stream``) at ``level``.

    Process-wide, so predlog never calls it by itself. predlog's own errors then also
    come out as JSON lines; they still propagate to the application's handlers too.
    """
    if level.lower() not in _LEVELS:
        raise ValueError(f"level: must be one of {', '.join(_LEVELS)}, got {level!r}")
    out = stream if stream is not None else sys.stdout.buffer
    structlog.configure(
        processors=_processors(orjson.dumps),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level.lower()]),
        logger_factory=structlog.BytesLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    stdlib = logging.getLogger("predlog")
    if not any(isinstance(h, _Bridge) for h in stdlib.handlers):
        stdlib.addHandler(_Bridge())


def _to_text(event: Any, **options: Any) -> str:
    return orjson.dumps(event, **options).decode()


def _prediction_logger() -> Any:
    """The application's structlog configuration if it has one; otherwise a logger of
    predlog's own with configure_logging()'s JSON lines on stdout, made without touching
    structlog's global configuration."""
    if structlog.is_configured():
        return structlog.get_logger().bind(logger="predlog.predictions")
    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stdout),  # looked up now: stdout may have been replaced
        processors=_processors(_to_text),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    ).bind(logger="predlog.predictions")


class OperationalLogSink:
    """A sink that turns each record into operational log lines."""

    def __init__(
        self,
        *,
        stale_after_s: float = 3600.0,
        is_pii: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self._stale_after_s = stale_after_s
        self._is_pii = is_pii

    def export(self, batch: pa.RecordBatch) -> None:
        col = {name: batch.column(name).to_pylist() for name in _COLUMNS}
        # Per batch, not once: the application may configure structlog after the sink
        # is made.
        log = _prediction_logger()
        for i in range(batch.num_rows):
            common = {
                "request_id": col["request_id"][i],
                "model_name": col["model_name"][i],
                "model_version": col["model_version"][i],
                "trace_id": col["trace_id"][i],
                "span_id": col["span_id"][i],
            }
            score = col["raw_score"][i]
            extra = col["extra"][i]
            cache_hit = None
            if extra and "feature_cache_hit" in extra:
                cache_hit = orjson.loads(extra).get("feature_cache_hit")
            summary = col["features_summary"][i]
            features = None
            if summary:
                features = {
                    k: v for k, v in orjson.loads(summary).items() if not self._is_pii(str(k))
                }
            log.info(
                "prediction_complete",
                **common,
                score=score,
                decision=col["decision"][i],
                threshold=col["decision_threshold"][i],
                confidence=col["model_confidence"][i],
                total_ms=col["total_ms"][i],
                inference_ms=col["inference_ms"][i],
                feature_fetch_ms=col["feature_fetch_ms"][i],
                cache_hit=cache_hit,
                features=features,
                data_quality=col["data_quality"][i] or None,
            )
            if col["model_confidence"][i] == "low":
                log.warning(
                    "prediction_near_threshold",
                    **common,
                    score=score,
                    threshold=col["decision_threshold"][i],
                )
            age = col["feature_freshness_max_age_seconds"][i]
            if age is not None and age > self._stale_after_s:
                log.warning(
                    "stale_features",
                    **common,
                    max_age_seconds=age,
                    limit_seconds=self._stale_after_s,
                )

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


_COLUMNS: Final = (
    "request_id",
    "model_name",
    "model_version",
    "trace_id",
    "span_id",
    "raw_score",
    "decision",
    "decision_threshold",
    "model_confidence",
    "total_ms",
    "inference_ms",
    "feature_fetch_ms",
    "features_summary",
    "feature_freshness_max_age_seconds",
    "data_quality",
    "extra",
)
