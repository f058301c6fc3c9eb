"""One ``predlog bench`` run: both variants served, rounds of load, the records counted.

The two variants are the same service with the same environment, except that one
has ``PREDLOG_ENABLED=false`` and each has its own data directory in a temporary
directory. Both stay up for the whole run; each round gives each variant a closed-loop
slice (throughput) and then an open-loop slice (latency at a fixed arrival rate),
and the order of the variants alternates from round to round, so drift of a noisy
machine falls on both alike. Every ratio is taken within a round.

A service without predlog's line is served through ``predlog.tools.bench._bootstrap``,
which adds the line in the served process (both variants: the pass-through is the
line disabled). Records lost are counted only among the requests predlog was asked to
record: those on the line's paths whose id its sampling must keep, and only where the
records land in a local Parquet directory.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from predlog.tools.bench import _bootstrap, _load
from predlog.tools.bench._servers import Kind, Server, detect, free_port
from predlog.tools.bench._target import must_keep

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
    #: predlog's options for the line the bench adds when the service has none.
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Where those options come from, for the summary: option and variable names.
    options_from: Sequence[str] = ()


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
    #: Answered requests predlog was asked to record; None when they cannot be counted.
    asked: int | None = None
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


def _env(plan: Plan, name: str, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PREDLOG_DATA_DIR"] = str(data)
    env["PREDLOG_ENABLED"] = "true" if name == "predlog" else "false"
    env[_bootstrap.TARGET_VAR] = plan.service
    env[_bootstrap.OPTIONS_VAR] = json.dumps(dict(plan.options))
    return env


def _start(plan: Plan, kind: Kind, tmp: Path) -> dict[str, Variant]:
    served = plan.service if kind.added is None else _bootstrap.SERVED
    variants: dict[str, Variant] = {}
    for name in VARIANTS:
        data = tmp / f"data-{name}"
        env = _env(plan, name, data)
        server = Server(served, kind, env=env, cwd=plan.cwd, log=tmp / f"{name}.log")
        variants[name] = Variant(name, server, data)
    try:
        for variant in variants.values():
            variant.server.start()
    except BaseException:
        for variant in variants.values():  # the one that started must not outlive us
            variant.server.stop()
        raise
    return variants


def _target(variant: Variant, path: str, plan: Plan, run: str, stretch: str) -> _load.Target:
    """Requests of one stretch of load; each id names the run, the stretch and the
    variant, so that no two requests of a run share one."""
    header = variant.server.kind.expect["header"]
    prefix = f"{run}{stretch}-{variant.name}"
    return _load.Target(variant.server.port, path, plan.bodies, prefix, header)


def _rounds(out: Outcome, run: str) -> None:
    plan, variants = out.plan, out.variants
    for i in range(plan.rounds):
        order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
        for name in order:
            v = variants[name]
            s = _load.closed_loop(
                _target(v, out.path, plan, run, f"c{i}"), out.slice_s, plan.connections
            )
            v.closed.append(s)
            v.ok_ids.extend(s.ok_ids)
        if i == 0:
            # The open-loop rate: a share of the pass-through's closed-loop throughput.
            out.rate = max(1.0, plan.load * variants["pass-through"].closed[0].throughput)
        for name in order:
            v = variants[name]
            s = _load.open_loop(_target(v, out.path, plan, run, f"o{i}"), out.slice_s, out.rate)
            v.open.append(s)
            v.ok_ids.extend(s.ok_ids)


def _count_records(variant: Variant, expect: Mapping[str, Any], where: Path, run: str) -> None:
    """The variant's records of this run in ``where``, and the requests predlog was
    asked to record that have none."""
    asked = (
        [rid for rid in variant.ok_ids if must_keep(rid, expect["sample_rate"])]
        if expect["logged"]
        else []
    )
    variant.asked = len(asked)
    files = list((where / "predictions").rglob("*.parquet"))
    written: set[str] = set()
    if files:
        ids = ds.dataset(files, format="parquet").to_table(columns=["request_id"])["request_id"]
        mine = f"-{variant.name}-"
        written = {rid for rid in ids.to_pylist() if rid and rid.startswith(run) and mine in rid}
    variant.records = len(written)
    variant.lost = sum(1 for rid in asked if rid not in written)


def _where(kind: Kind, variant: Variant, predlog_data: Path) -> Path | None:
    """Where ``variant``'s records land: its own data directory, unless the line names
    another (then both variants share it); None when they are not in local Parquet."""
    found = kind.expect["parquet"]
    if found is None:
        return None
    return variant.data_dir if Path(found) == predlog_data else Path(found)


def run(plan: Plan) -> Outcome:
    """Measure; the servers are stopped (SIGTERM) before the records are counted."""
    run_id = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="predlog-bench-") as tmp:
        predlog_data = Path(tmp) / "data-predlog"
        env = _env(plan, "predlog", predlog_data)
        kind = detect(plan.service, plan.path, plan.options, env=env, cwd=plan.cwd)
        if plan.options and kind.added is None:
            raise ValueError(
                f"{plan.service} has predlog's line, which the bench measures as it is: "
                f"{', '.join(plan.options)} applies only to a line the bench adds (set it "
                "in the service's line, or with its PREDLOG_* variable)"
            )
        path = plan.path or kind.route or "/predict"
        ceiling = _load.ceiling(free_port(), plan.bodies, CEILING_S, plan.connections)
        slice_s = plan.duration / (plan.rounds * 2 * len(VARIANTS))
        variants = _start(plan, kind, Path(tmp))
        out = Outcome(plan, kind, path, ceiling, 0.0, slice_s, variants)
        try:
            _measure(out, run_id)
        finally:
            for v in variants.values():
                v.server.stop()
        for v in variants.values():
            where = _where(kind, v, predlog_data)
            if where is not None:
                _count_records(v, kind.expect, where, run_id)
    return out


def _measure(out: Outcome, run_id: str) -> None:
    """Warm-up, then the rounds; each variant's CPU over the rounds."""
    variants = out.variants
    for v in variants.values():
        warm = _load.closed_loop(_target(v, out.path, out.plan, run_id, "w"), WARMUP_S, 2)
        v.ok_ids.extend(warm.ok_ids)
    cpu_before = {n: v.server.cpu_seconds() for n, v in variants.items()}
    _rounds(out, run_id)
    time.sleep(1.5)  # predlog's last flush of the run counts as its work
    for n, v in variants.items():
        v.cpu_s = v.server.cpu_seconds() - cpu_before[n]
