"""The ``predlog`` command line.

predlog sink --bootstrap HOST:PORT --topic predictions --data ./predlog-data
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from predlog import __version__


def _sink(args: argparse.Namespace) -> int:
    from predlog._consumer import run  # noqa: PLC0415  # needs the kafka extra

    bootstrap = args.bootstrap or os.environ.get("PREDLOG_KAFKA_BOOTSTRAP")
    topic = args.topic or os.environ.get("PREDLOG_KAFKA_TOPIC")
    if not bootstrap or not topic:
        print(
            "predlog sink: --bootstrap and --topic (or PREDLOG_KAFKA_BOOTSTRAP and "
            "PREDLOG_KAFKA_TOPIC) are required",
            file=sys.stderr,
        )
        return 2
    stats = run(
        {
            "bootstrap_servers": bootstrap,
            "topic": topic,
            "data_dir": args.data,
            "group_id": args.group,
            "max_batch": args.max_batch,
            "max_wait_s": args.max_wait,
            "exit_when_idle_s": args.exit_when_idle,
        }
    )
    print(json.dumps(asdict(stats)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="predlog", description="Prediction logging tools.")
    parser.add_argument("--version", action="version", version=f"predlog {__version__}")
    commands = parser.add_subparsers(dest="command")
    sink = commands.add_parser(
        "sink", help="consume the Kafka topic into the Parquet layout (at least once)"
    )
    sink.add_argument("--bootstrap", help="Kafka bootstrap servers (PREDLOG_KAFKA_BOOTSTRAP)")
    sink.add_argument("--topic", help="topic to read (PREDLOG_KAFKA_TOPIC)")
    sink.add_argument(
        "--data",
        default=os.environ.get("PREDLOG_DATA_DIR", "./predlog-data"),
        help="data directory (PREDLOG_DATA_DIR, default ./predlog-data)",
    )
    sink.add_argument("--group", default="predlog-sink", help="consumer group id")
    sink.add_argument("--max-batch", type=int, default=50_000, help="records per Parquet file")
    sink.add_argument("--max-wait", type=float, default=5.0, help="seconds before a file is cut")
    sink.add_argument(
        "--exit-when-idle",
        type=float,
        default=None,
        help="exit after this many seconds without a message",
    )
    sink.set_defaults(run=_sink)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
