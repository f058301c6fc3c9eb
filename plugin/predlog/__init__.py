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

from typing import TYPE_CHECKING

from predlog._lazy import attach

if TYPE_CHECKING:
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
    from predlog.sinks import (
        KafkaSink,
        OperationalLogSink,
        ParquetSink,
        Sink,
        configure_logging,
    )

#: Kept here, a constant, so that ``predlog --version`` imports nothing else.
__version__ = "0.1.0"

#: Where each public name lives. Imported on first use (PEP 562), so that ``import
#: predlog`` for the command line or the version does not load pyarrow and the rest.
_HOMES = {
    "record": "predlog._context",
    "PredictionLogger": "predlog._logger",
    "SCHEMA_VERSION": "predlog._record",
    "PredictionRecord": "predlog._record",
    "arrow_schema": "predlog._record",
    "confidence_band": "predlog._record",
    "MiddlewareSettings": "predlog._settings",
    "Settings": "predlog._settings",
    "ConfigError": "predlog.errors",
    "PredlogError": "predlog.errors",
    "SinkError": "predlog.errors",
    "Extractor": "predlog.flush._decode",
    "json_extractor": "predlog.flush._decode",
    "sampling_hash": "predlog.flush._sampling",
    "PredictionLogMiddleware": "predlog.middleware",
    "instrument": "predlog.middleware",
    "KafkaSink": "predlog.sinks",
    "OperationalLogSink": "predlog.sinks",
    "ParquetSink": "predlog.sinks",
    "Sink": "predlog.sinks",
    "configure_logging": "predlog.sinks",
}


#: Public subpackages and modules, reachable as attributes as if imported eagerly
#: (``import predlog; predlog.audit.verify(...)``).
_MODULES = frozenset(
    {"analytics", "audit", "bench", "bentoml_monitor", "errors", "metrics", "middleware"}
    | {"sinks", "testing"}
)


__getattr__, __dir__ = attach(__name__, globals(), _HOMES, modules=_MODULES)


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
