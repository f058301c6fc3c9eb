"""Which features drifted between two time ranges.

Per feature: the population stability index (PSI) over ten quantile bins of the
baseline (categories for categorical features), weighted by ``sample_weight``; the
two-sample Kolmogorov-Smirnov test for numbers and the chi-square test of
homogeneity for categories; and the change in null rate. Plus the same PSI for the
score distribution, and the change in feature freshness. A feature is flagged when
its PSI passes ``psi_threshold`` (0.2, the usual "significant shift" line): with
millions of records every p-value is tiny, so the tests are reported, not used alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from predlog.analytics._data import AnalyticsError, Predictions, check_time

_EPS = 1e-6


def parse_range(text: str) -> tuple[str, str]:
    """``START..END`` (dates or timestamps), END exclusive."""
    start, sep, end = text.partition("..")
    if not sep or not start or not end:
        raise AnalyticsError(f"a range looks like 2026-11-01..2026-11-08, got {text!r}")
    return check_time(start, f"range {text}"), check_time(end, f"range {text}")


def psi(
    base: npt.NDArray[np.float64],
    current: npt.NDArray[np.float64],
    base_w: npt.NDArray[np.float64] | None = None,
    current_w: npt.NDArray[np.float64] | None = None,
    bins: int = 10,
) -> float:
    """PSI of a numeric feature over the baseline's quantile bins."""
    edges = np.unique(np.quantile(base, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    b = np.histogram(base, edges, weights=base_w)[0].astype(float)
    c = np.histogram(current, edges, weights=current_w)[0].astype(float)
    return _psi_from_counts(b, c)


def _psi_from_counts(b: npt.NDArray[np.float64], c: npt.NDArray[np.float64]) -> float:
    p = np.maximum(b / b.sum(), _EPS)
    q = np.maximum(c / c.sum(), _EPS)
    return float(((q - p) * np.log(q / p)).sum())


def _json_path(name: str) -> str:
    return "$." + json.dumps(name)


#: The two ranges compared; each becomes a DuckDB view of that name.
_VIEWS = ("baseline", "current")

#: Feature names and JSON types come from up to 20,000 records of each range, not from
#: a scan of every record.
_SAMPLE = (
    "SELECT features FROM (SELECT features FROM baseline USING SAMPLE 20000 ROWS "
    "UNION ALL SELECT features FROM current USING SAMPLE 20000 ROWS) "
    "WHERE features IS NOT NULL"
)

_NUMERIC_JSON_TYPES = frozenset({"UBIGINT", "BIGINT", "DOUBLE"})


def drift(
    *,
    baseline: str,
    current: str,
    data_dir: str | Path | None = None,
    table: str | None = None,
    psi_threshold: float = 0.2,
    model_name: str | None = None,
    html_path: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compare the records of two ranges, feature by feature.

    DuckDB extracts one feature at a time from the JSON column, so memory holds a
    single float column per range, not every record's features.
    """
    data = Predictions(data_dir, table=table, progress=progress is not None)
    data.require("features", "raw_score", "sample_weight", "timestamp_utc")
    counts = {
        view: _select_range(data, view, text, model_name)
        for view, text in zip(_VIEWS, (baseline, current), strict=True)
    }
    names = _feature_names(data)
    report: dict[str, Any] = {
        "baseline": {"range": baseline, "n": counts["baseline"]},
        "current": {"range": current, "n": counts["current"]},
        "psi_threshold": psi_threshold,
        "features": {},
        "drifted": [],
    }
    for number, feature in enumerate(names, start=1):
        if progress is not None:
            progress(f"feature {number}/{len(names)}: {feature}")
        entry = _feature_drift(data, feature, counts)
        entry["drifted"] = entry["psi"] is not None and entry["psi"] > psi_threshold
        if entry["drifted"]:
            report["drifted"].append(feature)
        report["features"][feature] = entry
    report["score"] = _score_drift(data)
    report["freshness_mean_seconds"] = _mean_freshness(data)
    if html_path is not None:
        _write_html(html_path, report)
    return report


def _select_range(data: Predictions, view: str, text: str, model_name: str | None) -> int:
    """Make ``view`` the records of the range ``text`` (and model); their count, never 0.

    The later queries all read the view, so the time filter is written once.
    """
    start, end = parse_range(text)
    where = "timestamp_utc >= CAST(? AS TIMESTAMPTZ) AND timestamp_utc < CAST(? AS TIMESTAMPTZ)"
    params: list[Any] = [start, end]
    if model_name:
        where += " AND model_name = ?"
        params.append(model_name)
    data.con.sql(
        "SELECT features, raw_score, sample_weight, feature_freshness_max_age_seconds "
        f"FROM predictions WHERE {where}",  # fixed text, bound values
        params=params,
    ).create_view(view, replace=True)
    count: int = data.query(f"SELECT count(*) FROM {view}").fetchall()[0][0]
    if not count:
        raise AnalyticsError(f"no predictions in the {view} range {text}")
    return count


def _feature_names(data: Predictions) -> list[str]:
    """Every feature name seen in a sample of either range, sorted."""
    rows = data.query(f"SELECT DISTINCT unnest(json_keys(features)) FROM ({_SAMPLE})").fetchall()
    return sorted(r[0] for r in rows)


def _feature_drift(data: Predictions, feature: str, counts: dict[str, int]) -> dict[str, Any]:
    """One feature's null rates, PSI and test.

    Numerical when every sampled value is a JSON number; otherwise (strings, booleans,
    only nulls) its values are compared as categories.
    """
    path = _json_path(feature)
    rows = data.query(f"SELECT DISTINCT json_type(features, ?) FROM ({_SAMPLE})", [path])
    kinds = {r[0] for r in rows.fetchall()} - {None, "NULL"}
    if kinds and kinds <= _NUMERIC_JSON_TYPES:
        return _numerical_drift(data, path)
    return _categorical_drift(data, path, counts)


def _numerical_drift(data: Predictions, path: str) -> dict[str, Any]:
    """PSI over the baseline's deciles (weighted), the KS test, means and a histogram."""
    from scipy import stats  # noqa: PLC0415  # the analytics extra

    cols = {}
    for view in _VIEWS:
        table = data.arrow(
            f"SELECT CAST(json_extract(features, ?) AS DOUBLE) AS v, sample_weight AS w "
            f"FROM {view}",
            [path],
        )
        values = table.column("v").to_numpy(zero_copy_only=False)
        weights = table.column("w").to_numpy(zero_copy_only=False)
        null = np.isnan(values)
        cols[view] = (values[~null], weights[~null], float(null.mean()))
    (b_num, b_w, b_null), (c_num, c_w, c_null) = cols["baseline"], cols["current"]
    entry: dict[str, Any] = {"null_rate": {"baseline": b_null, "current": c_null}}
    if not (len(b_num) and len(c_num)):
        entry["kind"], entry["psi"] = "empty", None
        return entry
    entry["kind"] = "numerical"
    entry["psi"] = psi(b_num, c_num, b_w, c_w)
    ks = stats.ks_2samp(b_num, c_num)
    entry["ks"] = {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)}
    entry["mean"] = {"baseline": float(b_num.mean()), "current": float(c_num.mean())}
    entry["histogram"] = _histogram(b_num, c_num)
    return entry


#: Per category (None for a null): its summed sample weight and its record count.
_Tally = dict[Any, tuple[float, int]]


def _categorical_drift(data: Predictions, path: str, counts: dict[str, int]) -> dict[str, Any]:
    """PSI over the categories (weighted), the chi-square test on counts, and a histogram."""
    tallies: dict[str, _Tally] = {}
    for view in _VIEWS:
        rows = data.query(
            f"SELECT json_extract_string(features, ?) AS v, sum(sample_weight), count(*) "
            f"FROM {view} GROUP BY v",
            [path],
        ).fetchall()
        tallies[view] = {r[0]: (float(r[1]), int(r[2])) for r in rows}
    b_t, c_t = tallies["baseline"], tallies["current"]
    entry: dict[str, Any] = {
        "null_rate": {view: tallies[view].get(None, (0.0, 0))[1] / counts[view] for view in _VIEWS}
    }
    categories = sorted((set(b_t) | set(c_t)) - {None})
    if not categories:
        entry["kind"], entry["psi"] = "empty", None
        return entry
    b_counts = np.array([b_t.get(k, (0.0, 0))[0] for k in categories])
    c_counts = np.array([c_t.get(k, (0.0, 0))[0] for k in categories])
    entry["kind"] = "categorical"
    entry["psi"] = _psi_from_counts(b_counts, c_counts)
    entry["histogram"] = {
        "categories": categories,
        "baseline": b_counts.tolist(),
        "current": c_counts.tolist(),
    }
    chi_square = _chi_square(b_t, c_t, categories)
    if chi_square is not None:
        entry["chi_square"] = chi_square
    return entry


def _chi_square(b_t: _Tally, c_t: _Tally, categories: list[Any]) -> dict[str, Any] | None:
    """The chi-square test of homogeneity on record counts; None with fewer than two
    categories seen, where the test is undefined."""
    from scipy import stats  # noqa: PLC0415  # the analytics extra

    table = np.array(
        [
            [b_t.get(k, (0.0, 0))[1] for k in categories],
            [c_t.get(k, (0.0, 0))[1] for k in categories],
        ]
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] <= 1:
        return None
    chi2, p, dof, _ = stats.chi2_contingency(table)
    return {"statistic": float(chi2), "p_value": float(p), "dof": int(dof)}


def _score_drift(data: Predictions) -> dict[str, Any]:
    """PSI (unweighted), means and a histogram of the model's scores."""
    scores = {}
    for view in _VIEWS:
        values = data.arrow(f"SELECT raw_score FROM {view} WHERE raw_score IS NOT NULL", [])
        scores[view] = values.column("raw_score").to_numpy(zero_copy_only=False)
    b_score, c_score = scores["baseline"], scores["current"]
    both = bool(len(b_score) and len(c_score))
    score: dict[str, Any] = {
        "psi": psi(b_score, c_score) if both else None,
        "mean": {
            "baseline": float(b_score.mean()) if len(b_score) else None,
            "current": float(c_score.mean()) if len(c_score) else None,
        },
    }
    if both:
        score["histogram"] = _histogram(b_score, c_score)
    return score


def _mean_freshness(data: Predictions) -> dict[str, Any]:
    """Mean age of the oldest feature per record, in seconds, for each range."""
    return {
        view: data.query(f"SELECT avg(feature_freshness_max_age_seconds) FROM {view}").fetchone()[0]
        for view in _VIEWS
    }


def _histogram(base: npt.NDArray[np.float64], current: npt.NDArray[np.float64]) -> dict[str, Any]:
    edges = np.unique(np.quantile(base, np.linspace(0, 1, 11)))
    if len(edges) < 2:
        edges = np.array([base.min(), base.max() + 1])
    inner = edges.copy()
    inner[0], inner[-1] = -np.inf, np.inf
    return {
        "edges": edges.tolist(),
        "baseline": np.histogram(base, inner)[0].tolist(),
        "current": np.histogram(current, inner)[0].tolist(),
    }


def _write_html(path: str | Path, report: dict[str, Any]) -> None:
    from predlog.analytics import _html  # noqa: PLC0415

    rows = [
        {
            "feature": name,
            "kind": f["kind"],
            "psi": f["psi"],
            "drifted": f["drifted"],
            "null_rate_baseline": f["null_rate"]["baseline"],
            "null_rate_current": f["null_rate"]["current"],
        }
        for name, f in report["features"].items()
    ]
    sections = [("Features", _html.table(rows, list(rows[0]) if rows else []))]
    if "histogram" in report["score"]:
        h = report["score"]["histogram"]
        sections.append(("Score", _html.histogram("score", h["baseline"], h["current"])))
    for name, f in report["features"].items():
        h = f.get("histogram")
        if h:
            label = f"{name}: PSI {f['psi']:.3f}" + (" DRIFTED" if f["drifted"] else "")
            sections.append((label, _html.histogram(name, h["baseline"], h["current"])))
    title = f"predlog drift: {report['baseline']['range']} vs {report['current']['range']}"
    _html.write(path, _html.page(title, sections))
