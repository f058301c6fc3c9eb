"""predlog's figures as OpenTelemetry observable instruments.

The instruments' callbacks read each live logger's :class:`Health` when a metric reader
collects, on the reader's thread: the request path pays nothing, and with no
MeterProvider installed the API's instruments are no-ops that never call back.
Figures of several loggers with the same model name are added up (the fill ratio takes
the fullest), since an observable instrument keeps one value per attribute set.
"""

from __future__ import annotations

import operator
import threading
import weakref
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation, get_meter

from predlog.metrics._health import OUTCOMES, Health, HealthSource

_Attributes = tuple[tuple[str, str], ...]
_Extract = Callable[[Health], Iterable[tuple[_Attributes, float]]]

_tracked: weakref.WeakSet[HealthSource] = weakref.WeakSet()
_lock = threading.Lock()
_default_done = False


def track(source: HealthSource) -> None:
    """Report ``source`` through the instruments while it lives; the first call also
    creates them on the global ``get_meter("predlog")``."""
    global _default_done  # noqa: PLW0603  # the global meter is instrumented once per process
    _tracked.add(source)
    with _lock:
        if _default_done:
            return
        _default_done = True
    instrument(get_meter("predlog"))


def _healths() -> list[Health]:
    return [source.health() for source in list(_tracked) if not source.closed]


def _callback(
    extract: _Extract, *, fold: Callable[[float, float], float] = operator.add
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        values: dict[_Attributes, float] = {}
        for health in _healths():
            for attributes, value in extract(health):
                previous = values.get(attributes)
                values[attributes] = value if previous is None else fold(previous, value)
        return [Observation(value, dict(attributes)) for attributes, value in values.items()]

    return observe


def _records(h: Health) -> Iterable[tuple[_Attributes, float]]:
    for outcome in OUTCOMES:
        yield (("model", h.model), ("outcome", outcome)), h.records.get(outcome, 0)


def _errors(h: Health) -> Iterable[tuple[_Attributes, float]]:
    for kind, count in h.errors.items():
        yield (("model", h.model), ("kind", kind)), count


def _sink_records(h: Health) -> Iterable[tuple[_Attributes, float]]:
    for name, sink in h.sinks.items():
        yield (("model", h.model), ("sink", name), ("outcome", "delivered")), sink.delivered
        yield (("model", h.model), ("sink", name), ("outcome", "failed")), sink.failed


def _spool_bytes(h: Health) -> Iterable[tuple[_Attributes, float]]:
    for name, sink in h.sinks.items():
        if "spool_bytes" in sink.figures:
            yield (("model", h.model), ("sink", name)), sink.figures["spool_bytes"]


def _per_model(figure: Callable[[Health], float]) -> _Extract:
    return lambda h: [((("model", h.model),), figure(h))]


def instrument(meter: Meter) -> None:
    """Create predlog's observable instruments on ``meter``; they report every live logger.

    Called once on the global meter by the first logger; call it with a meter of your
    own MeterProvider to report there instead (or as well).
    """
    meter.create_observable_counter(
        "predlog.records.captured",
        [_callback(_per_model(lambda h: h.records.get("captured", 0)))],
        unit="{record}",
        description="Predictions captured by log().",
    )
    meter.create_observable_counter(
        "predlog.records",
        [_callback(_records)],
        unit="{record}",
        description="Captured records by outcome; captured = sum over outcomes + pending.",
    )
    meter.create_observable_counter(
        "predlog.errors", [_callback(_errors)], description="Errors predlog caught, by kind."
    )
    meter.create_observable_up_down_counter(
        "predlog.records.pending",
        [_callback(_per_model(lambda h: h.records.get("pending", 0)))],
        unit="{record}",
        description="Records in the ring or in the flusher's hands.",
    )
    meter.create_observable_gauge(
        "predlog.ring.fill_ratio",
        [_callback(_per_model(lambda h: h.ring_fill_ratio), fold=max)],
        unit="1",
        description="Fullest ring, 0 to 1; at 1 new captures are dropped.",
    )
    meter.create_observable_counter(
        "predlog.sink.records",
        [_callback(_sink_records)],
        unit="{record}",
        description="Records per sink by outcome.",
    )
    meter.create_observable_up_down_counter(
        "predlog.spool.bytes",
        [_callback(_spool_bytes)],
        unit="By",
        description="Bytes a sink holds on disk for later delivery.",
    )
    _instrument_batches(meter)


def _instrument_batches(meter: Meter) -> None:
    meter.create_observable_counter(
        "predlog.flusher.batches",
        [_callback(_per_model(lambda h: h.batches.count))],
        unit="{batch}",
        description="Batches the flusher drained.",
    )
    meter.create_observable_counter(
        "predlog.flusher.batch.duration",
        [_callback(_per_model(lambda h: h.batches.sum))],
        unit="s",
        description="Total seconds from a batch's build start to its last sink's return.",
    )
