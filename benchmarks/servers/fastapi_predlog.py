"""The app of fastapi_bare.py with predlog's one line, for bench_fastapi.py.

``BENCH_PREDLOG_OFF`` (comma-separated) switches off one suspect of predlog's cost
under a real server at a time, so that bench_fastapi.py can measure what each costs
against bare in the same run. Each is replaced in this process only, for measuring:

* ``tracing``: the OpenTelemetry context and baggage work of the request path
  (``predlog._tracing``'s enter, leave, ids and annotate become no-ops);
* ``gc``: the cyclic garbage collector (``gc.disable()``; the bare app makes no
  collection at all under this load, as bench_fastapi.py --gc shows);
* ``flusher``: the flusher thread is never started (records stay in the ring, and
  are dropped once it is full: nothing is written);
* ``handoffs``: forced GIL hand-offs between the event loop and the flusher, made ten
  times rarer (``sys.setswitchinterval(0.05)``, against the default 5 ms).
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

from benchmarks.servers.fastapi_bare import app

import predlog

OFF = frozenset(filter(None, os.environ.get("BENCH_PREDLOG_OFF", "").split(",")))

if "tracing" in OFF:
    from opentelemetry.trace import INVALID_SPAN

    from predlog import _tracing

    def _enter(*args: Any, **kwargs: Any) -> tuple[object, Any, None]:
        return None, INVALID_SPAN, None

    _tracing.enter = _enter  # type: ignore[assignment]
    _tracing.leave = lambda *args, **kwargs: None  # type: ignore[assignment]
    _tracing.ids = lambda span: (0, 0)  # type: ignore[assignment]
    _tracing.annotate = lambda span, fields: None  # type: ignore[assignment]
if "gc" in OFF:
    gc.disable()
if "handoffs" in OFF:
    sys.setswitchinterval(0.05)
if "flusher" in OFF:
    from predlog.flush._flusher import Flusher

    Flusher.start = lambda self: None  # type: ignore[method-assign]

predlog.instrument(app, model_name="near-zero", model_version="v1")
