"""Two ranges of one column compared, weighted by ``w``, in SQL: the drift metrics.

The table holds one row per record with ``cur`` (false: baseline, true: current), the
weight ``w`` and the compared columns. Each function returns only what a report shows.

- PSI over the baseline's weighted deciles: the smallest value whose cumulative
  weight share reaches k/10 (the inverted weighted CDF), which estimate the
  population's deciles from a weighted sample; then weighted sums per bin, each bin
  closed on the right, so a value most records share (0 chargebacks) is a bin of its
  own and a move away from it shows.
- KS: the largest gap between the two weighted cumulative distributions, over every
  distinct value. Running sums ordered by value, partitioned into equal-width value
  ranges so the engine spreads them, plus the totals of the lower ranges.
- Chi-square on categories, from weighted shares scaled to Kish's effective sample size
  ((sum w)^2 / sum w^2), which is also the n of the KS p-value: a weighted sample of a
  million records holding ten thousand distinct draws is worth about ten thousand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from predlog.tools.analytics._ranking import bucket
from predlog.tools.analytics.engine import Engine, literal

_EPS = 1e-6
#: A cumulative share this close under a decile reaches it. Weights such as 1 and
#: 1/0.3 often put a value's share exactly on k/10, and summed in another order
#: (another engine, another partitioning) it lands a rounding error either side:
#: without the slack, the edge would depend on the order of a sum.
_SHARE_SLACK = 1e-9
#: Values summed per value before the running sums when records outnumber distinct
#: values by this much.
_FEW_DISTINCT = 4
DECILES = tuple(k / 10 for k in range(1, 10))
#: Categories listed one by one; the rest of a wider feature is summed as one.
MAX_CATEGORIES = 200
OTHER = "(other)"


@dataclass(frozen=True)
class Side:
    """One range of a column: records with a value, their weight, sum of squared
    weights, and the weighted mean (numbers only)."""

    n: int
    weight: float
    weight_sq: float
    mean: float | None
    #: Weight of the range's records without a value.
    null_weight: float

    @property
    def effective_n(self) -> float:
        return self.weight**2 / self.weight_sq if self.weight_sq else 0.0


def psi(base: np.ndarray[Any, Any], current: np.ndarray[Any, Any]) -> float:
    """PSI of two histograms over the same bins (weighted sums)."""
    p = np.maximum(base / base.sum(), _EPS)
    q = np.maximum(current / current.sum(), _EPS)
    return float(((q - p) * np.log(q / p)).sum())


def sides(
    engine: Engine, table: str, column: str, *, numeric: bool
) -> tuple[Side, Side, Any, Any, int]:
    """Both ranges' :class:`Side`, the column's minimum and maximum, and about how many
    distinct values it holds (an estimate, which chooses how a query runs, never what
    it answers)."""
    parts = []
    for cur in ("NOT cur", "cur"):
        has = f"{cur} AND {column} IS NOT NULL"
        mean = f"sum(w * {column}) FILTER (WHERE {has}) / nullif(sum(w) FILTER (WHERE {has}), 0)"
        parts.append(
            f"count({column}) FILTER (WHERE {cur}), sum(w) FILTER (WHERE {has}), "
            f"sum(w * w) FILTER (WHERE {has}), {mean if numeric else 'NULL'}, "
            f"sum(w) FILTER (WHERE {cur} AND {column} IS NULL)"
        )
    row = engine.rows(
        f"SELECT {', '.join(parts)}, min({column}), max({column}), "
        f"approx_count_distinct({column}) FROM {table}"
    )[0]
    made = [
        Side(
            n=int(row[i] or 0),
            weight=float(row[i + 1] or 0),
            weight_sq=float(row[i + 2] or 0),
            mean=None if row[i + 3] is None else float(row[i + 3]),
            null_weight=float(row[i + 4] or 0),
        )
        for i in (0, 5)
    ]
    return made[0], made[1], row[10], row[11], int(row[12] or 0)


def ks_and_deciles(
    engine: Engine,
    table: str,
    column: str,
    bounds: tuple[float, float],
    sides: tuple[Side, Side],
    *,
    distinct: int = 0,
) -> tuple[float, list[float]]:
    """The KS statistic, and the baseline's weighted deciles (the inner PSI edges).

    The running sums take a ``RANGE`` frame (equal values are peers, so every row of a
    value carries its cumulative weight). Over few ``distinct`` values the records are
    summed per value first, a hash aggregation far cheaper than ordering them all; when
    most values are distinct that would only add a pass, and the rows go to the window
    as they are.
    """
    (lo, hi), (base, cur) = bounds, sides
    deciles = ", ".join(f"min(v) FILTER (WHERE fb >= {literal(q - _SHARE_SLACK)})" for q in DECILES)
    weights = "CASE WHEN cur THEN 0 ELSE w END AS wb, CASE WHEN cur THEN w ELSE 0 END AS wc"
    source = f"FROM {table} WHERE {column} IS NOT NULL"
    if distinct * _FEW_DISTINCT < base.n + cur.n:
        weights = (
            "sum(CASE WHEN cur THEN 0 ELSE w END) AS wb, sum(CASE WHEN cur THEN w ELSE 0 END) AS wc"
        )
        source += " GROUP BY k, v"
    frame = "PARTITION BY k ORDER BY v RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    row = engine.rows(
        f"WITH g AS (SELECT {bucket(column, lo, hi)} AS k, {column} AS v, {weights} {source}), "
        f"x AS (SELECT k, v, sum(wb) OVER ({frame}) AS lb, sum(wc) OVER ({frame}) AS lc FROM g), "
        "t AS (SELECT k, sum(wb) AS tb, sum(wc) AS tc FROM g GROUP BY k), "
        "o AS (SELECT k, coalesce(sum(tb) OVER (ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING "
        "AND 1 PRECEDING), 0) AS ob, coalesce(sum(tc) OVER (ORDER BY k ROWS BETWEEN "
        "UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS oc FROM t), "
        f"y AS (SELECT x.v, (o.ob + x.lb) / {literal(base.weight)} AS fb, "
        f"(o.oc + x.lc) / {literal(cur.weight)} AS fc FROM x JOIN o ON x.k = o.k) "
        f"SELECT max(abs(fb - fc)), {deciles} FROM y"
    )[0]
    inner = sorted({float(v) for v in row[1:] if v is not None})
    return float(row[0]), inner


def binned(
    engine: Engine, table: str, column: str, inner: list[float]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Weighted sums per bin of both ranges: up to inner[0], (inner[i], inner[i+1]], the rest."""
    cases = " ".join(f"WHEN {column} <= {literal(e)} THEN {i}" for i, e in enumerate(inner))
    bin_of = f"CASE {cases} ELSE {len(inner)} END" if inner else "0"
    rows = engine.rows(
        f"SELECT {bin_of} AS bin, sum(CASE WHEN cur THEN 0 ELSE w END), "
        f"sum(CASE WHEN cur THEN w ELSE 0 END) FROM {table} WHERE {column} IS NOT NULL "
        "GROUP BY bin"
    )
    base, cur = np.zeros(len(inner) + 1), np.zeros(len(inner) + 1)
    for b, wb, wc in rows:
        base[int(b)], cur[int(b)] = float(wb or 0), float(wc or 0)
    return base, cur


def ks_p_value(statistic: float, base: Side, cur: Side) -> float:
    """The two-sample KS test's p-value at the effective sample sizes."""
    from scipy import stats  # noqa: PLC0415  # the analytics extra

    m, n = base.effective_n, cur.effective_n
    if not m or not n:
        return float("nan")
    return float(stats.kstwo.sf(statistic, max(1, round(m * n / (m + n)))))


def categories(
    engine: Engine, table: str, column: str
) -> tuple[list[Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The categories by descending weight (at most ``MAX_CATEGORIES``, then ``OTHER``),
    and each range's weighted sum per category."""
    rows = engine.rows(
        f"WITH g AS (SELECT {column} AS v, sum(CASE WHEN cur THEN 0 ELSE w END) AS wb, "
        f"sum(CASE WHEN cur THEN w ELSE 0 END) AS wc FROM {table} WHERE {column} IS NOT NULL "
        "GROUP BY v), "
        "r AS (SELECT v, wb, wc, row_number() OVER (ORDER BY wb + wc DESC, v) AS n FROM g) "
        f"SELECT min(n), CASE WHEN n <= {MAX_CATEGORIES} THEN v END AS name, sum(wb), sum(wc) "
        f"FROM r GROUP BY name ORDER BY min(n)"
    )
    names = [OTHER if n > MAX_CATEGORIES else name for n, name, _, _ in rows]
    base = [float(r[2] or 0) for r in rows]
    cur = [float(r[3] or 0) for r in rows]
    return names, np.array(base), np.array(cur)


def chi_square(
    base: np.ndarray[Any, Any], cur: np.ndarray[Any, Any], sb: Side, sc: Side
) -> dict[str, Any] | None:
    """Chi-square test of homogeneity on weighted shares at the effective sample sizes;
    None with fewer than two categories seen, where the test is undefined."""
    from scipy import stats  # noqa: PLC0415

    table = np.array([base / base.sum() * sb.effective_n, cur / cur.sum() * sc.effective_n])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] <= 1:
        return None
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    return {"statistic": float(chi2), "p_value": float(p), "dof": int(dof)}
