"""The ``predlog`` command line.

predlog sink --bootstrap HOST:PORT --topic predictions --data /var/lib/predlog
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeAlias

from predlog import __version__
from predlog._settings import DEFAULT_DATA_DIR, env_var, read
from predlog.errors import PredlogError

if TYPE_CHECKING:
    from predlog.metrics._consumer import MetricsServer
    from predlog.sinks.kafka._consumer import OnCommit

#: What ``add_subparsers`` returns: each command's parser is added to it.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _sink(args: argparse.Namespace) -> int:
    from predlog.sinks.kafka._consumer import run  # noqa: PLC0415  # needs the kafka extra

    bootstrap = args.bootstrap or read("kafka_bootstrap")
    topic = args.topic or read("kafka_topic")
    if not bootstrap or not topic:
        print(
            f"predlog sink: --bootstrap and --topic (or {env_var('kafka_bootstrap')} and "
            f"{env_var('kafka_topic')}) are required",
            file=sys.stderr,
        )
        return 2
    metrics = _sink_metrics(args, topic)
    if isinstance(metrics, str):
        print(f"predlog sink: {metrics}", file=sys.stderr)
        return 2
    server, on_commit = metrics if metrics is not None else (None, None)
    try:
        stats = run(
            {
                "bootstrap_servers": bootstrap,
                "topic": topic,
                "data_dir": args.data or read("data_dir"),
                "group_id": args.group,
                "max_batch": args.max_batch,
                "max_wait_s": args.max_wait,
                "exit_when_idle_s": args.exit_when_idle,
                "on_commit": on_commit,
            }
        )
    finally:
        if server is not None:
            server.close()
    print(json.dumps(asdict(stats)))
    return 0


def _sink_metrics(
    args: argparse.Namespace, topic: str
) -> tuple[MetricsServer, OnCommit] | str | None:
    """The metrics server and the consumer's ``on_commit`` for ``--metrics-port``; the
    error to print if it cannot listen; ``None`` without the flag."""
    if args.metrics_port is None:
        return None
    from predlog.metrics._consumer import ConsumerMetrics, MetricsServer  # noqa: PLC0415

    try:
        port = int(args.metrics_port)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        return f"--metrics-port {args.metrics_port!r}: must be a port number, 1 to 65535"
    metrics = ConsumerMetrics(topic=topic, group=args.group)
    try:
        server = MetricsServer(host=args.metrics_host, port=port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return f"--metrics-port {port}: cannot listen on {args.metrics_host} ({reason})"
    return server, metrics.committed


def _audit(args: argparse.Namespace) -> int:
    from predlog.audit._cli import run  # noqa: PLC0415  # needs the audit extra

    return run(args)


def _pair(text: str, what: str) -> tuple[str, str]:
    left, sep, right = text.partition("=")
    if not sep or not left or not right:
        raise SystemExit(f"predlog: {what} must look like A=B, got {text!r}")
    return left, right


def _progress() -> Any:
    """Progress lines on stderr when a person is watching it, none in pipes and logs."""
    if not sys.stderr.isatty():
        return None
    return lambda message: print(f"... {message}", file=sys.stderr, flush=True)


def _investigate(args: argparse.Namespace) -> int:
    from predlog.analytics import investigate  # noqa: PLC0415

    records = investigate(
        args.request_id,
        audit_dir=args.audit,
        data_dir=args.data,
        user_key=args.user_key,
        stale_after_s=args.stale_after,
    )
    if args.json:
        print(json.dumps(records, indent=2, default=str))
        return 0
    for r in records:
        print(
            f"request {r['request_id']}  prediction {r['prediction_id']}  at {r['timestamp_utc']}"
        )
        print(
            f"  model {r['model']}: score {r['score']} against threshold {r['threshold']}"
            f" -> {r['decision']} ({r['confidence']} confidence)"
        )
        stale = " STALE" if r["stale"] else ""
        print(
            f"  features (freshness {r['freshness_max_age_seconds']} s{stale};"
            f" null: {', '.join(r['null_features']) or 'none'}):"
        )
        for name, value in r["features"].items():
            cmp = r["comparison"].get(name)
            extra = ""
            if cmp:
                extra = f"  population p{cmp['population_percentile']:g}"
                if cmp.get("own_history_percentile") is not None:
                    extra += f", own history p{cmp['own_history_percentile']:g}"
            print(f"    {name:28s} {value!s:>16s}{extra}")
        if r["explanation"]:
            print(f"  explanation: {json.dumps(r['explanation'])}")
        if r["audit"]:
            print(f"  audited (entry {r['audit']['index']}); adverse-action reasons:")
            for reason in r["audit"]["adverse_action_reasons"]:
                print(f"    - {reason}")
        if r["trace_id"]:
            print(f"  trace {r['trace_id']}" + (f"  {r['trace_url']}" if r["trace_url"] else ""))
        if r["data_quality"]:
            print(f"  data quality: {', '.join(r['data_quality'])}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from predlog.analytics import evaluate  # noqa: PLC0415

    key = _pair(args.key, "--key")
    label_column, _, positive = args.label.partition("=")
    report = evaluate(
        args.outcomes,
        data_dir=args.data,
        key=key,
        label=(label_column, positive or None),
        since=args.since,
        until=args.until,
        days_ago=args.days_ago,
        min_cohort=args.min_cohort,
        html_path=args.html,
        progress=_progress(),
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    o = report["overall"]
    print(
        f"n={report['n']} (weighted {o['weighted_n']:.0f})  AUC {o['auc']:.4f}  "
        f"precision {o['precision']}  recall {o['recall']}"
    )
    for cohort, values in report["cohorts"].items():
        for value, m in values.items():
            print(f"  {cohort}={value}: n={m['n']} AUC {m['auc']:.4f}")
    for item in report["omitted"]:
        print(f"  omitted {item['cohort']}={item['value']}: n={item['n']} ({item['reason']})")
    return 0


def _drift(args: argparse.Namespace) -> int:
    from predlog.analytics import drift  # noqa: PLC0415

    report = drift(
        baseline=args.baseline,
        current=args.current,
        data_dir=args.data,
        psi_threshold=args.psi_threshold,
        model_name=args.model_name,
        html_path=args.html,
        progress=_progress(),
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(
        f"baseline {report['baseline']['range']} (n={report['baseline']['n']}) vs "
        f"current {report['current']['range']} (n={report['current']['n']})"
    )
    for name, f in report["features"].items():
        mark = "DRIFTED" if f["drifted"] else ""
        psi = "-" if f["psi"] is None else f"{f['psi']:.3f}"
        nulls = f["null_rate"]
        print(
            f"  {name:28s} {f['kind']:11s} PSI {psi:>7s}  nulls "
            f"{nulls['baseline']:.1%} -> {nulls['current']:.1%}  {mark}"
        )
    score = report["score"]
    print(
        f"  score PSI {score['psi']:.3f}, mean {score['mean']['baseline']:.4f} -> "
        f"{score['mean']['current']:.4f}"
    )
    return 0


def _replay(args: argparse.Namespace) -> int:
    from predlog.analytics import replay  # noqa: PLC0415

    results = replay(args.request_id, model=args.model, data_dir=args.data)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return 0
    for r in results:
        logged, replayed = r["logged"], r["replayed"]
        print(f"prediction {r['prediction_id']} (threshold {r['threshold']})")
        print(
            f"  logged   {logged['model']:30s} score {logged['score']}"
            f"  decision {logged['decision']}"
        )
        print(
            f"  replayed {replayed['model']:30s} score {replayed['score']}"
            f"  decision {replayed['decision']}"
        )
        print(
            f"  difference {r['score_difference']}; same side of threshold: "
            f"{r['same_side_of_threshold']}"
        )
    return 0


def _add_data_option(parser: argparse.ArgumentParser) -> None:
    """``--data``, left unset by default so that the ``data_dir`` setting is read only by
    a command that needs it, where a malformed value is reported as that command's error."""
    parser.add_argument(
        "--data",
        help=f"data directory ({env_var('data_dir')}, default {DEFAULT_DATA_DIR})",
    )


def _add_sink(commands: Commands) -> None:
    sink = commands.add_parser(
        "sink", help="consume the Kafka topic into the Parquet layout (at least once)"
    )
    sink.add_argument("--bootstrap", help=f"Kafka bootstrap servers ({env_var('kafka_bootstrap')})")
    sink.add_argument("--topic", help=f"topic to read ({env_var('kafka_topic')})")
    _add_data_option(sink)
    sink.add_argument("--group", default="predlog-sink", help="consumer group id")
    sink.add_argument("--max-batch", type=int, default=50_000, help="records per Parquet file")
    sink.add_argument("--max-wait", type=float, default=5.0, help="seconds before a file is cut")
    sink.add_argument(
        "--exit-when-idle",
        type=float,
        default=None,
        help="exit after this many seconds without a message",
    )
    sink.add_argument(
        "--metrics-port",
        help="serve the consumer's own Prometheus metrics over HTTP on this port",
    )
    sink.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    sink.set_defaults(run=_sink)


def _add_audit(commands: Commands) -> None:
    audit = commands.add_parser("audit", help="verify the audit log, show or prove an entry")
    actions = audit.add_subparsers(dest="action", required=True)
    verify_cmd = actions.add_parser("verify", help="recompute the tree, check every checkpoint")
    verify_cmd.add_argument("path", help="the audit log directory")
    for name, text in (("prove", "an entry with its inclusion proof"), ("show", "an entry")):
        cmd = actions.add_parser(name, help=f"print {text} for a request id")
        cmd.add_argument("request_id")
        cmd.add_argument("--data", required=True, help="the audit log directory")
    for cmd in actions.choices.values():
        trust = cmd.add_mutually_exclusive_group()
        trust.add_argument(
            "--public-key",
            help="the Ed25519 public key you trust (hex, or a PEM file), obtained apart from "
            f"the log (default: {env_var('audit_public_key')}); without one the command refuses",
        )
        trust.add_argument(
            "--trust-key-in-log",
            action="store_true",
            help="verify against public_key.hex in the log directory instead; this proves "
            "nothing against whoever could write that directory",
        )
        cmd.add_argument(
            "--kept-checkpoint",
            metavar="FILE",
            help="a checkpoint line kept from an earlier verify (its last_checkpoint, or "
            "that whole output): the log must still hold it, or its newest part was cut",
        )
    audit.set_defaults(run=_audit)


def _add_investigate(commands: Commands) -> None:
    inv = commands.add_parser("investigate", help="everything recorded about one request")
    inv.add_argument("request_id")
    _add_data_option(inv)
    inv.add_argument("--user-key", help="feature naming the customer, for own-history percentiles")
    inv.add_argument(
        "--stale-after",
        type=float,
        help="seconds after which a feature is stale "
        f"(default: {env_var('stale_feature_age_s')}, or 3600, as for the operational log)",
    )
    inv.add_argument("--json", action="store_true")
    inv.add_argument("--audit", help="audit log directory (default: <data>/audit if present)")
    inv.set_defaults(run=_investigate)


def _add_evaluate(commands: Commands) -> None:
    ev = commands.add_parser("evaluate", help="metrics against late ground truth, per cohort")
    ev.add_argument("--outcomes", required=True, help="CSV or Parquet file of outcomes")
    ev.add_argument(
        "--key",
        default="request_id=request_id",
        help="prediction_column=outcome_column (default request_id=request_id)",
    )
    ev.add_argument(
        "--label",
        required=True,
        help="outcome column, or column=value for the positive value (outcome=fraud)",
    )
    ev.add_argument("--since")
    ev.add_argument("--until")
    ev.add_argument("--days-ago", type=int)
    ev.add_argument("--min-cohort", type=int, default=100)
    _add_data_option(ev)
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--html", help="also write an HTML report (ROC curves per cohort) here")
    ev.set_defaults(run=_evaluate)


def _add_drift(commands: Commands) -> None:
    dr = commands.add_parser("drift", help="which features moved between two time ranges")
    dr.add_argument("--baseline", required=True, help="START..END, e.g. 2026-10-01..2026-10-08")
    dr.add_argument("--current", required=True, help="START..END")
    dr.add_argument("--psi-threshold", type=float, default=0.2)
    dr.add_argument("--model-name")
    _add_data_option(dr)
    dr.add_argument("--json", action="store_true")
    dr.add_argument("--html", help="also write an HTML report (histograms) here")
    dr.set_defaults(run=_drift)


def _add_replay(commands: Commands) -> None:
    rp = commands.add_parser("replay", help="re-score a logged prediction with a model")
    rp.add_argument("request_id")
    rp.add_argument("--model", required=True, help="module:callable or bentoml:<tag>")
    _add_data_option(rp)
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(run=_replay)


def _parser() -> argparse.ArgumentParser:
    """The ``predlog`` parser: one subcommand each, whose ``run`` handles its arguments."""
    parser = argparse.ArgumentParser(prog="predlog", description="Prediction logging tools.")
    parser.add_argument("--version", action="version", version=f"predlog {__version__}")
    commands = parser.add_subparsers(dest="command")
    for add in (_add_sink, _add_audit, _add_investigate, _add_evaluate, _add_drift, _add_replay):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        result: int = args.run(args)
    except PredlogError as exc:
        # Missing data, a bad column, a join that matched nothing, a malformed PREDLOG_*
        # variable: said plainly, exit 1.
        print(f"predlog {args.command}: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
