"""Profile of the request path with predlog: where a logged request's time goes.

Drives the middleware in process, as bench_middleware.py does (flusher idle, so the
profile is the request path alone), under pyinstrument, and writes the profile to
benchmarks/profile_request_path.txt. Prints the predlog frames that cost the most.

Usage: python benchmarks/profile_request_path.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyinstrument import Profiler

import predlog
from bench_middleware import drive, make_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
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
