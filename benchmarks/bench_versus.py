"""Has a change made the request path slower? This tree against a git revision, same run.

The request path is what a prediction pays for: ``PredictionLogger.log()`` on the
calling thread, and ``PredictionLogMiddleware`` around a trivial ASGI app (called
directly, no server or sockets). Beside it, the flusher's cost per record: batches
decoded, built and written to Parquet. Each is measured in a fresh interpreter for the
revision (checked out into a temporary worktree) and for this tree, alternating
base, head, base, head... so that machine drift falls on both alike. Only public API
is used, so any two revisions compare.

Printed per measure: the median over rounds for each side, and head/base as a ratio
with its range over rounds (< 1 is faster). Absolute figures move threefold between
machines; the ratio is the result.

Usage: python benchmarks/bench_versus.py [--base REV] [--rounds N] [--calls N] [--requests N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Run in a child interpreter with one revision's predlog importable; prints JSON.
CHILD = r"""
import asyncio, gc, json, statistics, sys, tempfile, time
import predlog

calls, requests, repeats = (int(a) for a in sys.argv[1:4])
FEATURES = {"amount": 120.5, "merchant_category": "grocery", "hour": 13, "card_age_days": 400}
BODY = b'{"transaction": {"amount": 120.5, "merchant_category": "grocery", "hour": 13}}'
RESPONSE = b'{"score":0.12,"decision":"approved"}'
SCOPE = {
    "type": "http", "method": "POST", "path": "/predict",
    "headers": [(b"content-type", b"application/json"), (b"x-request-id", b"req-123456")],
}
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"application/json"), (b"content-length", b"36")]}


def logger(capacity, batch_size=None):
    # The flusher stays idle while the clock runs; it is flushed, untimed, in between.
    return predlog.PredictionLogger(
        model_name="fraud", model_version="v1", data_dir=tempfile.mkdtemp(),
        install_signal_handlers=False, ring_capacity=capacity,
        batch_size=batch_size or capacity, flush_interval_s=3600,
    )


def log_cost():
    log = logger(calls + 1)
    fn = log.log
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter_ns()
        for i in range(calls):
            fn(request_id="req-1", features=FEATURES, score=0.42, decision="approved",
               threshold=0.5, user_segment="standard", channel="web")
        samples.append((time.perf_counter_ns() - start) / calls)
        log.flush()
    log.close()
    return statistics.median(samples)


def app(record):
    async def inner(scope, receive, send):
        await receive()
        if record:
            predlog.record(score=0.12, decision="approved", inference_ms=0.8)
        await send(dict(START))
        await send({"type": "http.response.body", "body": RESPONSE})
    return inner


async def drive(target, n):
    message = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive():
        return message

    async def send(_):
        pass

    start = time.perf_counter_ns()
    for _ in range(n):
        await target(dict(SCOPE), receive, send)
    return (time.perf_counter_ns() - start) / n


def middleware_cost():
    log = logger(2 * requests + 1)
    variants = {
        "bare app": app(False),
        "middleware": predlog.PredictionLogMiddleware(app(False), logger=log),
        "middleware + record()": predlog.PredictionLogMiddleware(app(True), logger=log),
    }
    samples = {name: [] for name in variants}
    for _ in range(repeats):
        for name, target in variants.items():
            if name == "middleware":
                log.flush()
            gc.collect()
            samples[name].append(asyncio.run(drive(target, requests)))
    log.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def flusher_cost():
    # Batches of 8,192 (the default) decoded, built and written to Parquet: ns per record
    # of what was still pending when the clock started (full batches leave during the fill).
    log = logger(calls + 1, batch_size=8192)
    samples = []
    for _ in range(repeats):
        for i in range(calls):
            log.log(request_id=f"req-{i}", features=FEATURES, score=0.42, decision="approved",
                    threshold=0.5, user_segment="standard", channel="web")
        gc.collect()
        pending = log.stats()["pending"]
        start = time.perf_counter_ns()
        log.flush()
        samples.append((time.perf_counter_ns() - start) / max(pending, 1))
    log.close()
    return statistics.median(samples)


out = {"log() ns/call": log_cost(), "flusher to Parquet ns/record": flusher_cost()}
out.update({f"{k} ns/request": v for k, v in middleware_cost().items()})
print(json.dumps(out))
"""


def measure(plugin: Path, args: argparse.Namespace) -> dict[str, float]:
    # No PREDLOG_* from the caller's shell: both sides run on the embedded defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDLOG_")}
    env["PYTHONPATH"] = str(plugin)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(args.calls), str(args.requests), str(args.repeats)],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def build_native(worktree: Path) -> str:
    """Build the revision's own native extension into its worktree, as its install would:
    without it the base would decode in Python and the comparison would flatter the head.
    Says what it did."""
    manifest = worktree / "native" / "Cargo.toml"
    stubs = sorted((worktree / "plugin").rglob("_rust.pyi"))
    cargo = shutil.which("cargo")
    if not manifest.exists() or not stubs:
        return "the base has no native extension"
    if cargo is None:
        return "no cargo: the base decodes in Python"
    target = ROOT / "native" / "target" / "bench-base"
    subprocess.run(
        [cargo, "build", "--release", "--quiet", "--manifest-path", str(manifest)],
        env={**os.environ, "CARGO_TARGET_DIR": str(target)},
        check=True,
    )
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    shutil.copy(target / "release" / "lib_rust.so", stubs[0].with_name(f"_rust{suffix}"))
    return "the base's native extension built from its own source"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="HEAD~1", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=50_000, help="log() calls per repeat")
    parser.add_argument("--requests", type=int, default=10_000, help="requests per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per round, median")
    args = parser.parse_args()
    git = shutil.which("git")
    if git is None:
        raise SystemExit("git is needed to check out the base revision")
    revision = subprocess.run(
        [git, "rev-parse", "--short", args.base],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="predlog-base-") as tmp:
        worktree = Path(tmp) / "base"
        subprocess.run(
            [git, "worktree", "add", "--detach", "--quiet", str(worktree), revision],
            cwd=ROOT,
            check=True,
        )
        try:
            native = build_native(worktree)
            rounds = []
            for _ in range(args.rounds):
                base = measure(worktree / "plugin", args)
                head = measure(ROOT / "plugin", args)
                rounds.append((base, head))
        finally:
            subprocess.run(
                [git, "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=True
            )
    print(f"base {revision} vs this tree, {args.rounds} alternating rounds; {native}")
    for name in rounds[0][0]:
        base_values = [b[name] for b, _ in rounds]
        head_values = [h[name] for _, h in rounds]
        ratios = [h / b for b, h in zip(base_values, head_values, strict=True)]
        print(
            f"{name:36s} base {statistics.median(base_values):9.0f}  "
            f"head {statistics.median(head_values):9.0f}  head/base "
            f"{statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]"
        )


if __name__ == "__main__":
    main()
