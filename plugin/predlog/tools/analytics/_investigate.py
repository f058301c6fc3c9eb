"""Everything predlog recorded about one request, and how its features compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from predlog._settings import read
from predlog.tools.analytics._data import AnalyticsError, Predictions

#: Percentile rank of a value among all records, and among one customer's records:
#: the weighted share at or below it, so a stratified sample ranks as the population.
_RANK = (
    "SELECT sum(CASE WHEN v <= ? THEN w ELSE 0 END) / nullif(sum(w), 0), count(*) FROM "
    "(SELECT TRY_CAST(TRY(json_extract_string(features, ?)) AS DOUBLE) AS v, "
    "coalesce(CAST(sample_weight AS DOUBLE), 1.0) AS w FROM predictions {where}) "
    "WHERE v IS NOT NULL"
)
_OWN = "WHERE TRY(json_extract_string(features, ?)) = ?"
_POPULATION = _RANK.format(where="")
_OWN_HISTORY = _RANK.format(where=_OWN)
#: How many records the customer's history holds (this one included).
_HISTORY_SIZE = f"SELECT count(*) FROM predictions {_OWN}"


def investigate(
    request_id: str,
    *,
    data_dir: str | Path | None = None,
    table: str | None = None,
    stale_after_s: float | None = None,
    user_key: str | None = None,
    jaeger_url: str | None = None,
    audit_dir: str | Path | None = None,
    html_path: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Every record with this request id, across services and models, explained.

    For each numeric feature: its percentile in the population of all logged records,
    and (with ``user_key``, a feature naming the customer, e.g. a pseudonymised card id)
    in that customer's own history. Without ``jaeger_url``, trace links use the
    ``jaeger_url`` setting (``PREDLOG_JAEGER_URL``), and none are made when it is unset.
    A feature is stale past ``stale_after_s``, by default the ``stale_feature_age_s``
    setting the operational log uses too (``PREDLOG_STALE_FEATURE_AGE_S``).

    With ``html_path``, also writes a page showing each record beside its trace, fetched
    from Jaeger's API at the same ``jaeger_url``: the span waterfall and the prediction's
    attributes on the spans, so what the model saw and where the time went are side by
    side. Without a Jaeger URL, or when Jaeger has no such trace, the page says so.

    A column the files do not hold (older or hand-made files) is an absent field,
    None, like a value that was not recorded.
    """
    data = Predictions(data_dir, table=table)
    data.require("request_id")
    rows = data.query(
        "SELECT * FROM predictions WHERE request_id = ? ORDER BY timestamp_utc", [request_id]
    ).fetchall()
    if not rows:
        raise AnalyticsError(f"no prediction with request id {request_id!r} in {data.where}")
    names = [d[0] for d in data.con.description]
    jaeger = jaeger_url or read("jaeger_url")
    stale_after = read("stale_feature_age_s") if stale_after_s is None else stale_after_s
    audited = _audit_entries(request_id, audit_dir or data.audit_dir)
    out = []
    for values in rows:
        record = dict(zip(names, values, strict=True))
        features, extra = _object(record["features"]), _object(record["extra"])
        comparison = _comparison(data, features, user_key)
        freshness = record["feature_freshness_max_age_seconds"]
        model = [str(record[c]) for c in ("model_name", "model_version") if record[c] is not None]
        out.append(
            {
                "request_id": record["request_id"],
                "prediction_id": record["prediction_id"],
                "timestamp_utc": _text(record["timestamp_utc"]),
                "model": " ".join(model) or None,
                "score": record["raw_score"],
                "threshold": record["decision_threshold"],
                "decision": record["decision"],
                "confidence": record["model_confidence"],
                "features": features,
                "null_features": sorted(k for k, v in features.items() if v is None),
                "freshness_max_age_seconds": freshness,
                "stale": None if freshness is None else freshness > stale_after,
                "explanation": extra.get("explanation"),
                "trace_id": record["trace_id"],
                "trace_url": (
                    f"{jaeger.rstrip('/')}/trace/{record['trace_id']}"
                    if jaeger and record["trace_id"]
                    else None
                ),
                "data_quality": record["data_quality"] or [],
                "comparison": comparison,
                "own_history": _own_history(data, features, user_key),
                "audit": audited.get(record["prediction_id"] or ""),
            }
        )
    if html_path is not None:
        _write_html(html_path, out, jaeger)
    return out


#: The record's fields the page shows beside its trace, in this order.
_SHOWN = (
    "request_id",
    "prediction_id",
    "timestamp_utc",
    "model",
    "score",
    "threshold",
    "decision",
    "confidence",
    "freshness_max_age_seconds",
    "stale",
    "trace_id",
    "data_quality",
)


def _write_html(path: str | Path, records: list[dict[str, Any]], jaeger: str | None) -> None:
    """Per record, two columns: the record and its features; its trace beside them."""
    from predlog.tools.analytics import _html  # noqa: PLC0415
    from predlog.tools.analytics._trace import fetch_trace  # noqa: PLC0415

    sections = []
    for r in records:
        trace = fetch_trace(jaeger, r["trace_id"])
        fields = [{"field": k, "value": r[k]} for k in _SHOWN if r[k] not in (None, [])]
        if r["audit"]:
            reasons = "; ".join(r["audit"]["adverse_action_reasons"])
            fields.append({"field": "adverse_action_reasons", "value": reasons})
        features = [
            {
                "feature": name,
                "value": value,
                "population percentile": r["comparison"].get(name, {}).get("population_percentile"),
            }
            for name, value in r["features"].items()
        ]
        record = [
            ("Record", _html.table(fields, ("field", "value"))),
            ("Features", _html.table(features, ("feature", "value", "population percentile"))),
        ]
        traced = [("Trace", _html.waterfall(trace))]
        if not trace.problem:
            traced.append(("Prediction attributes on the trace", _html.span_attributes(trace)))
        heading = f"Prediction {r['prediction_id'] or '(no id recorded)'}"
        sections.append((heading, _html.columns(record, traced)))
    title = f"predlog investigate {records[0]['request_id']}"
    _html.write(path, _html.page(title, sections))


def _object(text: str | None) -> dict[str, Any]:
    """A JSON object column's value; empty when absent, or not an object."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}  # flagged when it was captured (data_quality); nothing to show here
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _own_history(
    data: Predictions, features: dict[str, Any], user_key: str | None
) -> dict[str, Any] | None:
    """The customer the record names, and how many records their history holds, so the
    own-history percentiles say how much they rest on. ``value`` is None when the
    record carries no such feature (then there is no history to compare with)."""
    if user_key is None:
        return None
    value = features.get(user_key)
    if value is None:
        return {"key": user_key, "value": None, "n": None}
    key_path = "$." + json.dumps(user_key)
    (n,) = data.query(_HISTORY_SIZE, [key_path, str(value)]).fetchall()[0]
    return {"key": user_key, "value": value, "n": n}


def _comparison(
    data: Predictions, features: dict[str, Any], user_key: str | None
) -> dict[str, dict[str, Any]]:
    """Each numeric feature's percentile among all records and in the customer's history.

    One query per feature and population: DuckDB ranks the value where the data lives,
    so no feature column is loaded into memory.
    """
    numeric = {
        k: v for k, v in features.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    comparison = {}
    for name, value in numeric.items():
        path = "$." + json.dumps(name)
        population = data.query(_POPULATION, [value, path]).fetchall()[0]
        entry = {
            "value": value,
            "population_percentile": _percent(population[0]),
            "population_n": population[1],
        }
        if user_key and features.get(user_key) is not None:
            key_path = "$." + json.dumps(user_key)
            own = data.query(
                _OWN_HISTORY, [value, path, key_path, str(features[user_key])]
            ).fetchall()[0]
            entry["own_history_percentile"] = _percent(own[0]) if own[1] else None
            entry["own_history_n"] = own[1]
        comparison[name] = entry
    return comparison


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100 * share, 1)


def _audit_entries(request_id: str, audit_dir: str | Path | None) -> dict[str, dict[str, Any]]:
    """Audit entries for the request, by prediction id: reasons, explanation, position."""
    if audit_dir is None:
        return {}  # data on an object store and no --audit-dir: no local log to look in
    path = Path(audit_dir)
    if not (path / "entries").exists():
        return {}
    from predlog.audit import AuditReader  # noqa: PLC0415

    reader = AuditReader(path)
    found = {}
    for index, entry in enumerate(reader.entries):
        if entry.get("request_id") == request_id:
            found[str(entry.get("prediction_id"))] = {
                "index": index,
                "adverse_action_reasons": entry.get("adverse_action_reasons", []),
                "explanation": entry.get("explanation"),
                "jurisdiction": entry.get("jurisdiction"),
                "regulatory_category": entry.get("regulatory_category"),
            }
    return found
