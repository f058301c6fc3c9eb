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
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from predlog.analytics._data import AnalyticsError, Predictions

_EPS = 1e-6


def parse_range(text: str) -> tuple[str, str]:
    """``START..END`` (dates or timestamps), END exclusive."""
    start, sep, end = text.partition("..")
    if not sep or not start or not end:
        raise AnalyticsError(f"a range looks like 2026-11-01..2026-11-08, got {text!r}")
    return start, end


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


def drift(
    *,
    baseline: str,
    current: str,
    data_dir: str | Path | None = None,
    psi_threshold: float = 0.2,
    model_name: str | None = None,
    html_path: str | Path | None = None,
) -> dict[str, Any]:
    """Compare the records of two ranges, feature by feature."""
    from scipy import stats  # noqa: PLC0415  # the analytics extra

    data = Predictions(data_dir)
    data.require("features", "raw_score", "sample_weight", "timestamp_utc")
    frames = {}
    for name, text in (("baseline", baseline), ("current", current)):
        start, end = parse_range(text)
        sql = (
            "SELECT features, raw_score, sample_weight, feature_freshness_max_age_seconds "
            "FROM predictions WHERE timestamp_utc >= CAST(? AS TIMESTAMPTZ) "
            "AND timestamp_utc < CAST(? AS TIMESTAMPTZ)"
        )
        params: list[Any] = [start, end]
        if model_name:
            sql += " AND model_name = ?"
            params.append(model_name)
        frame = data.query(sql, params).df()
        if frame.empty:
            raise AnalyticsError(f"no predictions in the {name} range {text}")
        features = frame["features"].map(lambda t: {} if t is None else json.loads(t))
        frames[name] = (frame, features)

    base, base_features = frames["baseline"]
    cur, cur_features = frames["current"]
    names = sorted(set().union(*base_features.tolist()) | set().union(*cur_features.tolist()))
    bw = base["sample_weight"].to_numpy(dtype=float)
    cw = cur["sample_weight"].to_numpy(dtype=float)
    report: dict[str, Any] = {
        "baseline": {"range": baseline, "n": len(base)},
        "current": {"range": current, "n": len(cur)},
        "psi_threshold": psi_threshold,
        "features": {},
        "drifted": [],
    }
    for feature in names:
        b_raw = base_features.map(lambda f, k=feature: f.get(k)).to_numpy(dtype=object)
        c_raw = cur_features.map(lambda f, k=feature: f.get(k)).to_numpy(dtype=object)
        b_null = np.array([v is None for v in b_raw])
        c_null = np.array([v is None for v in c_raw])
        b_vals, c_vals = b_raw[~b_null], c_raw[~c_null]
        entry: dict[str, Any] = {
            "null_rate": {"baseline": float(b_null.mean()), "current": float(c_null.mean())},
        }
        numeric = all(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            for v in np.concatenate([b_vals, c_vals])
        )
        if len(b_vals) == 0 or len(c_vals) == 0:
            entry["kind"] = "empty"
            entry["psi"] = None
        elif numeric:
            b_num, c_num = b_vals.astype(float), c_vals.astype(float)
            entry["kind"] = "numerical"
            entry["psi"] = psi(b_num, c_num, bw[~b_null], cw[~c_null])
            ks = stats.ks_2samp(b_num, c_num)
            entry["ks"] = {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)}
            entry["mean"] = {"baseline": float(b_num.mean()), "current": float(c_num.mean())}
            entry["histogram"] = _histogram(b_num, c_num)
        else:
            b_cat, c_cat = b_vals.astype(str), c_vals.astype(str)
            categories = sorted(set(b_cat) | set(c_cat))
            b_counts = np.array([bw[~b_null][b_cat == k].sum() for k in categories])
            c_counts = np.array([cw[~c_null][c_cat == k].sum() for k in categories])
            entry["kind"] = "categorical"
            entry["psi"] = _psi_from_counts(b_counts, c_counts)
            entry["histogram"] = {
                "categories": categories,
                "baseline": b_counts.tolist(),
                "current": c_counts.tolist(),
            }
            table = np.array(
                [[np.sum(b_cat == k) for k in categories], [np.sum(c_cat == k) for k in categories]]
            )
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] > 1:
                chi2, p, dof, _ = stats.chi2_contingency(table)
                entry["chi_square"] = {
                    "statistic": float(chi2),
                    "p_value": float(p),
                    "dof": int(dof),
                }
        entry["drifted"] = entry["psi"] is not None and entry["psi"] > psi_threshold
        if entry["drifted"]:
            report["drifted"].append(feature)
        report["features"][feature] = entry
    b_score = base["raw_score"].dropna().to_numpy(dtype=float)
    c_score = cur["raw_score"].dropna().to_numpy(dtype=float)
    report["score"] = {
        "psi": psi(b_score, c_score) if len(b_score) and len(c_score) else None,
        "mean": {
            "baseline": float(b_score.mean()) if len(b_score) else None,
            "current": float(c_score.mean()) if len(c_score) else None,
        },
    }
    fresh_b = base["feature_freshness_max_age_seconds"].dropna()
    fresh_c = cur["feature_freshness_max_age_seconds"].dropna()
    report["freshness_mean_seconds"] = {
        "baseline": float(fresh_b.mean()) if len(fresh_b) else None,
        "current": float(fresh_c.mean()) if len(fresh_c) else None,
    }
    if len(b_score) and len(c_score):
        report["score"]["histogram"] = _histogram(b_score, c_score)
    if html_path is not None:
        _write_html(html_path, report)
    return report


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
