"""Weighted ROC AUC, ROC curves, precision, recall and calibration, as SQL aggregations.

The engine reduces the joined records to a few numbers per group (overall, and each
cohort value); nothing of record size comes back. AUC is exact: the weighted
probability that a positive outscores a negative, ties counting one half.

How AUC is computed where the data is: scores are cut into ``BUCKETS`` equal-width
ranges (a monotone function of the score, so equal scores share a range). Within a
range, ordered by score, two window sums give each record the negatives' weight at or
below its score and at exactly its score (a ``RANGE`` frame: equal scores are peers),
so a positive counts the negatives below it and half of those tied with it. The
window is partitioned by cohort value and range, so both engines spread it over their
cores or executors rather than ordering every record in one place. Per value and range
come back three sums; adding the negatives of the lower ranges (a prefix sum over
``BUCKETS`` numbers) completes the AUC, and the same per-range sums draw the ROC curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from predlog.tools.analytics.engine import Engine, literal

#: Score ranges of the AUC's partitioned running sum, and points of the ROC curve.
BUCKETS = 1024


def auc_and_roc(
    engine: Engine, table: str, column: str | None, values: Sequence[Any] | None = None
) -> dict[Any, tuple[float, list[tuple[float, float]]]]:
    """Per value of ``column`` (those in ``values`` if given; all records under None when
    ``column`` is None): the weighted AUC and the ROC curve (false, true positive rate)."""
    lo, hi = engine.rows(f"SELECT min(s), max(s) FROM {table}")[0]
    if column is None:
        keys: list[Any] = [None]
        code = "0"
    else:
        if values is None:
            found = engine.rows(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL")
            values = sorted(v for (v,) in found)
        keys = list(values)
        if not keys:
            return {}
        table = f"(SELECT * FROM {table} WHERE {column} IN ({', '.join(map(literal, keys))}))"
        whens = " ".join(f"WHEN {literal(v)} THEN {i}" for i, v in enumerate(keys))
        code = f"CASE {column} {whens} END"
    # One integer partition per value and score range: cheaper to hash and sort by than
    # the value's text beside the range.
    window = "PARTITION BY p ORDER BY s RANGE BETWEEN"
    negative = "CASE WHEN y THEN 0 ELSE w END"
    rows = engine.rows(
        f"WITH b AS (SELECT {code} * {BUCKETS} + {bucket('s', lo, hi)} AS p, s, y, w "
        f"FROM {table}), "
        "r AS (SELECT p, y, w, "
        f"sum({negative}) OVER ({window} UNBOUNDED PRECEDING AND CURRENT ROW) AS le, "
        f"sum({negative}) OVER ({window} CURRENT ROW AND CURRENT ROW) AS eq FROM b) "
        "SELECT p, sum(CASE WHEN y THEN w * (le - 0.5 * eq) ELSE 0 END), "
        f"sum(CASE WHEN y THEN w ELSE 0 END), sum({negative}) FROM r GROUP BY p"
    )
    by_value: dict[Any, list[tuple[int, float, float, float]]] = {}
    for p, within, pos, neg in rows:
        v, k = divmod(int(p), BUCKETS)
        by_value.setdefault(keys[v], []).append(
            (k, float(within or 0), float(pos or 0), float(neg or 0))
        )
    out = {}
    for v, sums in by_value.items():
        if column and v is None:
            continue  # records without a value of this cohort
        array = np.array(sorted(sums), dtype=np.float64)
        out[v] = _finish(array[:, 1], array[:, 2], array[:, 3])
    return out


def bucket(column: str, lo: Any, hi: Any) -> str:
    """SQL for ``column``'s range among ``BUCKETS`` equal-width ranges of [lo, hi].

    Any monotone cut gives the same exact results (equal values share a range); this
    one spreads the running sums over ranges. One range when the bounds are equal or
    not finite.
    """
    if lo is None or hi is None:
        return "0"
    low, high = float(lo), float(hi)
    if not (math.isfinite(high - low) and high > low):  # also when either is not finite
        return "0"
    return (
        f"LEAST(GREATEST(CAST(floor(({column} - {literal(low)}) / {literal(high - low)} "
        f"* {BUCKETS}) AS BIGINT), 0), {BUCKETS - 1})"
    )


def _finish(
    within: np.ndarray[Any, Any], pos: np.ndarray[Any, Any], neg: np.ndarray[Any, Any]
) -> tuple[float, list[tuple[float, float]]]:
    """AUC from the per-range sums (ranges in ascending score), and the ROC curve."""
    total_pos, total_neg = float(pos.sum()), float(neg.sum())
    if total_pos == 0 or total_neg == 0:
        return float("nan"), []
    lower = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    auc = float((within + pos * lower).sum()) / (total_pos * total_neg)
    # Thresholds from the top range down: everything at or above a range is "positive".
    tpr = np.concatenate([[0.0], np.cumsum(pos[::-1])]) / total_pos
    fpr = np.concatenate([[0.0], np.cumsum(neg[::-1])]) / total_neg
    return auc, [(float(x), float(y)) for x, y in zip(fpr, tpr, strict=True)]


def confusion(engine: Engine, table: str, cohorts: Sequence[str]) -> list[dict[str, Any]]:
    """Counts and weighted confusion sums overall (``cohort`` None) and per cohort value.

    A record is predicted positive when its score reaches its own decision threshold.
    """
    columns = [f"c{i}" for i in range(len(cohorts))]
    sets = ", ".join(["()", *(f"({c})" for c in columns)])
    flags = ", ".join(f"grouping({c})" for c in columns)
    rows = engine.rows(
        f"SELECT {flags}, {', '.join(columns)}, count(*), sum(w), "
        "count(*) FILTER (WHERE y), "
        "sum(CASE WHEN s >= t AND y THEN w ELSE 0 END), "
        "sum(CASE WHEN s >= t AND NOT y THEN w ELSE 0 END), "
        "sum(CASE WHEN NOT (s >= t) AND y THEN w ELSE 0 END) "
        f"FROM {table} GROUP BY GROUPING SETS ({sets})"
    )
    out = []
    width = len(columns)
    for row in rows:
        flags_of, values, (n, weight, positives, tp, fp, fn) = (
            row[:width],
            row[width : 2 * width],
            row[2 * width :],
        )
        grouped = [i for i, flag in enumerate(flags_of) if not flag]
        cohort, value = (cohorts[grouped[0]], values[grouped[0]]) if grouped else (None, None)
        if grouped and value is None:
            continue  # records without a value of this cohort
        tp, fp, fn = float(tp or 0), float(fp or 0), float(fn or 0)
        out.append(
            {
                "cohort": cohort,
                "value": value,
                "n": int(n),
                "weighted_n": float(weight or 0),
                "positives": int(positives or 0),
                "precision": tp / (tp + fp) if tp + fp else None,
                "recall": tp / (tp + fn) if tp + fn else None,
            }
        )
    return out


def calibration(engine: Engine, table: str, bins: int = 10) -> list[dict[str, Any]]:
    """Per score bin of [0, 1]: records, weighted mean score and weighted positive rate."""
    rows = engine.rows(
        f"SELECT LEAST(CAST(floor(s * {bins}) AS BIGINT), {bins - 1}) AS bin, count(*), "
        "sum(w * s) / sum(w), sum(CASE WHEN y THEN w ELSE 0 END) / sum(w) "
        f"FROM {table} WHERE s >= 0 AND s <= 1 AND w > 0 GROUP BY bin ORDER BY bin"
    )
    return [
        {
            "bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
            "n": int(n),
            "mean_score": float(mean),
            "observed_rate": float(rate),
        }
        for b, n, mean, rate in rows
    ]
