"""Joining predictions with late ground truth: AUC, precision and recall, calibration, cohorts.

Every metric is weighted by ``sample_weight``, so a stratified sample (all the risky
and near-threshold decisions, 5% of the rest) still estimates the population's metrics
without bias.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from predlog.analytics._data import AnalyticsError, Predictions

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


def evaluate(
    outcomes: str | Path,
    *,
    data_dir: str | Path | None = None,
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
    data = Predictions(data_dir, progress=progress is not None)
    pred_key, outcome_key = key
    data.require(pred_key, "raw_score", "decision_threshold", "sample_weight", *COHORTS)
    path = Path(outcomes)
    if not path.exists():
        raise AnalyticsError(f"outcomes file {path} does not exist")
    reader = "read_parquet" if path.suffix == ".parquet" else "read_csv_auto"
    quoted = str(path).replace("'", "''")  # a view cannot take a bound parameter
    data.query(f"CREATE VIEW outcomes AS SELECT * FROM {reader}('{quoted}')")  # noqa: S608
    outcome_columns = {r[0] for r in data.query("DESCRIBE outcomes").fetchall()}
    label_column, positive = label
    for column in (outcome_key, label_column):
        if column not in outcome_columns:
            found = ", ".join(sorted(outcome_columns))
            raise AnalyticsError(f"the outcomes file has no column {column!r} (found: {found})")
    where = ["p.raw_score IS NOT NULL"]
    params: list[Any] = []
    if days_ago is not None:
        where.append("p.timestamp_utc >= now() - to_days(?)")
        params.append(days_ago)
    if since:
        where.append("p.timestamp_utc >= CAST(? AS TIMESTAMPTZ)")
        params.append(since)
    if until:
        where.append("p.timestamp_utc < CAST(? AS TIMESTAMPTZ)")
        params.append(until)
    label_sql = (
        f'CAST(o."{label_column}" AS VARCHAR) = ?'
        if positive is not None
        else f'CAST(o."{label_column}" AS BOOLEAN)'
    )
    if positive is not None:
        params.insert(0, positive)
    # Column names are interpolated only after being found in the tables above.
    sql = (
        f"SELECT p.raw_score, p.decision_threshold, p.sample_weight, {label_sql} AS y, "  # noqa: S608
        + ", ".join(f"p.{c}" for c in COHORTS)
        + f' FROM predictions p JOIN outcomes o ON CAST(p."{pred_key}" AS VARCHAR) = '
        f'CAST(o."{outcome_key}" AS VARCHAR) WHERE ' + " AND ".join(where)
    )
    say("joining predictions with outcomes")
    table = data.arrow(sql, params)
    rows: dict[str, Any] = {
        name: table.column(name).to_numpy()
        for name in ("raw_score", "decision_threshold", "sample_weight", "y")
    }
    for cohort in COHORTS:
        # Codes and a small dictionary, not ten million Python strings.
        encoded = table.column(cohort).combine_chunks().dictionary_encode()
        rows[cohort] = (
            encoded.indices.to_numpy(zero_copy_only=False),
            encoded.dictionary.to_pylist(),
        )
    n = len(rows["raw_score"])
    if n == 0:
        predictions = data.query("SELECT count(*) FROM predictions").fetchall()[0][0]
        labelled = data.query("SELECT count(*) FROM outcomes").fetchall()[0][0]
        raise AnalyticsError(
            f"the join matched nothing: {predictions} predictions, {labelled} outcomes, "
            f"joined on predictions.{pred_key} = outcomes.{outcome_key} "
            "(check --key and the time range)"
        )
    y = np.asarray(rows["y"], dtype=bool)
    s = np.asarray(rows["raw_score"], dtype=np.float64)
    w = np.asarray(rows["sample_weight"], dtype=np.float64)
    t = np.asarray(rows["decision_threshold"], dtype=np.float64)
    report: dict[str, Any] = {"n": n, "overall": _metrics(y, s, w, t)}
    report["overall"]["calibration"] = _calibration(y, s, w)
    report["cohorts"] = {}
    report["omitted"] = []
    for cohort in COHORTS:
        say(f"cohorts by {cohort}")
        codes, labels = rows[cohort]
        report["cohorts"][cohort] = {}
        for code, value in sorted(enumerate(labels), key=lambda cv: str(cv[1])):
            if value is None:
                continue
            mask = codes == code
            if mask.sum() < min_cohort:
                report["omitted"].append(
                    {
                        "cohort": cohort,
                        "value": value,
                        "n": int(mask.sum()),
                        "reason": f"fewer than {min_cohort} labelled predictions",
                    }
                )
                continue
            report["cohorts"][cohort][value] = _metrics(y[mask], s[mask], w[mask], t[mask])
    report["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if html_path is not None:
        _write_html(html_path, report, rows, y=y, s=s, w=w)
    return report


def _write_html(
    path: str | Path, report: dict[str, Any], rows: Any, *, y: Any, s: Any, w: Any
) -> None:
    from predlog.analytics import _html  # noqa: PLC0415

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
        codes, labels = rows[cohort]
        code_of = {label: code for code, label in enumerate(labels)}
        curves = {
            f"{value} (AUC {m['auc']:.3f}, n={m['n']})": _html.roc_curve(
                y[codes == code_of[value]], s[codes == code_of[value]], w[codes == code_of[value]]
            )
            for value, m in values.items()
        }
        sections.append((f"ROC by {cohort}", _html.line_chart(f"ROC by {cohort}", curves)))
    if report["omitted"]:
        sections.append(
            ("Omitted cohorts", _html.table(report["omitted"], ("cohort", "value", "n", "reason")))
        )
    _html.write(path, _html.page(f"predlog evaluate: {report['generated_at']}", sections))
