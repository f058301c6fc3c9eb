"""The text form of each analytics answer: what a person reads in a terminal.

The JSON form (``-o json``) is the answer itself; these pick what matters and print
numbers with 4 significant digits.
"""

from __future__ import annotations

import json
from typing import Any

import click

from predlog.cli._options import num


def investigation(records: list[dict[str, Any]]) -> None:
    for r in records:
        click.echo(
            f"request {r['request_id']}  prediction {r['prediction_id']}  at {r['timestamp_utc']}"
        )
        click.echo(
            f"  model {r['model']}: score {num(r['score'])} against threshold "
            f"{num(r['threshold'])} -> {r['decision']} ({r['confidence']} confidence)"
        )
        stale = " STALE" if r["stale"] else ""
        click.echo(
            f"  features (freshness {num(r['freshness_max_age_seconds'])} s{stale};"
            f" null: {', '.join(r['null_features']) or 'none'}):"
        )
        for name, value in r["features"].items():
            cmp = r["comparison"].get(name)
            extra = ""
            if cmp:
                extra = f"  population p{num(cmp['population_percentile'])}"
                if cmp.get("own_history_percentile") is not None:
                    extra += f", own history p{num(cmp['own_history_percentile'])}"
            click.echo(f"    {name:28s} {num(value):>16s}{extra}")
        if r["explanation"]:
            click.echo(f"  explanation: {json.dumps(r['explanation'])}")
        if r["audit"]:
            click.echo(f"  audited (entry {r['audit']['index']}); adverse-action reasons:")
            for reason in r["audit"]["adverse_action_reasons"]:
                click.echo(f"    - {reason}")
        if r["trace_id"]:
            url = f"  {r['trace_url']}" if r["trace_url"] else ""
            click.echo(f"  trace {r['trace_id']}{url}")
        if r["data_quality"]:
            click.echo(f"  data quality: {', '.join(r['data_quality'])}")


def evaluation(report: dict[str, Any]) -> None:
    o = report["overall"]
    click.echo(
        f"n={report['n']} (weighted {o['weighted_n']:.0f})  AUC {num(o['auc'])}  "
        f"precision {num(o['precision'])}  recall {num(o['recall'])}"
    )
    for cohort, values in report["cohorts"].items():
        for value, m in values.items():
            click.echo(f"  {cohort}={value}: n={m['n']} AUC {num(m['auc'])}")
    for item in report["omitted"]:
        click.echo(f"  omitted {item['cohort']}={item['value']}: n={item['n']} ({item['reason']})")


def drift_report(report: dict[str, Any]) -> None:
    click.echo(
        f"baseline {report['baseline']['range']} (n={report['baseline']['n']}) vs "
        f"current {report['current']['range']} (n={report['current']['n']})"
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
