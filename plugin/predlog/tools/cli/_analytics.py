"""``predlog investigate|evaluate|drift|replay``: questions answered from the prediction logs.

The analytics (DuckDB, SciPy) are imported inside each command, so that the rest of the
command line, ``--version`` and ``--help`` included, starts without them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from predlog.tools.cli import _text
from predlog.tools.cli._options import (
    OutputFile,
    data_option,
    include_errors_option,
    output_of,
    output_option,
    print_json,
    progress,
    setting_option,
    table_of,
    table_option,
)

F = TypeVar("F", bound=Callable[..., Any])


def engine_options(function: F) -> F:
    """``--engine``, ``--spark-master`` and ``--memory-limit``: where the SQL runs."""
    function = click.option(
        "--memory-limit",
        metavar="SIZE",
        help="DuckDB's memory limit (default 1GB); past it, DuckDB spills to disk.",
    )(function)
    function = click.option(
        "--spark-master",
        metavar="URL",
        help="Spark master for --engine spark (default local[*]).",
    )(function)
    return click.option(
        "--engine",
        type=click.Choice(["duckdb", "spark"]),
        default="duckdb",
        show_default=True,
        help="Where the queries run: DuckDB embedded, or Spark (the same queries).",
    )(function)


def _engine_of(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "engine": options["engine"],
        "spark_master": options["spark_master"],
        "memory_limit": options["memory_limit"],
    }


#: How a time is written in ``--since``, ``--until`` and ranges.
TIME_HELP = "a date (2026-10-01) or an ISO 8601 time (2026-10-01T12:00:00+00:00)"
OUTPUT_FILE = OutputFile()


def _time_range(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A ``START..END`` option, checked (dates, and END after START) before any data is
    read, so that a reversed range is named rather than found to hold no predictions."""
    from predlog.tools.analytics import AnalyticsError, parse_range  # noqa: PLC0415

    try:
        parse_range(value)
    except AnalyticsError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


@click.command("investigate")
@click.argument("request_id")
@data_option
@table_option
@click.option(
    "--audit-dir",
    type=click.Path(exists=True, file_okay=False),
    help="The audit log directory, whose entry for the request is shown "
    "(default: <data>/audit if present).",
)
@click.option("--user-key", help="Feature naming the customer, for own-history percentiles.")
@setting_option(
    "--stale-after",
    setting="stale_feature_age_s",
    type=float,
    metavar="SECONDS",
    help="Seconds after which a feature is stale (as for the operational log).",
)
@setting_option(
    "--jaeger-url", setting="jaeger_url", help="Jaeger, to link (and draw) the request's trace."
)
@click.option("--html", type=OUTPUT_FILE, help="Also write an HTML page of the request here.")
@output_option
def investigate(**o: Any) -> int:
    """Everything recorded about one request: features, score, audit entry, trace."""
    from predlog.tools.analytics import investigate as run  # noqa: PLC0415

    records = run(
        o["request_id"],
        audit_dir=o["audit_dir"],
        data_dir=o["data"],
        table=table_of(o),
        user_key=o["user_key"],
        stale_after_s=o["stale_after"],
        jaeger_url=o["jaeger_url"],
        html_path=o["html"],
    )
    if output_of(o["output"], o["as_json"]) == "json":
        print_json(records)
    else:
        _text.investigation(records)
    return 0


def _pair(text: str, what: str) -> tuple[str, str]:
    left, sep, right = text.partition("=")
    if not sep or not left or not right:
        raise click.BadParameter(f"must look like A=B, got {text!r}", param_hint=what)
    return left, right


@click.command("evaluate")
@click.option(
    "--outcomes",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="CSV or Parquet file of outcomes (ground truth).",
)
@click.option(
    "--key",
    default="request_id=request_id",
    metavar="PREDICTION_COLUMN=OUTCOME_COLUMN",
    help="How a prediction is joined to its outcome.",
)
@click.option(
    "--label",
    required=True,
    metavar="COLUMN[=VALUE]",
    help="Outcome column (read as true/false), or column=value for the positive value "
    "(outcome=fraud).",
)
@click.option("--since", metavar="TIME", help=f"Predictions at or after {TIME_HELP}.")
@click.option("--until", metavar="TIME", help=f"Predictions before {TIME_HELP} (exclusive).")
@click.option("--days-ago", type=click.IntRange(min=0), help="Predictions of the last N days.")
@click.option(
    "--min-cohort",
    type=click.IntRange(min=1),
    default=100,
    help="Cohorts with fewer outcomes are omitted (and listed as such).",
)
@include_errors_option
@data_option
@table_option
@engine_options
@click.option("--html", type=OUTPUT_FILE, help="Also write an HTML report (ROC curves) here.")
@output_option
def evaluate(**o: Any) -> int:
    """Metrics against late ground truth, overall and per cohort."""
    from predlog.tools.analytics import evaluate as run  # noqa: PLC0415

    _since_until(o["since"], o["until"])
    label_column, _, positive = o["label"].partition("=")
    say = progress(o)
    with say or contextlib.nullcontext():  # the bar is gone before the answer is printed
        report = run(
            o["outcomes"],
            data_dir=o["data"],
            table=table_of(o),
            key=_pair(o["key"], "--key"),
            label=(label_column, positive or None),
            since=o["since"],
            until=o["until"],
            days_ago=o["days_ago"],
            min_cohort=o["min_cohort"],
            html_path=o["html"],
            progress=say,
            include_errors=o["include_errors"],
            **_engine_of(o),
        )
    if output_of(o["output"], o["as_json"]) == "json":
        print_json(report)
    else:
        _text.evaluation(report)
    return 0


def _since_until(since: str | None, until: str | None) -> None:
    """``--until`` after ``--since``, checked before any data is read."""
    if since is None or until is None:
        return
    from predlog.tools.analytics import AnalyticsError, check_range  # noqa: PLC0415

    try:
        check_range(since, until, f"--since {since} --until {until}")
    except AnalyticsError as exc:
        raise click.UsageError(str(exc)) from None


RANGE_HELP = "START..END, each " + TIME_HELP + "; START inclusive, END exclusive"


@click.command("drift")
@click.option(
    "--baseline",
    required=True,
    metavar="START..END",
    callback=_time_range,
    help=f"Baseline: {RANGE_HELP}.",
)
@click.option(
    "--current",
    required=True,
    metavar="START..END",
    callback=_time_range,
    help=f"Current: {RANGE_HELP}.",
)
@click.option(
    "--psi-threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=0.2,
    help="A feature whose PSI exceeds this is marked DRIFTED.",
)
@click.option("--model-name", help="Only this model's predictions (default: all).")
@setting_option(
    "--exclude",
    setting="drift_exclude",
    metavar="NAME[,NAME...]",
    help="Features not to compare (identifiers predlog does not recognise as such).",
)
@include_errors_option
@data_option
@table_option
@engine_options
@click.option("--html", type=OUTPUT_FILE, help="Also write an HTML report (histograms) here.")
@output_option
def drift(**o: Any) -> int:
    """Which features moved between two time ranges (END is exclusive)."""
    from predlog.tools.analytics import drift as run  # noqa: PLC0415

    exclude = None if o["exclude"] is None else [n.strip() for n in o["exclude"].split(",")]
    say = progress(o)
    with say or contextlib.nullcontext():  # the bar is gone before the answer is printed
        report = run(
            baseline=o["baseline"],
            current=o["current"],
            data_dir=o["data"],
            table=table_of(o),
            psi_threshold=o["psi_threshold"],
            model_name=o["model_name"],
            html_path=o["html"],
            progress=say,
            exclude=exclude,
            include_errors=o["include_errors"],
            **_engine_of(o),
        )
    if output_of(o["output"], o["as_json"]) == "json":
        print_json(report)
    else:
        _text.drift_report(report)
    return 0


@click.command("replay")
@click.argument("request_id")
@click.option(
    "--model",
    required=True,
    metavar="MODULE:CALLABLE|bentoml:TAG",
    help="The scorer: an importable callable (features -> score, or a mapping with score "
    "and decision), or a scikit-learn model in the BentoML store.",
)
@data_option
@table_option
@output_option
def replay(**o: Any) -> int:
    """Re-score a logged prediction with a model: would it decide the same today?"""
    from predlog.tools.analytics import replay as run  # noqa: PLC0415

    if "" not in sys.path and os.getcwd() not in sys.path:
        # As ``python -m`` and ``bentoml serve`` do: a model module in the directory the
        # command runs from (``examples.fraud_service.model``) is importable.
        sys.path.insert(0, os.getcwd())
    results = run(o["request_id"], model=o["model"], data_dir=o["data"], table=table_of(o))
    if output_of(o["output"], o["as_json"]) == "json":
        print_json(results)
    else:
        _text.replays(results)
    return 0


COMMANDS = (investigate, evaluate, drift, replay)
