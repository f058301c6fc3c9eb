"""Joining predictions with late ground truth: AUC, precision and recall, calibration, cohorts.

Every metric is weighted by ``sample_weight``, so a stratified sample (all the risky
and near-threshold decisions, 5% of the rest) still estimates the population's metrics
without bias.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from predlog.analytics._data import AnalyticsError, Predictions, check_time

COHORTS = ("user_segment", "channel", "geographic_region", "model_version")


def weighted_auc(
    labels: npt.ArrayLike, scores: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> float:
    """ROC AUC with sample weights: the weighted probability that a positive outscores a
    negative, ties counting one half. The same value as the area under the weighted ROC
    curve (scikit-learn's ``roc_auc_score``)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=np.float64)
    if y.all() or not y.any():
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s, y, w = s[order], y[order], w[order]
    # One group per distinct score (ties), summed without a Python loop: at 10 million
    # records a loop over groups would take minutes.
    starts = np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1])
    pos = np.add.reduceat(np.where(y, w, 0.0), starts)
    neg = np.add.reduceat(np.where(y, 0.0, w), starts)
    neg_below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    total = float(np.sum(pos * (neg_below + 0.5 * neg)))
    return total / (float(pos.sum()) * float(neg.sum()))


def _calibration(y: Any, s: Any, w: Any, bins: int = 10) -> list[dict[str, Any]]:
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        mask = (s >= lo) & ((s < hi) if hi < 1 else (s <= hi))
        if not mask.any():
            continue
        weight = w[mask].sum()
        out.append(
            {
                "bin": f"{lo:.1f}-{hi:.1f}",
                "n": int(mask.sum()),
                "mean_score": float((s[mask] * w[mask]).sum() / weight),
                "observed_rate": float((y[mask] * w[mask]).sum() / weight),
            }
        )
    return out


def _metrics(y: Any, s: Any, w: Any, t: Any) -> dict[str, Any]:
    predicted = s >= t
    tp = float(w[predicted & y].sum())
    fp = float(w[predicted & ~y].sum())
    fn = float(w[~predicted & y].sum())
    return {
        "n": len(y),
        "weighted_n": float(w.sum()),
        "positives": int(y.sum()),
        "auc": weighted_auc(y, s, w),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
    }


@dataclass(frozen=True)
class _Joined:
    """The joined rows as arrays: label, score, weight and threshold, and cohort codes."""

    y: npt.NDArray[np.bool_]
    s: npt.NDArray[np.float64]
    w: npt.NDArray[np.float64]
    t: npt.NDArray[np.float64]
    #: Per cohort column: one code per row, and the value each code stands for.
    cohorts: dict[str, tuple[npt.NDArray[Any], list[Any]]]

    @classmethod
    def from_arrow(cls, table: Any) -> _Joined:
        """Columns as NumPy arrays; cohorts as codes and a small dictionary of values,
        not ten million Python strings."""
        cohorts = {}
        for cohort in COHORTS:
            encoded = table.column(cohort).combine_chunks().dictionary_encode()
            cohorts[cohort] = (
                encoded.indices.to_numpy(zero_copy_only=False),
                encoded.dictionary.to_pylist(),
            )
        return cls(
            y=np.asarray(table.column("y").to_numpy(), dtype=bool),
            s=np.asarray(table.column("raw_score").to_numpy(), dtype=np.float64),
            w=np.asarray(table.column("sample_weight").to_numpy(), dtype=np.float64),
            t=np.asarray(table.column("decision_threshold").to_numpy(), dtype=np.float64),
            cohorts=cohorts,
        )

    def __len__(self) -> int:
        return len(self.s)

    def members(self, cohort: str, value: Any) -> npt.NDArray[np.bool_]:
        """Which rows have ``value`` in the ``cohort`` column."""
        codes, values = self.cohorts[cohort]
        mask: npt.NDArray[np.bool_] = codes == values.index(value)
        return mask


def evaluate(
    outcomes: str | Path,
    *,
    data_dir: str | Path | None = None,
    table: str | None = None,
    key: tuple[str, str] = ("request_id", "request_id"),
    label: tuple[str, str | None] = ("label", None),
    since: str | None = None,
    until: str | None = None,
    days_ago: int | None = None,
    min_cohort: int = 100,
    html_path: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Join predictions with outcomes (CSV or Parquet) and report metrics overall and per cohort.

    ``key`` is (prediction column, outcome column); ``label`` is (outcome column, the value
    that counts as positive, or None for a 0/1 or boolean column).
    """
    say = progress or (lambda message: None)
    data = Predictions(data_dir, table=table, progress=progress is not None)
    pred_key, outcome_key = key
    data.require(pred_key, "raw_score", "decision_threshold", "sample_weight", *COHORTS)
    _open_outcomes(data, Path(outcomes), (outcome_key, label[0]))
    sql, params = _join_query(key, label, since=since, until=until, days_ago=days_ago)
    say("joining predictions with outcomes")
    joined = _Joined.from_arrow(data.arrow(sql, params))
    if len(joined) == 0:
        predictions = data.query("SELECT count(*) FROM predictions").fetchall()[0][0]
        labelled = data.query("SELECT count(*) FROM outcomes").fetchall()[0][0]
        raise AnalyticsError(
            f"the join matched nothing: {predictions} predictions, {labelled} outcomes, "
            f"joined on predictions.{pred_key} = outcomes.{outcome_key} "
            "(check --key and the time range)"
        )
    y, s, w, t = joined.y, joined.s, joined.w, joined.t
    report: dict[str, Any] = {"n": len(joined), "overall": _metrics(y, s, w, t)}
    report["overall"]["calibration"] = _calibration(y, s, w)
    report["cohorts"], report["omitted"] = _cohorts(joined, min_cohort, say)
    report["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if html_path is not None:
        _write_html(html_path, report, joined)
    return report


def _open_outcomes(data: Predictions, path: Path, columns: tuple[str, ...]) -> None:
    """Make the outcomes file the view ``outcomes``, and check it has ``columns``.

    The column names are interpolated into the join later, so each must be found here.
    """
    if not path.exists():
        raise AnalyticsError(f"outcomes file {path} does not exist")
    reader = "read_parquet" if path.suffix == ".parquet" else "read_csv_auto"
    quoted = str(path).replace("'", "''")  # a view cannot take a bound parameter
    data.query(f"CREATE VIEW outcomes AS SELECT * FROM {reader}('{quoted}')")  # noqa: S608
    outcome_columns = {r[0] for r in data.query("DESCRIBE outcomes").fetchall()}
    for column in columns:
        if column not in outcome_columns:
            found = ", ".join(sorted(outcome_columns))
            raise AnalyticsError(f"the outcomes file has no column {column!r} (found: {found})")


def _join_query(
    key: tuple[str, str],
    label: tuple[str, str | None],
    *,
    since: str | None,
    until: str | None,
    days_ago: int | None,
) -> tuple[str, list[Any]]:
    """The join of predictions with outcomes in the time range, and its bound values.

    The label is ``y``: the outcome column equal to the positive value, or the column
    itself read as a boolean.
    """
    pred_key, outcome_key = key
    label_column, positive = label
    where = ["p.raw_score IS NOT NULL"]
    params: list[Any] = []
    if days_ago is not None:
        where.append("p.timestamp_utc >= now() - to_days(?)")
        params.append(days_ago)
    if since:
        where.append("p.timestamp_utc >= CAST(? AS TIMESTAMPTZ)")
        params.append(check_time(since, "since"))
    if until:
        where.append("p.timestamp_utc < CAST(? AS TIMESTAMPTZ)")
        params.append(check_time(until, "until"))
    if positive is not None:
        label_sql = f'CAST(o."{label_column}" AS VARCHAR) = ?'
        params.insert(0, positive)  # the label comes before the filters in the query
    else:
        label_sql = f'CAST(o."{label_column}" AS BOOLEAN)'
    # Column names are interpolated only after being found in the tables.
    sql = (
        f"SELECT p.raw_score, p.decision_threshold, p.sample_weight, {label_sql} AS y, "  # noqa: S608
        + ", ".join(f"p.{c}" for c in COHORTS)
        + f' FROM predictions p JOIN outcomes o ON CAST(p."{pred_key}" AS VARCHAR) = '
        f'CAST(o."{outcome_key}" AS VARCHAR) WHERE ' + " AND ".join(where)
    )
    return sql, params


def _cohorts(
    joined: _Joined, min_cohort: int, say: Callable[[str], None]
) -> tuple[dict[str, dict[Any, dict[str, Any]]], list[dict[str, Any]]]:
    """Metrics per value of each cohort column, and the values left out as too small.

    A cohort under ``min_cohort`` labelled predictions is listed, not scored: its AUC
    would be noise that reads like a finding.
    """
    cohorts: dict[str, dict[Any, dict[str, Any]]] = {}
    omitted: list[dict[str, Any]] = []
    for cohort in COHORTS:
        say(f"cohorts by {cohort}")
        codes, values = joined.cohorts[cohort]
        cohorts[cohort] = {}
        for code, value in sorted(enumerate(values), key=lambda cv: str(cv[1])):
            if value is None:
                continue
            mask = codes == code
            if mask.sum() < min_cohort:
                omitted.append(
                    {
                        "cohort": cohort,
                        "value": value,
                        "n": int(mask.sum()),
                        "reason": f"fewer than {min_cohort} labelled predictions",
                    }
                )
                continue
            cohorts[cohort][value] = _metrics(
                joined.y[mask], joined.s[mask], joined.w[mask], joined.t[mask]
            )
    return cohorts, omitted


def _write_html(path: str | Path, report: dict[str, Any], joined: _Joined) -> None:
    from predlog.analytics import _html  # noqa: PLC0415

    y, s, w = joined.y, joined.s, joined.w
    o = report["overall"]
    sections = [
        (
            "Overall",
            _html.line_chart(f"ROC, AUC {o['auc']:.4f}", {"all": _html.roc_curve(y, s, w)})
            + _html.table(
                [{k: o[k] for k in ("n", "weighted_n", "auc", "precision", "recall")}],
                ("n", "weighted_n", "auc", "precision", "recall"),
            ),
        ),
        ("Calibration", _html.table(o["calibration"], ("bin", "n", "mean_score", "observed_rate"))),
    ]
    for cohort, values in report["cohorts"].items():
        if not values:
            continue
        curves = {}
        for value, m in values.items():
            mask = joined.members(cohort, value)
            curves[f"{value} (AUC {m['auc']:.3f}, n={m['n']})"] = _html.roc_curve(
                y[mask], s[mask], w[mask]
            )
        sections.append((f"ROC by {cohort}", _html.line_chart(f"ROC by {cohort}", curves)))
    if report["omitted"]:
        sections.append(
            ("Omitted cohorts", _html.table(report["omitted"], ("cohort", "value", "n", "reason")))
        )
    _html.write(path, _html.page(f"predlog evaluate: {report['generated_at']}", sections))
