"""AuditSink: regulated decisions from the flusher into the audit log.

A record is audited when the handler said so (``predlog.record(audit=True, ...)``),
or its decision, model or endpoint (path prefix) is configured as regulated. Audited
records are never sampled away (the sampler keeps them as their own stratum) and
never dropped silently.

When the audit store fails, the configured policy applies, and both keep counters:

* ``queue`` (default): entries wait in a bounded, checksummed disk queue and are
  appended, in order, once the store works again. A full queue raises, and the
  flusher counts the records as failed.
* ``reject``: the sink stops accepting, and the middleware answers regulated requests
  with 503 until an append succeeds again: no decision is made that cannot be audited.

The constructor only checks its options. ``open()`` (called by the logger before its
flusher starts, or by the first ``export()`` or ``flush()`` of a sink used on its own)
opens the audit log and the queue, once. A log that cannot be written here (another
process writes it, its last segment is damaged, its directory cannot be made) is a
:class:`~predlog.ConfigError` naming ``audit_dir``, which refuses the start: a service
must not take regulated decisions it cannot audit. ``close()`` is safe twice; a sink
opened and dropped without it warns with :class:`ResourceWarning`.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from predlog.audit._canonical import CanonicalError, canonical
from predlog.audit._log import AuditLog
from predlog.audit._reasons import ReasonTable
from predlog.audit._store import UnreadableError
from predlog.errors import ConfigError, SinkError
from predlog.storage import Spool, SpoolFullError

if TYPE_CHECKING:
    import pyarrow as pa

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _names(setting: str, values: Iterable[str]) -> tuple[str, ...]:
    """A setting that lists names. A single string is refused: it would be taken
    letter by letter, and ``decisions="declined"`` would audit nothing."""
    if isinstance(values, (str, bytes)):
        raise ConfigError(setting, f"must be a list of names, not the one string {values!r}")
    names = tuple(values)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(setting, f"every name must be a non-empty string, got {name!r}")
    return names


def _label(setting: str, value: str) -> str:
    """A label written into every entry: an empty one would say nothing."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(setting, f"must be a non-empty string, got {value!r}")
    return value


def _encodable(
    entries: Iterable[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[CanonicalError]]:
    """The entries ``append`` will take, and why the others have no canonical form.

    An entry refused for its content is not a store failure: queueing it would retry it
    forever ahead of every entry after it, and ``reject`` would refuse service over it.
    """
    kept: list[dict[str, Any]] = []
    refused: list[CanonicalError] = []
    for entry in entries:
        try:
            canonical(entry)
        except CanonicalError as exc:
            refused.append(exc)
        else:
            kept.append(entry)
    return kept, refused


def _seconds(setting: str, value: float) -> float:
    """An interval in seconds; 0 means at every chance, a negative one means nothing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(setting, f"must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(setting, f"must be 0 or more seconds, got {value!r}")
    return float(value)


class AuditSink:
    """Writes audited prediction records to an :class:`AuditLog`.

    Every option is checked before anything is created: a malformed one is a
    ConfigError naming it.
    """

    # Class-level, so that __del__ of an instance whose constructor refused reads them.
    _queue: Spool | None = None
    _closed = False

    def __init__(
        self,
        log: AuditLog,
        *,
        reasons: ReasonTable,
        decisions: Iterable[str] = ("declined",),
        models: Iterable[str] = (),
        paths: Iterable[str] = (),
        adverse_decisions: Iterable[str] = ("declined",),
        jurisdiction: str = "US",
        regulatory_category: str = "credit",
        failure_policy: str = "queue",
        queue_dir: str | Path | None = None,
        queue_max_bytes: int = 256 << 20,
        retry_interval_s: float = 2.0,
        checkpoint_interval_s: float = 60.0,
    ) -> None:
        if failure_policy not in ("queue", "reject"):
            raise ConfigError("failure_policy", f"must be queue or reject, got {failure_policy!r}")
        if isinstance(queue_max_bytes, bool) or not isinstance(queue_max_bytes, int):
            raise ConfigError("queue_max_bytes", f"must be an integer, got {queue_max_bytes!r}")
        if queue_max_bytes <= 0:
            raise ConfigError("queue_max_bytes", f"must be positive, got {queue_max_bytes}")
        self.log = log
        self._reasons = reasons
        self._decisions = frozenset(_names("decisions", decisions))
        self._models = frozenset(_names("models", models))
        self._paths = _names("paths", paths)
        self._adverse = frozenset(_names("adverse_decisions", adverse_decisions))
        self._jurisdiction = _label("jurisdiction", jurisdiction)
        self._category = _label("regulatory_category", regulatory_category)
        self._retry_interval_s = _seconds("retry_interval_s", retry_interval_s)
        self._checkpoint_interval_s = _seconds("checkpoint_interval_s", checkpoint_interval_s)
        self.policy = failure_policy
        self._queue_dir = Path(queue_dir) if queue_dir is not None else Path(log.path) / "queue"
        self._queue_max_bytes = queue_max_bytes
        self._last_checkpoint = time.monotonic()
        self._last_try = 0.0
        self._lock = threading.Lock()
        #: False while the store is failing under the ``reject`` policy.
        self.accepting = True
        self.appended = 0
        self.queued = 0
        self.failures = 0
        #: Audited records refused for having no RFC 8785 form (never queued: no retry
        #: could make them appendable, and they would block the queue behind them).
        self.unencodable = 0

    def open(self) -> None:
        """Open the audit log (its writer lock) and the disk queue; once (a closed sink
        stays closed). A log that cannot be written here is a ConfigError naming
        ``audit_dir``."""
        with self._lock:
            if self._queue is not None or self._closed:
                return
            try:
                self.log.open()
            except (UnreadableError, OSError) as exc:
                raise ConfigError("audit_dir", f"cannot write the audit log: {exc}") from exc
            try:
                self._queue = Spool(self._queue_dir, max_bytes=self._queue_max_bytes)
            except BaseException as exc:
                # The start is refused: the log's writer lock must not outlive it (a
                # logger made again in this process would find the log held).
                self.log.close()
                if isinstance(exc, OSError):
                    raise ConfigError("audit_dir", f"cannot write the audit log: {exc}") from exc
                raise

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if self._queue is not None and not self._closed:
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)

    def wants(self, decision: Any, model_name: Any, extra: Mapping[str, Any] | None) -> bool:
        """Whether a record is audited (called by the sampler, per record)."""
        if extra:
            if extra.get("audit") is True:
                return True
            path = extra.get("http_path")
            if self._paths and isinstance(path, str) and path.startswith(self._paths):
                return True
        return decision in self._decisions or model_name in self._models

    def export(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise SinkError("AuditSink is closed")
        self.open()
        import pyarrow as pa  # noqa: PLC0415  # the batch is pyarrow's already

        # Microseconds, not datetimes: pyarrow turns a zoned timestamp into Python
        # through pandas, which would load it (40 MiB) into the server for this alone.
        at = batch.schema.get_field_index("timestamp_utc")
        rows = batch.set_column(at, "timestamp_utc", batch.column(at).cast(pa.int64()))
        entries, refused = _encodable(
            self._entry(row) for row in rows.to_pylist() if self._selected(row)
        )
        with self._lock:
            self.unencodable += len(refused)
            self._append_or_queue(entries)
        if refused:
            raise SinkError(
                f"{len(refused)} audited record(s) have no canonical JSON form and were not "
                f"audited; the first: {refused[0]}"
            ) from refused[0]

    def _append_or_queue(self, entries: list[dict[str, Any]]) -> None:
        """Append under the failure policy (the caller holds the lock)."""
        self._replay_queue()
        if not entries:
            return
        if self._queue:
            self._enqueue(entries)  # keep order behind what is already waiting
            return
        try:
            self.log.append_many(entries)
        except Exception as exc:  # the store failed: apply the policy
            self.failures += 1
            if self.policy == "reject":
                self.accepting = False
                raise SinkError(f"audit store failed: {exc!r}") from exc
            self._enqueue(entries)
        else:
            self.appended += len(entries)
            self.accepting = True

    def tick(self, now: float) -> None:
        """Retry the queue, probe the store while refusing, and sign a checkpoint every
        ``checkpoint_interval_s`` (``now`` is ``time.monotonic()``)."""
        with self._lock:
            if self._queue is None:
                return  # not open: nothing waits, nothing to sign
            self._replay_queue()
            self._probe()
            if now - self._last_checkpoint >= self._checkpoint_interval_s:
                self._checkpoint()

    def _probe(self) -> None:
        """Under ``reject``, while refusing: every ``retry_interval_s``, sign a checkpoint
        to learn whether the store writes again. Nothing else would tell: no decision is
        made while refusing, so no append comes to succeed (the caller holds the lock)."""
        if self.accepting or self.policy != "reject":
            return
        now = time.monotonic()
        if now - self._last_try < self._retry_interval_s:
            return
        self._last_try = now
        try:
            self.log.checkpoint()
        except Exception:  # noqa: BLE001  # still failing: keep refusing, try again later
            self.failures += 1
            return
        self.accepting = True

    def flush(self) -> None:
        """Append what is queued and sign a checkpoint covering every entry."""
        if self._closed:
            return
        self.open()
        with self._lock:
            self._replay_queue(force=True)
            self._checkpoint()

    def _checkpoint(self) -> None:
        self._last_checkpoint = time.monotonic()
        latest = self.log.latest_checkpoint()
        if self.log.size and (latest is None or latest.size < self.log.size):
            self.log.checkpoint()

    def close(self) -> None:
        """Flush (when opened), then close the log. Safe twice."""
        if self._closed:
            return
        try:
            if self._queue is not None:
                self.flush()
        finally:
            self._closed = True
            self.log.close()

    def _selected(self, row: Mapping[str, Any]) -> bool:
        extra = json.loads(row["extra"]) if row.get("extra") else None
        return self.wants(row.get("decision"), row.get("model_name"), extra)

    def _enqueue(self, entries: list[dict[str, Any]]) -> None:
        assert self._queue is not None  # export() opened the sink
        try:
            self._queue.append([(b"", json.dumps(e).encode()) for e in entries])
        except SpoolFullError as exc:
            raise SinkError(f"audit store failing and its queue is full: {exc}") from exc
        self.queued += len(entries)

    def _replay_queue(self, *, force: bool = False) -> None:
        if not self._queue:  # not open, or nothing waits
            return
        now = time.monotonic()
        if not force and now - self._last_try < self._retry_interval_s:
            return
        self._last_try = now
        self._queue.seal()
        for segment in self._queue.segments():
            entries = [json.loads(value) for _, value in self._queue.read(segment)]
            try:
                if entries:
                    self.log.append_many(entries)
            except Exception:  # noqa: BLE001  # still failing: keep the queue, try later
                self.failures += 1
                return
            self.appended += len(entries)
            self._queue.remove(segment)
        self.accepting = True

    def _entry(self, row: Mapping[str, Any]) -> dict[str, Any]:
        extra = json.loads(row["extra"]) if row.get("extra") else {}
        explanation_in = extra.get("explanation") or {}
        contributions = explanation_in.get("contributions") or {}
        decision = row.get("decision")
        entry: dict[str, Any] = {
            "audit_id": str(uuid.uuid4()),
            "prediction_id": str(row["prediction_id"]),
            "request_id": row.get("request_id"),
            "timestamp": (_EPOCH + timedelta(microseconds=row["timestamp_utc"])).isoformat(),
            "model_name": row.get("model_name"),
            "model_version": row.get("model_version"),
            "raw_score": row.get("raw_score"),
            "decision": decision,
            "decision_threshold": row.get("decision_threshold"),
            "features": json.loads(row["features"]) if row.get("features") else None,
            "explanation": (
                self._reasons.explanation(
                    contributions, method=explanation_in.get("method", "unknown")
                )
                if contributions
                else None
            ),
            "adverse_action_reasons": (
                self._reasons.adverse_reasons(contributions)
                if decision in self._adverse and contributions
                else []
            ),
            "jurisdiction": extra.get("jurisdiction", self._jurisdiction),
            "regulatory_category": extra.get("regulatory_category", self._category),
            "data_quality": row.get("data_quality") or [],
        }
        return entry

    def stats(self) -> dict[str, Any]:
        return {
            "appended": self.appended,
            "queued": self.queued,
            "queue_bytes": 0 if self._queue is None else self._queue.size,
            "failures": self.failures,
            "checkpoint_failures": self.log.checkpoint_failures,
            "unencodable": self.unencodable,
            "accepting": self.accepting,
        }
