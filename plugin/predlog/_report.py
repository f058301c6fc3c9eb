"""Errors that must be counted and told, but never raised into a request.

Every failure inside predlog (a sink, an extractor, a malformed record) goes
through :class:`ErrorReporter`: it is counted per kind, and logged at most once per
``interval_s`` per kind, with the number suppressed since the last line. A broken
sink at 10,000 predictions per second therefore yields one log line a minute, not
10,000 a second.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

logger = logging.getLogger("predlog")


class ErrorReporter:
    """Counts errors by kind and logs each kind at a bounded rate."""

    def __init__(
        self,
        *,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger = logger,
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._log = log
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._last_logged: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def report(self, kind: str, message: str, *, exc: BaseException | None = None) -> None:
        """Count one error of ``kind``; log it unless this kind was logged recently."""
        now = self._clock()
        with self._lock:
            self._counts[kind] += 1
            last = self._last_logged.get(kind)
            if last is not None and now - last < self._interval_s:
                self._suppressed[kind] += 1
                return
            self._last_logged[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        suffix = f" ({suppressed} more since last report)" if suppressed else ""
        # A broken log handler must not break the flusher.
        with contextlib.suppress(Exception):
            self._log.error(
                "%s: %s%s",
                kind,
                message,
                suffix,
                exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None,
                extra={"predlog_error_kind": kind},
            )

    def after_fork_in_child(self) -> None:
        """A fresh lock and fresh counts for a forked child.

        Another thread of the parent (the flusher, a sink's loop) may have held the lock
        at the moment of the fork; in the child nobody would ever release it.
        """
        self._lock = threading.Lock()
        self._counts = Counter()
        self._last_logged = {}
        self._suppressed = Counter()

    def counts(self) -> dict[str, int]:
        """Errors so far, by kind."""
        with self._lock:
            return dict(self._counts)
