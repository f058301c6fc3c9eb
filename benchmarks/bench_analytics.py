"""evaluate and drift at 10 and 100 million prediction records: time and peak memory.

Generates (once per size, with DuckDB, in chunks so the generator's memory does not
grow with the size) records in the prediction log layout: two weeks of them, with JSON
features, sample weights, cohorts, two identifier-like features (``transaction_id``,
unique per record, and ``card_id``, about n/50 distinct values) and one feature shifted
in the second week, plus a labelled outcomes file. Then runs ``evaluate`` and ``drift``
each in a fresh child process and prints wall time and peak RSS of the child's whole
process tree (Spark's JVM is a child of the Python process), polled from /proc.

For comparison, at the sizes up to ``--compare-max`` (10 million by default) it also
runs the same calls on Spark local mode, checking that Spark's AUCs and PSIs equal
DuckDB's, and on the code before the engines were pushed down (a detached git worktree
of ``--old-commit``, imported through PYTHONPATH), so the ratios come from one run on
one machine state.

Usage: python benchmarks/bench_analytics.py [--sizes 10m,100m] [--only evaluate,drift]
       [--engines duckdb,spark] [--skip-old] [--generate-only] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BASELINE = "2026-10-01..2026-10-08"
CURRENT = "2026-10-08..2026-10-15"
# Bumped whenever the generated data changes, so a set from an older generator is rebuilt.
GENERATOR_VERSION = 3
DAYS = 14  # the records span two weeks, one partition a day
POLL_SECONDS = 0.05
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20


# --------------------------------------------------------------------------- sizes


def parse_size(text: str) -> int:
    """``10m`` -> 10_000_000; ``1k``, ``2b`` and plain integers (``10_000``) also read."""
    text = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 10**3, "m": 10**6, "b": 10**9}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    return int(float(number) * scale)


def size_label(n: int) -> str:
    """The short name of a size: 10M, 100M, 250K; other sizes as the number."""
    for suffix, scale in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


# ----------------------------------------------------------------------- generator

# Uniform [0, 1) from a hash of the record number, not random(): the outcomes file is
# written by a second query over the same numbers, and must see the same u1..u3 without
# a materialised table of every record (which at 100 million does not fit in memory).
_UNIFORMS = ", ".join(
    f"(hash(i, {seed}) >> 11)::DOUBLE / 9007199254740992 AS u{seed}" for seed in (1, 2, 3)
)


def _records_sql(n: int, start: int, stop: int) -> str:
    """Records ``start..stop`` of ``n``, with their hidden uniforms u1..u3."""
    two_weeks_us = DAYS * 24 * 3600 * 10**6
    return f"""
        SELECT
            1::SMALLINT AS schema_version,
            uuid()::VARCHAR AS prediction_id,
            'r-' || i AS request_id,
            TIMESTAMPTZ '2026-10-01 00:00:00+00'
                + to_microseconds((i::DOUBLE * {two_weeks_us} / {n})::BIGINT) AS timestamp_utc,
            'fraud' AS model_name,
            'v2.1.0' AS model_version,
            (i % 4)::INT AS seg,
            {_UNIFORMS},
            i
        FROM range({start}, {stop}) t(i)
    """


def _predictions_sql(n: int, start: int, stop: int) -> str:
    """The prediction log rows for records ``start..stop``."""
    cards = max(1, n // 50)
    return f"""
        SELECT schema_version, prediction_id, request_id, timestamp_utc, model_name,
               model_version,
               json_object(
                   'amount', round(exp(3.4 + 1.2 * u1)
                                   * (CASE WHEN i >= {n} / 2 THEN 1.8 ELSE 1 END), 2),
                   'hour', (u2 * 24)::INT,
                   'txn_count_1h', (u3 * 4)::INT,
                   'credit_score', 300 + (u2 * 550)::INT,
                   'debt_to_income', round(u3, 3),
                   'merchant_category',
                   ['grocery','fuel','travel','online'][1 + (u1 * 4)::INT % 4],
                   'channel', ['web','pos','mobile'][1 + seg % 3],
                   'transaction_id', request_id,
                   'card_id', 'card-' || (hash(i) % {cards})
               )::VARCHAR AS features,
               least(1.0, greatest(0.0, 0.6 * u1 * u3 + 0.2 * u2)) AS raw_score,
               0.5 AS decision_threshold,
               CASE WHEN u2 < 0.3 THEN 1.0 ELSE 3.3333333333333335 END AS sample_weight,
               ['standard','high_value','new','business'][1 + seg] AS user_segment,
               ['web','pos','mobile'][1 + seg % 3] AS channel,
               ['EU','US','APAC','LATAM'][1 + (i % 7) % 4] AS geographic_region,
               u3 * 3600 AS feature_freshness_max_age_seconds,
               strftime(timestamp_utc, '%Y-%m-%d') AS date
        FROM ({_records_sql(n, start, stop)})
    """


def _outcomes_sql(n: int) -> str:
    """One labelled outcome per record, keyed like a chargeback feed by transaction id."""
    return f"""
        SELECT 'r-' || i AS transaction_id,
               (random() < least(1.0, greatest(0.0, 0.6 * u1 * u3 + 0.2 * u2)))::INT AS fraud
        FROM (SELECT i, {_UNIFORMS} FROM range({n}) t(i))
    """


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _marker(root: Path, n: int) -> Path:
    return root / f".complete-v{GENERATOR_VERSION}-{n}"


def complete(root: Path, n: int) -> bool:
    """Whether ``root`` holds a finished set of ``n`` records from this generator."""
    return _marker(root, n).exists()


def generate_in_child(root: Path, n: int, chunk: int, memory_limit: str) -> tuple[float, float]:
    """Run :func:`generate` in a child process; its wall seconds and peak tree RSS (MiB).

    In a child so that this process stays small: Linux carries ru_maxrss across fork and
    exec, so a large parent would show up as every later child's own peak.
    """
    code = (
        "import sys; from pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from bench_analytics import generate\n"
        f"generate(Path({str(root)!r}), {n}, {chunk}, {memory_limit!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    seconds, peak, _ = watch(proc, timeout=float("inf"))
    if proc.returncode != 0:
        raise SystemExit(f"generating {n:,} records under {root} failed ({proc.returncode})")
    return seconds, peak


def chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    """Record ranges of at most ``chunk`` records, each within one day's partition.

    A COPY buffers row groups for every partition it writes to: one COPY of 10 million
    records over all fourteen days ran into a 4 GiB memory limit, fourteen of one day
    each peaked at 0.9 GiB. Record i falls on day floor(i * 14 / n).
    """
    ranges = []
    for day in range(DAYS):
        first, end = -(-day * n // DAYS), -(-(day + 1) * n // DAYS)
        ranges += [(lo, min(end, lo + chunk)) for lo in range(first, end, chunk)]
    return ranges


def generate(root: Path, n: int, chunk: int, memory_limit: str) -> bool:
    """Write ``n`` records under ``root`` unless a complete set is there; True if written.

    Each of :func:`chunks` is one COPY, so memory stays that of one chunk whatever
    ``n`` is (1.4 GiB at 100 million); DuckDB's ``memory_limit`` caps it besides.
    """
    import duckdb

    done = _marker(root, n)
    if done.exists():
        return False
    # A partial or older set: its files would mix with the new ones, so they go first.
    shutil.rmtree(root / "predictions", ignore_errors=True)
    (root / "outcomes.parquet").unlink(missing_ok=True)
    for marker in root.glob(".complete-*"):
        marker.unlink()
    (root / "predictions").mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")  # the date partitions are UTC days
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = {_quoted(root / '.tmp')}")
    started = time.perf_counter()
    for number, (start, stop) in enumerate(chunks(n, chunk)):
        con.execute(
            f"COPY ({_predictions_sql(n, start, stop)}) TO {_quoted(root / 'predictions')} "
            f"(FORMAT parquet, PARTITION_BY (date), OVERWRITE_OR_IGNORE, "
            f"FILENAME_PATTERN 'chunk{number:04d}-{{i}}')"
        )
        print(
            f"  generated {stop:,}/{n:,} predictions "
            f"({time.perf_counter() - started:.0f} s, "
            f"generator peak RSS {own_peak_mib():,.0f} MiB)",
            flush=True,
        )
    con.execute(
        f"COPY ({_outcomes_sql(n)}) TO {_quoted(root / 'outcomes.parquet')} (FORMAT parquet)"
    )
    rows = con.execute(
        f"SELECT count(*) FROM read_parquet({_quoted(root / 'predictions' / '*' / '*.parquet')})"
    ).fetchall()[0][0]
    outcomes = con.execute(
        f"SELECT count(*) FROM read_parquet({_quoted(root / 'outcomes.parquet')})"
    ).fetchall()[0][0]
    con.close()
    shutil.rmtree(root / ".tmp", ignore_errors=True)
    if rows != n or outcomes != n:
        raise SystemExit(f"generated {rows:,} predictions and {outcomes:,} outcomes, not {n:,}")
    done.touch()
    return True


def own_peak_mib() -> float:
    """This process's peak RSS so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mib(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def warm(root: Path) -> float:
    """Read every file of the set once, so each run finds it in the page cache.

    Without this the first run of a size pays for the disk and the others do not,
    which favours whichever code runs second.
    """
    started = time.perf_counter()
    for path in sorted(root.rglob("*.parquet")):
        with path.open("rb") as f:
            while f.read(8 * 2**20):
                pass
    return time.perf_counter() - started


# ----------------------------------------------------------------- process tree RSS


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process now running."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                # The command name in parentheses may hold spaces; fields follow the last ')'.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
    return parents


class TreeWatcher:
    """Peak resident memory of a process and all its descendants, polled from /proc.

    Descendants are found by parent pid, not process group or session, so a child that
    starts its own session is still counted. The whole /proc table is read only every
    ``RESCAN_POLLS`` polls (about 2 ms on this machine); in between only the known
    members' statm files are, so polling every 50 ms costs the measured work little.
    Each process's RSS is as the kernel counts it: pages shared between them (libraries)
    are counted in each, a few MiB.
    """

    RESCAN_POLLS = 10

    def __init__(self, root: int) -> None:
        self.root = root
        self.members = [root]
        self.polls = 0
        self.peak_mib = 0.0

    def poll(self) -> None:
        if self.polls % self.RESCAN_POLLS == 0:
            self.members = self._tree()
        self.polls += 1
        total = 0.0
        for pid in self.members:
            try:
                with open(f"/proc/{pid}/statm") as statm:
                    total += int(statm.read().split()[1]) * PAGE_MIB
            except OSError:  # exited since the last scan
                continue
        self.peak_mib = max(self.peak_mib, total)

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for pid, parent in _parents().items():
            children.setdefault(parent, []).append(pid)
        members, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            members.append(pid)
            todo.extend(children.get(pid, ()))
        return members


def watch(proc: subprocess.Popen[Any], timeout: float) -> tuple[float, float, bool]:
    """Wait for ``proc``, polling its tree; wall seconds, peak MiB, and whether it timed out.

    On a timeout the child's whole session (it must have been started in its own) is
    killed, the JVM of a Spark run included; after a normal exit, whatever is left of
    the session is, so a lingering JVM does not compete with the next run.
    """
    start = time.perf_counter()
    watcher = TreeWatcher(proc.pid)
    timed_out = False
    while proc.poll() is None:
        watcher.poll()
        if time.perf_counter() - start > timeout:
            timed_out = True
            break
        time.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - start
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return seconds, watcher.peak_mib, timed_out


# -------------------------------------------------------------------- child process

# Runs one call in a fresh interpreter and prints a small summary of its report. The
# engine is passed only when the function takes one, so the same code runs against the
# code before engines existed; asking that code for another engine is an error.
CHILD = """
import inspect, json, resource, sys
spec = json.loads(sys.argv[1])
import predlog
from predlog.tools.analytics import drift, evaluate
fn = evaluate if spec["command"] == "evaluate" else drift
kwargs = dict(spec["kwargs"])
for name in ("key", "label"):  # pairs, which JSON carries as lists
    if name in kwargs:
        kwargs[name] = tuple(kwargs[name])
accepted = inspect.signature(fn).parameters
if "engine" in accepted:
    kwargs["engine"] = spec["engine"]
    if spec["engine"] == "spark":
        kwargs["spark_master"] = spec["spark_master"]
elif spec["engine"] != "duckdb":
    raise SystemExit(f"{predlog.__file__}: {fn.__name__}() takes no engine= argument")
if spec["memory_limit"] is not None and "memory_limit" in accepted:
    kwargs["memory_limit"] = spec["memory_limit"]
r = fn(*spec["args"], **kwargs)
if spec["command"] == "evaluate":
    shown = {"n": r["n"], "auc": r["overall"]["auc"],
             "cohorts": sum(len(v) for v in r["cohorts"].values())}
    values = {"auc": r["overall"]["auc"]}
    for cohort, groups in r["cohorts"].items():
        for value, entry in groups.items():
            values[f"auc[{cohort}={value}]"] = entry["auc"]
else:
    shown = {"baseline": r["baseline"]["n"], "current": r["current"]["n"],
             "drifted": r["drifted"], "identifiers": r.get("identifiers")}
    values = {f"psi[{name}]": entry["psi"] for name, entry in r["features"].items()}
    values["psi[score]"] = r["score"]["psi"]
print("RESULT " + json.dumps({"shown": shown, "values": values, "engine": r.get("engine"),
                               "module": predlog.__file__}))
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      int(hwm[0].split()[1]) / 1024 if hwm else "nan")
"""


@dataclass
class Run:
    """One command on one size and engine, by the current or the old code."""

    size: int
    command: str
    engine: str
    code: str  # "new" or "old"
    seconds: float = 0.0
    tree_peak_mib: float = 0.0
    own_peak_mib: float | None = None  # the child's ru_maxrss
    own_hwm_mib: float | None = None  # its VmHWM: the same unless ru_maxrss was inherited
    shown: dict[str, Any] = field(default_factory=dict)
    values: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None

    @property
    def name(self) -> str:
        engine = f"{self.engine} (old code)" if self.code == "old" else self.engine
        return f"{self.command} {engine} {size_label(self.size)}"


def run_child(run: Run, spec: dict[str, Any], env: dict[str, str], timeout: float) -> None:
    """Run ``spec`` in a fresh child, polling its process tree's RSS; fills ``run``."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(spec)],
            stdout=out,
            stderr=err,
            env=env,
            text=True,
            start_new_session=True,  # one session to kill on a timeout, the JVM included
        )
        run.seconds, run.tree_peak_mib, timed_out = watch(proc, timeout)
        if timed_out:
            run.error = f"timed out after {timeout:.0f} s"
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            run.shown, run.values = result["shown"], result["values"]
            if spec["expect_module"] not in result["module"]:
                run.error = f"imported {result['module']}, not from {spec['expect_module']}"
            elif result["engine"] not in (None, spec["engine"]):
                run.error = f"asked for engine {spec['engine']}, the report says {result['engine']}"
        elif line.startswith("PEAK "):
            _, maxrss, hwm = line.split()
            run.own_peak_mib, run.own_hwm_mib = float(maxrss), float(hwm)
    if proc.returncode != 0 and run.error is None:
        # The last traceback, not the engine's log lines and progress bars before it.
        tail = stderr[stderr.rfind("Traceback") :] if "Traceback" in stderr else stderr
        run.error = f"exit {proc.returncode}: {tail.strip()[-2000:]}"


def old_checkout(path: Path, commit: str) -> Path | None:
    """The old code's ``plugin`` directory, adding a detached worktree if it is missing.

    ``git worktree add`` leaves the main working tree and its branch alone.
    """
    if not (path / "plugin" / "predlog").is_dir():
        proc = subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"old code: git worktree add failed, skipped: {proc.stderr.strip()}")
            return None
    head = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(f"old code: {path} at {head}")
    return path / "plugin"


# --------------------------------------------------------------------------- report


def describe(run: Run) -> str:
    if run.error is not None:
        return f"{run.name}: FAILED after {run.seconds:.1f} s: {run.error}"
    own = ""
    if run.own_peak_mib is not None:
        own = f", own ru_maxrss {run.own_peak_mib:,.0f} MiB"
        if run.own_hwm_mib is not None and abs(run.own_peak_mib - run.own_hwm_mib) > 16:
            own += f" (VmHWM {run.own_hwm_mib:,.0f} MiB)"
    return (
        f"{run.name}: {run.seconds:.1f} s, peak RSS {run.tree_peak_mib:,.0f} MiB (tree){own}"
        f" -> {json.dumps(run.shown)}"
    )


def max_difference(a: Run, b: Run) -> tuple[float, int, list[str]]:
    """Largest |a - b| over the AUCs or PSIs both report, how many, and which differ in kind.

    A value one run reports as None (an identifier, say) and the other as a number is
    listed by name rather than folded into the maximum.
    """
    worst, compared, mismatched = 0.0, 0, []
    for key in sorted(a.values.keys() & b.values.keys()):
        x, y = a.values[key], b.values[key]
        if x is None and y is None:
            continue
        if x is None or y is None:
            mismatched.append(key)
            continue
        worst, compared = max(worst, abs(x - y)), compared + 1
    mismatched += sorted(a.values.keys() ^ b.values.keys())
    return worst, compared, mismatched


def comparisons(runs: list[Run]) -> list[str]:
    """Spark against DuckDB, and the new code against the old, for the same call."""
    found = {(r.size, r.command, r.engine, r.code): r for r in runs if r.error is None}
    lines = []
    for (size, command, engine, code), run in sorted(found.items()):
        reference = found.get((size, command, "duckdb", "new"))
        if reference is None or run is reference:
            continue
        worst, compared, mismatched = max_difference(run, reference)
        what = "AUCs" if command == "evaluate" else "PSIs"
        line = (
            f"{command} {size_label(size)} {engine}{' (old code)' if code == 'old' else ''} "
            f"vs duckdb: max |diff| of {compared} {what} = {worst:.3g}"
        )
        if engine != "duckdb":  # the engines must agree; the old code need not
            line += " (within 1e-9)" if worst <= 1e-9 and not mismatched else " (NOT within 1e-9)"
        if mismatched:
            line += f"; reported by only one, or None in one: {', '.join(mismatched)}"
        if run.shown.get("drifted") != reference.shown.get("drifted"):
            line += f"; drifted {run.shown.get('drifted')} vs {reference.shown.get('drifted')}"
        lines.append(line)
    return lines


def ratios(runs: list[Run]) -> list[str]:
    """New against old code, DuckDB, per size and command where both ran."""
    done = {(r.size, r.command, r.engine, r.code): r for r in runs if r.error is None}
    lines = []
    for (size, command, engine, code), old in done.items():
        new = done.get((size, command, engine, "new"))
        if code != "old" or new is None:
            continue
        lines.append(
            f"{command} {size_label(size)} new/old: time {new.seconds / old.seconds:.2f}x "
            f"({new.seconds:.1f} s vs {old.seconds:.1f} s), peak RSS (tree) "
            f"{new.tree_peak_mib / old.tree_peak_mib:.2f}x "
            f"({new.tree_peak_mib:,.0f} MiB vs {old.tree_peak_mib:,.0f} MiB)"
        )
    return lines


def table(runs: list[Run]) -> list[str]:
    header = f"{'size':>5} {'command':<8} {'engine':<7} {'code':<4} {'wall s':>8} "
    header += f"{'tree MiB':>9} {'own MiB':>8}  x time  x RSS (new/old, DuckDB)"
    lines = [header, "-" * len(header)]
    old = {(r.size, r.command): r for r in runs if r.code == "old" and r.error is None}
    for run in runs:
        own = f"{run.own_peak_mib:8,.0f}" if run.own_peak_mib is not None else f"{'-':>8}"
        line = f"{size_label(run.size):>5} {run.command:<8} {run.engine:<7} {run.code:<4} "
        if run.error is not None:
            lines.append(line + f"{'FAILED':>8}")
            continue
        line += f"{run.seconds:8.1f} {run.tree_peak_mib:9,.0f} {own}"
        before = old.get((run.size, run.command))
        if before is not None and run.code == "new" and run.engine == before.engine:
            line += f"  {run.seconds / before.seconds:6.2f}"
            line += f"  {run.tree_peak_mib / before.tree_peak_mib:5.2f}"
        lines.append(line)
    return lines


# ----------------------------------------------------------------------------- main


def _csv(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = sorted(set(items) - set(choices))
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {choices}")
        return items

    return parse


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--sizes",
        type=lambda text: [parse_size(t) for t in text.split(",")],
        help="sizes such as 10m,100m (default)",
    )
    sizes.add_argument(
        "--records",
        type=lambda text: [int(t) for t in text.split(",")],
        help="sizes as record counts, such as 10000000,100000000",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="data sets go to <root>/predlog-bench-<size> (default: the temp directory)",
    )
    parser.add_argument(
        "--only",
        type=_csv(("evaluate", "drift")),
        default=["evaluate", "drift"],
        help="commands to run (default evaluate,drift)",
    )
    parser.add_argument(
        "--engines",
        type=_csv(("duckdb", "spark")),
        default=["duckdb", "spark"],
        help="engines to run (default duckdb,spark); the old code runs with duckdb",
    )
    parser.add_argument("--spark-master", default="local[*]")
    parser.add_argument(
        "--memory-limit",
        help="memory_limit= for code that takes it (the old code does not); default: its own",
    )
    parser.add_argument("--skip-old", action="store_true", help="do not rerun the old code")
    parser.add_argument(
        "--compare-max",
        type=parse_size,
        default=10_000_000,
        help="Spark and the old code run only at sizes up to this (default 10m)",
    )
    parser.add_argument(
        "--old-worktree", type=Path, default=Path(tempfile.gettempdir()) / "predlog-old"
    )
    parser.add_argument("--old-commit", default="16339ee")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--chunk", type=parse_size, default=10_000_000, help="records per COPY")
    parser.add_argument("--generator-memory", default="4GB", help="DuckDB memory_limit")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per call")
    parser.add_argument("--json-out", type=Path, help="also write every run here")
    return parser.parse_args()


def prepare(roots: dict[int, Path], chunk: int, memory_limit: str) -> None:
    """Generate each data set that is not complete on disk yet, and say where it is."""
    for n, root in roots.items():
        how = "reused"
        if not complete(root, n):
            seconds, peak = generate_in_child(root, n, chunk, memory_limit)
            how = f"generated in {seconds:.0f} s, generator peak RSS {peak:,.0f} MiB (tree)"
        print(
            f"data: {n:,} records under {root} ({how}; {disk_mib(root) / 1024:,.2f} GiB on disk)",
            flush=True,
        )


def call_for(command: str, root: Path) -> dict[str, Any]:
    """The positional and keyword arguments of ``command`` over the set under ``root``."""
    if command == "evaluate":
        return {
            "args": [str(root / "outcomes.parquet")],
            "kwargs": {
                "data_dir": str(root),
                "key": ["request_id", "transaction_id"],
                "label": ["fraud", None],
            },
        }
    return {
        "args": [],
        "kwargs": {"baseline": BASELINE, "current": CURRENT, "data_dir": str(root)},
    }


def plan_for(n: int, args: argparse.Namespace, old_plugin: Path | None) -> list[tuple[str, Path]]:
    """(engine, plugin directory to import predlog from) for each run at size ``n``.

    Spark and the old code run only up to ``--compare-max``: they are the comparison,
    not the goal, and the old code's memory grows with rows.
    """
    new = REPO / "plugin"
    compare = n <= args.compare_max
    plan = []
    if "duckdb" in args.engines:
        plan.append(("duckdb", new))
        if compare and old_plugin is not None:
            plan.append(("duckdb", old_plugin))
    if compare and "spark" in args.engines:
        plan.append(("spark", new))
    return plan


def main() -> None:
    args = parse_args()
    sizes: list[int] = args.sizes or args.records or [10_000_000, 100_000_000]
    roots = {n: args.data_root / f"predlog-bench-{size_label(n).lower()}" for n in sizes}
    prepare(roots, args.chunk, args.generator_memory)
    if args.generate_only:
        return
    old_plugin = None
    if not args.skip_old and "duckdb" in args.engines and min(sizes) <= args.compare_max:
        old_plugin = old_checkout(args.old_worktree, args.old_commit)
    runs: list[Run] = []
    for n, root in roots.items():
        print(
            f"{size_label(n)}: read {disk_mib(root) / 1024:,.2f} GiB into the page cache "
            f"in {warm(root):.0f} s",
            flush=True,
        )
        for command in args.only:
            for engine, plugin in plan_for(n, args, old_plugin):
                spec = {
                    **call_for(command, root),
                    "command": command,
                    "engine": engine,
                    "spark_master": args.spark_master,
                    "memory_limit": args.memory_limit,
                    "expect_module": str(plugin),
                }
                run = Run(n, command, engine, "old" if plugin == old_plugin else "new")
                # PYTHONPATH comes before the editable install's path, so it picks the code.
                env = {**os.environ, "PYTHONPATH": str(plugin)}
                run_child(run, spec, env, args.timeout)
                runs.append(run)
                print(describe(run), flush=True)
    print()
    print("\n".join(table(runs)))
    for line in ratios(runs) + comparisons(runs):
        print(line)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps([run.__dict__ for run in runs], indent=1))


if __name__ == "__main__":
    main()
