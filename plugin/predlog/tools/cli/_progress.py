"""Stage lines and a progress bar on stderr while a long command works.

The analytics report their work as ``progress(stage, done=None, total=None)``: a new
stage string starts a stage, ``done``/``total`` count its steps (feature 3 of 9). A
person at a terminal sees a transient bar for the stage under way and, once it is over, a
line with the stage and how long it took; the bar is gone before the command prints its
answer. Nothing here may break the command: a failure to draw is swallowed and the
reporter falls silent, since a missing bar costs nothing and a lost report costs the run.

rich draws the bar when it is installed (BentoML brings it); without it a plain line is
rewritten in place.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TextIO

#: Seconds, monotonic: injectable so that tests read exact elapsed times.
Clock = Callable[[], float]


def elapsed_text(seconds: float) -> str:
    """A stage's duration for people: ``0.4s``, ``12.3s``, ``2m05s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def stage_line(stage: str, done: int | None, total: int | None, seconds: float) -> str:
    """The line a finished stage leaves on the terminal."""
    return f"{stage}{count_text(done, total)}: {elapsed_text(seconds)}"


def count_text(done: int | None, total: int | None) -> str:
    if done is None:
        return ""
    return f" {done}/{total}" if total is not None else f" {done}"


class _Renderer(Protocol):
    """How a reporter draws: one implementation on rich, one on plain text."""

    def begin(self, stage: str, total: int | None) -> None: ...

    def advance(self, stage: str, done: int | None, total: int | None) -> None: ...

    def end(self, line: str) -> None: ...

    def stop(self) -> None: ...


class _RichRenderer:
    """A transient rich bar for the stage under way; finished stages printed above it.

    stdout is never redirected: the command's answer (text or JSON) must reach stdout
    as it is, and it is printed only after the reporter is closed.
    """

    def __init__(self, console: Any, clock: Clock) -> None:
        from rich.progress import (  # noqa: PLC0415  # only on a terminal
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            SpinnerColumn("line"),  # ASCII: a terminal in the C locale draws it too
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            get_time=clock,
            refresh_per_second=4,
        )
        self._clock = clock
        self._drawn = clock()
        self._task: Any = None
        try:
            self._progress.start()
        except Exception:
            with contextlib.suppress(Exception):  # a refresh thread must not outlive it
                self._progress.stop()
            raise

    def begin(self, stage: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(stage, total=total, count="")

    def advance(self, stage: str, done: int | None, total: int | None) -> None:
        # The bar redraws itself 4 times a second; a count is drawn at once unless the
        # last drawing was under a tenth of a second ago (thousands of steps cost nothing).
        now = self._clock()
        self._progress.update(
            self._task,
            completed=done or 0,
            total=total,
            count=count_text(done, total),
            refresh=now - self._drawn >= 0.1,
        )
        self._drawn = now

    def end(self, line: str) -> None:
        self._progress.console.print(line, markup=False, highlight=False)

    def stop(self) -> None:
        self._progress.stop()


class _PlainRenderer:
    """One line per stage, rewritten in place while it counts: for terminals without rich."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def _show(self, text: str, *, newline: bool = False) -> None:
        self._stream.write("\r\x1b[K" + text + ("\n" if newline else ""))
        self._stream.flush()

    def begin(self, stage: str, total: int | None) -> None:
        self._show(f"{stage} ...")

    def advance(self, stage: str, done: int | None, total: int | None) -> None:
        self._show(f"{stage}{count_text(done, total)} ...")

    def end(self, line: str) -> None:
        self._show(line, newline=True)

    def stop(self) -> None:
        pass


class Reporter:
    """The ``progress`` callable given to the analytics, drawing on a terminal.

    Callable from any thread (a query-progress poller may count while the main thread
    starts the next stage). ``close`` ends the last stage and removes the bar; it is
    idempotent, and the reporter is a context manager that closes on exit.
    """

    def __init__(self, draw: Callable[[], _Renderer], clock: Clock = time.monotonic) -> None:
        # The renderer starts with the first stage: a command that reports nothing draws
        # nothing, and a terminal that cannot be drawn on fails inside the guard below.
        self._draw: Callable[[], _Renderer] | None = draw
        self._renderer: _Renderer | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._stage: str | None = None
        self._started = 0.0
        self._done: int | None = None
        self._total: int | None = None

    def __call__(self, stage: str, done: int | None = None, total: int | None = None) -> None:
        with self._lock:
            if self._draw is None:
                return
            try:
                if self._renderer is None:
                    self._renderer = self._draw()
                if stage != self._stage:
                    self._finish_stage()
                    self._stage, self._started = stage, self._clock()
                    self._done = self._total = None
                    self._renderer.begin(stage, total)
                if done is not None or total is not None:
                    self._done, self._total = done, total
                    self._renderer.advance(stage, done, total)
            except Exception:  # noqa: BLE001  # drawing must never fail the command
                self._silence()

    def close(self) -> None:
        """End the last stage (its line stays) and remove the bar."""
        with self._lock:
            if self._draw is None:
                return
            with contextlib.suppress(Exception):  # as in __call__
                self._finish_stage()
            self._silence()

    def _finish_stage(self) -> None:
        if self._stage is not None and self._renderer is not None:
            seconds = self._clock() - self._started
            self._renderer.end(stage_line(self._stage, self._done, self._total, seconds))
        self._stage = None

    def _silence(self) -> None:
        renderer, self._renderer, self._draw = self._renderer, None, None
        if renderer is not None:
            with contextlib.suppress(Exception):  # the bar may be what failed
                renderer.stop()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def terminal_reporter(
    stream: TextIO, *, console: Any = None, clock: Clock = time.monotonic
) -> Reporter:
    """A reporter drawing on ``stream``: with rich if installed, else plain lines.

    ``console`` is a rich ``Console`` to draw on instead (tests pass one that records).
    """
    try:
        from rich.console import Console  # noqa: PLC0415  # only on a terminal
    except ImportError:
        return Reporter(lambda: _PlainRenderer(stream), clock)
    return Reporter(lambda: _RichRenderer(console or Console(file=stream), clock), clock)
