"""Profile of the request path with predlog: where a logged request's time goes.

Drives the middleware in process, as bench_middleware.py does (flusher idle, so the
profile is the request path alone), under pyinstrument, and writes the profile to
benchmarks/profile_request_path.txt. Prints the predlog frames that cost the most.

With ``--pieces`` it times each piece of a logged request on its own instead
(``timeit``, best of 5): the figures to set against the profile when deciding what
to cut next.

Usage: python benchmarks/profile_request_path.py [--requests N] [--pieces]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyinstrument import Profiler

import predlog
from bench_middleware import SCOPE, drive, make_app
from predlog import _tracing
from predlog._capture import CAPTURE_FIELDS
from predlog._context import LOG_MODEL_VERSION, LOG_REQUEST_ID, bind_fields, unbind_fields
from predlog._exchange import Exchange
from predlog._logger import handoff

#: The middleware's per-request work, piece by piece, as it runs in ``__call__``.
PIECES = {
    "path filter (_logged)": "middleware._logged(scope)",
    "clocks (time_ns, perf_counter_ns)": "time_ns(); perf_counter_ns()",
    "Exchange()": "Exchange('POST', '/predict', None)",
    "predlog.record()'s contextvar: set + reset": "unbind_fields(bind_fields({}))",
    "structlog's request_id, model_version: set + reset": (
        "a = LOG_REQUEST_ID.set('r'); b = LOG_MODEL_VERSION.set('v1'); "
        "LOG_MODEL_VERSION.reset(b); LOG_REQUEST_ID.reset(a)"
    ),
    "OpenTelemetry: enter, ids, is_recording, leave": (
        "token, span, own = _tracing.enter('req-1', 'fraud', 'v1', 'POST'); "
        "_tracing.ids(span); span.is_recording(); _tracing.leave(token, own, scope, 200)"
    ),
    "a made request id": "middleware_module._new_request_id()",
    "capture tuple into the ring": "submit((time_ns(), 'r', None, *tail))",
}


async def _inner(message: Any = None) -> Any:
    return message


async def _receive_wrapper() -> Any:
    message = await _inner()
    return message


def _send_wrapper(message: Any) -> Any:
    return _inner(message)


async def _wrappers(n: int) -> tuple[float, float]:
    """One receive and two sends per request: directly, then through wrappers shaped like
    the middleware's (a receive coroutine, a plain send function)."""
    timings = []
    for wrapped in (False, True):
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter_ns()
            for _ in range(n):
                if wrapped:
                    await _receive_wrapper()
                    await _send_wrapper(1)
                    await _send_wrapper(2)
                else:
                    await _inner()
                    await _inner(1)
                    await _inner(2)
            best = min(best, (time.perf_counter_ns() - start) / n / 1000)
        timings.append(best)
    return timings[0], timings[1]


def pieces(n: int = 100_000) -> None:
    """Print what each piece of a logged request costs, in µs."""
    import predlog.middleware as middleware_module

    logger = predlog.PredictionLogger(
        model_name="fraud",
        model_version="v1",
        data_dir=tempfile.mkdtemp(),
        sinks=[],  # the ring is what is timed; nothing is written
        install_signal_handlers=False,
        ring_capacity=n * 6,
        batch_size=n * 6,
        flush_interval_s=3600,
    )
    scope = dict(SCOPE)
    names = {
        "middleware": predlog.PredictionLogMiddleware(make_app(record=False), logger=logger),
        "middleware_module": middleware_module,
        "scope": scope,
        "submit": handoff(logger),
        "tail": (None,) * (len(CAPTURE_FIELDS) - 3),
        "time_ns": time.time_ns,
        "perf_counter_ns": time.perf_counter_ns,
        "Exchange": Exchange,
        "bind_fields": bind_fields,
        "unbind_fields": unbind_fields,
        "LOG_REQUEST_ID": LOG_REQUEST_ID,
        "LOG_MODEL_VERSION": LOG_MODEL_VERSION,
        "_tracing": _tracing,
    }
    for label, statement in PIECES.items():
        best = min(timeit.repeat(statement, globals=names, number=n, repeat=5)) / n * 1e6
        print(f"  {label:52s} {best:6.3f} us")
    direct, wrapped = asyncio.run(_wrappers(n))
    print(f"  {'receive/send wrappers (over direct awaits)':52s} {wrapped - direct:6.3f} us")
    logger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--pieces", action="store_true", help="time each piece with timeit")
    args = parser.parse_args()
    if args.pieces:
        pieces()
        return
    capacity = args.requests * 2 + 1
    logger = predlog.PredictionLogger(
        model_name="fraud",
        model_version="v1",
        data_dir=tempfile.mkdtemp(),
        install_signal_handlers=False,
        ring_capacity=capacity,
        batch_size=capacity,
        flush_interval_s=3600,
    )
    app = predlog.PredictionLogMiddleware(make_app(record=True), logger=logger)
    asyncio.run(drive(app, 2_000))  # warm up
    profiler = Profiler(interval=0.0001)
    profiler.start()
    asyncio.run(drive(app, args.requests))
    profiler.stop()
    out = Path(__file__).resolve().parent / "profile_request_path.txt"
    out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    logger.close()
    session = profiler.last_session
    assert session is not None
    frames: dict[str, float] = {}

    def walk(frame: object) -> None:
        identifier = getattr(frame, "identifier", "")
        if "predlog" in identifier:
            key = f"{frame.function} ({Path(frame.file_path or '').name}:{frame.line_no})"  # type: ignore[attr-defined]
            frames[key] = frames.get(key, 0.0) + frame.total_self_time  # type: ignore[attr-defined]
        for child in getattr(frame, "children", []):
            walk(child)

    walk(session.root_frame())
    total = session.duration
    print(f"profile written to {out} ({args.requests} requests, {total:.2f} s)")
    print("predlog frames by self time:")
    for name, seconds in sorted(frames.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {seconds / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
