"""PredictionLogger: the request path.

``log()`` is everything a prediction pays for: one counter increment, one clock
read, one tuple of references, one lock-free ring claim. No parsing, no copying,
no serialisation, no I/O, no lock; and no exception escapes it. Read ``log()``
top to bottom to see the whole cost.

Everything else here is lifecycle: building the pipeline from settings, draining
at exit and on SIGTERM, and starting again in a forked child.

Importing this module loads nothing heavy: the middleware imports it in every process
that loads the service (BentoML's supervisor among them, which never logs), and
:func:`preflight` checks settings there. numpy, pyarrow and the sinks' clients are
imported by the constructor, in the process that logs, when its flusher starts.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import signal
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from time import time_ns
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from predlog._capture import Capture, epoch_ns, untracker
from predlog._counter import AtomicCounter
from predlog._report import ErrorReporter
from predlog._ring import RingBuffer
from predlog._settings import LoggerOptions, Settings, resolve, spelt
from predlog.errors import ConfigError
from predlog.flush._decode import Extractor, json_extractor
from predlog.flush._pii import Pseudonymiser
from predlog.metrics import Health, attach
from predlog.sinks._base import Reporting, Sink

if TYPE_CHECKING:
    from predlog.flush._flusher import Flusher

_SHUTDOWN_TIMEOUT_S = 10.0


class PredictionLogger:
    """Captures predictions on the request path and delivers them in the background.

    Settings come from keyword arguments first, then ``PREDLOG_*`` environment
    variables, then defaults (see :class:`predlog.Settings`); a malformed value
    raises :class:`predlog.ConfigError` naming the setting, here, at start-up.
    With no ``sinks`` it writes Parquet under ``data_dir``.
    """

    def __init__(
        self,
        *,
        sinks: Sequence[Sink] | None = None,
        audit: Any = None,
        feature_names: Sequence[str] = (),
        extractor: Extractor = json_extractor,
        error_log_interval_s: float = 60.0,
        **options: Unpack[LoggerOptions],
    ) -> None:
        self.settings: Settings = preflight(options, default_sink=sinks is None)
        s = self.settings
        # The flusher's side, and the numpy and pyarrow it needs, load here: in the
        # process that logs, not in every process that imports the service.
        from predlog.flush._batch import BatchBuilder  # noqa: PLC0415  # see above
        from predlog.flush._flusher import Flusher  # noqa: PLC0415
        from predlog.sinks._oplog import OperationalLogSink  # noqa: PLC0415

        self._reporter = ErrorReporter(interval_s=error_log_interval_s)
        self._ring: RingBuffer[Capture] = RingBuffer(s.ring_capacity, overflow=s.overflow)
        self._captured = AtomicCounter()
        self._request_failures = AtomicCounter()
        self._closed_drops = AtomicCounter()
        self._count = self._captured.incr
        self._put: Callable[[Capture], bool] = self._ring.put
        # What takes a handed-over capture out of the collector's sight (_capture.untracker).
        self._untracked = untracker()
        self._closed = False
        #: Whether this process holds the drain lock across a fork (see _before_fork).
        self._fork_locked = False
        if sinks is None:
            sinks = [_default_sink(s, self._reporter)]
        pseudonymiser = Pseudonymiser.from_settings(s)
        if s.operational_log:
            # No configure_logging() here: logging configuration is the application's.
            sinks = [
                *sinks,
                OperationalLogSink(
                    stale_after_s=s.stale_feature_age_s, is_pii=pseudonymiser.is_pii
                ),
            ]
        #: The AuditSink, if regulated decisions are audited (the middleware reads it).
        if callable(audit) and not hasattr(audit, "export"):
            # A factory: made here, in the process that serves (BentoML imports the
            # service module in its supervisor too, which must not open the audit log).
            audit = audit()
        self.audit = audit
        if audit is not None:
            sinks = [*sinks, audit]
        builder = BatchBuilder.from_settings(
            s,
            reporter=self._reporter,
            feature_names=feature_names,
            extractor=extractor,
            pseudonymiser=pseudonymiser,
            audit_rule=audit.wants if audit is not None else None,
        )
        self._flusher: Flusher = Flusher(
            self._ring,
            builder,
            list(sinks),
            batch_size=s.batch_size,
            interval_s=s.flush_interval_s,
            reporter=self._reporter,
        )
        if s.metrics:
            for observer in attach(self, self._flusher.latency):
                self._flusher.add_observer(observer)
        self._flusher.open_sinks()
        self._flusher.start()
        _register(self)

    # -- the request path --------------------------------------------------------

    def log(
        self,
        *,
        request_id: str | None = None,
        features: Any = None,
        score: Any = None,
        decision: Any = None,
        threshold: float | None = None,
        session_id: str | None = None,
        user_segment: str | None = None,
        channel: str | None = None,
        geographic_region: str | None = None,
        model_name: str | None = None,
        model_version: str | None = None,
        feature_store_snapshot_id: str | None = None,
        feature_freshness_max_age_seconds: float | None = None,
        feature_timestamps: Any = None,
        feature_fetch_ms: float | None = None,
        inference_ms: float | None = None,
        total_ms: float | None = None,
        timestamp: float | datetime | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        **extra: Any,
    ) -> bool:
        """Capture one prediction. Never raises, never blocks; False if it was dropped.

        ``features`` may be a mapping, a sequence or array (named by
        ``feature_names``), or raw JSON bytes (decoded by the extractor in the
        flusher). Values are held by reference until the flusher decodes them:
        do not mutate them after this call. Unknown keyword arguments go to the
        record's ``extra`` map.
        """
        self._count()
        try:
            return self._put(
                (
                    time_ns() if timestamp is None else epoch_ns(timestamp),
                    request_id,
                    features,
                    score,
                    decision,
                    threshold,
                    session_id,
                    user_segment,
                    channel,
                    geographic_region,
                    model_name,
                    model_version,
                    feature_store_snapshot_id,
                    feature_freshness_max_age_seconds,
                    feature_timestamps,
                    feature_fetch_ms,
                    inference_ms,
                    total_ms,
                    extra,
                    trace_id,
                    span_id,
                    None,
                )
            )
        except Exception as exc:  # noqa: BLE001  # a prediction never fails because of us
            self._request_failures.incr()
            self._reporter.report("log_failed", f"log() could not capture: {exc!r}", exc=exc)
            return False

    # -- accounting --------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Where every captured record is: ``captured == sampled_out + delivered + dropped +
        failed + pending`` whenever no record is moving between two of them.

        Each number is counted on its own: ``pending`` is what sits in the ring plus what
        the flusher holds, never a remainder of the others, so a record lost between two
        stages shows as a broken identity.
        """
        sampled_out, delivered, failed, pending = self._flusher.counts()
        return {
            "captured": self._captured.value,
            "sampled_out": sampled_out,
            "delivered": delivered,
            "dropped": self._ring.dropped + self._closed_drops.value,
            "failed": failed + self._request_failures.value,
            "pending": pending,
        }

    def sink_stats(self) -> dict[str, dict[str, Any]]:
        """Per sink: records delivered and failed, errors by exception type, and the
        sink's own figures when it keeps some (``KafkaSink.stats()``: sent, spooled,
        replayed, adopted...)."""
        return self._sink_stats(report=True)

    def _sink_stats(self, *, report: bool) -> dict[str, dict[str, Any]]:
        """``sink_stats()``; with ``report=False`` a sink whose stats() raises is marked
        ("own_error") instead of counted, since the metric exporters ask every second."""
        out: dict[str, dict[str, Any]] = {}
        for state in self._flusher.sinks:
            entry: dict[str, Any] = {
                "delivered": state.delivered,
                "failed": state.failed,
                "errors": dict(state.errors),
            }
            if isinstance(state.sink, Reporting):
                try:
                    entry["own"] = dict(state.sink.stats())
                except Exception as exc:  # noqa: BLE001  # a sink's figures never break ours
                    if not report:
                        entry["own_error"] = repr(exc)
                    else:
                        self._reporter.report(
                            "sink_stats_failed", f"{state.name}: {exc!r}", exc=exc
                        )
            out[state.name] = entry
        return out

    def errors(self) -> dict[str, int]:
        """Every error predlog caught instead of raising, counted by kind."""
        return self._reporter.counts()

    def health(self) -> Health:
        """Everything above plus ring fill and flusher batch latency, in one object: what
        the metric exporters publish (:mod:`predlog.metrics`). Never waits on a sink."""
        return Health.of(
            model=self.settings.model_name,
            stats=self.stats(),
            errors=self.errors(),
            ring_used=len(self._ring),
            ring_capacity=self.settings.ring_capacity,
            sink_stats=self._sink_stats(report=False),
            batches=self._flusher.latency.snapshot(),
        )

    # -- lifecycle ---------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything captured so far; False if ``timeout`` ran out first."""
        return self._flusher.force_flush(timeout)

    def close(self, timeout: float | None = _SHUTDOWN_TIMEOUT_S) -> bool:
        """Deliver what is pending, close the sinks. Later ``log()`` calls are dropped."""
        if not self._closed:
            self._closed = True
            self._put = self._drop_closed
        return self._flusher.shutdown(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def reporter(self) -> ErrorReporter:
        """Where this logger's errors are counted; the middleware reports through it too."""
        return self._reporter

    def _submit(self, capture: Capture) -> bool:
        """Hand over a prepared capture tuple (see :mod:`predlog._capture`), untracked
        by the garbage collector while it waits in the ring. Never raises."""
        self._count()
        try:
            if self._untracked is not None:
                capture = self._untracked(capture)
            return self._put(capture)
        except Exception as exc:  # noqa: BLE001  # a prediction never fails because of us
            self._request_failures.incr()
            self._reporter.report("log_failed", f"could not capture: {exc!r}", exc=exc)
            return False

    def _drop_closed(self, capture: Capture) -> bool:
        self._closed_drops.incr()
        return False

    def _before_fork(self) -> None:
        self._fork_locked = self._flusher.lock.acquire(timeout=5.0)

    def _after_fork_in_parent(self) -> None:
        if self._fork_locked:
            self._fork_locked = False
            self._flusher.lock.release()

    def _after_fork_in_child(self) -> None:
        self._fork_locked = False
        self._reporter.after_fork_in_child()
        self._ring = RingBuffer(self.settings.ring_capacity, overflow=self.settings.overflow)
        self._put = self._drop_closed if self._closed else self._ring.put
        for counter in (self._captured, self._request_failures, self._closed_drops):
            counter.reset()
        self._count = self._captured.incr
        self._flusher.after_fork_in_child(self._ring)


def handoff(logger: PredictionLogger) -> Callable[[Capture], bool]:
    """The seam through which the middleware puts its own captures into a logger's ring.

    The callable counts the capture, never raises and never blocks, like ``log()``;
    the middleware fetches it once and calls it once per request.
    """
    return logger._submit


@contextlib.contextmanager
def paused(logger: PredictionLogger) -> Iterator[None]:
    """Hold the logger's flusher back: captures wait in the ring until the block ends.

    The flusher finishes the batch it is on first. For benchmarks and tests that fill
    the ring before a clock starts (``predlog.testing.paused``); ``log()`` never waits.
    """
    with logger._flusher.lock:
        yield


def preflight(options: Mapping[str, Any], *, default_sink: bool = True) -> Settings:
    """Every check a :class:`PredictionLogger` with these options makes before it starts.

    It starts nothing and leaves nothing but ``data_dir`` itself (the local spool
    directory too, when data_dir is an object store, whose bucket it asks about once),
    so it can run where no logger will: BentoML imports the service module in its
    supervisor as well as in each worker, and a configuration error there stops
    ``bentoml serve`` before it answers anything.
    """
    settings = resolve(options)
    Pseudonymiser.from_settings(settings)
    if default_sink and settings.iceberg_table:
        _check_iceberg(settings)
    if default_sink:
        kafka = bool(settings.kafka_bootstrap)
        if kafka and importlib.util.find_spec("aiokafka") is None:
            raise ConfigError(
                spelt(settings, "kafka_bootstrap"),
                "the Kafka sink needs aiokafka: pip install 'predlog[kafka]'",
            )
        if settings.data_is_local:
            problem = _unwritable(settings.data_path)
            if problem:
                what = "the Kafka spool" if kafka else "Parquet files"
                raise ConfigError(spelt(settings, "data_dir"), f"{what} cannot go there: {problem}")
        if not kafka and not settings.iceberg_table and not settings.data_is_local:
            _check_store(settings)
        staged = kafka or bool(settings.iceberg_table)
        if not settings.data_is_local or (staged and settings.spool_dir is not None):
            # The local directory for what is not yet delivered, when it is not under
            # the data directory just checked.
            problem = _unwritable(settings.spool_path)
            if problem:
                what = "the Kafka spool" if kafka else "files waiting for the object store"
                raise ConfigError(
                    spelt(settings, "spool_dir"), f"{what} cannot go there: {problem}"
                )
    return settings


def _check_store(settings: Settings) -> None:
    """For an object store ``data_dir``: the filesystem can be built and the store does
    not refuse the bucket (one HEAD request).

    A missing bucket or denied access stops the start: nothing would ever arrive. A
    store that does not answer does not, since files wait in the spool until it does.
    """
    from predlog.storage import UnreachableError, locate, probe  # noqa: PLC0415  # pyarrow.fs

    name = spelt(settings, "data_dir")
    try:
        location = locate(settings.data_dir)
    except (ValueError, OSError) as exc:
        raise ConfigError(name, f"cannot open {settings.data_dir!r}: {exc}") from None
    try:
        problem = probe(location)
    except UnreachableError:
        return  # records wait in the spool; the sink's upload errors will say so
    if problem:
        raise ConfigError(name, problem)


def _check_iceberg(settings: Settings) -> None:
    """For ``iceberg_table``: pyiceberg is installed, the name is valid, the catalog is
    configured. A configured catalog that does not answer is not a refusal: records are
    staged until it does."""
    name = spelt(settings, "iceberg_table")
    if importlib.util.find_spec("pyiceberg") is None:
        raise ConfigError(name, "the Iceberg sink needs pyiceberg: pip install 'predlog[iceberg]'")
    from predlog.sinks.iceberg import (  # noqa: PLC0415  # the iceberg extra
        CatalogUnreachableError,
        load_catalog,
        parse_table_name,
    )

    try:
        catalog, _, _ = parse_table_name(settings.iceberg_table or "")
        load_catalog(catalog, data_dir=settings.data_dir)
    except CatalogUnreachableError:
        return
    except ConfigError as exc:
        raise ConfigError(name, str(exc).removeprefix(f"{exc.setting}: ")) from None


def _unwritable(path: Path) -> str | None:
    """Why predlog could not write files in ``path``, or None if it can.

    Trying is the only answer that holds for root, read-only mounts and full quotas
    alike; permission bits alone say yes to root on ``/proc``.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".predlog-probe-"):
            pass
    except OSError as exc:
        return f"{exc.strerror or exc} ({path})"
    return None


def _default_sink(s: Settings, reporter: ErrorReporter) -> Sink:
    """Kafka when a broker and topic are configured, else Parquet files under data_dir."""
    if s.iceberg_table:
        from predlog.sinks.iceberg._sink import IcebergSink  # noqa: PLC0415  # iceberg extra

        return IcebergSink(
            s.iceberg_table,
            data_dir=s.data_dir,
            spool_dir=s.spool_path,
            commit_interval_s=s.iceberg_commit_interval_s,
            max_file_bytes=s.parquet_max_file_bytes,
            spool_max_bytes=s.parquet_spool_max_bytes,
            commit=s.iceberg_commit,
        )
    if s.kafka_bootstrap and s.kafka_topic:
        from predlog.sinks.kafka import KafkaSink  # noqa: PLC0415  # needs the kafka extra

        return KafkaSink(
            bootstrap_servers=s.kafka_bootstrap,
            topic=s.kafka_topic,
            spool_dir=s.spool_path / f"{os.getpid()}",
            spool_max_bytes=s.kafka_spool_max_bytes,
            delivery_timeout_s=s.kafka_delivery_timeout_s,
            compression_type=None if s.kafka_compression == "none" else s.kafka_compression,
            reporter=reporter,
        )
    from predlog.sinks._parquet import ParquetSink  # noqa: PLC0415  # loaded where it writes

    return ParquetSink(
        s.data_dir,
        max_file_bytes=s.parquet_max_file_bytes,
        max_file_age_s=s.parquet_max_file_age_s,
        spool_dir=s.spool_path,
        spool_max_bytes=s.parquet_spool_max_bytes,
    )


# -- process-wide hooks: exit, SIGTERM, fork ----------------------------------------

_live: weakref.WeakSet[PredictionLogger] = weakref.WeakSet()
_hooks_installed = False
_previous_sigterm: Any = None


def _register(logger: PredictionLogger) -> None:
    global _hooks_installed  # noqa: PLW0603  # one set of process hooks for all loggers
    _live.add(logger)
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_close_all)
        os.register_at_fork(
            before=lambda: _each(PredictionLogger._before_fork),
            after_in_parent=lambda: _each(PredictionLogger._after_fork_in_parent),
            after_in_child=lambda: _each(PredictionLogger._after_fork_in_child),
        )
    if logger.settings.install_signal_handlers:
        _install_sigterm()


def _each(method: Any) -> None:
    for logger in list(_live):
        # A fork hook must never break the fork.
        with contextlib.suppress(Exception):
            method(logger)


def _close_all() -> None:
    for logger in list(_live):
        # At exit, close what we can.
        with contextlib.suppress(Exception):
            logger.close()


def _install_sigterm() -> None:
    """Drain on SIGTERM, then let the signal do what it would have done.

    Only from the main thread, and only over the default action or a Python
    handler (which is then chained). A server that installs its own handler later
    (uvicorn, BentoML) shuts down gracefully and the atexit hook drains instead.
    """
    global _previous_sigterm  # noqa: PLW0603  # the handler we chain to is process-wide
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm or current == signal.SIG_IGN:
        return
    _previous_sigterm = current
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    previous = _previous_sigterm
    if callable(previous):
        # Someone else owns shutdown: make what we have durable, let them proceed.
        for logger in list(_live):
            logger.flush(_SHUTDOWN_TIMEOUT_S)
        previous(signum, frame)
        return
    _close_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
