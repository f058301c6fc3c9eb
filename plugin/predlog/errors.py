"""Every exception predlog raises on purpose.

Hierarchy::

    PredlogError
     +-- ConfigError        a setting is malformed; raised at start-up, never later
     +-- SinkError          a sink could not accept a batch (retriable or not)
     +-- ClosedError        the logger was used after close()

Nothing in this module is ever raised into a request: the request path swallows and
counts. These exceptions are for start-up (configuration) and for sinks talking to
the flusher.
"""

from __future__ import annotations


class PredlogError(Exception):
    """Root of predlog's exceptions."""

    retriable: bool = False


class ConfigError(PredlogError, ValueError):
    """A configuration value is malformed.

    The message always starts with the setting's name (keyword argument or
    environment variable) so that the operator knows what to fix.
    """

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class SinkError(PredlogError):
    """A sink failed to export a batch.

    Sinks may raise any exception; this class exists so that a sink can say
    whether trying again later could succeed.
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class ClosedError(PredlogError):
    """An operation needs an open logger, and it was closed."""
