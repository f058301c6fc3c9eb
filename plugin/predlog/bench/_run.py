"""One ``predlog bench`` run: both variants served, rounds of load, the records counted.

The two variants are the same service with the same environment, except that one
has ``PREDLOG_ENABLED=false`` and each has its own data directory in a temporary
directory. Both stay up for the whole run; each round gives each variant a closed-loop
slice (throughput) and then an open-loop slice (latency at a fixed arrival rate),
and the order of the variants alternates from round to round, so drift of a noisy
machine falls on both alike. Every ratio is taken within a round.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.dataset as ds

from predlog.bench import _load
from predlog.bench._servers import Kind, Server, detect, free_port

VARIANTS = ("predlog", "pass-through")
WARMUP_S = 3.0
CEILING_S = 3.0
#: Warn when the service's throughput is above this share of the generator's ceiling.
NEAR_CEILING = 0.5


@dataclass(frozen=True)
class Plan:
    """What the user asked for."""

    service: str
    bodies: Sequence[bytes]
    path: str | None
    duration: float
    rounds: int
    connections: int
    load: float
    cwd: Path


@dataclass
class Variant:
    """One served copy and what its load measured."""

    name: str
    server: Server
    data_dir: Path
    closed: list[_load.Slice] = field(default_factory=list)
    open: list[_load.Slice] = field(default_factory=list)
    ok_ids: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    records: int = 0
    lost: int = 0

    @property
    def measured_requests(self) -> int:
        return sum(len(s.latencies_ms) for s in (*self.closed, *self.open))

    @property
    def errors(self) -> int:
        return sum(s.errors for s in (*self.closed, *self.open))


@dataclass
class Outcome:
    """Everything the summary and the report are made from."""

    plan: Plan
    kind: Kind
    path: str
    ceiling: float
    rate: float
    slice_s: float
    variants: dict[str, Variant]


def _start(plan: Plan, kind: Kind, tmp: Path) -> dict[str, Variant]:
    variants: dict[str, Variant] = {}
    for name in VARIANTS:
        data = tmp / f"data-{name}"
        env = dict(os.environ)
        env["PREDLOG_DATA_DIR"] = str(data)
        env["PREDLOG_ENABLED"] = "true" if name == "predlog" else "false"
        server = Server(plan.service, kind, env=env, cwd=plan.cwd, log=tmp / f"{name}.log")
        variants[name] = Variant(name, server, data)
    for variant in variants.values():
        variant.server.start()
    return variants


def _target(variant: Variant, path: str, plan: Plan, run: str) -> _load.Target:
    return _load.Target(variant.server.port, path, plan.bodies, f"{run}-{variant.name}")


def _rounds(out: Outcome, run: str) -> None:
    plan, variants = out.plan, out.variants
    for i in range(plan.rounds):
        order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
        for name in order:
            v = variants[name]
            s = _load.closed_loop(_target(v, out.path, plan, run), out.slice_s, plan.connections)
            v.closed.append(s)
            v.ok_ids.extend(s.ok_ids)
        if i == 0:
            # The open-loop rate: a share of the pass-through's closed-loop throughput.
            out.rate = max(1.0, plan.load * variants["pass-through"].closed[0].throughput)
        for name in order:
            v = variants[name]
            s = _load.open_loop(_target(v, out.path, plan, run), out.slice_s, out.rate)
            v.open.append(s)
            v.ok_ids.extend(s.ok_ids)


def _count_records(variant: Variant) -> None:
    """Records in the variant's Parquet files, and its answered requests without one."""
    files = list((variant.data_dir / "predictions").rglob("*.parquet"))
    if not files:
        variant.records, variant.lost = 0, len(variant.ok_ids)
        return
    table = ds.dataset(files, format="parquet").to_table(columns=["request_id"])
    written = set(table.column("request_id").to_pylist())
    variant.records = table.num_rows
    variant.lost = sum(1 for rid in variant.ok_ids if rid not in written)


def run(plan: Plan) -> Outcome:
    """Measure; the servers are stopped (SIGTERM) before the records are counted."""
    kind = detect(plan.service, os.environ, plan.cwd)
    path = plan.path or kind.route or "/predict"
    ceiling = _load.ceiling(free_port(), plan.bodies, CEILING_S, plan.connections)
    slice_s = plan.duration / (plan.rounds * 2 * len(VARIANTS))
    run_id = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="predlog-bench-") as tmp:
        variants = _start(plan, kind, Path(tmp))
        out = Outcome(plan, kind, path, ceiling, 0.0, slice_s, variants)
        try:
            for v in variants.values():
                warm = _load.closed_loop(_target(v, path, plan, run_id + "w"), WARMUP_S, 2)
                v.ok_ids.extend(warm.ok_ids)
            cpu_before = {n: v.server.cpu_seconds() for n, v in variants.items()}
            _rounds(out, run_id)
            time.sleep(1.5)  # predlog's last flush of the run counts as its work
            for n, v in variants.items():
                v.cpu_s = v.server.cpu_seconds() - cpu_before[n]
        finally:
            for v in variants.values():
                v.server.stop()
        for v in variants.values():
            _count_records(v)
    return out
