"""What ``predlog bench`` reports: ``figures`` (the JSON of ``-o json``) and ``summary``,
the text, printed from those same figures.

Two ratios stand side by side, because they answer different questions. The pooled
figures take every request of every round together, and their ratio is simply the
two columns divided. The per-round ratio divides predlog's value by the pass-through's
in the same round and gives the median and range over rounds: drift of a noisy machine
between rounds falls on both variants and cancels. When the two ratios differ, the
rounds disagreed; the range says by how much.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from predlog.tools.bench._load import Slice
from predlog.tools.bench._run import NEAR_CEILING, Outcome, Variant
from predlog.tools.bench._stats import PERCENTILES, percentile, ratio

GENERATOR = (
    "load generator: predlog's own, Python asyncio HTTP/1.1 keep-alive client in this\n"
    "  process. Honest at these rates: it is measured against a server that does no work\n"
    "  (its ceiling, below), the service runs well under it, and any delay it adds falls\n"
    "  on both variants alike; open-loop latency counts from each request's scheduled\n"
    "  start, so a late send is charged, not hidden."
)
COLUMNS = (
    "  pooled: every request of every round taken together; pooled ratio: those two\n"
    "  columns divided. per-round ratio: each round's predlog over the same round's\n"
    "  pass-through, median and range over rounds (a noisy machine's drift cancels)."
)


def _div(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def _throughput(slices: Sequence[Slice]) -> float:
    return _div(sum(len(s.latencies_ms) for s in slices), sum(s.seconds for s in slices))


def _metrics() -> list[tuple[str, Callable[[Variant], float], Callable[[Variant], list[float]]]]:
    """Each row: its label, the pooled figure of a variant, and its per-round values."""
    rows: list[tuple[str, Callable[[Variant], float], Callable[[Variant], list[float]]]] = [
        (
            "closed  throughput req/s",
            lambda v: _throughput(v.closed),
            lambda v: [s.throughput for s in v.closed],
        )
    ]
    for load in ("closed", "open"):
        for label, q in PERCENTILES:

            def pooled(v: Variant, load: str = load, q: float = q) -> float:
                slices: list[Slice] = getattr(v, load)
                return percentile([ms for s in slices for ms in s.latencies_ms], q)

            def rounds(v: Variant, load: str = load, q: float = q) -> list[float]:
                return [percentile(s.latencies_ms, q) for s in getattr(v, load)]

            rows.append((f"{load:<8}{label} ms", pooled, rounds))
    return rows


def _rows(out: Outcome) -> list[dict[str, Any]]:
    p, b = out.variants["predlog"], out.variants["pass-through"]
    rows = []
    for label, pooled, rounds in _metrics():
        per_round = ratio(rounds(p), rounds(b))
        rows.append(
            {
                "metric": " ".join(label.split()),
                "label": label,
                "predlog": pooled(p),
                "pass_through": pooled(b),
                "pooled_ratio": _div(pooled(p), pooled(b)),
                "per_round_ratio": {
                    "median": per_round.median,
                    "low": per_round.low,
                    "high": per_round.high,
                },
            }
        )
    return rows


def _line(out: Outcome) -> dict[str, Any]:
    added = out.kind.added
    return {
        "added": added,
        "options_from": list(out.plan.options_from) if added else [],
    }


def _records(out: Outcome) -> dict[str, Any]:
    p, b, expect = out.variants["predlog"], out.variants["pass-through"], out.kind.expect
    return {
        "answered": len(p.ok_ids),
        "logged_path": expect["logged"],
        "sample_rate": expect["sample_rate"],
        "asked": p.asked,
        "written": p.records,
        "lost": p.lost,
        "not_counted": expect["elsewhere"],
        "pass_through_written": b.records,
        "errors": {"predlog": p.errors, "pass_through": b.errors},
    }


def _warnings(out: Outcome, best: float) -> list[str]:
    found = []
    if best > NEAR_CEILING * out.ceiling:
        found.append(
            "the service runs near the load generator's ceiling; the ratios understate "
            "predlog's cost. Use a slower service or a faster generator."
        )
    if not out.kind.expect["logged"]:
        found.append(
            f"POST {out.path} is outside the paths or methods of predlog's line: predlog "
            "was asked to record none of the bench's requests, so this measures a "
            "middleware that lets them pass."
        )
    if out.variants["pass-through"].records:
        found.append(
            "the pass-through wrote records: the service did not honour "
            "PREDLOG_ENABLED=false (does it build predlog's middleware another way?), so "
            "the comparison is predlog against predlog."
        )
    return found


def _samples(slices: Sequence[Slice]) -> int:
    return int(statistics.median(len(s.latencies_ms) for s in slices))


def figures(out: Outcome) -> dict[str, Any]:
    """Every figure the bench reports, as plain data (the ``-o json`` answer)."""
    plan, p, b = out.plan, out.variants["predlog"], out.variants["pass-through"]
    best = max(statistics.median(s.throughput for s in v.closed) for v in (p, b))
    cpu_p = p.cpu_s / max(p.measured_requests, 1) * 1e3
    cpu_b = b.cpu_s / max(b.measured_requests, 1) * 1e3
    return {
        "service": plan.service,
        "kind": out.kind.name,
        "path": out.path,
        "bodies": len(plan.bodies),
        "line": _line(out),
        "generator_ceiling_rps": out.ceiling,
        "best_share_of_ceiling": best / out.ceiling if out.ceiling else math.nan,
        "rounds": plan.rounds,
        "slice_s": out.slice_s,
        "connections": plan.connections,
        "load": plan.load,
        "open_loop_rps": out.rate,
        "rows": _rows(out),
        "cpu_ms_per_request": {
            "predlog": cpu_p,
            "pass_through": cpu_b,
            "ratio": _div(cpu_p, cpu_b),
        },
        "samples_per_slice": {
            "closed": _samples(p.closed + b.closed),
            "open": _samples(p.open + b.open),
        },
        "records": _records(out),
        "warnings": _warnings(out, best),
    }


def _line_text(f: dict[str, Any]) -> str:
    added = f["line"]["added"]
    if added is None:
        return "predlog's line: the service has it; measured as it is"
    sources = f["line"]["options_from"]
    given = f"options from {', '.join(sources)}" if sources else "no options given: defaults"
    return (
        "predlog's line: the service has none; bench added it in the served processes,\n"
        f"  as `{added}` ({given})"
    )


def _table(f: dict[str, Any]) -> list[str]:
    lines = [
        f"  {'':<24}{'predlog':>10}{'pass-through':>14}{'pooled':>9}   per-round ratio",
        f"  {'':<24}{'pooled':>10}{'pooled':>14}{'ratio':>9}   median (range)",
    ]
    for row in f["rows"]:
        r = row["per_round_ratio"]
        lines.append(
            f"  {row['label']:<24}{row['predlog']:>10.2f}{row['pass_through']:>14.2f}"
            f"{row['pooled_ratio']:>9.3f}   {r['median']:.3f} "
            f"(range {r['low']:.3f}-{r['high']:.3f})"
        )
    cpu = f["cpu_ms_per_request"]
    lines.append(
        f"  {'CPU ms per request':<24}{cpu['predlog']:>10.3f}{cpu['pass_through']:>14.3f}"
        f"{cpu['ratio']:>9.3f}   (whole run, whole process tree)"
    )
    return lines


def _records_text(f: dict[str, Any]) -> list[str]:
    r = f["records"]
    if r["not_counted"] is not None:
        head = f"records: not counted: {r['not_counted']} (the bench reads local Parquet only)"
    else:
        asked = f"was asked to record {r['asked']}"
        if r["sample_rate"] < 1:
            asked += f" (sample_rate {r['sample_rate']:g}: those its base rate must keep)"
        head = (
            f"records: predlog's server answered {r['answered']} requests (warm-up "
            f"included); predlog {asked},\n  wrote {r['written']} records; "
            f"records lost {r['lost']}"
        )
    e = r["errors"]
    return [
        head,
        f"pass-through wrote {r['pass_through_written']} records; errors: predlog "
        f"{e['predlog']}, pass-through {e['pass_through']}",
    ]


def text(f: dict[str, Any]) -> str:
    """The printed result, from :func:`figures`."""
    kind = "BentoML service" if f["kind"] == "bentoml" else "ASGI app"
    samples = f["samples_per_slice"]
    lines = [
        f"predlog bench: {f['service']} ({kind}, POST {f['path']}, {f['bodies']} sample bodies)",
        _line_text(f),
        GENERATOR,
        f"  its ceiling here: {f['generator_ceiling_rps']:,.0f} req/s; the service's best "
        f"closed-loop throughput is {f['best_share_of_ceiling']:.1%} of it",
        f"rounds: {f['rounds']}, each: per variant {f['slice_s']:.1f} s closed loop "
        f"({f['connections']} connections),\n  then {f['slice_s']:.1f} s open loop at "
        f"{f['open_loop_rps']:.0f} req/s ({f['load']:.0%} of pass-through's first closed-loop "
        "throughput);\n  the variants' order alternates between rounds",
        *_table(f),
        COLUMNS,
        f"  latency samples per slice (median): closed {samples['closed']}, "
        f"open {samples['open']}; a p99.9 of fewer than 1000 is about the slowest",
        *_records_text(f),
    ]
    lines += [f"WARNING: {w}" for w in f["warnings"]]
    return "\n".join(lines)


def plain(value: Any) -> Any:
    """``value`` with every NaN (a ratio over nothing) as None: strict JSON for ``-o json``."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
