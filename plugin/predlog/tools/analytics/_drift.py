"""Which features drifted between two time ranges.

Per feature, every number weighted by ``sample_weight``: the population stability
index (PSI) over the baseline's weighted deciles (categories for text features); the
Kolmogorov-Smirnov statistic between the weighted distributions for numbers and the
chi-square test of homogeneity for categories; the null rate and the mean. The same
for the model's score, and the change in feature freshness. The engine computes them
(see :mod:`predlog.tools.analytics._distribution`); memory does not grow with records.

When a feature is flagged (``RULE``): its PSI passes ``psi_threshold`` (0.2, the usual
"significant shift" line), its test rejects at ``ALPHA``, and both ranges are large
enough that PSI's own noise is small beside the threshold. Comparing two samples of
one distribution, PSI is about (bins - 1) * (1/n_baseline + 1/n_current) on average
(n: effective sample sizes), so 148 against 152 records over 8 categories give
0.09 by chance and often 0.4. A feature under that size is reported, with its numbers,
as too small to flag. Identifier-like features are not compared at all
(:mod:`predlog.tools.analytics._features`), nor those named in ``exclude``.

Records of requests the service refused or failed (an HTTP status outside 200-299,
:data:`~predlog.tools.analytics.engine.HTTP_ERROR_RULE`) are left out unless
``include_errors``, and counted: a 422 carries no features, and its nulls would read as
a change in every feature's null rate that is really the invalid-request rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from predlog._settings import read
from predlog.tools.analytics import _distribution as dist
from predlog.tools.analytics._data import AnalyticsError, check_range
from predlog.tools.analytics._features import Feature, classify, sample
from predlog.tools.analytics._stages import Progress, quiet
from predlog.tools.analytics.engine import HTTP_ERROR_RULE, Engine, literal, open_engine
from predlog.tools.analytics.engine._sql import feature as feature_text

#: The test's p-value under which a large PSI is believed.
ALPHA: Final = 0.01
#: PSI's noise (its mean between two samples of one distribution) must stay under this
#: share of the threshold.
NOISE_SHARE: Final = 0.1
RULE: Final = (
    "flagged when PSI > {threshold}, the KS or chi-square test gives p < {alpha}, and "
    "(bins - 1) * (1/n_baseline + 1/n_current) (PSI's mean by chance; n effective) "
    "< {share} * {threshold}"
)
#: The records of both ranges, errors included (``e``), kept by the engine while the
#: metrics read them.
RECORDS: Final = "predlog_drift"


def parse_range(text: str) -> tuple[str, str]:
    """``START..END`` (dates or timestamps), END exclusive."""
    start, sep, end = text.partition("..")
    if not sep or not start or not end:
        raise AnalyticsError(f"a range looks like 2026-11-01..2026-11-08, got {text!r}")
    return check_range(start, end, f"range {text}")


def drift(
    *,
    baseline: str,
    current: str,
    data_dir: str | Path | None = None,
    table: str | None = None,
    psi_threshold: float = 0.2,
    model_name: str | None = None,
    html_path: str | Path | None = None,
    progress: Progress | None = None,
    engine: str = "duckdb",
    spark_master: str | None = None,
    memory_limit: str | None = None,
    exclude: Iterable[str] | None = None,
    include_errors: bool = False,
) -> dict[str, Any]:
    """Compare the records of two ranges, feature by feature.

    ``exclude`` names features not to compare (default: the ``drift_exclude`` setting,
    ``PREDLOG_DRIFT_EXCLUDE``). Records of non-2xx responses are left out and counted
    (``report["errors"]``) unless ``include_errors``. ``engine`` as for
    :func:`predlog.tools.analytics.evaluate`.
    """
    say = progress or quiet
    excluded = set(read("drift_exclude") if exclude is None else exclude)
    say("opening the prediction records")
    with open_engine(
        engine,
        data_dir=data_dir,
        table=table,
        spark_master=spark_master,
        memory_limit=memory_limit,
    ) as eng:
        eng.require("features", "raw_score", "sample_weight", "timestamp_utc")
        filters = [_range_filter(text, model_name) for text in (baseline, current)]
        kept = "TRUE" if include_errors else f"NOT {eng.http_error()}"
        say("sampling feature names")
        features = classify([sample(eng, f"{f} AND {kept}") for f in filters])
        features = [_exclusion(f, excluded, eng.unreadable(f.name)) for f in features]
        compared = [f for f in features if f.kind in ("numerical", "categorical")]
        say("extracting features")
        eng.materialise(RECORDS, _records_query(filters, compared, eng.http_error()))
        report = _report(
            eng,
            (baseline, current),
            (features, compared),
            psi_threshold,
            say,
            include_errors=include_errors,
        )
    if html_path is not None:
        _write_html(html_path, report)
    return report


def _exclusion(feature: Feature, excluded: set[str], unreadable: str | None) -> Feature:
    """``feature``, or why it is not compared: excluded by name, unreadable by the engine."""
    if feature.name in excluded:
        return Feature(feature.name, "excluded", "excluded by name")
    if unreadable and feature.kind in ("numerical", "categorical"):
        return Feature(feature.name, "unreadable", unreadable)
    return feature


def _range_filter(text: str, model_name: str | None) -> str:
    start, end = parse_range(text)
    where = (
        f"timestamp_utc >= CAST({literal(start)} AS TIMESTAMPTZ) "
        f"AND timestamp_utc < CAST({literal(end)} AS TIMESTAMPTZ)"
    )
    if model_name:
        where += f" AND model_name = {literal(model_name)}"
    return where


def _records_query(filters: list[str], compared: list[Feature], error: str) -> str:
    """One row per record of either range: which range, whether it is an error, weight,
    score, freshness and each compared feature (numbers as DOUBLE: a value that is not a
    number is null)."""
    columns = []
    for i, feature in enumerate(compared):
        value = feature_text(feature.name)
        if feature.kind == "numerical":
            value = f"TRY_CAST({value} AS DOUBLE)"
        columns.append(f"{value} AS f{i}")
    select = (
        f"{error} AS e, coalesce(CAST(sample_weight AS DOUBLE), 1.0) AS w, "
        "CAST(raw_score AS DOUBLE) AS score, "
        "CAST(feature_freshness_max_age_seconds AS DOUBLE) AS fresh"
        + "".join(", " + c for c in columns)
    )
    return " UNION ALL ".join(
        f"SELECT {flag} AS cur, {select} FROM predictions WHERE {where}"
        for flag, where in zip(("FALSE", "TRUE"), filters, strict=True)
    )


def _report(
    eng: Engine,
    ranges: tuple[str, str],
    kinds: tuple[list[Feature], list[Feature]],
    psi_threshold: float,
    say: Progress,
    *,
    include_errors: bool,
) -> dict[str, Any]:
    """The report over the materialised records: ``kinds`` are (all features, compared)."""
    features, compared = kinds
    totals = _totals(eng, include_errors)
    for view, text, (n, _, _, errors) in zip(("baseline", "current"), ranges, totals, strict=True):
        if not n:
            left_out = ""
            if errors and not include_errors:
                left_out = f", only {errors:,} of non-2xx responses (--include-errors keeps them)"
            raise AnalyticsError(f"no predictions in the {view} range {text}{left_out}")
    table = RECORDS if include_errors else f"(SELECT * FROM {RECORDS} WHERE NOT e) AS kept"
    report: dict[str, Any] = {
        "engine": eng.name,
        "baseline": {"range": ranges[0], "n": totals[0][0], "weighted_n": totals[0][1]},
        "current": {"range": ranges[1], "n": totals[1][0], "weighted_n": totals[1][1]},
        "psi_threshold": psi_threshold,
        "rule": RULE.format(threshold=psi_threshold, alpha=ALPHA, share=NOISE_SHARE),
        "errors": {
            "rule": HTTP_ERROR_RULE,
            "included": include_errors,
            "baseline": totals[0][3],
            "current": totals[1][3],
        },
        "features": {},
    }
    weights = (totals[0][1], totals[1][1])
    column = {f.name: f"f{i}" for i, f in enumerate(compared)}
    for number, feature in enumerate(features, start=1):
        say("comparing features", number - 1, len(features))
        if feature.name in column:
            entry = _compare(eng, table, column[feature.name], feature.kind, weights)
            _flag(entry, psi_threshold)
        else:
            entry = {"kind": feature.kind, "psi": None, "drifted": False, "note": feature.note}
        report["features"][feature.name] = entry
    say("comparing features", len(features), len(features))
    report["drifted"] = [n for n, f in report["features"].items() if f["drifted"]]
    report["identifiers"] = [f.name for f in features if f.kind == "identifier"]
    say("comparing scores")
    report["score"] = _compare(eng, table, "score", "numerical", weights)
    report["freshness_mean_seconds"] = {"baseline": totals[0][2], "current": totals[1][2]}
    return report


def _totals(eng: Engine, include_errors: bool) -> list[tuple[int, float, float | None, int]]:
    """Per range: records compared, their weight, the weighted mean feature freshness,
    and the records of non-2xx responses (left out unless ``include_errors``)."""
    parts = []
    for side in ("NOT cur", "cur"):
        c = side if include_errors else f"{side} AND NOT e"
        parts.append(
            f"count(*) FILTER (WHERE {c}), sum(w) FILTER (WHERE {c}), "
            f"sum(w * fresh) FILTER (WHERE {c} AND fresh IS NOT NULL) / "
            f"nullif(sum(w) FILTER (WHERE {c} AND fresh IS NOT NULL), 0), "
            f"count(*) FILTER (WHERE {side} AND e)"
        )
    row = eng.rows(f"SELECT {', '.join(parts)} FROM {RECORDS}")[0]
    return [
        (
            int(row[i] or 0),
            float(row[i + 1] or 0),
            None if row[i + 2] is None else float(row[i + 2]),
            int(row[i + 3] or 0),
        )
        for i in (0, 4)
    ]


def _compare(
    eng: Engine, table: str, column: str, kind: str, weights: tuple[float, float]
) -> dict[str, Any]:
    numeric = kind == "numerical"
    base, cur, lo, hi, distinct = dist.sides(eng, table, column, numeric=numeric)
    entry: dict[str, Any] = {
        "kind": kind,
        "null_rate": {
            "baseline": base.null_weight / weights[0] if weights[0] else None,
            "current": cur.null_weight / weights[1] if weights[1] else None,
        },
        "n": {"baseline": base.n, "current": cur.n},
        "note": None,
    }
    if not (base.n and cur.n and base.weight > 0 and cur.weight > 0):
        entry.update(kind="empty", psi=None, drifted=False, note="no values in one of the ranges")
        return entry
    if numeric:
        bounds = (float(lo), float(hi))
        _numerical(eng, (table, column), entry, (base, cur), bounds, distinct=distinct)
    else:
        _categorical(eng, (table, column), entry, (base, cur))
    entry["noise"] = (entry["bins"] - 1) * (1 / base.effective_n + 1 / cur.effective_n)
    return entry


def _numerical(
    eng: Engine,
    where: tuple[str, str],
    entry: dict[str, Any],
    sides: tuple[dist.Side, dist.Side],
    bounds: tuple[float, float],
    *,
    distinct: int,
) -> None:
    (table, column), (base, cur) = where, sides
    statistic, inner = dist.ks_and_deciles(eng, table, column, bounds, sides, distinct=distinct)
    b, c = dist.binned(eng, table, column, inner)
    entry["psi"] = dist.psi(b, c)
    entry["bins"] = len(b)
    entry["ks"] = {"statistic": statistic, "p_value": dist.ks_p_value(statistic, base, cur)}
    entry["mean"] = {"baseline": base.mean, "current": cur.mean}
    entry["histogram"] = {
        "edges": [bounds[0], *inner, bounds[1]],
        "baseline": b.tolist(),
        "current": c.tolist(),
    }


def _categorical(
    eng: Engine, where: tuple[str, str], entry: dict[str, Any], sides: tuple[dist.Side, dist.Side]
) -> None:
    names, b, c = dist.categories(eng, *where)
    entry["psi"] = dist.psi(b, c)
    entry["bins"] = len(names)
    test = dist.chi_square(b, c, *sides)
    if test is not None:
        entry["chi_square"] = test
    entry["histogram"] = {"categories": names, "baseline": b.tolist(), "current": c.tolist()}


def _flag(entry: dict[str, Any], threshold: float) -> None:
    """Decide ``drifted`` by ``RULE``; say why a large PSI is not flagged."""
    test = entry.get("ks") or entry.get("chi_square")
    p_value = test["p_value"] if test else None
    large = entry["psi"] is not None and entry["psi"] > threshold
    enough = entry.get("noise") is not None and entry["noise"] < NOISE_SHARE * threshold
    entry["drifted"] = bool(large and enough and p_value is not None and p_value < ALPHA)
    if large and not enough:
        entry["note"] = (
            f"too few records to flag: PSI {entry['psi']:.3f} where chance alone gives "
            f"about {entry['noise']:.3f} at n = {entry['n']['baseline']:,} and "
            f"{entry['n']['current']:,}"
        )
    elif large and not entry["drifted"]:
        entry["note"] = f"not flagged: the test does not reject (p = {p_value})"


def _write_html(path: str | Path, report: dict[str, Any]) -> None:
    from predlog.tools.analytics import _html  # noqa: PLC0415

    rows = [
        {
            "feature": name,
            "kind": f["kind"],
            "psi": f["psi"],
            "drifted": f["drifted"],
            "null_rate_baseline": f.get("null_rate", {}).get("baseline"),
            "null_rate_current": f.get("null_rate", {}).get("current"),
            "note": f.get("note"),
        }
        for name, f in report["features"].items()
    ]
    sections = [
        ("Features", _html.table(rows, list(rows[0]) if rows else [])),
        ("Rule", _html.note(report["rule"])),
    ]
    errors = report["errors"]
    if errors["baseline"] or errors["current"] or errors["included"]:
        done = "included (--include-errors)" if errors["included"] else "left out"
        sections.insert(
            0,
            (
                "Errors",
                _html.note(
                    f"records of non-2xx responses {done}: baseline {errors['baseline']:,}, "
                    f"current {errors['current']:,}"
                ),
            ),
        )
    score = report["score"]
    if "histogram" in score:
        sections.append(("Score", _chart(_html, "score", score)))
    for name, f in report["features"].items():
        if f.get("histogram"):
            label = f"{name}: PSI {f['psi']:.3f}" + (" DRIFTED" if f["drifted"] else "")
            sections.append((label, _chart(_html, name, f)))
    title = f"predlog drift: {report['baseline']['range']} vs {report['current']['range']}"
    _html.write(path, _html.page(title, sections))


def _chart(html: Any, name: str, entry: dict[str, Any]) -> str:
    h = entry["histogram"]
    return str(
        html.histogram(
            name,
            h["baseline"],
            h["current"],
            edges=h.get("edges"),
            categories=[str(c) for c in h["categories"]] if "categories" in h else None,
            x_label=name,
        )
    )


__all__ = ["drift", "parse_range"]
