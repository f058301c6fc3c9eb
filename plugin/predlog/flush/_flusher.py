"""The flusher: the one consumer of the ring, on a background thread.

It wakes every ``poll_s`` (or when asked), and drains the ring when a batch is
full or the flush interval has passed. Each drained batch is decoded, sampled and
built into Arrow (:mod:`predlog.flush._batch`), then handed to every sink in turn. A sink
that raises is counted and reported against itself; the other sinks still get the
batch and the flusher carries on.

Why a thread and not an asyncio task: decoding and Arrow building are CPU work of
a few milliseconds per batch. On the server's event loop they would stall every
request for that long; on a thread they interleave with the loop in GIL switch
intervals, and Parquet compression and file writes release the GIL entirely. It
also needs no running loop, so the same flusher serves a plain script, a thread
pool server and an ASGI app. ``benchmarks/bench_flusher_mode.py`` measures both.

Nothing here ever waits on the request path: producers never take the drain
lock, and the flusher never signals producers.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from predlog._capture import Capture
from predlog._exchange import Exchange
from predlog._report import ErrorReporter
from predlog._ring import RingBuffer
from predlog._table import Batch, as_arrow, is_native
from predlog._tracing import uninstrumented
from predlog.errors import ConfigError
from predlog.flush._batch import BatchBuilder, BuildResult
from predlog.metrics import BatchLatency, HealthObserver
from predlog.sinks import Backlog, ForkAware, Openable, Sink, TakesNativeBatches, Ticking


@dataclass
class SinkState:
    """A sink, the capabilities it has, and how it has fared; written only by whoever
    holds the drain lock."""

    sink: Sink
    name: str
    delivered: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    ticking: Ticking | None = field(init=False)
    backlog: Backlog | None = field(init=False)
    #: Whether export() takes a native batch as it is (else it gets pyarrow's).
    native: bool = field(init=False)

    def __post_init__(self) -> None:
        self.ticking = self.sink if isinstance(self.sink, Ticking) else None
        self.backlog = self.sink if isinstance(self.sink, Backlog) else None
        self.native = _takes_native(self.sink)


def _count(backlog: Backlog, held: bool) -> int:
    """One of a sink's backlog figures, or 0: a broken one never stops the flusher."""
    try:
        return int(backlog.unpublished_rows if held else backlog.lost_rows)
    except Exception:  # noqa: BLE001  # a figure, not a delivery
        return 0


def _takes_native(sink: Sink) -> bool:
    """Whether the class whose ``export()`` the sink runs declares it takes native batches:
    a subclass that overrides ``export()`` (a user's ParquetSink that reads pyarrow
    columns) gets pyarrow's, whatever its base declares."""
    if not isinstance(sink, TakesNativeBatches):
        return False
    for klass in type(sink).__mro__:
        if "export" in vars(klass):
            return bool(vars(klass).get("takes_native_batches", False))
    return False


def _sink_name(sink: Sink, index: int) -> str:
    return f"{type(sink).__name__}[{index}]"


class Flusher:
    """Drains a :class:`RingBuffer` into sinks, in batches, on its own thread."""

    def __init__(
        self,
        ring: RingBuffer[Capture],
        builder: BatchBuilder,
        sinks: Sequence[Sink],
        *,
        batch_size: int,
        interval_s: float,
        reporter: ErrorReporter,
        poll_s: float = 0.05,
    ) -> None:
        self._ring = ring
        self._builder = builder
        self.sinks = [SinkState(sink, _sink_name(sink, i)) for i, sink in enumerate(sinks)]
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._poll_s = min(poll_s, interval_s)
        self._reporter = reporter
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        # Flush requests from other threads, each answered by setting its event.
        self._requests: deque[threading.Event] = deque()
        self._last_drain = time.monotonic()
        self._last_tick = time.monotonic()
        # Outcome counters: written only under self._lock and self._counts, read by anyone.
        self.sampled_out = 0
        self.delivered = 0
        self.failed = 0
        #: Captures taken from the ring whose outcome is not counted yet.
        self.in_hand = 0
        # Of the records counted delivered: those a sink holds where no reader sees them
        # yet, and those it lost afterwards (see _sink_backlog).
        self._held = 0
        self._lost = 0
        # Guards moves between the counters above, never a sink call: held for a
        # ring drain at most, so stats() never waits on a stalled sink.
        self._counts = threading.Lock()
        #: Seconds per drained batch, from build start to the last sink's return.
        self.latency = BatchLatency()
        #: Kept current after each drain, flush and idle tick (see :meth:`add_observer`).
        self._observers: list[HealthObserver] = []

    def add_observer(self, observer: HealthObserver) -> None:
        """Call ``observer.update()`` after each drain, flush and idle tick, and
        ``observer.close()`` once the sinks are closed; always under the drain lock, so
        an observer is never called twice at once and never on the request path."""
        self._observers.append(observer)

    # -- lifecycle -------------------------------------------------------------

    def open_sinks(self) -> None:
        """Open every :class:`Openable` sink, once, before the thread starts.

        A :class:`ConfigError` refuses the start (the sink can never work); any other
        failure is counted against its sink, which then refuses or keeps what it is
        given, as it can: a prediction service must start when a store is down. On a
        refusal the sinks opened before it are closed again: no logger will.
        """
        opened: list[Sink] = []
        for state in self.sinks:
            if not isinstance(state.sink, Openable):
                continue
            try:
                with uninstrumented():
                    state.sink.open()
            except ConfigError:
                for sink in opened:
                    with contextlib.suppress(Exception):
                        sink.close()
                raise
            except Exception as exc:  # noqa: BLE001  # isolate each sink
                self._sink_error(state, "open", exc)
            opened.append(state.sink)

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="predlog-flusher", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def force_flush(self, timeout: float | None = None) -> bool:
        """Drain everything captured so far and flush every sink.

        Returns False if it could not finish within ``timeout`` seconds. The work
        is done by the flusher thread when it runs, so a caller whose sink stalls
        gets its answer at the timeout rather than stalling with the sink.
        """
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            request = threading.Event()
            self._requests.append(request)
            self._wake.set()
            if request.wait(timeout):
                return True
            if thread.is_alive():
                return False
            # The thread stopped (shutdown) before serving us: fall through and do it.
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._acquire(deadline):
            return False
        try:
            return self._flush_locked(deadline)
        finally:
            self._lock.release()

    def _flush_locked(self, deadline: float | None) -> bool:
        """Drain, flush every sink, and answer waiting flush requests. Lock held."""
        waiting = []
        while self._requests:
            waiting.append(self._requests.popleft())
        done = self._drain_locked(deadline)
        with uninstrumented():
            for state in self.sinks:
                try:
                    state.sink.flush()
                except Exception as exc:  # noqa: BLE001  # isolate each sink
                    self._sink_error(state, "flush", exc)
        self._settle(backlog=self._sink_backlog())
        self._notify_observers()
        if done:
            for request in waiting:
                request.set()
        else:
            self._requests.extendleft(reversed(waiting))
        return done

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop the thread, drain what is left, close the sinks. Safe to call twice."""
        if self._closed:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        done = self.force_flush(remaining)
        if not self._acquire(deadline):
            return False
        try:
            with uninstrumented():
                for state in self.sinks:
                    try:
                        state.sink.close()
                    except Exception as exc:  # noqa: BLE001  # isolate each sink
                        self._sink_error(state, "close", exc)
            self._closed = True
            self._settle(backlog=self._sink_backlog())
            self._notify_observers(closing=True)
        finally:
            self._lock.release()
        return done

    def after_fork_in_child(self, ring: RingBuffer[Capture]) -> None:
        """Reset for a forked child: a fresh ring, lock and counters, and a new thread.

        The parent's captured records stay the parent's to deliver; the child
        starts with the empty ``ring`` its logger made.
        """
        self._ring = ring
        self._lock = threading.Lock()
        self._counts = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._requests = deque()
        self.sampled_out = self.delivered = self.failed = self.in_hand = 0
        self._held = self._lost = 0
        self.latency.reset()
        for state in self.sinks:
            state.delivered = state.failed = 0
            state.errors = {}
            if isinstance(state.sink, ForkAware):
                try:
                    state.sink.after_fork_in_child()
                except Exception as exc:  # noqa: BLE001  # a fork hook must never break the fork
                    self._sink_error(state, "after_fork", exc)
        if not self._closed:
            self.start()

    @property
    def lock(self) -> threading.Lock:
        """The drain lock; held around fork so no batch is half-written in a child."""
        return self._lock

    # -- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001  # the flusher thread must never die
                self._reporter.report("flusher_error", f"flusher step failed: {exc!r}", exc=exc)
                time.sleep(self._poll_s)

    def _step(self) -> None:
        if self._requests:
            with self._lock:
                self._flush_locked(None)
            return
        pending = len(self._ring)
        now = time.monotonic()
        drain = pending >= self._batch_size or (
            pending and now - self._last_drain >= self._interval_s
        )
        # Ticks come under load too: a file that is due must not wait for a quiet moment.
        tick = now - self._last_tick >= self._interval_s
        if drain or tick:
            with self._lock:
                if drain:
                    self._drain_locked(None)
                if tick:
                    self._last_tick = now
                    self._tick_sinks(now)
                self._notify_observers()
            return
        self._wake.wait(self._poll_s)
        self._wake.clear()

    def _acquire(self, deadline: float | None) -> bool:
        if deadline is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=max(0.0, deadline - time.monotonic()))

    def _drain_locked(self, deadline: float | None) -> bool:
        """Drain what is in the ring now (not what arrives meanwhile). Lock held."""
        self._last_drain = time.monotonic()
        rounds = math.ceil(len(self._ring) / self._batch_size)
        with uninstrumented():
            for _ in range(rounds):
                if deadline is not None and time.monotonic() > deadline:
                    return False
                with self._counts:
                    captures = self._ring.drain(self._batch_size)
                    self.in_hand = len(captures)
                if not captures:
                    break
                self._process(captures)
        return True

    def _settle(
        self,
        *,
        sampled_out: int = 0,
        delivered: int = 0,
        failed: int = 0,
        backlog: tuple[int, int] | None = None,
    ) -> None:
        """Move records from in hand to their outcomes, in one step as :meth:`counts` sees it."""
        with self._counts:
            self.sampled_out += sampled_out
            self.delivered += delivered
            self.failed += failed
            self.in_hand -= sampled_out + delivered + failed
            if backlog is not None:
                self._held, self._lost = backlog

    def _sink_backlog(self) -> tuple[int, int]:
        """Records the sinks took but no reader sees yet (rows in a Parquet file not yet
        published), and records they lost after taking them. Every sink must take a
        record for it to count delivered, so the sink furthest behind decides."""
        held = lost = 0
        for state in self.sinks:
            if state.backlog is not None:
                held = max(held, _count(state.backlog, held=True))
                lost = max(lost, _count(state.backlog, held=False))
        return held, lost

    def counts(self) -> tuple[int, int, int, int]:
        """(sampled_out, delivered, failed, pending) at one instant of the flusher's.

        ``pending`` is what is in the ring, what the flusher holds, and what a sink
        holds where no reader sees it yet (a crash would lose it); ``delivered`` is
        what readers can see. No record is ever in two of them, or in none, as seen
        from here.
        """
        with self._counts:
            # A sink may also hold or lose rows of batches already counted failed (another
            # sink refused them): those must not be taken from delivered a second time.
            lost = min(self._lost, self.delivered)
            held = min(self._held, self.delivered - lost)
            pending = len(self._ring) + self.in_hand + held
            return self.sampled_out, self.delivered - held - lost, self.failed + lost, pending

    def _process(self, captures: list[Capture]) -> None:
        started = time.perf_counter()
        try:
            self._build_and_export(captures)
        finally:
            self.latency.observe(time.perf_counter() - started)

    def _build_and_export(self, captures: list[Capture]) -> None:
        try:
            result = self._builder.build(captures)
        except Exception as exc:  # noqa: BLE001  # a builder bug loses a batch, counted
            self._settle(failed=len(captures))
            self._reporter.report("batch_invalid", f"could not build a batch: {exc!r}", exc=exc)
            return
        finally:
            # The exchanges nothing else holds go to the next requests, rather than to
            # the garbage collector.
            Exchange.recycle(captures)
            # Let go of the captured objects before a sink can stall: while it does,
            # the ring refills, and memory must stay at one ring, not a ring plus a batch.
            captures.clear()
        self._settle(sampled_out=result.sampled_out, failed=result.failed)
        if result.batch is not None:
            self._export(result)

    def _export(self, result: BuildResult) -> None:
        batch = result.batch
        assert batch is not None
        all_ok = True
        arrow: Batch | None = None
        for state in self.sinks:
            try:
                # Either form for a sink that takes native batches; pyarrow's for the rest.
                given: Any = batch
                if not state.native and is_native(batch):
                    # Made once for all the sinks that need pyarrow, on the first of them.
                    given = arrow = as_arrow(batch) if arrow is None else arrow
                state.sink.export(given)
            except Exception as exc:  # noqa: BLE001  # isolate each sink
                all_ok = False
                state.failed += result.kept
                self._sink_error(state, "export", exc)
            else:
                state.delivered += result.kept
        # A record counts as delivered only when every sink took it.
        backlog = self._sink_backlog()
        if all_ok:
            self._settle(delivered=result.kept, backlog=backlog)
        else:
            self._settle(failed=result.kept, backlog=backlog)

    def _tick_sinks(self, now: float) -> None:
        with uninstrumented():
            self._tick_each(now)
        self._settle(backlog=self._sink_backlog())

    def _tick_each(self, now: float) -> None:
        for state in self.sinks:
            if state.ticking is None:
                continue
            try:
                state.ticking.tick(now)
            except Exception as exc:  # noqa: BLE001  # isolate each sink
                self._sink_error(state, "tick", exc)

    def _notify_observers(self, *, closing: bool = False) -> None:
        """Let the observers publish the current figures. Drain lock held."""
        for observer in self._observers:
            try:
                if closing:
                    observer.close()
                else:
                    observer.update()
            except Exception as exc:  # noqa: BLE001  # metrics never stop the flusher
                self._reporter.report("metrics_failed", f"{observer!r}: {exc!r}", exc=exc)

    def _sink_error(self, state: SinkState, action: str, exc: BaseException) -> None:
        # Counted by what went wrong underneath: a sink's SinkError wraps the cause.
        kind = type(exc.__cause__ or exc).__name__
        state.errors[kind] = state.errors.get(kind, 0) + 1
        self._reporter.report(
            f"sink_{action}_failed:{state.name}",
            f"{state.name}.{action}() raised {exc!r}",
            exc=exc,
        )
