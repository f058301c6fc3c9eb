"""The ``predlog`` command line, on click (as BentoML's).

Importing this imports click and the settings, nothing else: each command imports what
it needs (DuckDB, aiokafka, the audit log) when it runs, and ``bench`` is registered
lazily, so ``predlog --version`` and ``--help`` start at once. Errors end the command
with one line on stderr naming what was wrong (a path, a date, a setting) and exit
status 1 (2 for usage), never a traceback. Shell completion is click's own::

    eval "$(_PREDLOG_COMPLETE=bash_source predlog)"
"""

from __future__ import annotations

import importlib
import os
import sys

import click
from click.exceptions import NoArgsIsHelpError

from predlog import __version__
from predlog.errors import PredlogError
from predlog.tools.cli import _analytics, _audit, _compact, _sink
from predlog.tools.cli._options import output_of, output_option, print_json, setting_option

#: Commands imported only when run or listed: ``name -> module:attribute``.
LAZY_COMMANDS = {
    "bench": "predlog.tools.bench:command",
    "commit": "predlog.tools.cli._commit:command",
}


class LazyGroup(click.Group):
    """A group whose ``LAZY_COMMANDS`` are imported when invoked or listed in help.

    A command that cannot be imported is replaced by one that says why, so that the
    others keep working.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            self.add_command(_load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)


def _load(name: str) -> click.Command:
    module, _, attribute = LAZY_COMMANDS[name].partition(":")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        if isinstance(found, click.Command):
            return found
        reason = f"{LAZY_COMMANDS[name]} is not a click command"

    @click.command(
        name, help=f"(unavailable: {reason})", context_settings={"ignore_unknown_options": True}
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def unavailable(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"this command is unavailable: {reason}")

    return unavailable


@click.group(
    "predlog",
    cls=LazyGroup,
    context_settings={"show_default": True, "help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name="predlog", message="%(prog)s %(version)s")
def cli() -> None:
    """Prediction logging tools: consume, investigate, evaluate, drift, replay, audit.

    Options that fall back on a PREDLOG_* setting show its environment variable.
    Every command takes -o json for output a program can read.
    """


for _command in (_sink.command, _compact.command, _audit.group, *_analytics.COMMANDS):
    cli.add_command(_command)


def _command_name(argv: list[str]) -> str:
    """The subcommand ``argv`` runs, for error lines (``predlog investigate: ...``)."""
    return next((a for a in argv if a in cli.commands or a in LAZY_COMMANDS), "")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; its exit status. Errors are one line on stderr."""
    args = sys.argv[1:] if argv is None else list(argv)
    prefix = " ".join(filter(None, ("predlog", _command_name(args))))
    try:
        result = cli.main(
            args=args, prog_name="predlog", complete_var="_PREDLOG_COMPLETE", standalone_mode=False
        )
        sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe()
    except NoArgsIsHelpError as exc:  # `predlog`, `predlog audit`: their help, as asked
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        return 0
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else prefix
        click.echo(f"{where}: {exc.format_message()} (see {where} --help)", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"{prefix}: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.Abort:
        click.echo(f"{prefix}: aborted", err=True)
        return 130
    except (PredlogError, OSError) as exc:
        # Missing data, a bad column or date, a join that matched nothing, a malformed
        # PREDLOG_* variable, a file that cannot be written: said plainly, exit 1.
        click.echo(f"{prefix}: {exc}", err=True)
        return 1
    except Exception as exc:  # noqa: BLE001  # one line for the person, not a traceback
        first = next(iter(str(exc).splitlines()), "")
        click.echo(f"{prefix}: {type(exc).__name__}: {first}", err=True)
        return 1
    return result if isinstance(result, int) else 0


def _closed_pipe() -> int:
    """The reader went away (``predlog investigate ... | head -1``): stop quietly, as
    ``cat`` does, without Python's complaint when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


#: The options every command shares (``-o json``, a setting's option) are also the bench's.
__all__ = [
    "LAZY_COMMANDS",
    "LazyGroup",
    "cli",
    "main",
    "output_of",
    "output_option",
    "print_json",
    "setting_option",
]
