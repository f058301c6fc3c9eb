"""What ``predlog bench`` serves when the service has no predlog line.

``bentoml serve predlog.tools.bench._bootstrap:target`` (or ``uvicorn``, same path) imports
the user's service named in ``PREDLOG_BENCH_TARGET``, adds predlog's one line with the
options in ``PREDLOG_BENCH_OPTIONS`` (JSON), and serves the result; the user's files
are never touched. The attribute is made on first access (PEP 562), in each process
that imports it: BentoML's workers import the service by this same path.
"""

from __future__ import annotations

import json
import os
from typing import Any

from predlog.tools.bench._target import add_line, load

TARGET_VAR = "PREDLOG_BENCH_TARGET"
OPTIONS_VAR = "PREDLOG_BENCH_OPTIONS"
SERVED = "predlog.tools.bench._bootstrap:target"


def __getattr__(name: str) -> Any:
    if name != "target":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    served = add_line(load(os.environ[TARGET_VAR]), json.loads(os.environ[OPTIONS_VAR]))
    globals()["target"] = served
    return served
