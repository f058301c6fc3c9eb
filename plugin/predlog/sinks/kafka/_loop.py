"""The Kafka sink's own event loop, on its own thread, with OpenTelemetry suppressed.

aiokafka needs a running loop, and the flusher that calls the sink has none: the
loop runs on a daemon thread and the sink hands it coroutines. Every task on it
(the replayer, aiokafka's sender, each export) runs in one context, made here, in
which OpenTelemetry instrumentation is suppressed, as the SDK's batch processor
does for its exporter: an instrumented client library must not turn predlog's own
writes into spans in the application's traces. The context is the loop's, never
the caller's: ``asyncio.run_coroutine_threadsafe`` alone would start each task in
a copy of whichever thread called it.

Nothing here may be used after ``fork()`` in the child: the thread did not survive
it. The sink makes a new :class:`LoopThread` there and leaves the old one alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from opentelemetry import context

from predlog._tracing import uninstrumented_context

T = TypeVar("T")


def suppressed_context() -> contextvars.Context:
    """A fresh context in which OpenTelemetry instrumentation is suppressed, under both keys."""
    ctx = contextvars.Context()
    ctx.run(_suppress)
    return ctx


def _suppress() -> None:
    # Never detached: the context is the loop's for as long as the loop lives.
    context.attach(uninstrumented_context())


class LoopThread:
    """An asyncio loop served by one daemon thread, every task in a suppressed context."""

    def __init__(self, name: str) -> None:
        self._context = suppressed_context()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._context.copy().run, args=(self._serve,), name=name, daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` as a task on the loop, in the loop's context."""
        # call_soon_threadsafe copies the current context: make that the loop's.
        return self._context.copy().run(asyncio.run_coroutine_threadsafe, coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result, at most ``timeout`` seconds."""
        return self.submit(coro).result(timeout)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` on the loop thread, in the loop's context."""
        self.loop.call_soon_threadsafe(callback, *args, context=self._context.copy())

    def stop(self, timeout: float) -> bool:
        """Stop the loop and wait for its thread, at most ``timeout`` seconds.

        The loop is closed only once its thread has ended; False if it had not. Safe twice.
        """
        if self.loop.is_closed():
            return True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self.loop.close()
        return True
