"""``predlog sink``: consume the Kafka topic into the Parquet layout or an Iceberg table.

Both run the one consumer loop of :mod:`predlog.tools.sink`; only the destination
differs. Both report the same figures, and serve them with ``--metrics-port``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from predlog._settings import env_var, read
from predlog.tools.cli._commit import latency_figures, say
from predlog.tools.cli._options import data_option, output_option, setting_option, table_of

if TYPE_CHECKING:
    from predlog.metrics import MetricsServer
    from predlog.tools.sink import Destination, OnCommit


@click.command("sink")
@setting_option(
    "--bootstrap", setting="kafka_bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers."
)
@setting_option("--topic", setting="kafka_topic", help="Topic to read.")
@data_option
@setting_option(
    "--table",
    setting="iceberg_table",
    metavar="CATALOG.NS.TABLE",
    help="Write into this Iceberg table, exactly once, instead of the Parquet layout.",
)
@click.option("--group", default="predlog-sink", help="Consumer group id.")
@click.option("--max-batch", type=int, default=50_000, help="Records per batch (file or commit).")
@click.option("--max-wait", type=float, default=5.0, help="Seconds before a batch is cut.")
@click.option(
    "--exit-when-idle",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Exit after this many seconds without a message (default: run until stopped).",
)
@click.option(
    "--metrics-port",
    help="Serve the consumer's own Prometheus metrics over HTTP on this port.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    help="Address for --metrics-port (0.0.0.0 for every interface).",
)
@output_option
def command(**options: Any) -> int:
    """Consume the Kafka topic into the Parquet layout (at least once) or a table (exactly once)."""
    from predlog.tools import sink  # noqa: PLC0415  # needs the kafka extra

    bootstrap = options["bootstrap"] or read("kafka_bootstrap")
    topic = options["topic"] or read("kafka_topic")
    if not bootstrap or not topic:
        click.echo(
            f"predlog sink: --bootstrap and --topic (or {env_var('kafka_bootstrap')} and "
            f"{env_var('kafka_topic')}) are required",
            err=True,
        )
        return 2
    metrics = _metrics(options, topic)
    if isinstance(metrics, str):
        click.echo(f"predlog sink: {metrics}", err=True)
        return 2
    server, on_commit = metrics if metrics is not None else (None, None)
    try:
        stats = sink.consume_until_signalled(
            {
                "destination": _destination(options),
                "bootstrap_servers": bootstrap,
                "topic": topic,
                "group_id": options["group"],
                "max_batch": options["max_batch"],
                "max_wait_s": options["max_wait"],
                "exit_when_idle_s": options["exit_when_idle"],
                "on_commit": on_commit,
            }
        )
    finally:
        if server is not None:
            server.close()
    said = asdict(stats)
    said.update(latency_figures(said.pop("commit_ms")))
    said["records_per_s"] = round(stats.written / stats.seconds) if stats.seconds else None
    say(options, "sink stopped", said)
    return 0


def _destination(options: dict[str, Any]) -> Destination:
    """The Iceberg table ``--table`` names, else the Parquet layout under ``--data``."""
    from predlog.tools.sink import ParquetDestination, TableDestination  # noqa: PLC0415

    data = options["data"] or read("data_dir")
    table = table_of(options)
    if table:
        return TableDestination(table, data_dir=data)
    return ParquetDestination(data)


def _metrics(options: dict[str, Any], topic: str) -> tuple[MetricsServer, OnCommit] | str | None:
    """The metrics server and the consumer's ``on_commit`` for ``--metrics-port``; the
    error to print if it cannot listen; ``None`` without the flag."""
    if options["metrics_port"] is None:
        return None
    from predlog.metrics import ConsumerMetrics, MetricsServer  # noqa: PLC0415

    wanted, host = options["metrics_port"], options["metrics_host"]
    try:
        port = int(wanted)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        return f"--metrics-port {wanted!r}: must be a port number, 1 to 65535"
    metrics = ConsumerMetrics(topic=topic, group=options["group"])
    try:
        server = MetricsServer(host=host, port=port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return f"--metrics-port {port}: cannot listen on {host} ({reason})"
    return server, metrics.committed
