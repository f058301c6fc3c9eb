"""What predlog costs a near-zero-work FastAPI app under uvicorn, against bare, in one run.

The app (servers/fastapi_bare.py: parse the JSON body, answer a fixed score) is
served by ``python -m uvicorn`` with its defaults and one worker, in two or more
variants at once: ``bare`` (a module that never imports predlog) and ``predlog``
(servers/fastapi_predlog.py, the same app with predlog's one line). A variant
``predlog-off=SUSPECT[+SUSPECT]`` is the predlog one with suspects switched off (see
fastapi_predlog.py), to measure what each costs; ``wrapped`` (servers/fastapi_wrapped.py)
wraps receive and send as predlog does but logs nothing; with ``--base DIR`` (a
plugin/ directory of another version, from ``git archive REV plugin``), ``base`` is
that version's predlog line, to compare a change against what it replaces.

Each round drives every variant with wrk at ``--connections`` for one slice, in a new
random order per round, so drift of a shared machine falls on all alike. Per slice:
requests served, and the worker's CPU time (from /proc/<pid>/task/*/schedstat: all
its threads, the flusher's included, in ns) divided by them. Ratios are taken against bare
in the same round; the median and the range over rounds are printed.

A near-zero app is where predlog's share is largest: uvicorn and FastAPI do about
0.3-0.4 ms of CPU per request here, so predlog's 16 µs in-process cost
(bench_middleware.py) would be about 1.04x.

``--in-process`` measures the same app without a server or sockets, where a shared
machine's noise is far smaller: each request in its own asyncio task as uvicorn runs
it, the event loop thread's CPU time per request (time.thread_time) over
``--requests`` requests, variants interleaved in a new order each round, the flusher
running and the garbage collector on (bench_middleware.py collects before each run and
keeps the flusher idle, so its figures leave both out). Variants: bare, predlog, and
predlog with the OpenTelemetry work or the collector switched off during its runs.

Usage: python benchmarks/bench_fastapi.py [--rounds N] [--slice S] [--connections C]
       [--variants bare,predlog,predlog-off=tracing,...] [--base DIR] [--gc]
       python benchmarks/bench_fastapi.py --in-process [--rounds N] [--requests N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import ROOT, SERVICES, machine_basics, wrk
from predlog.tools.bench._servers import Kind, Server

APPS = {
    "bare": "benchmarks.servers.fastapi_bare:app",
    "predlog": "benchmarks.servers.fastapi_predlog:app",
    "wrapped": "benchmarks.servers.fastapi_wrapped:app",
}
ASGI = Kind("asgi", None, None, {})


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds of a process's main thread, and of its other threads together (the
    flusher's, the thread pool's), live ones only: the scheduler's own clock
    (/proc/<pid>/task/<tid>/schedstat, in ns), finer than stat's clock ticks."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            used = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
        if task.name == str(pid):
            main += used
        else:
            other += used
    return main, other


@dataclass
class Variant:
    """One served copy and what each of its slices measured."""

    name: str
    server: Server
    script: Path
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    #: CPU per request of the event loop's thread; the rest is the other threads'.
    loop_us: list[float] = field(default_factory=list)
    #: With --gc: the collector's CPU per request, and the objects it tracks after a slice.
    gc_us: list[float] = field(default_factory=list)
    gc_counts: list[list[float]] = field(default_factory=list)
    gc_gen_us: list[list[float]] = field(default_factory=list)
    tracked: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    errors: float = 0.0


def gc_totals(v: Variant) -> dict[str, Any]:
    url = f"http://127.0.0.1:{v.server.port}/bench/gc"
    with urllib.request.urlopen(url, timeout=10) as reply:  # loopback
        return dict(json.loads(reply.read()))


def launch(name: str, work: Path, *, gc_clock: bool, base: Path | None) -> Variant:
    """Start the variant ``name`` (``bare``, ``predlog``, ``base``, ``predlog-off=...``)."""
    app = APPS[name.partition("-off=")[0].replace("base", "predlog")]
    plugin = base if name.startswith("base") and base is not None else ROOT / "plugin"
    env = dict(
        os.environ,
        PREDLOG_DATA_DIR=str(work / f"data-{name}"),
        PYTHONPATH=f"{plugin}{os.pathsep}{ROOT}",
        BENCH_PREDLOG_OFF=name.partition("=")[2].replace("+", ","),
    )
    if gc_clock:
        env["BENCH_GC_CLOCK"] = "1"
    tag = name.replace("=", "-").replace("+", "-")
    server = Server(app, ASGI, env=env, cwd=ROOT, log=work / f"{tag}.log")
    script = work / f"{tag}.lua"
    script.write_text(SERVICES["trivial"].lua(f"{tag}-"))
    server.start()
    return Variant(name, server, script)


def measure(v: Variant, seconds: float, connections: int, *, gc_clock: bool) -> None:
    """One slice of closed-loop load on ``v``; its throughput and worker CPU per request."""
    pid = v.server.pid
    assert pid is not None
    gc0 = gc_totals(v) if gc_clock else {}
    main0, other0 = thread_cpu_s(pid)
    result = wrk(f"http://127.0.0.1:{v.server.port}/predict", seconds, connections, v.script)
    main1, other1 = thread_cpu_s(pid)
    requests = max(result["requests"], 1.0)
    v.rps.append(result["requests"] / seconds)
    v.cpu_us.append((main1 + other1 - main0 - other0) / requests * 1e6)
    v.loop_us.append((main1 - main0) / requests * 1e6)
    v.p50_ms.append(result["p50"])
    if gc_clock:
        gc1 = gc_totals(v)
        spent = [b - a for a, b in zip(gc0["seconds"], gc1["seconds"], strict=True)]
        v.gc_us.append(sum(spent) / requests * 1e6)
        v.gc_counts.append(
            [(b - a) / seconds for a, b in zip(gc0["count"], gc1["count"], strict=True)]
        )
        v.gc_gen_us.append([t / requests * 1e6 for t in spent])
        v.tracked.append(gc1["tracked"])
    v.errors += result["errors"]


def ratios(values: list[float], bare: list[float]) -> str:
    r = [v / b for v, b in zip(values, bare, strict=True)]
    return f"x{statistics.median(r):.3f} [{min(r):.3f}-{max(r):.3f}]"


BODY = SERVICES["trivial"].lines(1).strip().encode()


def in_process(rounds: int, requests: int) -> None:
    """The app and predlog's line in this process, driven as uvicorn drives them."""
    import asyncio
    import gc
    import importlib.util

    from opentelemetry.trace import INVALID_SPAN

    import predlog
    from predlog import _tracing

    def fresh_app() -> Any:
        spec = importlib.util.find_spec("benchmarks.servers.fastapi_bare")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.app

    bare, logged = fresh_app(), fresh_app()
    predlog.instrument(logged, model_name="near-zero", model_version="v1")
    real = {name: getattr(_tracing, name) for name in ("enter", "leave", "ids", "annotate")}
    stubs = {
        "enter": lambda *a, **k: (None, INVALID_SPAN, None),
        "leave": lambda *a, **k: None,
        "ids": lambda span: (0, 0),
        "annotate": lambda span, fields: None,
    }
    variants = {
        "bare": (bare, ""),
        "predlog": (logged, ""),
        "predlog-off=tracing": (logged, "tracing"),
        "predlog-off=gc": (logged, "gc"),
    }
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "state": {},
    }
    counter = iter(range(1 << 62))

    async def one(app: Any) -> None:
        message = {"type": "http.request", "body": BODY, "more_body": False}

        async def receive() -> dict[str, Any]:
            return message

        async def send(_: Any) -> None:
            pass

        request_id = (b"x-request-id", f"inproc-{next(counter)}".encode())
        await app({**scope, "headers": [*headers, request_id]}, receive, send)

    async def drive(app: Any, off: str) -> float:
        for name, fn in (stubs if off == "tracing" else real).items():
            setattr(_tracing, name, fn)
        if off == "gc":
            gc.disable()
        loop = asyncio.get_running_loop()
        started = time.thread_time_ns()
        for _ in range(requests):
            await loop.create_task(one(app))  # a task per request, as uvicorn makes
        took = (time.thread_time_ns() - started) / requests / 1e3
        gc.enable()
        return took

    async def run() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {name: [] for name in variants}
        rng = random.Random(1)
        for app, off in variants.values():  # warm-up: the middleware and logger start here
            await drive(app, off)
        for _ in range(rounds):
            for name in rng.sample(list(variants), len(variants)):
                out[name].append(await drive(*variants[name]))
        return out

    out = asyncio.run(run())
    print(
        f"in process, FastAPI app, {rounds} rounds of {requests} requests per variant; "
        "event loop thread CPU per request: median, and the median over rounds of the "
        "difference to bare in the same round"
    )
    for name, values in out.items():
        extra = [v - b for v, b in zip(values, out["bare"], strict=True)]
        print(
            f"  {name:22s} {statistics.median(values):6.1f} us/req  "
            f"+{statistics.median(extra):5.1f} us [{min(extra):+.1f} to {max(extra):+.1f}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--slice", type=float, default=3.0, help="seconds of load per slice")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per variant")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variants", default="bare,predlog")
    parser.add_argument(
        "--base",
        type=Path,
        help="a plugin/ directory of another version of predlog (git archive REV plugin): "
        "adds the variant base, that version's predlog line, to compare before and after",
    )
    parser.add_argument(
        "--gc", action="store_true", help="also time the garbage collector in each server"
    )
    parser.add_argument("--in-process", action="store_true", help="no server: see above")
    parser.add_argument("--requests", type=int, default=2000, help="per round, --in-process")
    args = parser.parse_args()
    if args.in_process:
        os.environ.setdefault("PREDLOG_DATA_DIR", tempfile.mkdtemp(prefix="predlog-inproc-"))
        # After PYTHONPATH: another version of predlog there is the one measured.
        sys.path.insert(0, str(ROOT))
        sys.path.append(str(ROOT / "plugin"))
        in_process(args.rounds, args.requests)
        return
    names = [n for n in args.variants.split(",") if n]
    if args.base is not None and "base" not in names:
        names.append("base")
    if names[0] != "bare":
        raise SystemExit("--variants must start with bare: every ratio is against it")
    work = Path(tempfile.mkdtemp(prefix="predlog-fastapi-bench-"))
    print(machine_basics())
    variants = [launch(n, work, gc_clock=args.gc, base=args.base) for n in names]
    rng = random.Random(args.seed)
    try:
        for v in variants:
            wrk(
                f"http://127.0.0.1:{v.server.port}/predict", args.warmup, args.connections, v.script
            )
        started = time.monotonic()
        for _ in range(args.rounds):
            for v in rng.sample(variants, len(variants)):
                measure(v, args.slice, args.connections, gc_clock=args.gc)
        took = time.monotonic() - started
    finally:
        for v in variants:
            v.server.stop()
    bare = variants[0]
    print(
        f"uvicorn, 1 worker, wrk -t1 -c{args.connections}; {args.rounds} rounds of one "
        f"{args.slice:g} s slice per variant, order shuffled per round ({took:.0f} s); "
        "value: median, ratio to bare in the same round: median [range]"
    )
    for v in variants:
        print(
            f"  {v.name:28s} {statistics.median(v.rps):7.0f} req/s {ratios(v.rps, bare.rps)}"
            f" | CPU {statistics.median(v.cpu_us):6.1f} us/req {ratios(v.cpu_us, bare.cpu_us)}"
            f" (loop {statistics.median(v.loop_us):6.1f} {ratios(v.loop_us, bare.loop_us)})"
            f" | p50 {statistics.median(v.p50_ms):5.2f} ms {ratios(v.p50_ms, bare.p50_ms)}"
            + (f" | errors {v.errors:.0f}" if v.errors else "")
        )
        if args.gc:
            per_s = [statistics.median(c[g] for c in v.gc_counts) for g in range(3)]
            us = [statistics.median(c[g] for c in v.gc_gen_us) for g in range(3)]
            print(
                f"  {'':28s} GC {statistics.median(v.gc_us):5.1f} us/req; collections/s "
                f"(us/req) gen0 {per_s[0]:.1f} ({us[0]:.1f}), gen1 {per_s[1]:.1f} ({us[1]:.1f}), "
                f"gen2 {per_s[2]:.2f} ({us[2]:.1f}); "
                f"tracked objects {statistics.median(v.tracked):.0f}"
            )
    print(f"logs: {work}")


if __name__ == "__main__":
    main()
