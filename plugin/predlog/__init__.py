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

from predlog._config import MiddlewareSettings, Settings
from predlog._context import record
from predlog._decode import Extractor, json_extractor
from predlog._kafka import KafkaSink
from predlog._logger import PredictionLogger
from predlog._oplog import OperationalLogSink, configure_logging
from predlog._parquet import ParquetSink
from predlog._record import (
    SCHEMA_VERSION,
    PredictionRecord,
    arrow_schema,
    confidence_band,
)
from predlog._ring import RingBuffer
from predlog._sampling import Sampler, sampling_hash
from predlog._sink import Sink
from predlog.errors import ConfigError, PredlogError, SinkError
from predlog.middleware import PredictionLogMiddleware

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
    "RingBuffer",
    "Sampler",
    "Settings",
    "Sink",
    "SinkError",
    "__version__",
    "arrow_schema",
    "confidence_band",
    "configure_logging",
    "json_extractor",
    "record",
    "sampling_hash",
]
