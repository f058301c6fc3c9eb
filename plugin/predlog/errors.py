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
:mod:`predlog.sinks._spool`, UnreadableError in :mod:`predlog.audit._store`,
CanonicalError in :mod:`predlog.audit._canonical`, AnalyticsError in
:mod:`predlog.analytics`.

Nothing in this tree is ever raised into a request: the request path swallows and
counts. These exceptions are for start-up (configuration), for sinks talking to the
flusher, and for the ``predlog`` command's answers.
"""

from __future__ import annotations


class PredlogError(Exception):
    """Root of predlog's exceptions."""


class ConfigError(PredlogError, ValueError):
    """A configuration value is malformed.

    The message always starts with the setting's name (keyword argument or
    environment variable) so that the operator knows what to fix.
    """

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class SinkError(PredlogError):
    """A sink failed to export a batch; the message says why."""
