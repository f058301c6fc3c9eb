"""One prediction's trace, from Jaeger's query API, as rows for a span waterfall.

``GET {jaeger}/api/traces/{trace_id}`` is the API Jaeger's own UI reads; the query
service answers it with or without the UI assets. Fetching never raises: the page the
trace is for renders anyway and says in one line why the trace is missing.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

#: Span attributes that describe the prediction rather than the transport.
PREDICTION_PREFIXES = ("predlog.", "ml.", "http.request.header.x-request-id")


@dataclass(frozen=True)
class Span:
    """One span, placed on the trace's timeline (microseconds from the trace's start)."""

    service: str
    name: str
    depth: int
    offset_us: int
    duration_us: int
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def prediction_attributes(self) -> dict[str, Any]:
        return {k: v for k, v in self.attributes.items() if k.startswith(PREDICTION_PREFIXES)}


@dataclass(frozen=True)
class Trace:
    """The spans of a trace in timeline order, or why there are none (``problem``)."""

    trace_id: str
    spans: list[Span] = field(default_factory=list)
    problem: str | None = None

    @property
    def duration_us(self) -> int:
        return max((s.offset_us + s.duration_us for s in self.spans), default=0)


def fetch_trace(jaeger_url: str | None, trace_id: str | None, timeout: float = 5.0) -> Trace:
    """The trace from Jaeger's API; on any failure a ``Trace`` whose ``problem`` says why."""
    if not trace_id:
        return Trace("", problem="the record has no trace id")
    if not jaeger_url:
        return Trace(trace_id, problem="no Jaeger URL: set PREDLOG_JAEGER_URL to show the trace")
    url = f"{jaeger_url.rstrip('/')}/api/traces/{trace_id}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310  # http(s) URL from settings
            body = json.loads(response.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return Trace(trace_id, problem=f"trace {trace_id} not found in Jaeger at {jaeger_url}")
        return Trace(trace_id, problem=f"Jaeger at {jaeger_url} answered HTTP {e.code}")
    except (OSError, ValueError) as e:
        return Trace(trace_id, problem=f"Jaeger at {jaeger_url} is unreachable ({e})")
    data = body.get("data") if isinstance(body, dict) else None
    if not data:
        return Trace(trace_id, problem=f"trace {trace_id} not found in Jaeger at {jaeger_url}")
    return Trace(trace_id, spans=_spans(data[0]))


def _spans(trace: dict[str, Any]) -> list[Span]:
    """Jaeger's spans, parents before children, siblings by start time."""
    raw = trace.get("spans", [])
    processes = trace.get("processes", {})
    ids = {s["spanID"] for s in raw}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in raw:
        parents = [r["spanID"] for r in s.get("references", []) if r.get("spanID") in ids]
        children.setdefault(parents[0] if parents else None, []).append(s)
    start = min((s["startTime"] for s in raw), default=0)
    out: list[Span] = []

    def visit(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s["startTime"]):
            out.append(
                Span(
                    service=processes.get(s.get("processID"), {}).get("serviceName", "?"),
                    name=s["operationName"],
                    depth=depth,
                    offset_us=s["startTime"] - start,
                    duration_us=s["duration"],
                    attributes={t["key"]: t["value"] for t in s.get("tags", [])},
                )
            )
            visit(s["spanID"], depth + 1)

    visit(None, 0)
    return out
