"""Joining predictions with late ground truth: AUC, precision and recall, calibration, cohorts,
and each decision value against the outcome.

Every metric is weighted by ``sample_weight``, so a stratified sample (all the risky
and near-threshold decisions, 5% of the rest) still estimates the population's metrics
without bias. The engine joins and reduces (see :mod:`predlog.tools.analytics._ranking`);
memory does not grow with the number of records.

The outcome is binary (``label``: a column and its positive value, or a true/false
column): a default, a chargeback. Precision and recall of the score are taken at each
record's recorded ``decision_threshold``. A decision may have any number of values
(approve, refer, decline); each is reported against the outcome (:func:`decisions`).
Records of non-2xx responses are left out and counted unless ``include_errors``.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from predlog.tools.analytics._data import AnalyticsError, check_time
from predlog.tools.analytics._ranking import auc_and_roc, calibration, confusion
from predlog.tools.analytics._stages import Progress, quiet
from predlog.tools.analytics.engine import HTTP_ERROR_RULE, Engine, ident, literal, open_engine

COHORTS = ("user_segment", "channel", "geographic_region", "model_version")
#: The joined records, errors included (``e``), kept by the engine while the metrics read
#: them.
JOINED = "predlog_joined"
#: Decision values listed one by one (the most frequent); the rest are summed as OTHER.
MAX_DECISIONS = 20
OTHER = "(other)"
#: Outcome values a message quotes.
SHOWN_VALUES = 10
THRESHOLD_RULE = (
    "a record is predicted positive when its score is at or above the decision_threshold "
    "recorded with it (the caller's threshold, else the decision_threshold setting of the "
    "process that recorded it); records without one count in neither precision nor recall"
)


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
    include_errors: bool = False,
) -> dict[str, Any]:
    """Join predictions with outcomes (CSV or Parquet) and report metrics overall and per cohort.

    ``key`` is (prediction column, outcome column); ``label`` is (outcome column, the value
    that counts as positive, or None for a 0/1 or boolean column). Outcomes whose label
    is empty are left out (not yet known is not negative), and so are records of non-2xx
    responses unless ``include_errors`` (``report["errors"]`` counts them). ``engine`` is
    ``duckdb`` (embedded, within ``memory_limit``) or ``spark`` (``spark_master``, default
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
        _check_label(eng, label)
        say("joining predictions with outcomes")
        eng.materialise(JOINED, _join_query(eng, key, label, (since, until, days_ago)))
        report = _report(eng, key, min_cohort, say, include_errors=include_errors)
        report["decisions"] = decisions(eng, _answered(include_errors), label)
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


def _check_label(eng: Engine, label: tuple[str, str | None]) -> None:
    """Refuse a label the outcomes cannot answer, naming it, before anything is joined.

    A positive value no outcome holds would make every outcome negative; a text column
    without one cannot be read as true/false. Both are said with the values the column
    does hold (quoted: they come from a file).
    """
    column, positive = label
    value = f"CAST({ident(column)} AS VARCHAR)"
    rows = eng.rows(
        f"SELECT {value} AS v, count(*) AS n FROM outcomes WHERE {ident(column)} IS NOT NULL "
        f"GROUP BY {value} ORDER BY n DESC, v LIMIT {SHOWN_VALUES + 1}"
    )
    seen = ", ".join(_quoted(v) for v, _ in rows[:SHOWN_VALUES]) + (
        ", ..." if len(rows) > SHOWN_VALUES else ""
    )
    option = f"--label {_argument(column if positive is None else f'{column}={positive}')}"
    if not rows:
        raise AnalyticsError(f"{option}: every outcome's {_quoted(column)} is empty")
    if positive is not None:
        (hits,) = eng.rows(f"SELECT count(*) FROM outcomes WHERE {value} = {literal(positive)}")[0]
        if not hits:
            raise AnalyticsError(
                f"{option}: no outcome has {_quoted(column)} = {_quoted(positive)} "
                f"(values seen: {seen})"
            )
        return
    (text,) = eng.rows(
        f"SELECT count(*) FROM outcomes WHERE {ident(column)} IS NOT NULL "
        f"AND TRY_CAST({ident(column)} AS BOOLEAN) IS NULL"
    )[0]
    if text:
        rarest = rows[:SHOWN_VALUES][-1][0]  # of those shown: often the event
        example = _argument(f"{column}={rarest}")
        raise AnalyticsError(
            f"{option}: {_quoted(column)} is text, not true/false (values seen: {seen}): "
            f"say which value is positive, e.g. --label {example}"
        )


def _quoted(value: object, most: int = 60) -> str:
    """A value from a file or the command line, quoted and escaped for a message."""
    text = str(value)
    return repr(text if len(text) <= most else text[: most - 1] + "\u2026")


def _argument(text: str) -> str:
    """``text`` as it would be typed in a shell, or quoted when it cannot be shown as is."""
    return shlex.quote(text) if text.isprintable() else _quoted(text)


def _join_query(
    eng: Engine,
    key: tuple[str, str],
    label: tuple[str, str | None],
    time_range: tuple[str | None, str | None, int | None],
) -> str:
    """The join of predictions with labelled outcomes in the time range (since, until,
    days ago).

    The label is ``y``: the outcome column equal to the positive value, or the column
    itself read as a boolean. A missing weight counts as 1 (files from before weights).
    ``e`` marks the records of non-2xx responses; ``d`` is the decision (null in files
    without the column). Records without a score are joined too: the error count and the
    decision table read them, the score metrics do not (:func:`_scored`).
    """
    pred_key, outcome_key = key
    label_column, positive = label
    since, until, days_ago = time_range
    where = [f"o.{ident(label_column)} IS NOT NULL"]
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
    decision = "p.decision" if "decision" in eng.columns else "NULL"
    return (
        "SELECT CAST(p.raw_score AS DOUBLE) AS s, "
        "CAST(p.decision_threshold AS DOUBLE) AS t, "
        f"coalesce(CAST(p.sample_weight AS DOUBLE), 1.0) AS w, {y} AS y, {cohorts}, "
        f"{eng.http_error('p')} AS e, CAST({decision} AS VARCHAR) AS d "
        f"FROM predictions p JOIN outcomes o ON CAST(p.{ident(pred_key)} AS VARCHAR) = "
        f"CAST(o.{ident(outcome_key)} AS VARCHAR) WHERE " + " AND ".join(where)
    )


def _answered(include_errors: bool) -> str:
    """The joined records the decision table reads: every one, or those of 2xx responses."""
    return JOINED if include_errors else f"(SELECT * FROM {JOINED} WHERE NOT e) AS answered"


def _scored(include_errors: bool) -> str:
    """The joined records the score metrics read: those of :func:`_answered` with a score."""
    errors = "" if include_errors else " AND NOT e"
    return f"(SELECT * FROM {JOINED} WHERE s IS NOT NULL AND NOT isnan(s){errors}) AS scored"


def _report(
    eng: Engine, key: tuple[str, str], min_cohort: int, say: Progress, *, include_errors: bool
) -> dict[str, Any]:
    say("counting per cohort")
    table = _scored(include_errors)
    counts = confusion(eng, table, COHORTS)
    overall = next(c for c in counts if c["cohort"] is None)
    (errors,) = eng.rows(f"SELECT count(*) FROM {JOINED} WHERE e")[0]
    if overall["n"] == 0:
        (answered,) = eng.rows(f"SELECT count(*) FROM {_answered(include_errors)}")[0]
        if answered:
            raise AnalyticsError(
                f"{answered:,} predictions joined with an outcome, but none has a score "
                "(raw_score is null or NaN): the metrics need one (see the response "
                "fields predlog reads, or score_field)"
            )
        if errors:
            raise AnalyticsError(
                f"every prediction joined with an outcome ({errors:,}) is of a non-2xx "
                "response, left out (--include-errors keeps them)"
            )
        predictions = eng.rows("SELECT count(*) FROM predictions")[0][0]
        labelled = eng.rows("SELECT count(*) FROM outcomes")[0][0]
        raise AnalyticsError(
            f"the join matched nothing: {predictions} predictions, {labelled} outcomes, "
            f"joined on predictions.{key[0]} = outcomes.{key[1]} "
            "(check --key and the time range)"
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
    aucs = {("", None): auc_and_roc(eng, table, None)[None]}
    for number, cohort in enumerate(COHORTS, start=1):
        say("AUC overall and per cohort", number, 1 + len(COHORTS))
        values = [c["value"] for c in kept if c["cohort"] == cohort]
        if [c["n"] for c in kept if c["cohort"] == cohort] == [overall["n"]]:
            aucs[(cohort, values[0])] = aucs[("", None)]  # one value, every record: overall
        elif values:
            column = f"c{COHORTS.index(cohort)}"
            for value, result in auc_and_roc(eng, table, column, values).items():
                aucs[(cohort, value)] = result
    say("AUC overall and per cohort", 1 + len(COHORTS), 1 + len(COHORTS))
    say("calibration")
    report: dict[str, Any] = {
        "engine": eng.name,
        "n": overall["n"],
        "errors": {"rule": HTTP_ERROR_RULE, "included": include_errors, "n": int(errors)},
        "overall": _metrics(overall, aucs[("", None)]),
    }
    report["overall"]["threshold"] = _thresholds(eng, table)
    report["overall"]["calibration"] = calibration(eng, table)
    report["cohorts"] = {cohort: {} for cohort in COHORTS}
    for c in sorted(kept, key=lambda c: str(c["value"])):
        report["cohorts"][c["cohort"]][c["value"]] = _metrics(c, aucs[(c["cohort"], c["value"])])
    report["omitted"] = omitted
    report["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return report


def _thresholds(eng: Engine, table: str) -> dict[str, Any]:
    """The thresholds precision and recall were taken at: each record's own, summarised."""
    low, high, distinct, without = eng.rows(
        f"SELECT min(t), max(t), count(DISTINCT t), count(*) - count(t) FROM {table}"
    )[0]
    return {
        "rule": THRESHOLD_RULE,
        "min": None if low is None else float(low),
        "max": None if high is None else float(high),
        "distinct": int(distinct or 0),
        "records_without": int(without or 0),
    }


def decisions(eng: Engine, table: str, label: tuple[str, str | None]) -> dict[str, Any]:
    """Each decision value against the binary outcome: the weighted confusion matrix of
    decision by outcome, and per value its precision and recall, computed by the engine.

    For a decision value ``d``: *precision* is the weighted share of positive outcomes
    among the records decided ``d`` (the bad rate of approvals, the hit rate of
    declines) and *recall* the weighted share of all positive outcomes that were
    decided ``d`` (how much fraud declines catch, how much approvals let through).
    With the outcome ``--label verdict=refer`` these are the per-class precision and
    recall of ``refer``. Records without a decision are the value None; beyond the
    ``MAX_DECISIONS`` most frequent values, the rest are summed as ``OTHER``.
    """
    column, positive = label
    rows = eng.rows(
        "WITH g AS (SELECT d, count(*) AS n, sum(w) AS wn, count(*) FILTER (WHERE y) AS np, "
        f"sum(CASE WHEN y THEN w ELSE 0 END) AS wp FROM {table} GROUP BY d), "
        "r AS (SELECT d, n, wn, np, wp, row_number() OVER (ORDER BY n DESC, d NULLS LAST) AS k "
        "FROM g) "
        f"SELECT k <= {MAX_DECISIONS} AS listed, CASE WHEN k <= {MAX_DECISIONS} THEN d END AS v, "
        "sum(n), sum(wn), sum(np), sum(wp) FROM r "
        f"GROUP BY k <= {MAX_DECISIONS}, CASE WHEN k <= {MAX_DECISIONS} THEN d END"
    )
    total = sum(float(r[3] or 0) for r in rows)
    positives = sum(float(r[5] or 0) for r in rows)
    out = []
    for listed, value, n, summed, np_, summed_positive in rows:
        weight, wp = float(summed or 0), float(summed_positive or 0)
        out.append(
            {
                "decision": value if listed else OTHER,
                "n": int(n),
                "weighted_n": weight,
                "share": weight / total if total else None,
                "positives": int(np_ or 0),
                "weighted_positives": wp,
                "weighted_negatives": weight - wp,
                "precision": wp / weight if weight else None,
                "recall": wp / positives if positives else None,
            }
        )
    out.sort(key=lambda r: (r["decision"] is None, r["decision"] == OTHER, str(r["decision"])))
    outcome = f"{column} is true" if positive is None else f"{column} = {_quoted(positive)}"
    return {"positive": outcome, "values": out}


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


def _threshold_text(t: dict[str, Any]) -> str:
    if not t["distinct"]:
        return "no record has a decision_threshold: precision and recall are undefined"
    at = f"{t['min']:g}" if t["distinct"] == 1 else f"{t['min']:g} to {t['max']:g}"
    return f"precision and recall at {at}: {t['rule']}"


def _thin(points: list[tuple[float, float]], most: int = 200) -> list[tuple[float, float]]:
    """At most ``most`` points of a curve, its ends kept."""
    if len(points) <= most:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, most).astype(int))
    return [points[i] for i in keep]


def _write_html(path: str | Path, report: dict[str, Any]) -> None:
    from predlog.tools.analytics import _html  # noqa: PLC0415

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
        ("Threshold", _html.note(_threshold_text(o["threshold"]))),
        (
            f"Decisions against {report['decisions']['positive']}",
            _html.table(
                [
                    {**d, "decision": "(no decision)" if d["decision"] is None else d["decision"]}
                    for d in report["decisions"]["values"]
                ],
                (
                    "decision",
                    "n",
                    "weighted_n",
                    "share",
                    "weighted_positives",
                    "weighted_negatives",
                    "precision",
                    "recall",
                ),
            )
            + _html.note(
                "precision: weighted share of the decision's records with a positive outcome; "
                "recall: weighted share of all positive outcomes that got the decision"
            ),
        ),
        ("Calibration", _html.table(o["calibration"], ("bin", "n", "mean_score", "observed_rate"))),
    ]
    errors = report["errors"]
    if errors["n"] or errors["included"]:
        done = "included (--include-errors)" if errors["included"] else "left out"
        sections.insert(
            1, ("Errors", _html.note(f"{errors['n']:,} records of non-2xx responses {done}"))
        )
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
