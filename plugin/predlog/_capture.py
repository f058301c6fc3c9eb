"""The shape of a captured prediction, as it sits in the ring.

A capture is a plain tuple because building one is the only work the request path
does: a tuple literal costs a few dozen nanoseconds, a dataclass or NamedTuple
several times that. Its positions are named here once; :mod:`predlog._logger`
builds captures and :mod:`predlog.flush._batch` unpacks them, both from this order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

#: Position of each value in a capture tuple.
CAPTURE_FIELDS: Final = (
    "timestamp_ns",
    "request_id",
    "features",
    "score",
    "decision",
    "threshold",
    "session_id",
    "user_segment",
    "channel",
    "geographic_region",
    "model_name",
    "model_version",
    "feature_store_snapshot_id",
    "feature_freshness_max_age_seconds",
    "feature_timestamps",
    "feature_fetch_ms",
    "inference_ms",
    "total_ms",
    "extra",
    "trace_id",
    "span_id",
    "flags",
)

Capture = tuple[Any, ...]

#: Where each value sits, derived from the order above, so nobody counts by hand.
POSITION: Final[dict[str, int]] = {name: i for i, name in enumerate(CAPTURE_FIELDS)}
FEATURES: Final = POSITION["features"]
SCORE: Final = POSITION["score"]
DECISION: Final = POSITION["decision"]
TOTAL_MS: Final = POSITION["total_ms"]
EXTRA: Final = POSITION["extra"]
TRACE_ID: Final = POSITION["trace_id"]
SPAN_ID: Final = POSITION["span_id"]
FLAGS: Final = POSITION["flags"]


def epoch_ns(timestamp: float | datetime) -> int:
    """A caller's timestamp (epoch seconds, or a datetime) as the capture's nanoseconds."""
    if isinstance(timestamp, datetime):
        return int(timestamp.timestamp() * 1e9)
    return int(timestamp * 1e9)


def untracker() -> Callable[[Capture], Capture] | None:
    """The extension's function that takes a capture out of the cyclic garbage
    collector's sight before it goes into the ring, or None without the extension.

    Nothing refers to a capture but the ring and the flusher's batch, and it refers to
    nothing that refers back, so it can never be part of a cycle. Tracked, every
    capture waiting in the ring is walked by each collection and promoted into the old
    generation, whose growth sets off full collections of the whole application. CPython
    untracks a tuple of untracked values by itself; a middleware capture holds its
    exchange, so it never would. Called when a logger is made, in the process that
    logs: importing the extension with this module would map it into processes that
    only import the service (BentoML's arbiter).
    """
    try:
        from predlog._rust import untracked  # noqa: PLC0415  # see the docstring
    except ImportError:  # not built: no Rust toolchain where predlog was installed
        return None
    return untracked
