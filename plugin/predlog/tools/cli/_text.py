"""The text form of each analytics answer: what a person reads in a terminal.

The JSON form (``-o json``) is the answer itself; these pick what matters and print
numbers with 4 significant digits.
"""

from __future__ import annotations

import json
from typing import Any

import click

from predlog.tools.cli._options import num


def investigation(records: list[dict[str, Any]]) -> None:
    """Each record in a few lines. A field with no data (not recorded, or a column the
    files lack) is left out rather than shown as ``-`` or None."""
    for r in records:
        click.echo(
            _line(
                f"request {_shown(r['request_id'])}",
                r["prediction_id"] and f"prediction {r['prediction_id']}",
                r["timestamp_utc"] and f"at {r['timestamp_utc']}",
                sep="  ",
            )
        )
        verdict = _line(
            r["score"] is not None and f"score {num(r['score'])}",
            r["threshold"] is not None and f"against threshold {num(r['threshold'])}",
            r["decision"] is not None and f"-> {_shown(r['decision'])}",
            r["confidence"] is not None and f"({_shown(r['confidence'])} confidence)",
        )
        model = r["model"] and f"model {_shown(r['model'])}"
        if model or verdict:
            click.echo("  " + (f"{model}: {verdict}" if model and verdict else model or verdict))
        _features(r)
        history = r.get("own_history")
        if history:
            click.echo(f"  own history: {_history(history)}")
        if r["explanation"]:
            click.echo(f"  explanation: {json.dumps(r['explanation'])}")
        if r["audit"]:
            click.echo(f"  audited (entry {r['audit']['index']}); adverse-action reasons:")
            for reason in r["audit"]["adverse_action_reasons"]:
                click.echo(f"    - {_shown(reason)}")
        if r["trace_id"]:
            url = f"  {_shown(r['trace_url'])}" if r["trace_url"] else ""
            click.echo(f"  trace {_shown(r['trace_id'])}{url}")
        if r["data_quality"]:
            click.echo(f"  data quality: {', '.join(r['data_quality'])}")


def _features(r: dict[str, Any]) -> None:
    if not r["features"]:
        return
    about = _line(
        r["freshness_max_age_seconds"] is not None
        and f"freshness {num(r['freshness_max_age_seconds'])} s{' STALE' if r['stale'] else ''}",
        f"null: {', '.join(map(_shown, r['null_features'])) or 'none'}",
        sep="; ",
    )
    click.echo(f"  features ({about}):")
    for name, value in r["features"].items():
        cmp = r["comparison"].get(name)
        extra = ""
        if cmp:
            extra = f"  population p{num(cmp['population_percentile'])}"
            if cmp.get("own_history_percentile") is not None:
                extra += f", own history p{num(cmp['own_history_percentile'])}"
        click.echo(f"    {_shown(name):28s} {_value(value):>16s}{extra}")


def _history(history: dict[str, Any]) -> str:
    """How many records the customer's history holds, or why there is none."""
    key, value, n = _shown(history["key"]), history["value"], history["n"]
    if value is None:
        return f"the record has no value for feature {key!r}"
    shown = _shown(value) if isinstance(value, str) else _value(value)
    which = f"{key} = {shown!r}" if isinstance(value, str) else f"{key} = {shown}"
    return f"{n} prediction{'' if n == 1 else 's'} with {which} (this one included)"


def _line(*parts: Any, sep: str = " ") -> str:
    """The parts that are there (a part with no data is None, False or empty), joined."""
    return sep.join(p for p in parts if p)


def _value(value: Any) -> str:
    """A feature's value as a person writes it: numbers by :func:`num`, text as it is,
    null as null, lists and objects as JSON."""
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return _shown(value) if isinstance(value, str) else num(value)


def _shown(text: Any) -> str:
    """Text from a record, printable: control characters (a terminal escape in a
    feature sent by a client) are written as JSON escapes, never sent to the terminal."""
    text = str(text)
    return text if text.isprintable() else json.dumps(text)[1:-1]


def evaluation(report: dict[str, Any]) -> None:
    o = report["overall"]
    click.echo(f"n={report['n']} (weighted {o['weighted_n']:.0f})  AUC {num(o['auc'])}")
    click.echo(
        f"precision {num(o['precision'])}  recall {num(o['recall'])}  {_threshold(o['threshold'])}"
    )
    errors = report["errors"]
    _errors(errors["n"], errors["included"])
    decided = report["decisions"]
    click.echo(f"decisions against {_cell(decided['positive'], 60)} (weighted):")
    click.echo(
        f"  {'decision':20s} {'n':>8s} {'weighted':>10s} {'share':>7s} {'positive':>10s} "
        f"{'negative':>10s} {'precision':>9s} {'recall':>7s}"
    )
    for d in decided["values"]:
        name = "(no decision)" if d["decision"] is None else _cell(d["decision"], 20)
        click.echo(
            f"  {name:20s} {d['n']:>8d} {num(d['weighted_n']):>10s} {_share(d['share']):>7s} "
            f"{num(d['weighted_positives']):>10s} {num(d['weighted_negatives']):>10s} "
            f"{num(d['precision']):>9s} {num(d['recall']):>7s}"
        )
    click.echo(
        "  (precision: share of the decision's records with a positive outcome; "
        "recall: share of all positives it got)"
    )
    click.echo("calibration by score bin (weighted):")
    click.echo(f"  {'score':8s} {'n':>8s} {'mean score':>10s} {'observed':>9s}")
    for b in o["calibration"]:
        click.echo(
            f"  {b['bin']:8s} {b['n']:>8d} {num(b['mean_score']):>10s} "
            f"{num(b['observed_rate']):>9s}"
        )
    if any(report["cohorts"].values()) or report["omitted"]:
        click.echo("by cohort:")
    for cohort, values in report["cohorts"].items():
        for value, m in values.items():
            click.echo(f"  {cohort}={value}: n={m['n']} AUC {num(m['auc'])}")
    for item in report["omitted"]:
        click.echo(f"  omitted {item['cohort']}={item['value']}: n={item['n']} ({item['reason']})")


def _threshold(t: dict[str, Any]) -> str:
    """Which threshold the binary metrics were taken at: each record's recorded one."""
    if not t["distinct"]:
        return "(no record has a decision_threshold)"
    if t["distinct"] == 1:
        text = f"at threshold {num(t['min'])} (score >= each record's recorded threshold"
    else:
        text = (
            f"at each record's recorded threshold ({t['distinct']} values, "
            f"{num(t['min'])} to {num(t['max'])}"
        )
    if t["records_without"]:
        text += f"; {t['records_without']:,} records without one not counted"
    return text + ")"


def _errors(n: int, included: bool, detail: str = "") -> None:
    """How many records of non-2xx responses were left out, or kept."""
    if included:
        click.echo(f"including {n:,} records of non-2xx responses{detail} (--include-errors)")
    elif n:
        click.echo(
            f"left out {n:,} records of non-2xx responses{detail} "
            "(an HTTP status outside 200-299; --include-errors keeps them)"
        )


def _cell(value: Any, width: int) -> str:
    """A value from the records, for a terminal: escaped, and cut to ``width``."""
    text = _shown(value)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def drift_report(report: dict[str, Any]) -> None:
    click.echo(
        f"baseline {report['baseline']['range']} (n={report['baseline']['n']}) vs "
        f"current {report['current']['range']} (n={report['current']['n']})"
    )
    errors = report["errors"]
    _errors(
        errors["baseline"] + errors["current"],
        errors["included"],
        f" (baseline {errors['baseline']:,}, current {errors['current']:,})",
    )
    for name, f in report["features"].items():
        mark = "DRIFTED" if f["drifted"] else ""
        nulls = f.get("null_rate")
        shown = (
            f"  nulls {_share(nulls['baseline'])} -> {_share(nulls['current'])}" if nulls else ""
        )
        click.echo(f"  {name:28s} {f['kind']:11s} PSI {num(f['psi']):>7s}{shown}  {mark}")
        if f.get("note"):
            click.echo(f"    ({f['note']})")
    score = report["score"]
    mean = score.get("mean") or {}
    click.echo(
        f"  score PSI {num(score['psi'])}, mean {num(mean.get('baseline'))} -> "
        f"{num(mean.get('current'))}"
    )
    click.echo(f"  ({report['rule']})")


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def replays(results: list[dict[str, Any]]) -> None:
    for r in results:
        logged, replayed = r["logged"], r["replayed"]
        click.echo(f"prediction {r['prediction_id']} (threshold {num(r['threshold'])})")
        for label, side in (("logged  ", logged), ("replayed", replayed)):
            decision = side["decision"] if side["decision"] is not None else "-"
            click.echo(
                f"  {label} {side['model']:30s} score {num(side['score'])}  decision {decision}"
            )
        click.echo(
            f"  difference {num(r['score_difference'])}; same side of threshold: "
            f"{r['same_side_of_threshold']}"
        )
