"""Joining predictions with late ground truth: AUC, precision and recall, calibration, cohorts.

Every metric is weighted by ``sample_weight``, so a stratified sample (all the risky
and near-threshold decisions, 5% of the rest) still estimates the population's metrics
without bias. The engine joins and reduces (see :mod:`predlog.analytics._ranking`);
memory does not grow with the number of records.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from predlog.analytics._data import AnalyticsError, check_time
from predlog.analytics._ranking import auc_and_roc, calibration, confusion
from predlog.analytics._stages import Progress, quiet
from predlog.analytics.engine import Engine, ident, literal, open_engine

COHORTS = ("user_segment", "channel", "geographic_region", "model_version")
#: The joined records, kept by the engine while the metrics read them.
JOINED = "predlog_joined"


def weighted_auc(
    labels: npt.ArrayLike, scores: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> float:
    """ROC AUC with sample weights: the weighted probability that a positive outscores a
    negative, ties counting one half (scikit-learn's ``roc_auc_score`` with weights).

    The in-memory reference of what the engines compute in SQL.
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=np.float64)
    if y.all() or not y.any():
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s, y, w = s[order], y[order], w[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1])
    pos = np.add.reduceat(np.where(y, w, 0.0), starts)
    neg = np.add.reduceat(np.where(y, 0.0, w), starts)
    neg_below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    total = float(np.sum(pos * (neg_below + 0.5 * neg)))
    return total / (float(pos.sum()) * float(neg.sum()))


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
    progress: Progress | None = None,
    engine: str = "duckdb",
    spark_master: str | None = None,
    memory_limit: str | None = None,
) -> dict[str, Any]:
    """Join predictions with outcomes (CSV or Parquet) and report metrics overall and per cohort.

    ``key`` is (prediction column, outcome column); ``label`` is (outcome column, the value
    that counts as positive, or None for a 0/1 or boolean column). Outcomes whose label
    is empty are left out (not yet known is not negative). ``engine`` is ``duckdb``
    (embedded, within ``memory_limit``) or ``spark`` (``spark_master``, default
    ``local[*]``): the same queries, the same numbers.
    """
    say = progress or quiet
    say("opening the prediction records")
    with open_engine(
        engine,
        data_dir=data_dir,
        table=table,
        spark_master=spark_master,
        memory_limit=memory_limit,
    ) as eng:
        eng.require(key[0], "raw_score", "decision_threshold", "sample_weight", *COHORTS)
        _check_outcomes(eng, Path(outcomes), (key[1], label[0]))
        say("joining predictions with outcomes")
        eng.materialise(JOINED, _join_query(key, label, since, until, days_ago))
        report = _report(eng, key, min_cohort, say)
    if html_path is not None:
        _write_html(html_path, report)
    return report


def _check_outcomes(eng: Engine, path: Path, columns: tuple[str, ...]) -> None:
    if not path.exists():
        raise AnalyticsError(f"outcomes file {path} does not exist")
    found = eng.outcomes(path)
    for column in columns:
        if column not in found:
            raise AnalyticsError(
                f"the outcomes file has no column {column!r} (found: {', '.join(sorted(found))})"
            )


def _join_query(
    key: tuple[str, str],
    label: tuple[str, str | None],
    since: str | None,
    until: str | None,
    days_ago: int | None,
) -> str:
    """The join of predictions with labelled outcomes in the time range.

    The label is ``y``: the outcome column equal to the positive value, or the column
    itself read as a boolean. A missing weight counts as 1 (files from before weights).
    """
    pred_key, outcome_key = key
    label_column, positive = label
    where = [
        "p.raw_score IS NOT NULL",
        "NOT isnan(CAST(p.raw_score AS DOUBLE))",
        f"o.{ident(label_column)} IS NOT NULL",
    ]
    if days_ago is not None:
        where.append(f"p.timestamp_utc >= current_timestamp - INTERVAL {int(days_ago)} DAY")
    if since:
        where.append(
            f"p.timestamp_utc >= CAST({literal(check_time(since, 'since'))} AS TIMESTAMPTZ)"
        )
    if until:
        where.append(
            f"p.timestamp_utc < CAST({literal(check_time(until, 'until'))} AS TIMESTAMPTZ)"
        )
    if positive is not None:
        y = f"CAST(o.{ident(label_column)} AS VARCHAR) = {literal(positive)}"
    else:
        y = f"CAST(o.{ident(label_column)} AS BOOLEAN)"
    cohorts = ", ".join(f"p.{c} AS c{i}" for i, c in enumerate(COHORTS))
    return (
        "SELECT CAST(p.raw_score AS DOUBLE) AS s, "
        "CAST(p.decision_threshold AS DOUBLE) AS t, "
        f"coalesce(CAST(p.sample_weight AS DOUBLE), 1.0) AS w, {y} AS y, {cohorts} "
        f"FROM predictions p JOIN outcomes o ON CAST(p.{ident(pred_key)} AS VARCHAR) = "
        f"CAST(o.{ident(outcome_key)} AS VARCHAR) WHERE " + " AND ".join(where)
    )


def _report(eng: Engine, key: tuple[str, str], min_cohort: int, say: Progress) -> dict[str, Any]:
    say("counting per cohort")
    counts = confusion(eng, JOINED, COHORTS)
    overall = next(c for c in counts if c["cohort"] is None)
    if overall["n"] == 0:
        predictions = eng.rows("SELECT count(*) FROM predictions")[0][0]
        labelled = eng.rows("SELECT count(*) FROM outcomes")[0][0]
        raise AnalyticsError(
            f"the join matched nothing: {predictions} predictions, {labelled} outcomes, "
            f"joined on predictions.{key[0]} = outcomes.{key[1]} "
            "(check --key, --label and the time range)"
        )
    kept = [c for c in counts if c["cohort"] is not None and c["n"] >= min_cohort]
    omitted = [
        {
            "cohort": c["cohort"],
            "value": c["value"],
            "n": c["n"],
            "reason": f"fewer than {min_cohort} labelled predictions",
        }
        for c in sorted(counts, key=lambda c: (str(c["cohort"]), str(c["value"])))
        if c["cohort"] is not None and c["n"] < min_cohort
    ]
    say("AUC overall and per cohort", 0, 1 + len(COHORTS))
    aucs = {("", None): auc_and_roc(eng, JOINED, None)[None]}
    for number, cohort in enumerate(COHORTS, start=1):
        say("AUC overall and per cohort", number, 1 + len(COHORTS))
        values = [c["value"] for c in kept if c["cohort"] == cohort]
        if [c["n"] for c in kept if c["cohort"] == cohort] == [overall["n"]]:
            aucs[(cohort, values[0])] = aucs[("", None)]  # one value, every record: overall
        elif values:
            column = f"c{COHORTS.index(cohort)}"
            for value, result in auc_and_roc(eng, JOINED, column, values).items():
                aucs[(cohort, value)] = result
    say("AUC overall and per cohort", 1 + len(COHORTS), 1 + len(COHORTS))
    say("calibration")
    report: dict[str, Any] = {
        "engine": eng.name,
        "n": overall["n"],
        "overall": _metrics(overall, aucs[("", None)]),
    }
    report["overall"]["calibration"] = calibration(eng, JOINED)
    report["cohorts"] = {cohort: {} for cohort in COHORTS}
    for c in sorted(kept, key=lambda c: str(c["value"])):
        report["cohorts"][c["cohort"]][c["value"]] = _metrics(c, aucs[(c["cohort"], c["value"])])
    report["omitted"] = omitted
    report["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return report


def _metrics(
    counts: dict[str, Any], auc: tuple[float, list[tuple[float, float]]]
) -> dict[str, Any]:
    value, roc = auc
    return {
        "n": counts["n"],
        "weighted_n": counts["weighted_n"],
        "positives": counts["positives"],
        "auc": value,
        "precision": counts["precision"],
        "recall": counts["recall"],
        "roc": _thin(roc),
    }


def _thin(points: list[tuple[float, float]], most: int = 200) -> list[tuple[float, float]]:
    """At most ``most`` points of a curve, its ends kept."""
    if len(points) <= most:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, most).astype(int))
    return [points[i] for i in keep]


def _write_html(path: str | Path, report: dict[str, Any]) -> None:
    from predlog.analytics import _html  # noqa: PLC0415

    o = report["overall"]
    axes = {"x_label": "false positive rate", "y_label": "true positive rate"}
    sections = [
        (
            "Overall",
            _html.line_chart(
                f"ROC, AUC {o['auc']:.4f}",
                {f"all (AUC {o['auc']:.3f}, n={o['n']:,})": o["roc"]},
                **axes,
            )
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
        curves = {
            f"{value} (AUC {m['auc']:.3f}, n={m['n']:,})": m["roc"] for value, m in values.items()
        }
        sections.append((f"ROC by {cohort}", _html.line_chart(f"ROC by {cohort}", curves, **axes)))
    if report["omitted"]:
        sections.append(
            ("Omitted cohorts", _html.table(report["omitted"], ("cohort", "value", "n", "reason")))
        )
    _html.write(path, _html.page(f"predlog evaluate: {report['generated_at']}", sections))
