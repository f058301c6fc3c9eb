"""``predlog sink``'s own figures as prometheus_client metrics, and the server that shows them.

The metric objects are created once per process on the default registry and advanced
only by the consumer loop, once per committed batch (never per message), whichever
destination it writes to (the Parquet layout or an Iceberg table). Each
:class:`ConsumerMetrics` advances its counters by what changed since its last update,
so a second consumer in the same process (a test, a restart in place) counts on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Protocol

from prometheus_client import Counter, Gauge, start_http_server

from predlog.metrics._once import OncePerProcess

#: The ``outcome`` label of ``predlog_sink_consumer_records_total``, by stats field.
OUTCOMES = {"written": "written", "duplicates": "duplicate", "undecodable": "undecodable"}


class ConsumerTotals(Protocol):
    """The running totals the consumer keeps (``predlog.tools.sink.ConsumerStats``)."""

    consumed: int
    written: int
    duplicates: int
    undecodable: int
    files: int
    commits: int


@dataclass(frozen=True)
class _Metrics:
    consumed: Counter
    records: Counter
    files: Counter
    commits: Counter
    lag: Gauge
    last_commit: Gauge


def _create() -> _Metrics:
    labels = ("topic", "group")
    return _Metrics(
        consumed=Counter(
            "predlog_sink_consumer_records_consumed",
            "Kafka messages the sink consumer took from the topic.",
            labels,
        ),
        records=Counter(
            "predlog_sink_consumer_records",
            "Consumed messages by outcome: written, duplicate dropped, undecodable.",
            (*labels, "outcome"),
        ),
        files=Counter(
            "predlog_sink_consumer_files_published",
            "Data files published (the Parquet layout's, or committed to the table).",
            labels,
        ),
        commits=Counter(
            "predlog_sink_consumer_commits",
            "Batches committed where the consumer resumes from, each after it was durable.",
            labels,
        ),
        lag=Gauge(
            "predlog_sink_consumer_lag_records",
            "Messages on the broker past the last commit, in the partitions read.",
            labels,
        ),
        last_commit=Gauge(
            "predlog_sink_consumer_last_commit_timestamp_seconds",
            "Unix time of the last commit.",
            labels,
        ),
    )


#: The metric objects, registered on the default registry the first time only.
_process_metrics: Final = OncePerProcess(_create)


class ConsumerMetrics:
    """Publishes one consumer's totals; call :meth:`committed` after each offset commit."""

    def __init__(self, *, topic: str, group: str) -> None:
        self._m = _process_metrics()
        self._labels = (topic, group)
        self._seen: dict[str, int] = {}
        self.committed(_Zero(), None)

    def committed(self, totals: ConsumerTotals, lag: int | None) -> None:
        """Advance every counter to ``totals``; set the lag (``None``: unknown) and commit time."""
        m, labels = self._m, self._labels
        self._advance(m.consumed.labels(*labels), "consumed", totals.consumed)
        for field, outcome in OUTCOMES.items():
            self._advance(m.records.labels(*labels, outcome), field, getattr(totals, field))
        self._advance(m.files.labels(*labels), "files", totals.files)
        self._advance(m.commits.labels(*labels), "commits", totals.commits)
        if lag is not None:
            m.lag.labels(*labels).set(lag)
        if totals.commits:
            m.last_commit.labels(*labels).set(time.time())

    def _advance(self, counter: Counter, field: str, total: int) -> None:
        delta = total - self._seen.get(field, 0)
        if delta > 0 or field not in self._seen:
            counter.inc(max(delta, 0))
        self._seen[field] = total


class _Zero:
    consumed = written = duplicates = undecodable = files = commits = 0


class MetricsServer:
    """prometheus_client's HTTP server for the default registry, stopped by :meth:`close`."""

    def __init__(self, *, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
