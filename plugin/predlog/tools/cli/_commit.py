"""``predlog commit``: the one committer of an Iceberg table, as a process of its own.

For a fleet: every model server writes data files and notes, and this process (one per
table) commits them, once per interval. Run on a box whose servers share its spool
directory, it holds their commit lock, so none of them commits.
"""

from __future__ import annotations

import signal
import statistics
import threading
from dataclasses import asdict
from typing import Any

import click

from predlog._settings import read, resolve
from predlog.tools.cli._options import (
    data_option,
    output_of,
    output_option,
    print_json,
    setting_option,
    table_of,
)


def latency_figures(values: list[float]) -> dict[str, float | None]:
    """Mean, median and maximum of commit latencies, as the commands print them."""
    if not values:
        return {"mean_ms": None, "p50_ms": None, "max_ms": None}
    return {
        "mean_ms": round(statistics.fmean(values), 2),
        "p50_ms": round(statistics.median(values), 2),
        "max_ms": round(max(values), 2),
    }


def say(options: dict[str, Any], what: str, said: dict[str, Any]) -> None:
    """Print a command's closing figures, as text or JSON."""
    if output_of(options["output"], options["as_json"]) == "json":
        print_json(said, indent=None)
    else:
        click.echo(f"{what}: " + ", ".join(f"{k} {v}" for k, v in said.items()))


@click.command("commit")
@setting_option(
    "--table", setting="iceberg_table", metavar="CATALOG.NS.TABLE", help="The Iceberg table."
)
@data_option
@setting_option(
    "--spool-dir",
    setting="spool_dir",
    metavar="DIR",
    help="The directory whose commit lock the model servers on this box share.",
)
@setting_option(
    "--interval",
    setting="iceberg_commit_interval_s",
    type=float,
    metavar="SECONDS",
    help="Seconds between commits.",
)
@click.option("--once", is_flag=True, help="Commit what is pending now, then exit.")
@output_option
def command(**options: Any) -> int:
    """Commit the data files model servers wrote into the Iceberg table (one committer)."""
    from predlog.sinks.iceberg import CommitLock, Committer, open_table  # noqa: PLC0415

    table = table_of(options)
    if not table:
        click.echo("predlog commit: --table (or PREDLOG_ICEBERG_TABLE) is required", err=True)
        return 2
    data = options["data"] or read("data_dir")
    interval = options["interval"] or read("iceberg_commit_interval_s")
    # The same lock directory the model servers on this box use (Settings.spool_path).
    settings = resolve({"data_dir": data, "spool_dir": options["spool_dir"] or read("spool_dir")})
    spool = settings.spool_path
    committer = Committer(open_table(table, data_dir=data))
    lock = CommitLock(spool, table)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # Wait for the lock: a model server committing now lets go when it exits.
    while not lock.try_acquire():
        if options["once"] or stop.wait(interval):
            break
    try:
        committer.commit_pending()
        while not options["once"] and not stop.wait(interval):
            committer.commit_pending()
        if not options["once"]:
            committer.commit_pending()  # what was noted before the stop
    finally:
        lock.release()
    stats = asdict(committer.stats)
    latencies = list(stats.pop("latencies_ms"))
    say(options, "committed", {**stats, **latency_figures(latencies), "committer": committer.tag})
    return 0
