"""A value made once per process, on first use: prometheus metric objects.

The default registry refuses a metric name registered twice, and the objects must be
made in the process that serves (after BentoML has set ``PROMETHEUS_MULTIPROC_DIR``),
not when predlog is imported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class OncePerProcess(Generic[T]):
    """Calls ``create`` the first time it is called, under a lock; the same value after."""

    def __init__(self, create: Callable[[], T]) -> None:
        self._create = create
        self._lock = threading.Lock()
        self._value: T | None = None

    def __call__(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._create()
            return self._value
