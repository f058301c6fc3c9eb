"""The options several commands share, and how their answers are printed.

Each option name means one thing in every command: ``--data`` is the prediction data
directory, ``--audit-dir`` the audit log directory, ``-o/--output`` text or JSON.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from predlog._settings import env_var, problem, read
from predlog.tools.cli._progress import Reporter, terminal_reporter

F = TypeVar("F", bound=Callable[..., Any])


class SettingOption(click.Option):
    """An option whose fallback is a predlog setting.

    Its help shows the setting's environment variable and declared default, but click
    never reads the variable: the command reads it through ``predlog._settings`` when the
    option is not given, so the value is parsed and checked where every setting is, and
    a malformed one is reported by the command that needs it, naming the variable. A
    value given on the command line passes the same declared check, before the command
    runs, and a refusal names the option.
    """

    def __init__(self, *args: Any, setting: str, **kwargs: Any) -> None:
        kwargs.setdefault("show_envvar", True)
        super().__init__(*args, envvar=env_var(setting), **kwargs)
        self.setting = setting
        #: The setting's declared default, for the help (the value itself stays None).
        self.declared = read(setting, environ={})

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        value = super().process_value(ctx, value)
        given = ctx.get_parameter_source(self.name or "") is ParameterSource.COMMANDLINE
        refused = problem(self.setting, value) if given else None
        if refused:
            # Named as given, without the variable click would add: it was not read.
            hint = " / ".join(repr(name) for name in self.opts)
            raise click.BadParameter(refused, ctx=ctx, param=self, param_hint=hint)
        return value

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        return None

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if self.declared is not None:
            extra["default"] = str(self.declared)
        return extra


def setting_option(*names: str, setting: str, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` for an option that falls back on the ``setting``."""
    return click.option(*names, cls=SettingOption, setting=setting, **kwargs)


def data_option(function: F) -> F:
    """``--data``: the prediction data directory, the ``data_dir`` setting by default."""
    return setting_option(
        "--data",
        setting="data_dir",
        metavar="DIR|URL",
        help="Prediction data directory (the Parquet layout the logger or `predlog sink` "
        "wrote): a path, or an s3://, gs:// or file:// URL.",
    )(function)


def table_option(function: F) -> F:
    """``--table``: read an Iceberg table, the ``iceberg_table`` setting by default."""
    return setting_option(
        "--table",
        setting="iceberg_table",
        metavar="CATALOG.NS.TABLE",
        help="Read the records of this Iceberg table instead of the Parquet layout "
        "(--data then locates the embedded catalog).",
    )(function)


def table_of(options: dict[str, Any]) -> str | None:
    """The table ``--table`` or the ``iceberg_table`` setting names, if any."""
    table: str | None = options["table"] or read("iceberg_table")
    return table


def include_errors_option(function: F) -> F:
    """``--include-errors``: keep the records of non-2xx responses, which are left out."""
    return click.option(
        "--include-errors",
        is_flag=True,
        help="Keep the records of non-2xx responses (an HTTP status outside 200-299), "
        "which are left out and counted by default.",
    )(function)


class OutputFile(click.Path):
    """A file the command writes (``--html``): its directory is checked when the option
    is read, so a page that cannot be written is refused before a long analysis runs,
    naming the directory rather than failing with ``[Errno 2]`` at the end."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, writable=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        directory = Path(os.fsdecode(path)).parent
        if not directory.is_dir():
            what = "is not a directory" if directory.exists() else "does not exist"
            self.fail(f"the directory {str(directory)!r} {what}", param, ctx)
        if not os.access(directory, os.W_OK):
            self.fail(f"the directory {str(directory)!r} is not writable", param, ctx)
        return path


def output_option(function: F) -> F:
    """``-o/--output text|json``, and the hidden ``--json`` it replaces."""
    function = click.option(
        "-o",
        "--output",
        type=click.Choice(["text", "json"]),
        default="text",
        help="text for people; json for programs (the full answer, every digit).",
    )(function)
    return click.option("--json", "as_json", is_flag=True, hidden=True)(function)


def output_of(output: str, as_json: bool) -> str:
    return "json" if as_json else output


def print_json(value: Any, *, indent: int | None = 2) -> None:
    click.echo(json.dumps(value, indent=indent, default=str))


def num(value: Any) -> str:
    """A number for people: 4 significant digits for floats, but never fewer than its
    whole digits (33440, not 3.344e+04), ``-`` for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def progress(options: Mapping[str, Any] | None = None) -> Reporter | None:
    """The ``progress`` callable for a long command, or None to stay quiet.

    Stage lines and a bar go to stderr when a person is watching it and reads text: a
    pipe, a log file or ``-o json`` gets none (a program reads that output). ``options``
    are the command's (``output``, ``as_json``); by default those of the click command
    running. The reporter is closed when the command's context closes, if the command
    has not closed it first (close it before printing the answer to the terminal, so the
    bar is gone by then).
    """
    context = click.get_current_context(silent=True)
    if options is None:
        options = context.params if context is not None else {}
    if output_of(options.get("output") or "text", bool(options.get("as_json"))) == "json":
        return None
    try:
        if not sys.stderr.isatty():
            return None
        reporter = terminal_reporter(sys.stderr)
    except Exception:  # noqa: BLE001  # no bar is better than no answer
        return None
    if context is not None:
        context.call_on_close(reporter.close)
    return reporter
