"""Settings: keyword arguments first, then ``PREDLOG_*`` environment variables, then defaults.

This module owns validation. Every malformed value fails here, at start-up, with a
:class:`~predlog.errors.ConfigError` whose message names the setting as the user
wrote it (the keyword argument, or the environment variable). Nothing here runs on
the request path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, TypeVar

from predlog.errors import ConfigError

T = TypeVar("T")

OVERFLOW_POLICIES: Final = ("drop_newest", "drop_oldest")


class _Missing:
    """Sentinel type: the caller did not pass this argument (``None`` may be meaningful)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()


def _parse_float(text: str) -> float:
    return float(text)


def _parse_int(text: str) -> int:
    return int(text, 10)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_str(text: str) -> str:
    return text


@dataclass(frozen=True)
class _Option:
    """How one setting is named, parsed and checked."""

    name: str
    env: tuple[str, ...]
    parse: Callable[[str], Any]
    check: Callable[[Any], str | None]


def _unit_interval(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {value!r}"
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        return f"must be between 0 and 1, got {value!r}"
    return None


def _positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer, got {value!r}"
    if value <= 0:
        return f"must be positive, got {value!r}"
    return None


def _non_negative_number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {value!r}"
    if not math.isfinite(value) or value < 0:
        return f"must be a finite number >= 0, got {value!r}"
    return None


def _positive_number(value: Any) -> str | None:
    problem = _non_negative_number(value)
    if problem is None and value == 0:
        return f"must be > 0, got {value!r}"
    return problem


def _optional_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    return None


def _non_empty_str(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"must be a non-empty string, got {value!r}"
    return None


def _str_tuple(value: Any) -> str | None:
    if isinstance(value, str) or not isinstance(value, Sequence):
        return f"must be a list of strings, got {value!r}"
    if not all(isinstance(item, str) and item for item in value):
        return f"must be a list of non-empty strings, got {value!r}"
    return None


def _overflow(value: Any) -> str | None:
    if value not in OVERFLOW_POLICIES:
        return f"must be one of {', '.join(OVERFLOW_POLICIES)}, got {value!r}"
    return None


def _bool(value: Any) -> str | None:
    if not isinstance(value, bool):
        return f"must be true or false, got {value!r}"
    return None


def _compression(value: Any) -> str | None:
    if value not in ("lz4", "gzip", "snappy", "zstd", "none"):
        return f"must be one of lz4, gzip, snappy, zstd, none; got {value!r}"
    return None


def _header_name(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"must be a header name, got {value!r}"
    if not all(33 <= ord(ch) <= 126 and ch not in '()<>@,;:\\"/[]?={}' for ch in value):
        return f"must be a valid HTTP header name, got {value!r}"
    return None


def _path(value: Any) -> str | None:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        return f"must be a directory path, got {value!r}"
    return None


_OPTIONS: Final[dict[str, _Option]] = {
    opt.name: opt
    for opt in (
        _Option("model_name", ("PREDLOG_MODEL_NAME",), _parse_str, _non_empty_str),
        _Option("model_version", ("PREDLOG_MODEL_VERSION",), _parse_str, _non_empty_str),
        _Option("model_framework", ("PREDLOG_MODEL_FRAMEWORK",), _parse_str, _optional_str),
        _Option("data_dir", ("PREDLOG_DATA_DIR",), _parse_str, _path),
        _Option(
            "sample_rate",
            ("PREDLOG_SAMPLE_RATE", "PREDICTION_LOG_SAMPLE_RATE"),
            _parse_float,
            _unit_interval,
        ),
        _Option("high_risk_score", ("PREDLOG_HIGH_RISK_SCORE",), _parse_float, _unit_interval),
        _Option(
            "new_version_window_s",
            ("PREDLOG_NEW_VERSION_WINDOW_S",),
            _parse_float,
            _non_negative_number,
        ),
        _Option(
            "decision_threshold",
            ("PREDLOG_DECISION_THRESHOLD",),
            _parse_float,
            _unit_interval,
        ),
        _Option("summary_features", ("PREDLOG_SUMMARY_FEATURES",), _parse_list, _str_tuple),
        _Option("ring_capacity", ("PREDLOG_RING_CAPACITY",), _parse_int, _positive_int),
        _Option("batch_size", ("PREDLOG_BATCH_SIZE",), _parse_int, _positive_int),
        _Option("flush_interval_s", ("PREDLOG_FLUSH_INTERVAL_S",), _parse_float, _positive_number),
        _Option("overflow", ("PREDLOG_OVERFLOW",), _parse_str, _overflow),
        _Option("max_feature_bytes", ("PREDLOG_MAX_FEATURE_BYTES",), _parse_int, _positive_int),
        _Option(
            "install_signal_handlers",
            ("PREDLOG_INSTALL_SIGNAL_HANDLERS",),
            _parse_bool,
            _bool,
        ),
        _Option(
            "parquet_max_file_bytes",
            ("PREDLOG_PARQUET_MAX_FILE_BYTES",),
            _parse_int,
            _positive_int,
        ),
        _Option(
            "parquet_max_file_age_s",
            ("PREDLOG_PARQUET_MAX_FILE_AGE_S",),
            _parse_float,
            _positive_number,
        ),
        _Option("pii_fields", ("PREDLOG_PII_FIELDS",), _parse_list, _str_tuple),
        _Option("pseudonym_key", ("PREDLOG_PSEUDONYM_KEY",), _parse_str, _optional_str),
        _Option("pseudonym_key_id", ("PREDLOG_PSEUDONYM_KEY_ID",), _parse_str, _optional_str),
        _Option("feature_allowlist", ("PREDLOG_FEATURE_ALLOWLIST",), _parse_list, _str_tuple),
        _Option(
            "stale_feature_age_s",
            ("PREDLOG_STALE_FEATURE_AGE_S",),
            _parse_float,
            _positive_number,
        ),
        _Option("operational_log", ("PREDLOG_OPERATIONAL_LOG",), _parse_bool, _bool),
        _Option("kafka_bootstrap", ("PREDLOG_KAFKA_BOOTSTRAP",), _parse_str, _optional_str),
        _Option("kafka_topic", ("PREDLOG_KAFKA_TOPIC",), _parse_str, _optional_str),
        _Option(
            "kafka_spool_max_bytes",
            ("PREDLOG_KAFKA_SPOOL_MAX_BYTES",),
            _parse_int,
            _positive_int,
        ),
        _Option(
            "kafka_delivery_timeout_s",
            ("PREDLOG_KAFKA_DELIVERY_TIMEOUT_S",),
            _parse_float,
            _positive_number,
        ),
        _Option("kafka_compression", ("PREDLOG_KAFKA_COMPRESSION",), _parse_str, _compression),
    )
}

_MIDDLEWARE_OPTIONS: Final[dict[str, _Option]] = {
    opt.name: opt
    for opt in (
        _Option("paths", ("PREDLOG_PATHS",), _parse_list, _str_tuple),
        _Option("exclude_paths", ("PREDLOG_EXCLUDE_PATHS",), _parse_list, _str_tuple),
        _Option("methods", ("PREDLOG_METHODS",), _parse_list, _str_tuple),
        _Option("request_id_header", ("PREDLOG_REQUEST_ID_HEADER",), _parse_str, _header_name),
        _Option("max_body_bytes", ("PREDLOG_MAX_BODY_BYTES",), _parse_int, _positive_int),
        _Option("features_field", ("PREDLOG_FEATURES_FIELD",), _parse_str, _optional_str),
        _Option("score_field", ("PREDLOG_SCORE_FIELD",), _parse_str, _optional_str),
        _Option("decision_field", ("PREDLOG_DECISION_FIELD",), _parse_str, _optional_str),
    )
}


@dataclass(frozen=True)
class Settings:
    """Resolved, validated configuration of one :class:`~predlog.PredictionLogger`.

    Build it with :func:`resolve`; the defaults below are the embedded defaults a
    newcomer gets with no configuration at all.
    """

    model_name: str = "model"
    model_version: str = "unversioned"
    model_framework: str | None = None
    data_dir: str = "./predlog-data"
    sample_rate: float = 1.0
    high_risk_score: float = 0.9
    new_version_window_s: float = 24 * 3600.0
    decision_threshold: float = 0.5
    summary_features: tuple[str, ...] = ()
    ring_capacity: int = 65_536
    batch_size: int = 8_192
    flush_interval_s: float = 1.0
    overflow: str = "drop_newest"
    max_feature_bytes: int = 1 << 20
    install_signal_handlers: bool = True
    parquet_max_file_bytes: int = 128 << 20
    parquet_max_file_age_s: float = 300.0
    pii_fields: tuple[str, ...] = ()
    pseudonym_key: str | None = field(default=None, repr=False)
    pseudonym_key_id: str | None = None
    feature_allowlist: tuple[str, ...] = ()
    stale_feature_age_s: float = 3600.0
    operational_log: bool = False
    kafka_bootstrap: str | None = None
    kafka_topic: str | None = None
    kafka_spool_max_bytes: int = 1 << 30
    kafka_delivery_timeout_s: float = 10.0
    kafka_compression: str = "zstd"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


@dataclass(frozen=True)
class MiddlewareSettings:
    """Resolved options of :class:`~predlog.PredictionLogMiddleware` (beyond the logger's)."""

    #: Path prefixes to log; empty means every path not excluded.
    paths: tuple[str, ...] = ()
    exclude_paths: tuple[str, ...] = (
        "/health",
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
        "/docs",
        "/openapi.json",
    )
    methods: tuple[str, ...] = ("POST",)
    request_id_header: str = "X-Request-ID"
    max_body_bytes: int = 1 << 20
    features_field: str | None = None
    score_field: str | None = None
    decision_field: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


SettingsT = TypeVar("SettingsT", Settings, MiddlewareSettings)


def _resolve_into(
    cls: type[SettingsT],
    options: Mapping[str, _Option],
    kwargs: Mapping[str, Any],
    environ: Mapping[str, str] | None,
) -> SettingsT:
    env = os.environ if environ is None else environ
    known = {f.name for f in fields(cls)} - {"sources"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError(unknown[0], f"unknown setting (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, option in options.items():
        given = kwargs.get(name, MISSING)
        if given is not MISSING:
            if isinstance(given, list):
                given = tuple(given)
            problem = option.check(given)
            if problem:
                raise ConfigError(name, problem)
            values[name] = given
            sources[name] = "argument"
            continue
        for var in option.env:
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                parsed = option.parse(raw)
            except ValueError:
                raise ConfigError(var, f"cannot parse {raw!r}") from None
            problem = option.check(parsed)
            if problem:
                raise ConfigError(var, problem)
            values[name] = parsed
            sources[name] = var
            break
    return cls(**values, sources=sources)


def _name(settings: Settings | MiddlewareSettings, name: str) -> str:
    """How the user spelt a setting: the argument or the variable it came from."""
    source = settings.sources.get(name, "argument")
    return name if source == "argument" else source


def resolve(
    kwargs: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge keyword arguments, environment and defaults into validated :class:`Settings`.

    A keyword argument whose value is :data:`MISSING` counts as not given. Unknown
    keyword arguments are an error rather than silently ignored: a typo in a
    setting is a configuration bug the operator wants to hear about.
    """
    settings = _resolve_into(Settings, _OPTIONS, kwargs, environ)
    if settings.pii_fields and not settings.pseudonym_key:
        raise ConfigError(
            "PREDLOG_PSEUDONYM_KEY",
            f"PII fields are configured ({_name(settings, 'pii_fields')}="
            f"{','.join(settings.pii_fields)}) but no pseudonymisation key is set; "
            "refusing to start rather than log them in the clear",
        )
    if settings.pseudonym_key is not None and len(settings.pseudonym_key) < 16:
        raise ConfigError(
            _name(settings, "pseudonym_key"), "must be at least 16 characters of secret"
        )
    if bool(settings.kafka_bootstrap) != bool(settings.kafka_topic):
        missing = "kafka_topic" if settings.kafka_bootstrap else "kafka_bootstrap"
        raise ConfigError(
            _name(settings, missing)
            if missing in settings.sources
            else "PREDLOG_" + missing.upper(),
            "the Kafka sink needs both a bootstrap server list and a topic",
        )
    if settings.batch_size > settings.ring_capacity:
        settings = replace(settings, batch_size=settings.ring_capacity)
    return settings


def resolve_middleware(
    kwargs: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> MiddlewareSettings:
    """The middleware's own options: keyword arguments, then ``PREDLOG_*``, then defaults."""
    settings = _resolve_into(MiddlewareSettings, _MIDDLEWARE_OPTIONS, kwargs, environ)
    methods = tuple(m.upper() for m in settings.methods)
    bad = [p for p in (*settings.paths, *settings.exclude_paths) if not p.startswith("/")]
    if bad:
        source = "paths" if bad[0] in settings.paths else "exclude_paths"
        raise ConfigError(_name(settings, source), f"paths must start with '/', got {bad[0]!r}")
    return replace(settings, methods=methods)
