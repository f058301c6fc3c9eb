"""The service ``predlog bench`` measures: its kind, whether it has predlog's line, and
what predlog will then be asked to record.

Everything here runs in a child of the bench, with the predlog variant's environment:
``python -m predlog.tools.bench._target SERVICE [PATH]`` imports the service as its server
will and prints what it found as one JSON line, and ``predlog.tools.bench._bootstrap`` (what
the bench serves when the service has no line) adds the line in the served process.
Whether the service has the line is read from the imported objects (a BentoML
service's middlewares, a Starlette app's ``user_middleware``, an ASGI app wrapped in
:class:`~predlog.PredictionLogMiddleware`), never from its source. Nothing here edits
the user's files.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Mapping
from typing import Any

from predlog._settings import (
    MiddlewareSettings,
    Settings,
    resolve,
    resolve_middleware,
    setting_names,
)
from predlog.flush import sampling_hash
from predlog.middleware import PredictionLogMiddleware, instrument

#: The bench's POSTs; a line whose ``methods`` leave POST out is asked to record none.
METHOD = "POST"
#: Wrappers followed through ``.app`` when looking for the middleware around an ASGI app.
_MAX_DEPTH = 32


def load(service: str) -> Any:
    """The object ``module:attribute`` names (the attribute may be dotted)."""
    module, _, name = service.partition(":")
    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


def _is_line(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, PredictionLogMiddleware)


def find_line(target: Any) -> dict[str, Any] | PredictionLogMiddleware | None:
    """predlog's line on ``target``: the options it was added with, the middleware
    itself for an app wrapped by hand, or None when the target has no line."""
    for cls, options in getattr(target, "middlewares", None) or ():  # BentoML
        if _is_line(cls):
            return dict(options)
    for entry in getattr(target, "user_middleware", None) or ():  # Starlette, FastAPI
        if _is_line(getattr(entry, "cls", None)):
            return dict(entry.kwargs)
    app = target
    for _ in range(_MAX_DEPTH):  # PredictionLogMiddleware(app), perhaps under others
        if isinstance(app, PredictionLogMiddleware):
            return app
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


def add_line(target: Any, options: Mapping[str, Any]) -> Any:
    """``target`` with predlog's line: ``instrument`` where it applies (BentoML,
    Starlette), else the app wrapped in the middleware. A target that already has
    the line is returned as it is: never two lines."""
    if find_line(target) is not None:
        return target
    if _instrumentable(target):
        instrument(target, **options)
        return target
    PredictionLogMiddleware.check(**options)
    return PredictionLogMiddleware(target, **options)


def _instrumentable(target: Any) -> bool:
    return any(
        callable(getattr(target, m, None)) for m in ("add_asgi_middleware", "add_middleware")
    )


def line_text(service: str, target: Any, options: Mapping[str, Any]) -> str:
    """The line the bench adds, as the user would write it."""
    name = service.partition(":")[2]
    args = "".join(f", {k}={v!r}" for k, v in options.items())
    if _instrumentable(target):
        return f"predlog.instrument({name}{args})"
    return f"PredictionLogMiddleware({name}{args})"


def _settings(line: dict[str, Any] | PredictionLogMiddleware) -> tuple[MiddlewareSettings, Any]:
    """The line's middleware settings, and its logger's (or the reason records are not
    in a Parquet data directory)."""
    if isinstance(line, PredictionLogMiddleware):
        logger = line.logger
        return line.settings, logger.settings if logger is not None else "predlog is disabled"
    own = setting_names(MiddlewareSettings)
    middleware = resolve_middleware({k: v for k, v in line.items() if k in own})
    if line.get("logger") is not None:
        return middleware, line["logger"].settings
    if line.get("sinks") is not None:
        return middleware, "the line passes its own sinks"
    logger_names = setting_names(Settings)
    return middleware, resolve({k: v for k, v in line.items() if k in logger_names})


def expectation(line: dict[str, Any] | PredictionLogMiddleware, path: str) -> dict[str, Any]:
    """What predlog is asked to record of the bench's requests, and where to find it.

    ``logged``: whether POST ``path`` is on the line's paths and methods; ``header``:
    the request id header the records take their id from; ``sample_rate``: below 1, a
    request whose id falls outside the base rate may be left out (see ``must_keep``);
    ``parquet``: the local directory of the records, or None and ``elsewhere`` saying
    why the bench cannot count them.
    """
    middleware, logger = _settings(line)
    logged = (
        METHOD in middleware.methods
        and not path.startswith(tuple(middleware.exclude_paths))
        and (not middleware.paths or path.startswith(tuple(middleware.paths)))
    )
    found: dict[str, Any] = {
        "logged": logged,
        "header": middleware.request_id_header,
        "sample_rate": 1.0,
        "parquet": None,
        "elsewhere": None,
    }
    if isinstance(logger, str):
        found["elsewhere"] = logger
        return found
    found["sample_rate"] = logger.sample_rate
    if logger.iceberg_table:
        found["elsewhere"] = f"records go to the Iceberg table {logger.iceberg_table}"
    elif logger.kafka_bootstrap:
        found["elsewhere"] = f"records go to Kafka ({logger.kafka_topic})"
    elif not logger.data_is_local:
        found["elsewhere"] = f"records go to {logger.data_dir}"
    else:
        found["parquet"] = str(logger.data_path)
    return found


def must_keep(request_id: str, sample_rate: float) -> bool:
    """Whether predlog must record this request id whatever else it samples: its
    base-rate rule keeps exactly these (the other rules only keep more)."""
    return sampling_hash(request_id) < int(sample_rate * 2**64)


def describe(service: str, path: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """What the bench needs to know, found by importing ``service`` here."""
    target = load(service)
    route = None
    if hasattr(target, "add_asgi_middleware"):
        route = next((api.route for api in getattr(target, "apis", {}).values()), None)
    line = find_line(target)
    found: dict[str, Any] = {
        "kind": "bentoml" if hasattr(target, "add_asgi_middleware") else "asgi",
        "route": route,
        "added": None,
    }
    if line is None:
        found["added"] = line_text(service, target, options)
        line = dict(options)
    found["expect"] = expectation(line, path or route or "/predict")
    return found


def main() -> None:
    """``python -m predlog.tools.bench._target SERVICE PATH OPTIONS_JSON``: one JSON line."""
    service, path, options = sys.argv[1], sys.argv[2] or None, json.loads(sys.argv[3])
    print(json.dumps(describe(service, path, options)))


if __name__ == "__main__":
    main()
