"""Settings: keyword arguments first, then ``PREDLOG_*`` environment variables, then defaults.

Each setting is declared once, as a field of :class:`Settings` (the logger's),
:class:`MiddlewareSettings` (the middleware's) or :class:`ToolSettings` (the ``predlog``
command's): its name, type and default are the field's, its environment variable is
``PREDLOG_`` and the name in capitals (plus any legacy alias), its parser follows from
its type, and its check sits beside it. Everything else (the constructors, the CLI,
the analytics) reads these declarations. The typed keyword arguments of
:class:`~predlog.PredictionLogger` and the middleware (:class:`LoggerOptions`,
:class:`MiddlewareOptions`) mirror the fields for type checkers; a test keeps them equal.

This module owns validation. Every malformed value fails here, at start-up, with a
:class:`~predlog.errors.ConfigError` whose message names the setting as the user
wrote it (the keyword argument, or the environment variable). Nothing here runs on
the request path.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, TypedDict, TypeVar
from urllib.parse import unquote, urlsplit

from predlog.errors import ConfigError

OVERFLOW_POLICIES: Final = ("drop_newest", "drop_oldest")
KAFKA_COMPRESSIONS: Final = ("lz4", "gzip", "snappy", "zstd", "none")

Check = Callable[[Any], "str | None"]


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_int(text: str) -> int:
    return int(text, 10)


#: How an environment variable's text becomes a value, by the field's declared type.
_PARSERS: Final[dict[str, Callable[[str], Any]]] = {
    "str": str,
    "str | None": str,
    "int": _parse_int,
    "float": float,
    "bool": _parse_bool,
    "tuple[str, ...]": _parse_list,
}


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


def _unencodable(value: str) -> str | None:
    """Why a text setting cannot be stored: bytes that are not UTF-8 (an environment
    variable holding them arrives with lone surrogates), which every record would carry."""
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        return f"must be valid UTF-8 text, got {value!r} ({exc.reason} at {exc.start})"
    return None


def _optional_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    return None if value is None else _unencodable(value)


def _optional_path(value: Any) -> str | None:
    return None if value is None else _path(value)


def _non_empty_str(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"must be a non-empty string, got {value!r}"
    return _unencodable(value)


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
    if value not in KAFKA_COMPRESSIONS:
        return f"must be one of {', '.join(KAFKA_COMPRESSIONS)}; got {value!r}"
    return None


def _header_name(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"must be a header name, got {value!r}"
    if not all(33 <= ord(ch) <= 126 and ch not in '()<>@,;:\\"/[]?={}' for ch in value):
        return f"must be a valid HTTP header name, got {value!r}"
    return None


#: A URL scheme ("s3://", "gs://", "file://"); a Windows drive ("C:\\") does not match.
_URL: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://")
#: The schemes a data directory may name: object stores through pyarrow's filesystems,
#: and ``file://`` for a local path written as a URL.
DATA_URL_SCHEMES: Final = ("s3", "gs", "file")


def url_scheme(value: str | os.PathLike[str]) -> str | None:
    """The URL scheme of a location (``"s3"``), lower-cased, or None for a plain path."""
    match = _URL.match(os.fspath(value))
    return match["scheme"].lower() if match else None


def local_path(location: str | os.PathLike[str]) -> Path:
    """The local directory a plain path or a ``file://`` URL names (RFC 8089).

    ``file:///var/data`` and ``file://localhost/var/data`` are ``/var/data``, with
    percent-escapes decoded. A URL naming another host, or no absolute path, raises
    ValueError: it is refused, never taken for a relative folder such as ``host/var``.
    """
    text = os.fspath(location)
    if url_scheme(text) is None:
        return Path(text)
    parts = urlsplit(text)
    if parts.scheme.lower() != "file":
        raise ValueError(f"{text!r} is not a local directory")
    if parts.netloc not in ("", "localhost"):
        raise ValueError(
            f"{text!r} names the host {parts.netloc!r}: a file:// URL must be local "
            "(file:///absolute/path)"
        )
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError(f"{text!r} names no absolute path (file:///absolute/path)")
    return Path(path)


def _path(value: Any) -> str | None:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        return f"must be a directory path, got {value!r}"
    if url_scheme(value) is not None:
        # Path("s3://b/k") is the local folder "s3:/b/k": refuse rather than reinterpret.
        return f"must be a local directory, got the URL {os.fspath(value)!r}"
    return None


def _location(value: Any) -> str | None:
    """A local directory, or a URL of a scheme predlog writes through (s3, gs, file).

    Any other scheme is refused, never taken for a local folder named ``scheme:``.
    """
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        return f"must be a directory path or URL, got {value!r}"
    scheme = url_scheme(value)
    if scheme is None:
        return None
    if scheme not in DATA_URL_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in DATA_URL_SCHEMES)
        return f"cannot write to {os.fspath(value)!r}: the URL scheme must be one of {schemes}"
    rest = _URL.sub("", os.fspath(value))
    if scheme == "file":
        try:
            local_path(value)
        except ValueError as exc:
            return str(exc)
    elif not rest.split("/")[0]:
        return f"{os.fspath(value)!r} names no bucket"
    return None


_TABLE: Final = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){1,2}$")
#: An Ed25519 key written out: 32 bytes as 64 hex characters.
HEX_KEY: Final = re.compile(r"^[0-9a-fA-F]{64}$")


def _signing_key(value: Any) -> str | None:
    """The audit log's private key: a key file's path, the key as PEM text, or its 32
    bytes as 64 hex characters. The value is never repeated: it may be the key."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if HEX_KEY.match(value) or value.lstrip().startswith("-----BEGIN"):
        return None
    if os.path.isfile(value) and os.access(value, os.R_OK):
        return None
    return (
        "neither a readable key file's path, nor a key as PEM text or 64 hex characters "
        "(`predlog audit keygen PATH` writes a key file)"
    )


def _table_name(value: Any) -> str | None:
    """``catalog.namespace.table`` (or ``namespace.table`` in the default catalog)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _TABLE.match(value):
        return (
            "must name a table as catalog.namespace.table or namespace.table "
            f"(letters, digits, _ and -), got {value!r}"
        )
    return None


def setting(
    default: Any, check: Check, *, aliases: tuple[str, ...] = (), secret: bool = False
) -> Any:
    """Declare one setting: its default, its check, and any legacy environment variables.

    The primary variable is always ``PREDLOG_<NAME>``; ``aliases`` are read after it.
    A ``secret`` is left out of the settings' repr.
    """
    return field(default=default, repr=not secret, metadata={"check": check, "aliases": aliases})


def _sources() -> Any:
    return field(default_factory=dict, compare=False, repr=False)


DEFAULT_DATA_DIR: Final = "./predlog-data"


@dataclass(frozen=True)
class Settings:
    """Resolved, validated configuration of one :class:`~predlog.PredictionLogger`.

    Build it with :func:`resolve`; the defaults below are the embedded defaults a
    newcomer gets with no configuration at all.
    """

    model_name: str = setting("model", _non_empty_str)
    model_version: str = setting("unversioned", _non_empty_str)
    model_framework: str | None = setting(None, _optional_str)
    #: Where Parquet files go: a local directory, or an ``s3://``, ``gs://`` or
    #: ``file://`` URL (object stores through pyarrow, credentials from the usual
    #: variables such as ``AWS_ENDPOINT_URL``).
    data_dir: str = setting(DEFAULT_DATA_DIR, _location)
    #: A local directory for what is not yet delivered: the Kafka spool, and Parquet
    #: files waiting for an object store. Default: ``<data_dir>/spool`` for a local
    #: data_dir, ``./predlog-spool`` when data_dir is a URL.
    spool_dir: str | None = setting(None, _optional_path)
    #: Write prediction records into this Apache Iceberg table (``catalog.ns.table``)
    #: instead of the Parquet layout; see predlog.sinks.iceberg.
    iceberg_table: str | None = setting(None, _table_name)
    #: Seconds between the committer's Iceberg commits (one commit per interval).
    iceberg_commit_interval_s: float = setting(10.0, _positive_number)
    #: Whether this process may be its box's Iceberg committer. False when a central
    #: ``predlog commit`` commits the table: the servers only write and note files.
    iceberg_commit: bool = setting(True, _bool)
    sample_rate: float = setting(1.0, _unit_interval, aliases=("PREDICTION_LOG_SAMPLE_RATE",))
    high_risk_score: float = setting(0.9, _unit_interval)
    new_version_window_s: float = setting(24 * 3600.0, _non_negative_number)
    decision_threshold: float = setting(0.5, _unit_interval)
    summary_features: tuple[str, ...] = setting((), _str_tuple)
    ring_capacity: int = setting(65_536, _positive_int)
    batch_size: int = setting(8_192, _positive_int)
    flush_interval_s: float = setting(1.0, _positive_number)
    overflow: str = setting("drop_newest", _overflow)
    max_feature_bytes: int = setting(1 << 20, _positive_int)
    #: Decode middleware captures (and, in ``predlog sink``, Kafka values) in predlog's
    #: native extension, in batches and outside the GIL, when it is installed. False
    #: keeps the pure-Python decoders, the reference both are tested against.
    native_decode: bool = setting(True, _bool)
    install_signal_handlers: bool = setting(True, _bool)
    parquet_max_file_bytes: int = setting(128 << 20, _positive_int)
    parquet_max_file_age_s: float = setting(300.0, _positive_number)
    #: Bytes of complete Parquet files that may wait in spool_dir for an object store
    #: that is down (the Parquet layout's, or an Iceberg table's data files); past it
    #: new batches are refused (counted failed).
    parquet_spool_max_bytes: int = setting(1 << 30, _positive_int)
    pii_fields: tuple[str, ...] = setting((), _str_tuple)
    pseudonym_key: str | None = setting(None, _optional_str, secret=True)
    pseudonym_key_id: str | None = setting(None, _optional_str)
    feature_allowlist: tuple[str, ...] = setting((), _str_tuple)
    stale_feature_age_s: float = setting(3600.0, _positive_number)
    operational_log: bool = setting(False, _bool)
    kafka_bootstrap: str | None = setting(None, _optional_str)
    kafka_topic: str | None = setting(None, _optional_str)
    kafka_spool_max_bytes: int = setting(1 << 30, _positive_int)
    kafka_delivery_timeout_s: float = setting(10.0, _positive_number)
    kafka_compression: str = setting("zstd", _compression)
    #: Publish predlog's own metrics (Prometheus, OpenTelemetry); see predlog.metrics.
    metrics: bool = setting(True, _bool)
    #: Where each value came from: "argument" or the environment variable's name.
    sources: Mapping[str, str] = _sources()

    @property
    def data_is_local(self) -> bool:
        """Whether ``data_dir`` is a local directory (a plain path or a ``file://`` URL)."""
        return url_scheme(self.data_dir) in (None, "file")

    @property
    def data_path(self) -> Path:
        """``data_dir`` as a local path; only for a local data_dir (see data_is_local)."""
        if not self.data_is_local:
            raise ValueError(f"data_dir {self.data_dir!r} is not a local directory")
        return local_path(self.data_dir)

    @property
    def spool_path(self) -> Path:
        """The local directory for records not yet delivered (``spool_dir``)."""
        if self.spool_dir is not None:
            return Path(self.spool_dir)
        return self.data_path / "spool" if self.data_is_local else Path("./predlog-spool")


@dataclass(frozen=True)
class MiddlewareSettings:
    """Resolved options of :class:`~predlog.PredictionLogMiddleware` (beyond the logger's)."""

    #: False makes the middleware a pass-through, read once at start-up: no logger, no
    #: thread, no file, and each request goes straight to the app (``predlog bench``
    #: measures the service this way against itself with predlog on).
    enabled: bool = setting(True, _bool)
    #: Path prefixes to log; empty means every path not excluded.
    paths: tuple[str, ...] = setting((), _str_tuple)
    exclude_paths: tuple[str, ...] = setting(
        ("/health", "/healthz", "/livez", "/readyz", "/metrics", "/docs", "/openapi.json"),
        _str_tuple,
    )
    methods: tuple[str, ...] = setting(("POST",), _str_tuple)
    request_id_header: str = setting("X-Request-ID", _header_name)
    max_body_bytes: int = setting(1 << 20, _positive_int)
    features_field: str | None = setting(None, _optional_str)
    score_field: str | None = setting(None, _optional_str)
    decision_field: str | None = setting(None, _optional_str)
    sources: Mapping[str, str] = _sources()


@dataclass(frozen=True)
class ToolSettings:
    """Settings the logger does not take: read by the ``predlog`` command, the
    analytics and :mod:`predlog.audit`."""

    #: Jaeger's UI, to link a prediction to its trace (``investigate``).
    jaeger_url: str | None = setting(None, _optional_str)
    #: The Ed25519 public key ``predlog audit`` verifies against (hex, or a PEM file):
    #: pinned by the verifier, never the key file the writer leaves in the log.
    audit_public_key: str | None = setting(None, _optional_str)
    #: The Ed25519 private key a service signs its audit log with: a key file's path
    #: (``predlog audit keygen`` writes one), PEM text, or 64 hex characters. Read by
    #: :func:`predlog.audit.signing_key`; the logger itself never reads it.
    audit_signing_key: str | None = setting(None, _signing_key, secret=True)
    #: Features ``predlog drift`` does not compare (identifiers it cannot recognise).
    drift_exclude: tuple[str, ...] = setting((), _str_tuple)
    sources: Mapping[str, str] = _sources()


class LoggerOptions(TypedDict, total=False):
    """The keyword arguments :class:`~predlog.PredictionLogger` takes for its settings.

    For type checkers only: the declarations are :class:`Settings`' fields.
    """

    model_name: str
    model_version: str
    model_framework: str | None
    data_dir: str | os.PathLike[str]
    spool_dir: str | os.PathLike[str] | None
    iceberg_table: str | None
    iceberg_commit_interval_s: float
    iceberg_commit: bool
    sample_rate: float
    high_risk_score: float
    new_version_window_s: float
    decision_threshold: float
    summary_features: Sequence[str]
    ring_capacity: int
    batch_size: int
    flush_interval_s: float
    overflow: str
    max_feature_bytes: int
    native_decode: bool
    install_signal_handlers: bool
    parquet_max_file_bytes: int
    parquet_max_file_age_s: float
    parquet_spool_max_bytes: int
    pii_fields: Sequence[str]
    pseudonym_key: str | None
    pseudonym_key_id: str | None
    feature_allowlist: Sequence[str]
    stale_feature_age_s: float
    operational_log: bool
    kafka_bootstrap: str | None
    kafka_topic: str | None
    kafka_spool_max_bytes: int
    kafka_delivery_timeout_s: float
    kafka_compression: str
    metrics: bool


class MiddlewareOptions(TypedDict, total=False):
    """The middleware's own keyword arguments (:class:`MiddlewareSettings`' fields)."""

    enabled: bool
    paths: Sequence[str]
    exclude_paths: Sequence[str]
    methods: Sequence[str]
    request_id_header: str
    max_body_bytes: int
    features_field: str | None
    score_field: str | None
    decision_field: str | None


SettingsT = TypeVar("SettingsT", Settings, MiddlewareSettings, ToolSettings)


@dataclass(frozen=True)
class _Option:
    """How one declared setting is read: derived from its field, never written by hand."""

    name: str
    env: tuple[str, ...]
    parse: Callable[[str], Any]
    check: Check


def _option(f: Field[Any]) -> _Option:
    env = (f"PREDLOG_{f.name.upper()}", *f.metadata["aliases"])
    return _Option(f.name, env, _PARSERS[str(f.type)], f.metadata["check"])


def options(cls: type[SettingsT]) -> dict[str, _Option]:
    """Every setting ``cls`` declares, by name."""
    return {f.name: _option(f) for f in fields(cls) if f.name != "sources"}


_OPTIONS: Final[dict[type, dict[str, _Option]]] = {
    Settings: options(Settings),
    MiddlewareSettings: options(MiddlewareSettings),
    ToolSettings: options(ToolSettings),
}


def setting_names(cls: type[SettingsT]) -> frozenset[str]:
    """The names of the settings ``cls`` declares."""
    return frozenset(_OPTIONS[cls])


def _from_environment(option: _Option, env: Mapping[str, str]) -> tuple[Any, str] | None:
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
        return parsed, var
    return None


def _resolve_into(
    cls: type[SettingsT], kwargs: Mapping[str, Any], environ: Mapping[str, str] | None
) -> SettingsT:
    env = os.environ if environ is None else environ
    declared = _OPTIONS[cls]
    unknown = sorted(set(kwargs) - set(declared))
    if unknown:
        raise ConfigError(unknown[0], f"unknown setting (known: {', '.join(sorted(declared))})")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, option in declared.items():
        if name in kwargs:
            given = kwargs[name]
            if isinstance(given, list):
                given = tuple(given)
            if isinstance(given, os.PathLike):
                given = os.fspath(given)
            problem = option.check(given)
            if problem:
                raise ConfigError(name, problem)
            values[name] = given
            sources[name] = "argument"
            continue
        found = _from_environment(option, env)
        if found is not None:
            values[name], sources[name] = found
    return cls(**values, sources=sources)


def spelt(settings: Settings | MiddlewareSettings, name: str) -> str:
    """How the user spelt a setting: the argument or the variable it came from."""
    source = settings.sources.get(name, "argument")
    return name if source == "argument" else source


def resolve(
    kwargs: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge keyword arguments, environment and defaults into validated :class:`Settings`.

    Unknown keyword arguments are an error rather than silently ignored: a typo in a
    setting is a configuration bug the operator wants to hear about.
    """
    settings = _resolve_into(Settings, kwargs, environ)
    if settings.pii_fields and not settings.pseudonym_key:
        raise ConfigError(
            "PREDLOG_PSEUDONYM_KEY",
            f"PII fields are configured ({spelt(settings, 'pii_fields')}="
            f"{','.join(settings.pii_fields)}) but no pseudonymisation key is set; "
            "refusing to start rather than log them in the clear",
        )
    if settings.pseudonym_key is not None and len(settings.pseudonym_key) < 16:
        raise ConfigError(
            spelt(settings, "pseudonym_key"), "must be at least 16 characters of secret"
        )
    if bool(settings.kafka_bootstrap) != bool(settings.kafka_topic):
        missing = "kafka_topic" if settings.kafka_bootstrap else "kafka_bootstrap"
        raise ConfigError(
            spelt(settings, missing)
            if missing in settings.sources
            else "PREDLOG_" + missing.upper(),
            "the Kafka sink needs both a bootstrap server list and a topic",
        )
    if settings.iceberg_table and settings.kafka_bootstrap:
        raise ConfigError(
            spelt(settings, "iceberg_table"),
            "is set together with a Kafka sink; a server writes to one of them. With "
            "Kafka, the table is written by `predlog sink --table`: leave "
            f"{spelt(settings, 'iceberg_table')} unset on the servers",
        )
    if settings.batch_size > settings.ring_capacity:
        settings = replace(settings, batch_size=settings.ring_capacity)
    return settings


def resolve_middleware(
    kwargs: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> MiddlewareSettings:
    """The middleware's own options: keyword arguments, then ``PREDLOG_*``, then defaults."""
    settings = _resolve_into(MiddlewareSettings, kwargs, environ)
    methods = tuple(m.upper() for m in settings.methods)
    bad = [p for p in (*settings.paths, *settings.exclude_paths) if not p.startswith("/")]
    if bad:
        source = "paths" if bad[0] in settings.paths else "exclude_paths"
        raise ConfigError(spelt(settings, source), f"paths must start with '/', got {bad[0]!r}")
    return replace(settings, methods=methods)


def read(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting's value from the environment, or its default; checked like any other.

    For the ``predlog`` command and the analytics, which need a setting or two and must
    not fail on an unrelated malformed variable.
    """
    for cls, declared in _OPTIONS.items():
        option = declared.get(name)
        if option is not None:
            found = _from_environment(option, os.environ if environ is None else environ)
            if found is not None:
                return found[0]
            return next(f.default for f in fields(cls) if f.name == name)
    raise KeyError(name)


def problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` as the setting ``name``, by its declared check, or None.

    Text is parsed first, as the setting's environment variable would be. For values
    that stand in for a setting (a command's ``--data``, the analytics' ``data_dir``
    argument), so that they are refused by the same declaration, ``--data s3://`` as
    ``PREDLOG_DATA_DIR=s3://``.
    """
    for declared in _OPTIONS.values():
        option = declared.get(name)
        if option is not None:
            if isinstance(value, str):
                try:
                    value = option.parse(value)
                except ValueError:
                    return f"cannot parse {value!r}"
            return option.check(value)
    raise KeyError(name)


def check_argument(argument: str, setting: str, value: Any) -> None:
    """Refuse ``value`` for a constructor's ``argument`` by the declared check of the
    setting it stands for (``ParquetSink(max_file_bytes=...)`` for
    ``parquet_max_file_bytes``): a ConfigError naming the argument. Nothing is parsed:
    an argument is a value, never text from the environment."""
    for declared in _OPTIONS.values():
        option = declared.get(setting)
        if option is not None:
            refused = option.check(value)
            if refused:
                raise ConfigError(argument, refused)
            return
    raise KeyError(setting)


def env_var(name: str) -> str:
    """The environment variable a setting is read from (for help texts and messages)."""
    return f"PREDLOG_{name.upper()}"
