"""What predlog costs a model server, against the alternatives, in the same run.

A trivial BentoML service is served by ``bentoml serve`` (one worker) in each variant
(see servers/trivial_service.py) and driven by wrk from another process at fixed
concurrency, with a Lua script that gives every request its own X-Request-ID. Variants
alternate A B A B ... to cancel machine drift. Printed per variant: throughput and
latency p50/p99, and their ratios against bare from the same run, server RSS before
and after, and for predlog the records written against the requests sent (lost).

Usage: python benchmarks/bench_server.py [--duration S] [--connections C] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path

import pyarrow.dataset as ds

from predlog.testing import BentoServer

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("bare", "monitor", "otel", "predlog", "predlog_oplog")
LUA = """
counter = 0
prefix = "%s"
body = '{"transaction": {"amount": 120.5, "merchant_category": "grocery", "hour": 13, '
  .. '"channel": "web", "card_age_days": 400}}'
request = function()
  counter = counter + 1
  return wrk.format("POST", "/predict",
    {["Content-Type"] = "application/json", ["X-Request-ID"] = prefix .. counter}, body)
end
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def rss_mib(pid: int) -> float:
    """Resident memory of a process group (the server and its worker)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ProcessLookupError, ValueError):
            continue
    return total / 1024


def wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            shutil.which("wrk") or "/usr/bin/wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.M).groups()
        return float(value) * UNITS[unit]

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": len(re.findall(r"Non-2xx|Socket errors", out)),
    }


def run_variant(variant: str, work: Path, seconds: int, connections: int) -> dict[str, float]:
    data = work / f"{variant}-{uuid.uuid4().hex[:6]}"
    env = dict(
        os.environ,
        BENCH_VARIANT=variant,
        PREDLOG_DATA_DIR=str(data),
        BENTOML_HOME=str(work / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}",
    )
    server = BentoServer(
        "benchmarks.servers.trivial_service:Trivial",
        log_path=work / f"{variant}.log",
        env=env,
        cwd=work,
        ready_timeout=180,
    )
    with server:
        script = work / f"{variant}.lua"
        script.write_text(LUA % f"{variant}-{uuid.uuid4().hex[:6]}-")
        warm = wrk(server.base_url, 3, connections, script)
        rss_before = rss_mib(server.pid)
        result = wrk(server.base_url, seconds, connections, script)
        result["rss_before"] = rss_before
        result["rss_after"] = rss_mib(server.pid)
        result["sent"] = warm["requests"] + result["requests"]
    if variant.startswith("predlog"):
        files = list((data / "predictions").rglob("*.parquet"))
        written = ds.dataset(files, format="parquet").count_rows() if files else 0
        # wrk counts completed requests only; those in flight when it stops are still
        # served and logged, so more records than completions is expected. Lost means a
        # completed request without a record.
        result["recorded"] = written
        result["lost"] = max(0, result["sent"] - written)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "latency.png")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="predlog-server-bench-"))
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:  # alternated, round after round
            runs[variant].append(run_variant(variant, work, args.duration, args.connections))
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
    bare = med["bare"]
    print(
        f"bentoml serve, 1 worker; wrk -t1 -c{args.connections} -d{args.duration}s; "
        f"{args.rounds} alternating rounds; medians"
    )
    for variant, m in med.items():
        lost = (
            f", recorded {m['recorded']:.0f} for {m['sent']:.0f} completed, lost {m['lost']:.0f}"
            if "lost" in m
            else ""
        )
        print(
            f"{variant:14s} {m['rps']:8.1f} req/s (x{m['rps'] / bare['rps']:.3f})  "
            f"p50 {m['p50']:.2f} ms (x{m['p50'] / bare['p50']:.3f})  "
            f"p99 {m['p99']:.2f} ms (x{m['p99'] / bare['p99']:.3f})  "
            f"RSS {m['rss_before']:.0f}->{m['rss_after']:.0f} MiB{lost}"
        )
    plot(med, args.plot)
    print(f"plot: {args.plot}")


def plot(med: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(med)
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [med[n]["p50"] for n in names], width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [med[n]["p99"] for n in names], width=0.4, label="p99")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("latency (ms)")
    ax.set_title("Trivial BentoML service: latency per variant (same run)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
