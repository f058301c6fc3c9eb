"""What predlog costs a model server, against the alternatives, in the same run.

Two services, each served by ``bentoml serve`` (one worker) in every variant: the
trivial service (servers/trivial_service.py) and the fraud example
(servers/fraud_variants.py, the real feature store, model and decision). Variants:
bare, bentoml.monitor logging the same fields, OpenTelemetry tracing (every request
sampled), predlog (Parquet), predlog with operational logs, and predlog with the
Kafka sink when PREDLOG_TEST_KAFKA names a broker.

In each round, every variant's server is up at once, and each is measured under two
loads, from other processes:

* **closed loop**: wrk at fixed concurrency, with a Lua script that gives every
  request its own X-Request-ID and body; this finds throughput;
* **open loop**: oha at a fixed arrival rate below saturation (``--load`` times
  the bare variant's closed-loop throughput in the first round), with latency
  correction, so latency is not hidden by the load generator waiting.

The load comes in short slices (``--duration`` split into ``--slices``), the
variants in a new random order in every slice: A B A B ... at a granularity of
seconds, so machine drift and position fall on all variants alike (with one server
start per variant and run, as first written, a 30% drift between starts showed as
the bare server being slower than predlog's). Every ratio is taken against bare
*in the same round*, and the median and the range over rounds are printed.

Also per variant: server CPU time per request (from
/proc/<pid>/stat: a steadier measure of work than throughput on a noisy machine),
RSS before and after, and for predlog the records written against the requests
completed (lost). A PNG plot of latency percentiles per variant is written.

Without oha, the open loop uses ``predlog bench``'s own generator. ``--base DIR`` (a
plugin/ directory of another version, from ``git archive REV plugin``) adds the variant
predlog_base, that version's predlog, to compare a change with what it replaces.

Usage: python benchmarks/bench_server.py [--duration S] [--slices N] [--rounds R] [--load F]
       [--connections C] [--services trivial,fraud] [--variants bare,predlog,...] [--base DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # services.bentoserve

from services.bentoserve import BentoServer  # noqa: E402

from _common import cpu_model  # noqa: E402

OHA = Path.home() / ".cache/predlog-ci/oha/bin/oha"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
PSEUDONYM_KEY = "bench-only-pseudonym-key-0123456789"


@dataclass(frozen=True)
class Service:
    name: str
    target: str
    # A JSON body for request n (Lua string.format and Python %-format alike).
    body: str

    def lua(self, prefix: str) -> str:
        return (
            "counter = 0\n"
            "request = function()\n"
            "  counter = counter + 1\n"
            f"  local body = string.format('{self.body}', "
            "counter, counter % 40, counter % 500, counter % 24)\n"
            '  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json", '
            f'["X-Request-ID"] = "{prefix}" .. counter}}, body)\n'
            "end\n"
        )

    def lines(self, n: int) -> str:
        return "".join(self.body % (i, i % 40, i % 500, i % 24) + "\n" for i in range(n))


SERVICES = {
    "trivial": Service(
        "trivial",
        "benchmarks.servers.trivial_service:Trivial",
        '{"transaction": {"n": %d, "card": %d, "amount": %d.5, "hour": %d, '
        '"merchant_category": "grocery", "channel": "web", "card_age_days": 400}}',
    ),
    "fraud": Service(
        "fraud",
        "benchmarks.servers.fraud_variants:Fraud",
        '{"transaction": {"transaction_id": "t%d", "card_id": "card-%d", "amount": %d.5, '
        '"hour": %d, "merchant_category": "grocery", "user_segment": "standard", '
        '"channel": "web", "region": "EU"}}',
    ),
}
VARIANTS = ("bare", "monitor", "otel", "predlog", "predlog_oplog", "predlog_kafka")


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants. (BentoML's workers leave the server's process
    group, so the group is not enough.)"""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_mib(root: int) -> float:
    """Resident memory of a process tree (the server and its worker)."""
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cpu_s(root: int) -> float:
    """User + system CPU seconds used so far by a process tree's live processes."""
    total = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * TICK_S


def wrk(url: str, seconds: float, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            shutil.which("wrk") or "/usr/bin/wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:.0f}s",
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
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.M)
        assert found, out
        return float(found.group(1)) * UNITS[found.group(2)]

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        assert found, out
        return float(found.group(1))

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "requests": number(r"(\d+) requests in"),
        "p50": latency("50"),
        "p90": latency("90"),
        "p99": latency("99"),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def open_loop_python(url: str, seconds: float, rate: float, bodies: Path) -> dict[str, float]:
    """The open loop without oha: ``predlog bench``'s own generator (asyncio, latency from
    each request's scheduled start). It runs in this process and takes some CPU of the
    machine the server shares, alike for every variant."""
    from urllib.parse import urlsplit

    from predlog.tools.bench import _load

    parts = urlsplit(url)
    assert parts.port is not None
    target = _load.Target(
        parts.port, parts.path, bodies.read_bytes().splitlines(), f"open-{uuid.uuid4().hex[:6]}"
    )
    done = _load.open_loop(target, seconds, rate)
    latencies = sorted(done.latencies_ms) or [0.0]

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {
        "rps": done.throughput,
        "requests": float(len(done.latencies_ms)),
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "errors": float(done.errors),
    }


def oha(url: str, seconds: float, rate: float, bodies: Path) -> dict[str, float]:
    if not OHA.exists():
        return open_loop_python(url, seconds, rate, bodies)
    out = subprocess.run(
        [
            str(OHA),
            "-z",
            f"{seconds:.0f}s",
            "-q",
            f"{rate:.0f}",
            "-c",
            "64",
            "--latency-correction",
            "--no-tui",
            "--output-format",
            "json",
            "-m",
            "POST",
            "-T",
            "application/json",
            "-Z",
            str(bodies),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report = json.loads(out)
    pct = report["latencyPercentiles"]
    ok = report["statusCodeDistribution"].get("200", 0)
    return {
        "rps": report["summary"]["requestsPerSec"],
        "requests": float(ok),
        "p50": pct["p50"] * 1e3,
        "p90": pct["p90"] * 1e3,
        "p99": pct["p99"] * 1e3,
        "errors": float(sum(report["statusCodeDistribution"].values()) - ok),
    }


def kafka_count(bootstrap: str, topic: str) -> int:
    """Messages on a topic: the sum of its partitions' end offsets."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    async def count() -> int:
        # A consumer knows only the partitions of topics it subscribes to; a producer
        # looks up any topic's.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await producer.start()
        await consumer.start()
        try:
            parts = await producer.partitions_for(topic)
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            return int(sum(ends.values()))
        finally:
            await consumer.stop()
            await producer.stop()

    return asyncio.run(count())


@dataclass
class Plan:
    seconds: float  # per variant and load, in each round, cut into slices
    slices: int
    connections: int
    rates: dict[str, float]  # open-loop arrival rate per service, set in round 1
    load: float
    work: Path
    #: A plugin/ directory of another predlog version, served as the predlog_base variant.
    base: Path | None = None


@dataclass
class Variant:
    name: str
    server: BentoServer
    data: Path
    topic: str
    script: Path
    slices: dict[str, list[dict[str, float]]]
    warm_requests: float = 0.0
    rss_before: float = 0.0
    rss_after: float = 0.0


def launch(service: Service, variant: str, plan: Plan) -> Variant:
    tag = f"{service.name}-{variant}-{uuid.uuid4().hex[:6]}"
    data = plan.work / tag
    env = dict(
        os.environ,
        BENCH_VARIANT="predlog" if variant == "predlog_base" else variant,
        PREDLOG_DATA_DIR=str(data),
        PREDLOG_PSEUDONYM_KEY=PSEUDONYM_KEY,
        BENTOML_HOME=str(plan.work / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}",
    )
    if variant == "predlog_base":
        assert plan.base is not None
        env["PYTHONPATH"] = f"{plan.base}{os.pathsep}{ROOT}"
    env.pop("PREDLOG_KAFKA_BOOTSTRAP", None)
    env.pop("PREDLOG_KAFKA_TOPIC", None)
    topic = f"bench-{tag}"
    if variant == "predlog_kafka":
        env["PREDLOG_KAFKA_BOOTSTRAP"] = os.environ["PREDLOG_TEST_KAFKA"]
        env["PREDLOG_KAFKA_TOPIC"] = topic
    server = BentoServer(
        service.target,
        log_path=plan.work / f"{tag}.log",
        env=env,
        cwd=data.parent,
        ready_timeout=300,
    )
    script = plan.work / f"{tag}.lua"
    script.write_text(service.lua(f"{tag}-"))
    server.start()
    return Variant(variant, server, data, topic, script, {"closed": [], "open": []})


def run_round(
    service: Service, variants: list[str], plan: Plan, rng: random.Random
) -> dict[str, dict[str, dict[str, float]]]:
    """One round: every variant's server up at once, load in short slices, variants in a
    new random order in every slice, so drift and position fall on all alike."""
    bodies = plan.work / f"{service.name}.bodies"
    if not bodies.exists():
        bodies.write_text(service.lines(5000))
    with ThreadPoolExecutor(len(variants)) as pool:
        servers = list(pool.map(lambda v: launch(service, v, plan), variants))
    try:
        for v in servers:
            v.warm_requests = wrk(f"{v.server.base_url}/predict", 3, plan.connections, v.script)[
                "requests"
            ]
            v.rss_before = rss_mib(v.server.pid)
        slice_s = max(1, round(plan.seconds / plan.slices))
        for load in ("closed", "open"):
            if load == "open" and service.name not in plan.rates:
                bare = servers[0].slices["closed"]
                rps = sum(r["requests"] for r in bare) / sum(r["seconds"] for r in bare)
                plan.rates[service.name] = round(rps * plan.load)
            for _ in range(plan.slices):
                for v in rng.sample(servers, len(servers)):
                    url = f"{v.server.base_url}/predict"
                    cpu0 = cpu_s(v.server.pid)
                    if load == "closed":
                        result = wrk(url, slice_s, plan.connections, v.script)
                    else:
                        result = oha(url, slice_s, plan.rates[service.name], bodies)
                    result["cpu"] = cpu_s(v.server.pid) - cpu0
                    result["seconds"] = slice_s
                    v.slices[load].append(result)
        for v in servers:
            v.rss_after = rss_mib(v.server.pid)
    finally:
        for v in servers:
            v.server.stop()
    return {v.name: summarise_round(v) for v in servers}


def summarise_round(v: Variant) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for load, slices in v.slices.items():
        requests = sum(r["requests"] for r in slices)
        out[load] = {
            "rps": requests / sum(r["seconds"] for r in slices),
            "requests": requests,
            "p50": statistics.median(r["p50"] for r in slices),
            "p90": statistics.median(r["p90"] for r in slices),
            "p99": statistics.median(r["p99"] for r in slices),
            "cpu_ms": sum(r["cpu"] for r in slices) / max(requests, 1) * 1e3,
            "errors": sum(r["errors"] for r in slices),
        }
    closed = out["closed"]
    closed["rss_before"] = v.rss_before
    closed["rss_after"] = v.rss_after
    if v.name.startswith("predlog"):
        completed = v.warm_requests + closed["requests"] + out["open"]["requests"]
        if v.name == "predlog_kafka":
            written = kafka_count(os.environ["PREDLOG_TEST_KAFKA"], v.topic)
        else:
            files = list((v.data / "predictions").rglob("*.parquet"))
            written = ds.dataset(files, format="parquet").count_rows() if files else 0
        # wrk and oha count completed requests only; those in flight when they stop are
        # still served and logged, so more records than completions is expected. Lost
        # means a completed request without a record.
        closed["recorded"] = written
        closed["completed"] = completed
        closed["lost"] = max(0, completed - written)
    return out


def summarise(
    runs: dict[str, list[dict[str, dict[str, float]]]], load: str, metric: str
) -> dict[str, tuple[float, float, float, float]]:
    """Per variant: median value, and median/min/max over rounds of the ratio to bare."""
    out = {}
    bare = [r[load][metric] for r in runs["bare"]]
    for variant, rounds in runs.items():
        values = [r[load][metric] for r in rounds]
        ratios = [v / b for v, b in zip(values, bare, strict=True)]
        out[variant] = (
            statistics.median(values),
            statistics.median(ratios),
            min(ratios),
            max(ratios),
        )
    return out


def report(service: str, runs: dict[str, list[dict[str, dict[str, float]]]], plan: Plan) -> None:
    n = len(runs["bare"])
    slicing = f"{plan.slices} slices of {max(1, round(plan.seconds / plan.slices))} s per round"
    for load, title in (
        ("closed", f"closed loop, wrk -t1 -c{plan.connections}, {slicing}"),
        (
            "open",
            f"open loop, {'oha' if OHA.exists() else 'predlog bench generator'} "
            f"-q {plan.rates[service]:.0f}/s (x{plan.load} of bare's closed-loop "
            f"throughput) --latency-correction, {slicing}",
        ),
    ):
        print(f"\n[{service}] {title}; {n} rounds; value: median, ratio to bare: median [range]")
        columns = {m: summarise(runs, load, m) for m in ("rps", "p50", "p90", "p99", "cpu_ms")}
        for variant, rounds in runs.items():
            cells = []
            for metric, unit in (
                ("rps", "req/s"),
                ("p50", "ms"),
                ("p99", "ms"),
                ("cpu_ms", "ms CPU/req"),
            ):
                value, ratio, low, high = columns[metric][variant]
                cells.append(
                    f"{metric.replace('_ms', '')} {value:7.2f} {unit} x{ratio:.3f} "
                    f"[{low:.2f}-{high:.2f}]"
                )
            extra = ""
            if load == "closed":
                rs = rounds
                extra = (
                    f" | RSS {statistics.median(r['closed']['rss_before'] for r in rs):.0f}->"
                    f"{statistics.median(r['closed']['rss_after'] for r in rs):.0f} MiB"
                )
                if "lost" in rs[0]["closed"]:
                    extra += (
                        f" | recorded {sum(r['closed']['recorded'] for r in rs):.0f} for "
                        f"{sum(r['closed']['completed'] for r in rs):.0f} completed, lost "
                        f"{sum(r['closed']['lost'] for r in rs):.0f}"
                    )
            errors = sum(r[load]["errors"] for r in rounds)
            if errors:
                extra += f" | errors {errors:.0f}"
            print(f"  {variant:14s} " + " | ".join(cells) + extra)


def plot(all_runs: dict[str, dict[str, list[dict[str, dict[str, float]]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    services = list(all_runs)
    fig, axes = plt.subplots(len(services), 2, figsize=(12, 4 * len(services)), squeeze=False)
    for row, service in enumerate(services):
        runs = all_runs[service]
        names = list(runs)
        for col, load in enumerate(("closed", "open")):
            ax = axes[row][col]
            for k, pct in enumerate(("p50", "p90", "p99")):
                values = [statistics.median(r[load][pct] for r in runs[n]) for n in names]
                ax.bar([x + (k - 1) * 0.27 for x in range(len(names))], values, 0.27, label=pct)
            ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("latency (ms, log scale)")
            ax.set_title(f"{service}: {load} loop", fontsize=10)
            ax.legend(fontsize=8)
    fig.suptitle("bentoml serve, 1 worker: latency percentiles per variant (medians, same run)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def machine_basics() -> str:
    """The machine and the load generator, for the head of a benchmark's output."""
    wrk_version = subprocess.run(
        [shutil.which("wrk") or "/usr/bin/wrk", "-v"], capture_output=True, text=True, check=False
    ).stdout.split("[")[0]
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}), {memory:.0f} GiB; "
        f"Python {platform.python_version()}; {wrk_version.strip()}"
    )


def machine() -> str:
    import bentoml

    oha_version = (
        subprocess.run([str(OHA), "--version"], capture_output=True, text=True, check=False).stdout
        if OHA.exists()
        else "open loop: predlog bench's generator"
    )
    return f"{machine_basics()}; BentoML {bentoml.__version__}; {oha_version.strip()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=12, help="s per variant and load")
    parser.add_argument("--slices", type=int, default=6, help="slices per variant and load")
    parser.add_argument("--seed", type=int, default=1, help="for the order of the slices")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=float, default=0.5)
    parser.add_argument("--services", default="trivial,fraud")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "latency.png")
    parser.add_argument(
        "--base",
        type=Path,
        help="a plugin/ directory of another predlog version (git archive REV plugin): adds "
        "the variant predlog_base, that version's predlog line, to compare before and after",
    )
    args = parser.parse_args()
    if not OHA.exists():
        print(f"no oha at {OHA} (`make bench` installs it): the open loop uses predlog bench's")
    variants = [v for v in args.variants.split(",") if v]
    if "predlog_kafka" in variants and not os.environ.get("PREDLOG_TEST_KAFKA"):
        variants.remove("predlog_kafka")
        print("no broker (PREDLOG_TEST_KAFKA unset): the predlog_kafka variant is skipped")
    if args.base is not None and "predlog_base" not in variants:
        variants.append("predlog_base")
    if variants[0] != "bare":
        raise SystemExit("--variants must start with bare: every ratio is against it")
    plan = Plan(
        args.duration,
        args.slices,
        args.connections,
        {},
        args.load,
        Path(tempfile.mkdtemp(prefix="predlog-server-bench-")),
        args.base,
    )
    services = [SERVICES[s] for s in args.services.split(",")]
    print(machine())
    all_runs = {s.name: {v: [] for v in variants} for s in services}
    started = time.monotonic()
    rng = random.Random(args.seed)
    for round_no in range(args.rounds):
        for service in services:
            for variant, result in run_round(service, variants, plan, rng).items():
                all_runs[service.name][variant].append(result)
        print(f"round {round_no + 1} done at {time.monotonic() - started:.0f} s", flush=True)
    raw = plan.work / "runs.json"
    raw.write_text(json.dumps({"rates": plan.rates, "runs": all_runs}, indent=1))
    print(f"raw figures: {raw}")
    for service in services:
        report(service.name, all_runs[service.name], plan)
    plot(all_runs, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
