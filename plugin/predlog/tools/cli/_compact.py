"""``predlog compact``: rewrite a day's small files into large ones, and say what changed."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import click

from predlog._settings import read
from predlog.tools.cli._options import (
    data_option,
    output_of,
    output_option,
    print_json,
    progress,
    setting_option,
    table_of,
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


#: A span of time as a number and a unit: ``30m``, ``12h``, ``5d`` (``0s``: none).
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a duration (a number and s, m, h or d: 12h)")
    number, unit = match.groups()
    return timedelta(**{_UNITS[unit]: float(number)})


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
@click.option(
    "--retain",
    callback=_duration,
    metavar="DURATION",
    help="With --table: keep the snapshots younger than this, and their files (12h, 5d). "
    "Default: the table's history.expire.max-snapshot-age-ms, else 5d.",
)
@click.option(
    "--orphans-older-than",
    callback=_duration,
    default="3d",
    show_default=True,
    metavar="DURATION",
    help="With --table: remove the data files no snapshot references and no pending "
    "note names, once older than this.",
)
@output_option
def command(**o: Any) -> int:
    """Rewrite a day's small files into larger ones (the Parquet layout or an Iceberg table).

    Readers of the Parquet layout see the old files or the new ones, never both (the
    day's directory is exchanged in one step; local directories only). A table's files
    are replaced in one commit; then snapshots older than --retain are expired and
    orphan files older than --orphans-older-than removed.
    """
    from predlog.tools.compact import compact_layout  # noqa: PLC0415

    data_dir = o["data"] or read("data_dir")
    table = table_of(o)
    target = o["target_mb"] << 20
    say = progress(o)
    with say or contextlib.nullcontext():  # the bar is gone before the answer is printed
        if table:
            from predlog.tools.compact import compact_table  # noqa: PLC0415  # pyiceberg

            report = compact_table(
                table,
                data_dir=data_dir,
                dates=o["dates"],
                target_bytes=target,
                expire=not o["no_expire"],
                retain=o["retain"],
                orphans_older_than=o["orphans_older_than"],
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
        _housekeeping(report)
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
    click.echo(
        f"total: {total['files_before']} -> {total['files_after']} files, "
        f"{_size(total['bytes_before'])} -> {_size(total['bytes_after'])}; {per_gb}"
    )
    _housekeeping(report)


def _housekeeping(report: CompactReport) -> None:
    done = [
        f"{count} {what}"
        for count, what in (
            (report.expired_snapshots, "snapshots expired"),
            (report.deleted_files, "replaced files deleted"),
            (report.orphan_files, "orphan files removed"),
        )
        if count
    ]
    if done:
        click.echo(f"{report.target}: " + ", ".join(done))
