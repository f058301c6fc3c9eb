"""``predlog compact``: rewrite a day's small files into large ones, and say what changed."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from predlog._settings import read
from predlog.tools.cli._options import (
    data_option,
    output_of,
    output_option,
    print_json,
    progress,
    setting_option,
)

if TYPE_CHECKING:
    from predlog.tools.compact import CompactReport


def _date(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str] | None:
    for value in values:
        try:
            datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a date (2026-10-01)") from None
    return list(values) or None


@click.command("compact")
@click.option(
    "--date",
    "dates",
    multiple=True,
    callback=_date,
    metavar="YYYY-MM-DD",
    help="A day to compact (repeatable). Default: every day before today (UTC).",
)
@data_option
@setting_option(
    "--table",
    setting="iceberg_table",
    metavar="CATALOG.NS.TABLE",
    help="Compact this Iceberg table instead of the Parquet layout.",
)
@click.option(
    "--target-mb",
    type=click.IntRange(min=1),
    default=128,
    help="Size of the files written; files this large already are left alone.",
)
@click.option(
    "--no-expire",
    is_flag=True,
    help="With --table: keep the snapshots before the compaction (default: expire them).",
)
@output_option
def command(**o: Any) -> int:
    """Rewrite a day's small files into larger ones (the Parquet layout or an Iceberg table).

    Readers of the Parquet layout see the old files or the new ones, never both (the
    day's directory is exchanged in one step; local directories only). A table's files
    are replaced in one commit, then older snapshots are expired.
    """
    from predlog.tools.compact import compact_layout  # noqa: PLC0415

    data_dir = o["data"] or read("data_dir")
    table = o["table"] or read("iceberg_table")
    target = o["target_mb"] << 20
    say = progress(o)
    with say or contextlib.nullcontext():  # the bar is gone before the answer is printed
        if table:
            from predlog.tools.compact._table import compact_table  # noqa: PLC0415  # pyiceberg

            report = compact_table(
                table,
                data_dir=data_dir,
                dates=o["dates"],
                target_bytes=target,
                expire=not o["no_expire"],
                progress=say,
            )
        else:
            report = compact_layout(data_dir, dates=o["dates"], target_bytes=target, progress=say)
    if output_of(o["output"], o["as_json"]) == "json":
        print_json(report.as_dict())
    else:
        _text(report)
    return 0


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _text(report: CompactReport) -> None:
    if not report.days:
        click.echo(f"{report.target}: no day to compact")
        return
    for d in report.days:
        late = f", {d.late_files} late files kept" if d.late_files else ""
        click.echo(
            f"{d.date}: {d.files_before} files, {_size(d.bytes_before)} -> {d.files_after} files, "
            f"{_size(d.bytes_after)} ({d.rows} rows{late}) in {d.seconds:.2f} s"
        )
    total = report.as_dict()
    speed = report.seconds_per_gb
    per_gb = f"{speed:.1f} s per GB rewritten" if speed is not None else "nothing rewritten"
    expired = f"; {report.expired_snapshots} snapshots expired" if report.expired_snapshots else ""
    click.echo(
        f"total: {total['files_before']} -> {total['files_after']} files, "
        f"{_size(total['bytes_before'])} -> {_size(total['bytes_after'])}; {per_gb}{expired}"
    )
