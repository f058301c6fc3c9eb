"""A snapshot of one logger's health, and the seam through which exporters are kept current.

:class:`Health` is what every exporter reads: counters by outcome, errors by kind, ring
fill, per-sink figures and flusher batch latency. Building one takes the flusher's
short counts lock at most; it never waits on a sink.

A :class:`HealthSource` is what the exporters read: a live logger, as far as metrics
need to know one. A :class:`HealthObserver` is called by the flusher, after each drain,
flush and idle tick, under its drain lock: never on the request path, and never two at
once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from predlog.metrics._latency import LatencySnapshot

#: Where a captured record ends up; ``captured == sum(outcomes) + pending``.
OUTCOMES: tuple[str, ...] = ("sampled_out", "delivered", "dropped", "failed")


@dataclass(frozen=True)
class SinkHealth:
    """One sink: records it took or refused, its errors by kind, its own numeric figures
    (and why there are none, if its ``stats()`` raised)."""

    delivered: int
    failed: int
    errors: Mapping[str, int]
    figures: Mapping[str, float]
    figures_error: str | None = None


@dataclass(frozen=True)
class Health:
    """One logger's figures, as :meth:`predlog.PredictionLogger.health` returns them."""

    model: str
    records: Mapping[str, int]
    errors: Mapping[str, int]
    ring_used: int
    ring_capacity: int
    sinks: Mapping[str, SinkHealth]
    batches: LatencySnapshot

    @property
    def ring_fill_ratio(self) -> float:
        """How full the ring is, 0 to 1: near 1, the next captures will be dropped."""
        return self.ring_used / self.ring_capacity if self.ring_capacity else 0.0

    @classmethod
    def of(
        cls,
        *,
        model: str,
        stats: Mapping[str, int],
        errors: Mapping[str, int],
        ring_used: int,
        ring_capacity: int,
        sink_stats: Mapping[str, Mapping[str, Any]],
        batches: LatencySnapshot,
    ) -> Health:
        """From the logger's ``stats()``, ``errors()`` and ``sink_stats()`` dictionaries."""
        sinks = {
            name: SinkHealth(
                delivered=int(entry.get("delivered", 0)),
                failed=int(entry.get("failed", 0)),
                errors=dict(entry.get("errors", {})),
                figures=_numeric(entry.get("own", {})),
                figures_error=entry.get("own_error"),
            )
            for name, entry in sink_stats.items()
        }
        return cls(model, dict(stats), dict(errors), ring_used, ring_capacity, sinks, batches)


def _numeric(own: Mapping[str, Any]) -> dict[str, float]:
    """A sink's own figures that a metric can carry (flags count as 0 or 1)."""
    return {
        key: float(value)
        for key, value in own.items()
        if isinstance(value, (int, float)) and value == value  # noqa: PLR0124  # drops NaN
    }


class HealthObserver(Protocol):
    """Kept current by the flusher; see the module docstring for when it is called."""

    def update(self) -> None:
        """Read the logger's health and publish it."""

    def close(self) -> None:
        """The logger is closed: withdraw what only a live logger should report."""


class HealthSource(Protocol):
    """What the exporters read from a logger: its health, while it is open. The logger
    wires itself in (:func:`predlog.metrics.attach`); metrics never import it."""

    @property
    def closed(self) -> bool:
        """True once the logger is closed: its figures are no longer reported."""

    def health(self) -> Health:
        """The logger's figures now; never waits on a sink."""
