"""Soak: the fraud example under ``bentoml serve`` with predlog, at a fixed rate for a long time.

Short benchmarks cannot see what only time shows: memory that grows a little with
every request or file, CPU per request that creeps up as something accumulates, or a
record that goes missing once in 100,000. This runs the fraud example
(``examples.fraud_service.service:FraudService``, one worker, predlog writing Parquet)
for ``--minutes`` at ``--rate`` requests/s and samples every ``--every`` seconds:

* RSS of the server's whole process tree (the ``bentoml serve`` arbiter and its
  worker; the worker leaves the arbiter's process group, so the tree is walked by
  parent pid), and of each process;
* server CPU (user + system, all processes of the tree) in the interval divided by
  the requests answered in it: CPU ms per request, a steadier measure of work than
  latency on a shared machine;
* requests sent, answered, failed (transport error or not 200), not sent on
  schedule (the in-flight bound was reached, or sent more than ``LATE_S`` after
  their time), and the interval's p50/p99 latency.

The load is open loop: request ``i`` is due at ``start + i / rate`` whatever the
server does, so a slow server meets more load, not less, and latency is measured from
the time a request was due (a late send counts against the server's latency too,
but it is also counted, so a loaded client shows). Requests use 500 card ids, as
bench_server.py does: the example's feature store caches every card it sees, so
unique cards would make the *example* grow, which is not what this measures.

At the end the server gets SIGTERM (predlog flushes and closes its files), every
Parquet record is read, and each request answered 200 must have a record with its
``X-Request-ID``: records lost must be 0, and the exit status is 1 otherwise.

**Default rate: 25 requests/s**, half of what the fraud example answers on the
project's 2-core machine with this load generator beside it. The example serves with
one worker, which spends 10-13 ms of server CPU per request (the scikit-learn model);
offered 100/s here, it answered 46-55/s, latency grew to 5-7 s and the in-flight
bound turned half the requests away. At 50/s it keeps up, but p99 already reaches
0.1-1 s. A soak past or near saturation measures the queue (memory and latency of a
backlog), not predlog; half of saturation leaves room for the noisy neighbours this
machine has, as bench_server.py's open loop does, and 30 minutes still make 45,000
requests to check for lost records.

Usage: python benchmarks/soak.py [--minutes 30] [--rate 25] [--every 10] [--warmup 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs; BentoML depends on it
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # services.bentoserve

from services.bentoserve import BentoServer  # noqa: E402

from _common import cpu_model  # noqa: E402

TARGET = "examples.fraud_service.service:FraudService"
PSEUDONYM_KEY = "soak-only-pseudonym-key-0123456789"
#: A request sent this long after it was due was not sent on schedule.
LATE_S = 0.010
#: The example's own per-request bound (``traffic.timeout``) is 30 s.
REQUEST_TIMEOUT_S = 35.0
CARDS = 500
MIB = 2**20


@dataclass
class Tally:
    """What happened to requests in one sampling interval."""

    sent: int = 0
    answered: int = 0
    ok: int = 0
    failed: int = 0
    unsent: int = 0
    late: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    #: Why requests failed: ``HTTP <status>`` or the client's exception class.
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Sample:
    """One interval, as written to soak.json."""

    t_s: float
    interval_s: float
    rss_mib: float
    rss_by_process_mib: dict[str, float]
    cpu_s: float
    cpu_ms_per_request: float | None
    sent: int
    answered: int
    ok: int
    failed: int
    unsent: int
    late: int
    errors: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None


class ServerProbe:
    """RSS and CPU of a process tree, with CPU kept per pid.

    Per pid, so a worker that restarts neither subtracts its predecessor's CPU nor
    goes unnoticed: every pid ever seen is kept in ``pids_seen``.
    """

    def __init__(self, root: int) -> None:
        self.root = psutil.Process(root)
        self.cpu_seen: dict[int, float] = {}
        self.pids_seen: set[int] = set()

    def processes(self) -> list[psutil.Process]:
        return [self.root, *self.root.children(recursive=True)]

    def read(self) -> tuple[float, dict[str, float], float]:
        """Tree RSS (MiB), RSS per ``pid name`` (MiB), and CPU seconds since the last read."""
        rss: dict[str, float] = {}
        cpu = 0.0
        for proc in self.processes():
            try:
                with proc.oneshot():
                    mem = proc.memory_info().rss
                    times = proc.cpu_times()
                    name = proc.name()
            except psutil.NoSuchProcess:
                continue
            total = times.user + times.system
            cpu += total - self.cpu_seen.get(proc.pid, 0.0)
            self.cpu_seen[proc.pid] = total
            self.pids_seen.add(proc.pid)
            rss[f"{proc.pid} {name}"] = mem / MIB
        return sum(rss.values()), rss, cpu


def body(i: int) -> dict[str, Any]:
    """Transaction ``i``: unique id, one of ``CARDS`` cards, a spread of amounts and hours."""
    return {
        "transaction": {
            "transaction_id": f"t{i}",
            "card_id": f"card-{i % CARDS}",
            "amount": float(i % 997) + 0.5,
            "merchant_category": ("grocery", "fuel", "electronics", "travel")[i % 4],
            "hour": i % 24,
            "user_segment": ("standard", "high_value", "new_customer", "business")[i % 3],
            "channel": ("web", "mobile", "pos")[i % 3],
            "region": ("EU", "US", "APAC")[i % 3],
        }
    }


class Load:
    """Open-loop load: request ``i`` is due at ``start + i / rate``, with a bound in flight.

    ``ok_ids`` holds the number of every request answered 200, for the loss check;
    ``tally`` is swapped out by the sampler at each interval.
    """

    def __init__(self, base_url: str, rate: float, max_in_flight: int, prefix: str) -> None:
        self.base_url = base_url
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.prefix = prefix
        self.tally = Tally()
        self.ok_ids: set[int] = set()
        self.in_flight = 0
        self.total = Tally()

    def request_id(self, i: int) -> str:
        return f"{self.prefix}-{i}"

    async def run(self, seconds: float) -> None:
        """Send on schedule for ``seconds``, then wait for the requests still in flight."""
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=self.base_url, limits=limits, timeout=REQUEST_TIMEOUT_S
        ) as client:
            loop = asyncio.get_running_loop()
            tasks: set[asyncio.Task[None]] = set()
            start = loop.time()
            count = int(seconds * self.rate)
            for i in range(count):
                due = start + i / self.rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self.in_flight >= self.max_in_flight:
                    self.tally.unsent += 1
                    continue
                if loop.time() - due > LATE_S:
                    self.tally.late += 1
                self.in_flight += 1
                self.tally.sent += 1
                task = asyncio.create_task(self.one(client, i, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks)

    async def one(self, client: httpx.AsyncClient, i: int, due: float) -> None:
        status = 0
        error = ""
        try:
            response = await client.post(
                "/predict", json=body(i), headers={"X-Request-ID": self.request_id(i)}
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        finally:
            self.in_flight -= 1
        tally = self.tally
        if status:
            tally.answered += 1
            tally.latencies_ms.append((asyncio.get_running_loop().time() - due) * 1e3)
        if status == 200:
            tally.ok += 1
            self.ok_ids.add(i)
        else:
            tally.failed += 1
            tally.errors[error or f"HTTP {status}"] += 1


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def close_interval(load: Load) -> Tally:
    """Swap out the interval's tally and add it to the totals (on the event loop's thread,
    where every count is made, so none lands in a tally already read)."""
    tally, load.tally = load.tally, Tally()
    total = load.total
    total.sent += tally.sent
    total.answered += tally.answered
    total.ok += tally.ok
    total.failed += tally.failed
    total.unsent += tally.unsent
    total.late += tally.late
    total.latencies_ms.extend(tally.latencies_ms)
    total.errors.update(tally.errors)
    return tally


def make_sample(
    tally: Tally, reading: tuple[float, dict[str, float], float], t_s: float, interval_s: float
) -> Sample:
    rss, by_process, cpu = reading
    return Sample(
        t_s=round(t_s, 2),
        interval_s=round(interval_s, 2),
        rss_mib=round(rss, 2),
        rss_by_process_mib={k: round(v, 2) for k, v in by_process.items()},
        cpu_s=round(cpu, 3),
        cpu_ms_per_request=round(cpu / tally.answered * 1e3, 3) if tally.answered else None,
        sent=tally.sent,
        answered=tally.answered,
        ok=tally.ok,
        failed=tally.failed,
        unsent=tally.unsent,
        late=tally.late,
        errors=dict(tally.errors),
        p50_ms=percentile(tally.latencies_ms, 0.50),
        p99_ms=percentile(tally.latencies_ms, 0.99),
    )


async def soak(load: Load, probe: ServerProbe, seconds: float, every: float) -> list[Sample]:
    """Run the load and sample every ``every`` s until the last answer is in.

    The server is read on a thread (walking /proc takes milliseconds), so sampling
    does not delay the requests due meanwhile.
    """
    samples: list[Sample] = []
    probe.read()  # CPU from here on
    loop = asyncio.get_running_loop()
    start = last = loop.time()
    driver = asyncio.create_task(load.run(seconds))
    while not driver.done():
        await asyncio.wait({driver}, timeout=max(0.0, last + every - loop.time()))
        now = loop.time()
        tally = close_interval(load)
        reading = await asyncio.to_thread(probe.read)
        samples.append(make_sample(tally, reading, now - start, now - last))
        last = now
        print(progress(samples[-1]), flush=True)
    driver.result()
    return samples


def progress(s: Sample) -> str:
    cpu = f"{s.cpu_ms_per_request:6.2f}" if s.cpu_ms_per_request is not None else "     -"
    p50 = f"{s.p50_ms:7.1f}" if s.p50_ms is not None else "      -"
    p99 = f"{s.p99_ms:7.1f}" if s.p99_ms is not None else "      -"
    return (
        f"t {s.t_s:7.1f} s | RSS {s.rss_mib:7.1f} MiB | CPU {cpu} ms/req | "
        f"sent {s.sent:5d} answered {s.answered:5d} failed {s.failed:3d} "
        f"unsent {s.unsent:3d} late {s.late:4d} | p50 {p50} ms p99 {p99} ms"
    )


def recorded_ids(data_dir: Path) -> tuple[list[str], int]:
    """Every request id predlog wrote, and how many unfinished (hidden .tmp) files remain."""
    root = data_dir / "predictions"
    files = sorted(root.rglob("*.parquet")) if root.exists() else []
    leftovers = len(list(root.rglob(".*.tmp"))) if root.exists() else 0
    if not files:
        return [], leftovers
    table = ds.dataset(files, format="parquet").to_table(columns=["request_id"])
    return [str(v) for v in table.column("request_id").to_pylist()], leftovers


@dataclass
class Outcome:
    """The loss check: requests answered 200 against the records predlog wrote."""

    answered_ok: int
    records: int
    lost: int
    duplicates: int
    unmatched: int  # records of requests not answered 200 (failed, or timed out here)
    unfinished_files: int
    lost_examples: list[str]


def check_records(load: Load, data_dir: Path) -> Outcome:
    ids, unfinished = recorded_ids(data_dir)
    unique = set(ids)
    answered = {load.request_id(i) for i in load.ok_ids}
    lost = sorted(answered - unique)
    return Outcome(
        answered_ok=len(answered),
        records=len(ids),
        lost=len(lost),
        duplicates=len(ids) - len(unique),
        unmatched=len(unique - answered),
        unfinished_files=unfinished,
        lost_examples=lost[:10],
    )


def cpu_ms(samples: list[Sample]) -> float | None:
    """CPU ms per request over several intervals: total CPU over total answers."""
    answered = sum(s.answered for s in samples)
    return sum(s.cpu_s for s in samples) / answered * 1e3 if answered else None


def summarise(samples: list[Sample], warmup_s: float) -> dict[str, Any]:
    """Start and end RSS, growth, and CPU per request in the first and last windows.

    The first window starts after the warm-up (imports, caches, the model's first
    calls), so the comparison is between steady states. Windows are 5 minutes, or
    half of what follows the warm-up in a shorter run.
    """
    end = samples[-1].t_s
    steady = [s for s in samples if s.t_s > warmup_s] or samples[-1:]
    window = min(300.0, (end - warmup_s) / 2)
    first = [s for s in steady if s.t_s <= warmup_s + window] or steady[:1]
    last = [s for s in steady if s.t_s > end - window] or steady[-1:]
    after = next((s for s in samples if s.t_s >= warmup_s), samples[-1])
    # The second half shows whether memory settled: the first half holds one-off
    # steps (the first Parquet file published, allocator arenas reaching their size).
    half = [s for s in steady if s.t_s >= (steady[0].t_s + end) / 2]
    return {
        "rss_first_sample_mib": samples[0].rss_mib,
        "rss_after_warmup_mib": after.rss_mib,
        "rss_after_warmup_at_s": after.t_s,
        "rss_end_mib": samples[-1].rss_mib,
        "rss_growth_mib": samples[-1].rss_mib - after.rss_mib,
        "rss_slope_mib_per_hour": rss_slope(steady),
        "rss_slope_second_half_mib_per_hour": rss_slope(half),
        "window_s": window,
        "cpu_ms_first_window": cpu_ms(first),
        "cpu_ms_last_window": cpu_ms(last),
    }


def rss_slope(samples: list[Sample]) -> float | None:
    """RSS growth in MiB/hour fitted over ``samples``, or None over less than 5 minutes
    (a shorter trend extrapolates noise to an hour)."""
    if len(samples) < 2 or samples[-1].t_s - samples[0].t_s < 300:
        return None
    fit = statistics.linear_regression([s.t_s for s in samples], [s.rss_mib for s in samples])
    return float(fit.slope * 3600)


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def report(summary: dict[str, Any], total: Tally, outcome: Outcome, warmup_s: float) -> None:
    window = summary["window_s"] / 60
    print(
        f"\nrequests: sent {total.sent:,}, answered {total.answered:,} ({total.ok:,} with 200), "
        f"failed {total.failed:,}, not sent on schedule {total.unsent:,} (in-flight bound), "
        f"sent > {LATE_S * 1e3:.0f} ms late {total.late:,}"
    )
    if total.errors:
        print(f"failures: {dict(total.errors)}")
    print(
        f"latency from due time: p50 {fmt(percentile(total.latencies_ms, 0.5), '.1f')} ms, "
        f"p99 {fmt(percentile(total.latencies_ms, 0.99), '.1f')} ms"
    )
    print(
        f"RSS (server tree): first sample {summary['rss_first_sample_mib']:.1f} MiB, after "
        f"warm-up ({summary['rss_after_warmup_at_s']:.0f} s) "
        f"{summary['rss_after_warmup_mib']:.1f} MiB, end {summary['rss_end_mib']:.1f} MiB, "
        f"growth {summary['rss_growth_mib']:+.1f} MiB "
        f"(trend after warm-up {fmt(summary['rss_slope_mib_per_hour'], '+.1f')} MiB/hour, "
        f"over the second half {fmt(summary['rss_slope_second_half_mib_per_hour'], '+.1f')})"
    )
    print(
        f"CPU per request: first {window:.1f} min after the {warmup_s:.0f} s warm-up "
        f"{fmt(summary['cpu_ms_first_window'])} ms, last {window:.1f} min "
        f"{fmt(summary['cpu_ms_last_window'])} ms"
    )
    print(
        f"records: {outcome.records:,} written for {outcome.answered_ok:,} requests answered "
        f"200; lost {outcome.lost}, duplicates {outcome.duplicates}, records of requests not "
        f"answered 200 {outcome.unmatched}, unfinished files {outcome.unfinished_files}"
    )
    if outcome.lost:
        print(f"LOST, for example: {', '.join(outcome.lost_examples)}")


def plot(samples: list[Sample], title: str, warmup_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.t_s / 60 for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    top.plot(minutes, [s.rss_mib for s in samples], marker=".", color="tab:blue")
    top.set_ylabel("RSS of the server tree (MiB)")
    cpu = [(m, s.cpu_ms_per_request) for m, s in zip(minutes, samples, strict=True)]
    bottom.plot(
        [m for m, c in cpu if c is not None],
        [c for _, c in cpu if c is not None],
        marker=".",
        color="tab:orange",
    )
    bottom.set_ylabel("server CPU per request (ms)")
    bottom.set_xlabel("minutes since the load started")
    for ax in (top, bottom):
        ax.axvspan(0, warmup_s / 60, color="0.9", label="warm-up")
        ax.grid(alpha=0.3)
    top.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def machine() -> str:
    import bentoml

    cpu = cpu_model()
    return (
        f"{os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()}, "
        f"BentoML {bentoml.__version__}"
    )


def server_env(work: Path) -> dict[str, str]:
    """The server's environment: predlog's defaults, Parquet under ``work``.

    Inherited PREDLOG_* settings are dropped, and the OTLP endpoint with them (the
    example traces when it is set), so the run measures the example as shipped
    whatever the calling shell has set.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREDLOG_") and k != "OTEL_EXPORTER_OTLP_ENDPOINT"
    }
    env.update(
        PREDLOG_DATA_DIR=str(work / "data"),
        PREDLOG_PSEUDONYM_KEY=PSEUDONYM_KEY,
        BENTOML_HOME=str(work / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}",
    )
    return env


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the load")
    parser.add_argument("--rate", type=float, default=25.0, help="requests/s, open loop")
    parser.add_argument("--every", type=float, default=10.0, help="s between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="s before RSS 'start'")
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks", help="soak.png/.json")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and server log")
    args = parser.parse_args()
    if args.minutes <= 0 or args.rate <= 0 or args.every <= 0:
        parser.error("--minutes, --rate and --every must be positive")
    # A short check run still gets a steady part to compare.
    args.warmup = min(args.warmup, args.minutes * 60 / 2)
    return args


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="predlog-soak-"))
    started = datetime.now(timezone.utc)
    title = (
        f"predlog soak: fraud example, bentoml serve, {args.rate:g} req/s open loop for "
        f"{args.minutes:g} min, sampled every {args.every:g} s; {started:%Y-%m-%d %H:%M} UTC"
    )
    print(machine())
    print(title)
    server = BentoServer(
        TARGET, log_path=work / "server.log", env=server_env(work), cwd=ROOT, ready_timeout=300
    )
    server.start()
    try:
        probe = ServerProbe(server.pid)
        rss_idle = probe.read()[0]
        print(f"server ready, pid {server.pid}, RSS idle {rss_idle:.1f} MiB; work dir {work}")
        load = Load(server.base_url, args.rate, args.max_in_flight, f"soak-{os.getpid()}")
        samples = asyncio.run(soak(load, probe, args.minutes * 60, args.every))
        pids = sorted(probe.pids_seen)
    finally:
        server.stop(timeout=120)
    survivors = [p for p in pids if psutil.pid_exists(p)]
    outcome = check_records(load, work / "data")
    summary = summarise(samples, args.warmup)
    report(summary, load.total, outcome, args.warmup)
    print(f"server processes seen: {len(pids)}; still running after SIGTERM: {survivors}")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(samples, title, args.warmup, args.out / "soak.png")
    results = {
        "title": title,
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rss_idle_mib": rss_idle,
        "server_pids": pids,
        "summary": summary,
        "records": asdict(outcome),
        "samples": [asdict(s) for s in samples],
    }
    (args.out / "soak.json").write_text(json.dumps(results, indent=1))
    print(f"plot {args.out / 'soak.png'}, samples {args.out / 'soak.json'}")
    if outcome.lost or args.keep:
        print(f"kept: {work} (Parquet under data/, server log: {work / 'server.log'})")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if outcome.lost else 0


if __name__ == "__main__":
    sys.exit(main())
