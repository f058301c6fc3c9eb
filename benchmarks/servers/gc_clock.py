"""The garbage collector's time in a served process, for bench_fastapi.py.

``install(app)`` times every collection (``gc.callbacks``) per generation, and adds
``GET /bench/gc``, which answers the totals so far: collections and CPU seconds per
generation, and the objects the collector tracks now. The bench reads it before and
after each slice, so the collector's share of the CPU per request is known per variant.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from fastapi import FastAPI

_TOTALS: dict[str, list[float]] = {"count": [0, 0, 0], "seconds": [0.0, 0.0, 0.0]}
_STARTED = [0.0]


def _clock(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _STARTED[0] = time.thread_time()
        return
    generation = info["generation"]
    _TOTALS["count"][generation] += 1
    _TOTALS["seconds"][generation] += time.thread_time() - _STARTED[0]


def install(app: FastAPI) -> None:
    """Time the collector from now on, and answer the totals at ``GET /bench/gc``."""
    gc.callbacks.append(_clock)

    @app.get("/bench/gc")
    async def totals() -> dict[str, Any]:
        return {**_TOTALS, "tracked": len(gc.get_objects())}
