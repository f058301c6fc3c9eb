"""predlog: record what every prediction was based on, without slowing it down.

Quick start::

    import predlog

    log = predlog.PredictionLogger(model_name="fraud", model_version="v2.1.0")
    log.log(request_id="req-1", features={"amount": 120.0}, score=0.87,
            decision="declined", threshold=0.5)
    log.stats()
    log.close()
"""

from __future__ import annotations

from predlog._context import record
from predlog._logger import PredictionLogger
from predlog._record import (
    SCHEMA_VERSION,
    PredictionRecord,
    arrow_schema,
    confidence_band,
)
from predlog._settings import MiddlewareSettings, Settings
from predlog.errors import ConfigError, PredlogError, SinkError
from predlog.flush._decode import Extractor, json_extractor
from predlog.flush._sampling import sampling_hash
from predlog.middleware import PredictionLogMiddleware, instrument
from predlog.sinks import KafkaSink, OperationalLogSink, ParquetSink, Sink, configure_logging

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "ConfigError",
    "Extractor",
    "KafkaSink",
    "MiddlewareSettings",
    "OperationalLogSink",
    "ParquetSink",
    "PredictionLogMiddleware",
    "PredictionLogger",
    "PredictionRecord",
    "PredlogError",
    "Settings",
    "Sink",
    "SinkError",
    "__version__",
    "arrow_schema",
    "confidence_band",
    "configure_logging",
    "instrument",
    "json_extractor",
    "record",
    "sampling_hash",
]
