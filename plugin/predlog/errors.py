"""Every exception predlog raises on purpose.

Hierarchy::

    PredlogError                     root: catch this to catch anything predlog raises
     +-- ConfigError (ValueError)    a setting is malformed; raised at start-up, never later
     +-- SinkError                   a sink could not take a batch (ParquetSink, KafkaSink,
     |                               AuditSink); the flusher counts and reports it
     +-- SpoolFullError              the disk spool is at its size cap; nothing was written
     +-- SpoolLockedError            another live process owns that spool directory
     +-- UnreadableError             an audit log record's framing is broken
     +-- CanonicalError (ValueError) an audit entry has no RFC 8785 form (a key path named)
     +-- AnalyticsError              the logs cannot answer the question asked (no data,
                                     a missing column, a join that matched nothing)

Each lives beside the code that raises it: SpoolFullError and SpoolLockedError in
:class:`predlog.storage.Spool`, UnreadableError in :mod:`predlog.audit._store`,
CanonicalError in :mod:`predlog.audit._canonical`, AnalyticsError in
:mod:`predlog.tools.analytics`.

Nothing in this tree is ever raised into a request: the request path swallows and
counts. These exceptions are for start-up (configuration), for sinks talking to the
flusher, and for the ``predlog`` command's answers. :func:`report_in_one_line` makes a
start-up ConfigError that ends the process print its one line, not a traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from types import TracebackType


class PredlogError(Exception):
    """Root of predlog's exceptions."""


class ConfigError(PredlogError, ValueError):
    """A configuration value is malformed.

    The message always starts with the setting's name (keyword argument or
    environment variable) so that the operator knows what to fix.
    """

    #: Set by :func:`report_in_one_line`: left uncaught, this error prints one line.
    one_line = False

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


def report_in_one_line(error: ConfigError) -> None:
    """Have ``error``, should nothing catch it, end the process with its one line on
    stderr instead of a traceback (exit status 1 all the same).

    For start-up: uvicorn and ``bentoml serve`` import the service module themselves and
    let its exception end the process, so the line naming the setting came last under
    some fifty lines of the servers' own frames. A setting's error needs no traceback:
    its message is the cause. Only errors passed here are shortened; every other
    exception, and these too when caught, is reported as before.
    """
    error.one_line = True
    if not isinstance(sys.excepthook, _OneLineHook):
        sys.excepthook = _OneLineHook(sys.excepthook)


class _OneLineHook:
    """The process's exception hook: one line for a :class:`ConfigError` marked
    ``one_line``, the hook it replaced for everything else."""

    def __init__(
        self,
        previous: Callable[[type[BaseException], BaseException, TracebackType | None], object],
    ) -> None:
        self.previous = previous

    def __call__(
        self, kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        if isinstance(error, ConfigError) and error.one_line:
            # Python's own last line of the traceback: "predlog.errors.ConfigError: ...".
            sys.stderr.write("".join(traceback.format_exception_only(kind, error)))
            sys.stderr.flush()
        else:
            self.previous(kind, error, tb)


class SinkError(PredlogError):
    """A sink failed to export a batch; the message says why."""
