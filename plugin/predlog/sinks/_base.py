"""The sink seam: where decoded batches go, and what else the flusher may ask of a sink.

A sink is any object with the three methods of :class:`Sink`. The flusher calls them
from its own thread, one call at a time; a sink never sees the request path. A sink
may raise: the flusher counts the failure against that sink only and carries on.

Everything else the flusher uses is a capability of its own, a small protocol below
that a sink has or has not (``isinstance`` tells, once, when the flusher is made):

* :class:`Openable`: I/O that a constructor must not do, done once before the first
  batch;
* :class:`Ticking`: time-based work, busy or idle;
* :class:`Backlog`: records taken but not yet where readers see them, or lost after;
* :class:`Reporting`: the sink's own figures for ``sink_stats()``;
* :class:`ForkAware`: what a forked child must forget of its parent's.
* :class:`TakesNativeBatches`: ``export()`` takes the flusher's batches in either form.

A sink without a capability is simply never asked for it; nothing is probed by name.

pyarrow is named here for type checkers only: the middleware imports this seam in
every process that loads the service, most of which never write a batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa


@runtime_checkable
class Sink(Protocol):
    """Receives batches of prediction records in :func:`predlog.arrow_schema`."""

    def export(self, batch: pa.RecordBatch) -> None:
        """Accept one batch. Return only when the sink has taken responsibility for it."""

    def flush(self) -> None:
        """Make everything exported so far durable and visible to readers."""

    def close(self) -> None:
        """Flush, then release resources. Safe to call twice."""


@runtime_checkable
class Openable(Protocol):
    """A sink whose constructor only validates, and whose I/O waits for ``open()``.

    The logger opens its sinks once, in the process that serves, before the flusher
    starts. :class:`~predlog.errors.ConfigError` from ``open()`` means the sink can
    never work (a missing bucket, a catalog that is misconfigured) and refuses the
    start; a store or catalog that merely does not answer yet must not raise (records
    wait for it). A sink used on its own opens itself at its first ``export()`` (or
    ``flush()``: a first flush delivers what a dead process left). ``close()`` of a
    sink never opened opens nothing. Calling ``open()`` again does nothing.
    """

    def open(self) -> None:
        """Do the start-up I/O: sweep, adopt what a dead process left, connect."""


@runtime_checkable
class Ticking(Protocol):
    """A sink with time-based work: rolling a file that has been open too long.

    Called every ``flush_interval_s`` from the flusher's thread, busy or idle, so that
    the work happens whether traffic goes on or stops. ``now`` is ``time.monotonic()``.
    """

    def tick(self, now: float) -> None:
        """Do what is due at ``now``; raise to have a background failure counted."""


@runtime_checkable
class Backlog(Protocol):
    """A sink that takes records before readers can see them, and may lose them after.

    Read after every export, flush and tick. ``unpublished_rows`` are rows in files not
    yet published (or staged, or not yet committed): the logger counts them pending,
    not delivered, since a crash would lose them. ``lost_rows`` are rows taken and
    then lost (a file abandoned on a full disk): counted failed.
    """

    @property
    def unpublished_rows(self) -> int:
        """Rows taken that no reader sees yet."""

    @property
    def lost_rows(self) -> int:
        """Rows taken and lost since the sink was made (or since a fork)."""


@runtime_checkable
class Reporting(Protocol):
    """A sink with figures of its own (sent, spooled, uploaded...), shown per sink by
    ``PredictionLogger.sink_stats()`` and exported as metrics. Called from any thread:
    it must only read."""

    def stats(self) -> Mapping[str, Any]:
        """The sink's own figures, by name."""


@runtime_checkable
class ForkAware(Protocol):
    """A sink that holds what a forked child must not touch (open files, threads, locks).

    The logger's one at-fork hook has the flusher call this in the child, before the
    child's flusher starts. The parent's open files and staged files stay the parent's;
    the child starts as a fresh writer with its own pid in its file names.
    """

    def after_fork_in_child(self) -> None:
        """Forget the parent's files and threads; start afresh."""


@runtime_checkable
class TakesNativeBatches(Protocol):
    """A sink whose ``export()`` takes a batch in either form the flusher builds
    (:data:`predlog.flush.Batch`): the extension's, as it is, or pyarrow's.

    Every other sink (a user's own included) is given a ``pyarrow.RecordBatch``, made
    from a native batch once per batch, without copying its columns. A process whose
    sinks all take native batches never imports pyarrow. The class that defines
    ``export()`` must declare it: a subclass overriding ``export()`` is given pyarrow's
    batches unless it declares it again.
    """

    #: True: declared by the class, so that ``isinstance`` tells.
    takes_native_batches: bool
