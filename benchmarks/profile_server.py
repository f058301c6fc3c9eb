"""A py-spy profile of a real server's worker with predlog enabled, under load.

The trivial BentoML service (predlog variant, servers/trivial_service.py) is served
by ``bentoml serve`` (or, with ``--service fastapi``, the near-zero FastAPI app of
bench_fastapi.py under uvicorn) and driven by wrk, as in bench_server.py, while py-spy
samples every thread of the worker process (blocking mode, so stacks are consistent).
Written beside the results:

* ``profile_server.svg``: the flame graph;
* ``profile_server.txt``: the share of samples per thread, and predlog's own frames,
  each with what it was calling when sampled. Time spent *inside* the wrapped app
  (``PredictionLogMiddleware.__call__`` -> the next middleware) is the app's, not
  predlog's, and is listed apart.

Usage: python benchmarks/profile_server.py [--seconds S] [--service trivial|fastapi]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # services.bentoserve

from services.bentoserve import BentoServer

from bench_server import ROOT, SERVICES, tree_pids, wrk
from predlog.tools.bench._servers import Kind, Server

OUT = ROOT / "benchmarks"
PY_SPY = Path(sys.executable).parent / "py-spy"
#: Frames predlog hands control to: time under them belongs to the wrapped app.
APP_EDGES = {
    ("PredictionLogMiddleware.__call__", "ContextMiddleware.__call__"),
    (
        "PredictionLogMiddleware.__call__.<locals>.send_and_keep",
        "TimeoutMiddleware.__call__.<locals>._send",
    ),
    (
        "PredictionLogMiddleware.__call__.<locals>.receive_and_keep",
        "AccessLogMiddleware.__call__.<locals>.wrapped_receive",
    ),
    # FastAPI under uvicorn: the app inside, Starlette's error middleware and uvicorn outside.
    ("PredictionLogMiddleware.__call__", "ExceptionMiddleware.__call__"),
    (
        "PredictionLogMiddleware.__call__.<locals>.send_and_keep",
        "ServerErrorMiddleware.__call__.<locals>._send",
    ),
    (
        "PredictionLogMiddleware.__call__.<locals>.receive_and_keep",
        "RequestResponseCycle.receive",
    ),
}


#: Waits py-spy samples as work (a timed Event.wait is not seen as idle): left out.
IDLE_EDGES = {("Flusher._step", "Event.wait")}


def is_predlog(frame: str) -> bool:
    return "predlog" in frame and "site-packages" not in frame and not frame.startswith("thread")


def summarise(raw: Path, requests: float) -> str:
    total = 0
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[tuple[str, str]] = collections.Counter()
    in_app = 0
    idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        thread = frames[0].split(": ", 1)[-1]
        threads[thread] += n
        marks = [i for i, f in enumerate(frames) if is_predlog(f)]
        if not marks:
            continue
        i = marks[-1]
        here = frames[i].split(" (")[0]
        below = frames[i + 1].split(" (")[0] if i + 1 < len(frames) else "(itself)"
        if (here, below) in IDLE_EDGES:
            idle += n
        elif (here, below) in APP_EDGES:
            in_app += n
        else:
            own[(here, below)] += n
    mine = sum(own.values())
    lines = [
        f"{total} samples; {requests:.0f} requests served while sampling",
        "",
        "samples per thread:",
        *(f"  {n / total:6.1%}  {t}" for t, n in threads.most_common()),
        "",
        f"predlog's own frames: {mine / total:.1%} of all samples "
        f"(the wrapped app, under predlog's frames: {in_app / total:.1%}; the flusher's "
        f"timed wait, idle but sampled: {idle / total:.1%}).",
        "Innermost predlog frame -> what it was calling when sampled:",
        *(f"  {n / total:6.2%}  {a} -> {b}" for (a, b), n in own.most_common(25)),
    ]
    return "\n".join(lines) + "\n"


def record(
    url: str, worker: int, connections: int, raw: Path, args: argparse.Namespace
) -> list[float]:
    """py-spy on ``worker`` under wrk: the raw stacks, then the flame graph."""
    profiles = []
    for fmt, path in (("raw", raw), ("flamegraph", out_path(args, "svg"))):
        spy = subprocess.Popen(
            [
                *(str(PY_SPY), "record", "-p", str(worker), "-d", str(args.seconds)),
                *("-r", str(args.rate), "--threads", "-f", fmt, "-o", str(path)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        result = wrk(url, args.seconds - 1, connections, args.script)
        _, err = spy.communicate()
        if spy.returncode:
            raise SystemExit(f"py-spy failed: {err}")
        profiles.append(result["requests"])
    return profiles


def out_path(args: argparse.Namespace, ext: str) -> Path:
    """profile_server.EXT for the BentoML service, profile_server_fastapi.EXT for FastAPI."""
    suffix = "" if args.service == "trivial" else f"_{args.service}"
    return OUT / f"profile_server{suffix}.{ext}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--service", choices=("trivial", "fastapi"), default="trivial")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="predlog-profile-"))
    service = SERVICES["trivial"]
    env = dict(
        os.environ,
        BENCH_VARIANT="predlog",
        PREDLOG_DATA_DIR=str(work / "data"),
        BENTOML_HOME=str(work / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}",
    )
    script = work / "load.lua"
    script.write_text(service.lua("profile-"))
    args.script = script
    raw = work / "profile.raw"
    if args.service == "fastapi":
        uvicorn = Server(
            "benchmarks.servers.fastapi_predlog:app",
            Kind("asgi", None, None, {}),
            env=env,
            cwd=ROOT,
            log=work / "server.log",
        )
        uvicorn.start()
        try:
            assert uvicorn.pid is not None
            url = f"http://127.0.0.1:{uvicorn.port}/predict"
            wrk(url, 3, 8, script)
            profiles = record(url, uvicorn.pid, 8, raw, args)
        finally:
            uvicorn.stop()
    else:
        with BentoServer(
            service.target, log_path=work / "server.log", env=env, cwd=work, ready_timeout=180
        ) as server:
            url = f"{server.base_url}/predict"
            wrk(url, 3, 16, script)
            worker = max(tree_pids(server.pid))  # the worker is the server's child
            profiles = record(url, worker, 16, raw, args)
    text = summarise(raw, profiles[0])
    out_path(args, "txt").write_text(text)
    print(text, end="")
    print(f"flame graph: {out_path(args, 'svg')}")


if __name__ == "__main__":
    main()
