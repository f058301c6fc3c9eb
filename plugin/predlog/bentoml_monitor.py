"""A ``bentoml.monitor`` backend that puts the monitored fields into predlog's records.

A service that already calls ``bentoml.monitor(...)`` needs only a configuration
change: the monitoring type names :class:`PredlogMonitor`, and each
``with bentoml.monitor("fraud") as mon: mon.log(...)`` block inside a request ends in
one ``predlog.record(...)`` on that request's record::

    @bentoml.service(monitoring={
        "enabled": True,
        "type": "predlog.bentoml_monitor.PredlogMonitor",
        "options": {"score_column": "probability"},
    })

Where a logged column goes, by its role: ``feature`` columns become features (merged
with the features the body or the handler gave); a ``prediction`` column becomes the
score when it is ``numerical`` and a number, the decision otherwise (text, a class, a
flag); columns of any other role (``target``, or a role of your own) go to the record's
``extra`` map. The monitor's name is kept in ``extra`` as ``bentoml_monitor``.

This module owns that mapping and nothing else: it never writes a record itself. It
runs inside the request, so nothing here may raise into it or wait: every failure is
counted and logged at a bounded rate, and a block that runs outside a request logged
by predlog's middleware (no record to join) is counted as ``outside_request``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from bentoml._internal.configuration import (
    get_bentoml_config_file_from_env,
    get_bentoml_override_config_json_from_env,
)
from bentoml._internal.configuration.containers import BentoMLConfiguration
from bentoml._internal.monitoring.base import MonitorBase

from predlog._capture import POSITION
from predlog._context import current_fields, record
from predlog._counter import AtomicCounter
from predlog._report import ErrorReporter
from predlog.errors import ConfigError

__all__ = [
    "MonitorOptions",
    "PredlogMonitor",
    "check_monitoring",
    "check_service",
    "fields_from_columns",
]

#: What ``monitoring.type`` names to select this backend.
MONITOR_TYPE: Final = "predlog.bentoml_monitor.PredlogMonitor"
#: The ``extra`` key holding the monitor's name.
MONITOR_NAME_KEY: Final = "bentoml_monitor"
#: Names predlog.record() gives a place of their own: a column of another role with one
#: of these names is renamed with a trailing "_" (BentoML's own rule for reserved
#: columns) instead of silently setting, say, the threshold.
_RESERVED: Final = frozenset(POSITION) | {MONITOR_NAME_KEY}
_OPTION_PREFIX: Final = "monitoring.options"
#: Options of BentoML's default monitor. BentoML's default configuration sets them and
#: merges a service's own ``monitoring.options`` over them, so every monitor receives
#: them; they mean nothing here and are ignored.
_DEFAULT_MONITOR_OPTIONS: Final = frozenset({"log_config_file", "log_path"})

#: One column as logged in one record: (role, data_type, values).
Column = tuple[str, str, list[Any]]


@dataclass(frozen=True)
class MonitorOptions:
    """``monitoring.options``, checked: which roles go where, which column is which."""

    #: Roles whose columns become features.
    feature_roles: tuple[str, ...] = ("feature",)
    #: Roles whose columns become the score or the decision.
    prediction_roles: tuple[str, ...] = ("prediction",)
    #: The prediction column that is the score; by default the first numerical one.
    score_column: str | None = None
    #: The prediction column that is the decision; by default the first other one.
    decision_column: str | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> MonitorOptions:
        """Checked options; :class:`~predlog.ConfigError` names the first bad one."""
        known = ("feature_roles", "prediction_roles", "score_column", "decision_column")
        for name in options:
            if name not in known and name not in _DEFAULT_MONITOR_OPTIONS:
                raise ConfigError(
                    f"{_OPTION_PREFIX}.{name}", f"unknown option (known: {', '.join(known)})"
                )
        feature_roles = _roles(options, "feature_roles", cls.feature_roles)
        prediction_roles = _roles(options, "prediction_roles", cls.prediction_roles)
        both = sorted(set(feature_roles) & set(prediction_roles))
        if both:
            raise ConfigError(
                f"{_OPTION_PREFIX}.prediction_roles",
                f"role {both[0]!r} is also in feature_roles; a column goes to one place",
            )
        return cls(
            feature_roles=feature_roles,
            prediction_roles=prediction_roles,
            score_column=_column(options, "score_column"),
            decision_column=_column(options, "decision_column"),
        )


def _roles(options: Mapping[str, Any], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = options.get(name, default)
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"{_OPTION_PREFIX}.{name}", f"a list of role names, not {value!r}")
    roles = tuple(value)
    if not roles or not all(isinstance(r, str) and r for r in roles):
        raise ConfigError(
            f"{_OPTION_PREFIX}.{name}", f"a non-empty list of role names, not {value!r}"
        )
    return roles


def _column(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{_OPTION_PREFIX}.{name}", f"a column name, not {value!r}")
    return value


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as the Python values predlog's JSON encoding takes."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return item()
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _one(values: list[Any]) -> Any:
    """A column logged once is its value; logged several times (``log_batch``), a list."""
    return values[0] if len(values) == 1 else values


def _prediction(
    name: str, data_type: str, value: Any, options: MonitorOptions, fields: dict[str, Any]
) -> bool:
    """Put one prediction column in ``fields`` as score or decision; False if it is neither."""
    if options.score_column is not None or options.decision_column is not None:
        if name == options.score_column and _is_number(value):
            fields["score"] = float(value)
            return True
        if name == options.decision_column:
            fields["decision"] = _decision(value)
            return True
        return False
    if data_type == "numerical" and _is_number(value):
        if "score" in fields:
            return False
        fields["score"] = float(value)
        return True
    if "decision" in fields or value is None or isinstance(value, (list, dict)):
        return False
    fields["decision"] = _decision(value)
    return True


def _decision(value: Any) -> str:
    """A decision as text; a flag as JSON spells it (``true``), as a body's would be."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def fields_from_columns(
    monitor_name: str, columns: Mapping[str, Column], options: MonitorOptions
) -> dict[str, Any]:
    """The ``predlog.record()`` keyword arguments for one monitor record.

    ``columns`` maps each logged name to its role, data type and values, in logging
    order. A NaN score is passed on: predlog's own check nulls it and says why.
    """
    features: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {MONITOR_NAME_KEY: monitor_name}
    for name, (role, data_type, values) in columns.items():
        value = _one([_plain(v) for v in values])
        if role in options.feature_roles:
            features[name] = value
        elif role in options.prediction_roles and _prediction(
            name, data_type, value, options, fields
        ):
            continue
        else:
            extra[f"{name}_" if name in _RESERVED else name] = value
    if features:
        fields["features"] = features
    return {**extra, **fields}


def check_service(service: Any) -> None:
    """Raise :class:`~predlog.ConfigError` if a BentoML service's monitoring, as BentoML
    will resolve it when serving, selects this monitor with malformed options.

    BentoML makes a monitor only when the first ``bentoml.monitor(...)`` block runs,
    inside a request; :func:`predlog.instrument` calls this when the service is defined
    so that a bad option stops ``bentoml serve`` at start-up instead.
    """
    check_monitoring(_resolved_monitoring(service))


def check_monitoring(monitoring: Any) -> None:
    """:func:`check_service` on one ``monitoring`` config section."""
    if not isinstance(monitoring, Mapping) or not monitoring.get("enabled", True):
        return
    kind = monitoring.get("type")
    if not isinstance(kind, str) or kind.replace(":", ".") != MONITOR_TYPE:
        return
    MonitorOptions.parse(monitoring.get("options") or {})


def _resolved_monitoring(service: Any) -> Any:
    """The service's ``monitoring`` section as BentoML will serve it: BentoML's defaults,
    the ``BENTOML_CONFIG`` file and its JSON override, then the service's own config.

    BentoML merges these only when it builds the app, after the service module (and so
    :func:`predlog.instrument`) has run; this does the same merge, without touching
    BentoML's global configuration.
    """
    own = service.config or {}
    try:
        resolved = BentoMLConfiguration(
            override_config_file=get_bentoml_config_file_from_env(),
            override_defaults={"services": {service.name: own or {"workers": 1}}},
            override_config_json=get_bentoml_override_config_json_from_env(),
            use_version=2,
        ).to_dict()
        return resolved["services"][service.name].get("monitoring")
    except Exception:  # noqa: BLE001  # BentoML reports its own configuration errors
        return own.get("monitoring")


class PredlogMonitor(MonitorBase[Any]):
    """BentoML monitor backend: each ``bentoml.monitor`` block joins the current
    request's predlog record.

    BentoML makes one instance per monitor name and calls :meth:`start_record`,
    :meth:`log` (or :meth:`log_batch`) and :meth:`stop_record` around each block.
    The block's columns are kept in a context variable of this instance, so concurrent
    requests (tasks or worker threads) and nested monitors never mix.
    """

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name)
        self.options = MonitorOptions.parse(options)
        self._columns: ContextVar[dict[str, Column] | None] = ContextVar(
            f"predlog_monitor_{name}", default=None
        )
        self._recorded = AtomicCounter()
        self._outside_request = AtomicCounter()
        self._outside_block = AtomicCounter()
        self._failed = AtomicCounter()
        self._errors = ErrorReporter()

    def start_record(self) -> None:
        """A fresh set of columns for this block (BentoML calls it on entering ``with``)."""
        self._columns.set({})

    def log(self, data: Any, name: str, role: str, data_type: str) -> None:
        """Keep one value of a column; nothing is decoded or sent until the block ends."""
        columns = self._columns.get()
        if columns is None:
            self._outside_block.incr()
            return
        try:
            column = columns.get(name)
            if column is None:
                columns[name] = (role, data_type, [data])
            else:
                column[2].append(data)
        except Exception as exc:  # noqa: BLE001  # an unhashable name must not fail the request
            self._failed.incr()
            self._errors.report(
                "bentoml_monitor_failed", f"monitor {self.name!r}: {exc!r}", exc=exc
            )

    def stop_record(self) -> None:
        """Join the block's columns to the current request's record (on leaving ``with``)."""
        columns = self._columns.get()
        self._columns.set(None)
        if not columns:
            return
        try:
            fields = fields_from_columns(self.name, columns, self.options)
            current = current_fields()
            features = fields.get("features")
            if current is not None and isinstance(features, dict):
                # record() replaces a field: merge with features the handler recorded.
                earlier = current.get("features")
                if isinstance(earlier, Mapping):
                    fields["features"] = {**earlier, **features}
            joined = record(**fields)
        except Exception as exc:  # noqa: BLE001  # the request must not fail for a monitor
            self._failed.incr()
            self._errors.report(
                "bentoml_monitor_failed", f"monitor {self.name!r}: {exc!r}", exc=exc
            )
            return
        if joined:
            self._recorded.incr()
            return
        self._outside_request.incr()
        self._errors.report(
            "bentoml_monitor_outside_request",
            f"monitor {self.name!r} ran outside a request logged by predlog's middleware; "
            "its fields were not recorded (is predlog.instrument on this service?)",
        )

    def export_schema(self, columns_schema: dict[str, dict[str, str]]) -> None:
        """Nothing to do: a record's columns carry their roles, every time."""

    def export_data(self, datas: dict[str, collections.deque[Any]]) -> None:
        """Nothing to do: :meth:`stop_record` records each block directly."""

    def stats(self) -> dict[str, int]:
        """Blocks recorded, blocks with no request to join, calls to :meth:`log` outside a
        block, and blocks that failed (each failure is also logged, rate-limited)."""
        return {
            "recorded": self._recorded.value,
            "outside_request": self._outside_request.value,
            "outside_block": self._outside_block.value,
            "failed": self._failed.value,
        }
