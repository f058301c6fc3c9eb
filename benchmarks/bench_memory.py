"""The resident memory predlog's one line adds to a 1-worker BentoML service, per process.

Two service modules, written by this script into a fresh directory, so that nothing in
the repository has warmed them up: ``svc_bare`` (a small ``@bentoml.service`` that does
not import predlog at all) and ``svc_predlog`` (the same, plus ``import predlog`` and
``predlog.instrument(...)``, the README's one line). Each is served by ``bentoml serve``
with one worker and sent ``--requests`` POSTs with a small JSON body of features, over
one kept-alive connection. Then, with the server still up, the resident set (VmRSS) of
every process in its tree is read from /proc: the arbiter (the ``bentoml serve``
process, which imports the service module too and never logs) and the worker (which
serves and, with the line, logs), separately and summed. Which of numpy, pyarrow and
pandas each process has mapped is read from /proc/<pid>/maps.

The variants alternate over rounds (in order in even rounds, reversed in odd ones),
and each round's figures are taken against the bare service of the same round; the
median and the range over rounds are printed. With predlog, the records on disk after
the server stopped (SIGTERM drains) are counted against the requests answered.

``--variants bare,predlog,predlog_nopandas`` adds the second module served where pandas
cannot be imported (a package of that name that raises ImportError comes first on the
path, and pyarrow then treats pandas as absent): what pandas alone costs predlog's worker.

Usage: python benchmarks/bench_memory.py [--requests N] [--rounds R] [--settle S]
       [--variants bare,predlog[,predlog_nopandas]]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # services.bentoserve

from services.bentoserve import BentoServer  # noqa: E402

from _common import CHANNELS, cpu_model  # noqa: E402
from bench_server import tree_pids  # noqa: E402

VARIANTS = ("bare", "predlog", "predlog_nopandas")
HEAVY = ("numpy", "pyarrow", "pandas")

SERVICE = '''\
"""A small scoring service for bench_memory.py ({variant})."""

from __future__ import annotations

import math
from typing import Any

import bentoml
{predlog_import}

@bentoml.service(name="memory_{variant}", workers=1)
class Scoring:
    @bentoml.api
    def predict(self, features: dict[str, Any]) -> dict[str, Any]:
        z = 0.004 * float(features.get("amount", 0.0)) - 0.3 * float(features.get("age", 0))
        score = 1.0 / (1.0 + math.exp(-z))
        return {{"score": round(score, 4), "decision": "declined" if score > 0.8 else "approved"}}

{predlog_line}
'''


@dataclass(frozen=True)
class Process:
    pid: int
    role: str  # "arbiter" or "worker"
    rss_mib: float
    heavy: tuple[str, ...]


@dataclass(frozen=True)
class Sample:
    variant: str
    processes: tuple[Process, ...]
    answered: int
    written: int | None

    def rss(self, role: str | None = None) -> float:
        return sum(p.rss_mib for p in self.processes if role is None or p.role == role)


def write_services(directory: Path) -> None:
    for variant in ("bare", "predlog"):
        logged = variant == "predlog"
        (directory / f"svc_{variant}.py").write_text(
            SERVICE.format(
                variant=variant,
                predlog_import="import predlog" if logged else "",
                predlog_line=(
                    'predlog.instrument(Scoring, model_name="scoring", model_version="v1")'
                    if logged
                    else ""
                ),
            )
        )
    shadow = directory / "nopandas" / "pandas"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("pandas hidden by bench_memory.py")\n')


def bodies(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [
        json.dumps(
            {
                "features": {
                    "amount": round(rng.lognormvariate(3.5, 1.2), 2),
                    "age": rng.randrange(18, 90),
                    "channel": rng.choice(CHANNELS),
                    "is_new_device": rng.random() < 0.1,
                }
            }
        ).encode()
        for _ in range(n)
    ]


def send(port: int, payloads: list[bytes], tag: str) -> int:
    """POST every payload to /predict over one kept-alive connection; how many got 200."""
    ok = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for i, body in enumerate(payloads):
            conn.request(
                "POST",
                "/predict",
                body=body,
                headers={"Content-Type": "application/json", "X-Request-ID": f"{tag}-{i}"},
            )
            response = conn.getresponse()
            response.read()
            ok += response.status == 200
    finally:
        conn.close()
    return ok


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def heavy_mapped(pid: int) -> tuple[str, ...]:
    """Which of HEAVY have a shared object mapped in ``pid``: loaded, not just on disk."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return tuple(name for name in HEAVY if f"/site-packages/{name}/" in maps)


def measure(variant: str, work: Path, n: int, settle_s: float, seed: int) -> Sample:
    data = work / f"data-{variant}-{seed}"
    path = [str(ROOT / "plugin"), str(work)]
    if variant == "predlog_nopandas":
        path.insert(0, str(work / "nopandas"))
    env = dict(
        os.environ,
        PREDLOG_DATA_DIR=str(data),
        BENTOML_HOME=str(work / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        PYTHONPATH=os.pathsep.join(path),
    )
    module = "svc_bare" if variant == "bare" else "svc_predlog"
    server = BentoServer(
        f"{module}:Scoring",
        log_path=work / f"{variant}-{seed}.log",
        env=env,
        cwd=work,
        ready_timeout=300,
    )
    with server:
        answered = send(server.port, bodies(n, seed), f"{variant}-{seed}")
        time.sleep(settle_s)
        processes = tuple(
            Process(
                pid,
                "arbiter" if pid == server.pid else "worker",
                rss_mib(pid),
                heavy_mapped(pid),
            )
            for pid in tree_pids(server.pid)
        )
    written = None
    if variant != "bare":
        files = sorted((data / "predictions").glob("date=*/*.parquet"))
        written = sum(pq.read_metadata(f).num_rows for f in files)
    return Sample(variant, processes, answered, written)


def spread(values: list[float], unit: str = "", digits: int = 1) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f}{unit} ({low:.{digits}f} to {high:.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="requests per variant")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both variants")
    parser.add_argument("--settle", type=float, default=2.0, help="s between load and reading")
    parser.add_argument("--variants", default="bare,predlog", help=f"from {','.join(VARIANTS)}")
    args = parser.parse_args()
    variants = tuple(args.variants.split(","))
    if "bare" not in variants or not set(variants) <= set(VARIANTS):
        parser.error(f"--variants: bare and any of {VARIANTS}")

    import bentoml

    print(
        f"{os.cpu_count()} CPUs ({cpu_model()}); Python {platform.python_version()}, "
        f"BentoML {bentoml.__version__}; {args.requests} requests per variant, "
        f"{args.rounds} rounds"
    )
    rounds: list[dict[str, Sample]] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        write_services(work)
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            samples = {v: measure(v, work, args.requests, args.settle, seed=r) for v in order}
            rounds.append(samples)
            for v in order:
                s = samples[v]
                per = ", ".join(
                    f"{p.role} {p.pid} {p.rss_mib:.1f} MiB [{' '.join(p.heavy) or '-'}]"
                    for p in s.processes
                )
                lost = "" if s.written is None else f", records {s.written}/{s.answered}"
                print(f"round {r + 1} {v:16s} tree {s.rss():6.1f} MiB: {per}{lost}")

    for variant in variants[1:]:
        print(f"\nadded by {variant}, against the bare service of the same round (median, range):")
        for role, label in ((None, "tree"), ("arbiter", "arbiter"), ("worker", "worker")):
            added = [s[variant].rss(role) - s["bare"].rss(role) for s in rounds]
            ratio = [s[variant].rss(role) / s["bare"].rss(role) for s in rounds]
            bare = [s["bare"].rss(role) for s in rounds]
            print(
                f"  {label:8s} +{spread(added, ' MiB'):28s} x{spread(ratio, digits=2):22s} "
                f"bare {statistics.median(bare):.1f} MiB"
            )
        lost = [s[variant].answered - (s[variant].written or 0) for s in rounds]
        print(f"  records lost per round: {lost}")
    failed = sum(args.requests - s[v].answered for s in rounds for v in variants)
    print(f"requests that failed, all variants and rounds: {failed}")


if __name__ == "__main__":
    main()
