"""The numbers ``predlog bench`` prints: percentiles, and ratios with their range over rounds.

Pure functions over lists of latencies; nothing here measures or prints.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: The latency percentiles reported, as (label, quantile).
PERCENTILES = (("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, by nearest rank on the sorted values.

    Nearest rank, not interpolation: a p99.9 of a thousand samples is then the slowest
    request but one, an observed latency, never a blend of two.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Ratio:
    """predlog's value over the pass-through's, per round: median and range."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.3f} (range {self.low:.3f}-{self.high:.3f})"


def ratio(predlog: Sequence[float], baseline: Sequence[float]) -> Ratio:
    """Per-round ratios ``predlog[i] / baseline[i]``: their median, min and max.

    Each ratio compares the two variants in the same round, so drift of the machine
    between rounds moves both and cancels; the range says how much rounds disagree.
    """
    if len(predlog) != len(baseline):
        raise ValueError("one value per round for each variant")
    ratios = [p / b for p, b in zip(predlog, baseline, strict=True) if b > 0 and not math.isnan(p)]
    if not ratios:
        return Ratio(math.nan, math.nan, math.nan)
    return Ratio(statistics.median(ratios), min(ratios), max(ratios))


def cdf(values: Sequence[float], points: int = 200) -> list[tuple[float, float]]:
    """At most ``points`` (latency, fraction of requests at or below it) pairs.

    The slowest sample is always kept: a CDF that drops its tail hides what a p99.9
    is about.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return []
    step = max(1, n // points)
    picks = list(range(step - 1, n, step))
    if picks[-1] != n - 1:
        picks.append(n - 1)
    return [(ordered[i], (i + 1) / n) for i in picks]
