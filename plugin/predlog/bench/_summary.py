"""The text ``predlog bench`` prints: ratios with their range, CPU, records lost.

Absolute figures are medians over rounds; each ratio is predlog's value over the
pass-through's in the same round, with its median and range over the rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from predlog.bench._load import Slice
from predlog.bench._run import NEAR_CEILING, Outcome, Variant
from predlog.bench._stats import PERCENTILES, percentile, ratio

GENERATOR = (
    "load generator: predlog's own, Python asyncio HTTP/1.1 keep-alive client in this\n"
    "  process. Honest at these rates: it is measured against a server that does no work\n"
    "  (its ceiling, below), the service runs well under it, and any delay it adds falls\n"
    "  on both variants alike; open-loop latency counts from each request's scheduled\n"
    "  start, so a late send is charged, not hidden."
)


def _row(label: str, pick: Callable[[Variant], Sequence[float]], out: Outcome) -> str:
    p, b = (pick(out.variants[n]) for n in ("predlog", "pass-through"))
    return (
        f"  {label:<24}{statistics.median(p):>10.2f}{statistics.median(b):>14.2f}   {ratio(p, b)}"
    )


def _latency(slices: str, q: float) -> Callable[[Variant], list[float]]:
    def pick(v: Variant) -> list[float]:
        chosen: list[Slice] = v.closed if slices == "closed" else v.open
        return [percentile(s.latencies_ms, q) for s in chosen]

    return pick


def _table(out: Outcome) -> list[str]:
    lines = [
        f"  {'':<24}{'predlog':>10}{'pass-through':>14}   ratio predlog/pass-through "
        "(median, range over rounds)",
        _row("closed  throughput req/s", lambda v: [s.throughput for s in v.closed], out),
    ]
    for load in ("closed", "open"):
        for label, q in PERCENTILES:
            lines.append(_row(f"{load:<8}{label} ms", _latency(load, q), out))
    p, b = out.variants["predlog"], out.variants["pass-through"]
    cpu_p = p.cpu_s / max(p.measured_requests, 1) * 1e3
    cpu_b = b.cpu_s / max(b.measured_requests, 1) * 1e3
    lines.append(
        f"  {'CPU ms per request':<24}{cpu_p:>10.3f}{cpu_b:>14.3f}   "
        f"{cpu_p / cpu_b if cpu_b else float('nan'):.3f} (whole run, whole process tree)"
    )
    return lines


def _samples(slices: Sequence[Slice]) -> int:
    return int(statistics.median(len(s.latencies_ms) for s in slices))


def summary(out: Outcome) -> str:
    """The whole printed result."""
    plan, p, b = out.plan, out.variants["predlog"], out.variants["pass-through"]
    kind = "BentoML service" if out.kind.name == "bentoml" else "ASGI app"
    best = max(statistics.median(s.throughput for s in v.closed) for v in (p, b))
    lines = [
        f"predlog bench: {plan.service} ({kind}, POST {out.path}, "
        f"{len(plan.bodies)} sample bodies)",
        GENERATOR,
        f"  its ceiling here: {out.ceiling:,.0f} req/s; the service's best closed-loop "
        f"throughput is {best / out.ceiling:.1%} of it",
    ]
    if best > NEAR_CEILING * out.ceiling:
        lines.append(
            "WARNING: the service runs near the load generator's ceiling; the ratios "
            "understate predlog's cost. Use a slower service or a faster generator."
        )
    lines += [
        f"rounds: {plan.rounds}, each: per variant {out.slice_s:.1f} s closed loop "
        f"({plan.connections} connections),\n  then {out.slice_s:.1f} s open loop at "
        f"{out.rate:.0f} req/s ({plan.load:.0%} of pass-through's first closed-loop "
        "throughput);\n  the variants' order alternates between rounds",
        *_table(out),
        f"  latency samples per slice (median): closed {_samples(p.closed + b.closed)}, "
        f"open {_samples(p.open + b.open)}; a p99.9 of fewer than 1000 is about the slowest",
        f"records: predlog's server answered {len(p.ok_ids)} requests (warm-up included), "
        f"wrote {p.records} records; records lost {p.lost}",
        f"pass-through wrote {b.records} records; errors: predlog {p.errors}, "
        f"pass-through {b.errors}",
    ]
    if b.records:
        lines.append(
            "WARNING: the pass-through wrote records: the service did not honour "
            "PREDLOG_ENABLED=false (does it build predlog's middleware another way?), so "
            "the comparison is predlog against predlog."
        )
    return "\n".join(lines)
