"""PredictionLogMiddleware: one line on a BentoML service or any ASGI app.

    predlog.instrument(FraudService, model_name="fraud", model_version="v2.1.0")
    predlog.instrument(app, model_name="fraud")   # FastAPI / Starlette

This file is the whole per-request cost of predlog in a server; read ``__call__``
top to bottom. For a logged request it: takes or makes the request id; annotates
the server span and attaches baggage; binds the id into structlog's contextvars;
keeps *references* to the body chunks as they pass; adds the ``X-Request-ID``
response header; and, when the response has been sent, puts one tuple in the
ring. It never parses, copies or serialises a body (a body larger than
``max_body_bytes`` is cut there, and only then sliced), never waits on a sink, and
never changes what the app sends except for that one header.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from time import perf_counter_ns, time_ns
from typing import Any, Final

from typing_extensions import Unpack

from predlog import _otel_setup, _tracing
from predlog._capture import FEATURES, TOTAL_MS
from predlog._context import LOG_MODEL_VERSION, LOG_REQUEST_ID, bind_fields, unbind_fields
from predlog._exchange import Exchange
from predlog._logger import PredictionLogger, handoff, preflight
from predlog._settings import (
    LoggerOptions,
    MiddlewareOptions,
    MiddlewareSettings,
    Settings,
    resolve,
    resolve_middleware,
    setting_names,
)
from predlog.errors import ConfigError, report_in_one_line
from predlog.flush._exchange import ExchangeDecoder, RequestExtractor, ResponseExtractor
from predlog.sinks._base import Sink

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_REQUEST_ID = 128
#: Capture positions from the score to inference_ms: filled from the exchange in the flusher.
_DECODED_LATER = (None,) * (TOTAL_MS - FEATURES - 1)


#: Bytes allowed in a request id: printable ASCII without space.
_ALLOWED = bytes(range(0x21, 0x7F))


def _valid_request_id(raw: bytes) -> bool:
    # 1-128 printable ASCII characters: no CR/LF, nothing a log or header could split on.
    # Deleting every allowed byte leaves nothing exactly when all bytes are allowed.
    return 0 < len(raw) <= _MAX_REQUEST_ID and not raw.translate(None, _ALLOWED)


class _RequestIds:
    """Ids for requests that came without one: 32 hex digits of ``os.urandom``, cut from
    a block of 4 KiB read at once (a third of the cost of a read per request).

    Unpredictable, so that no client can send ahead an id predlog is about to give
    another request; refilled in a forked worker, so that no two workers share a block.
    """

    def __init__(self) -> None:
        self._ids: Iterator[str] = iter(())

    def refill(self) -> None:
        block = os.urandom(4096).hex()
        self._ids = iter([block[i : i + 32] for i in range(0, len(block), 32)])

    def next(self) -> str:
        for request_id in self._ids:
            return request_id
        self.refill()
        return next(self._ids)


_request_ids = _RequestIds()
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork either
    os.register_at_fork(after_in_child=_request_ids.refill)
_new_request_id: Final = _request_ids.next


#: How long the end of a lifespan waits for the records captured so far to be published.
_SHUTDOWN_FLUSH_S: Final = 10.0


def _flushing_at_shutdown(send: Send, logger: PredictionLogger) -> Send:
    """``send`` for a lifespan scope: records are published before the app says it stopped.

    A server runs the lifespan's shutdown once the requests in flight have been
    answered, and may then end the process without running exit hooks (uvicorn
    re-raises SIGTERM under the default action): the records of those last requests
    are made durable here, or they would die with the process. A flush, not a close:
    the logger may be shared, and an app can be started again.
    """

    async def send_after_flush(message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            try:
                if not logger.flush(_SHUTDOWN_FLUSH_S):
                    logger.reporter.report(
                        "shutdown_flush_failed",
                        f"records not yet published after {_SHUTDOWN_FLUSH_S:g} s at shutdown",
                    )
            except Exception as exc:  # noqa: BLE001  # the server's shutdown goes on regardless
                logger.reporter.report("shutdown_flush_failed", f"flush raised {exc!r}", exc=exc)
        await send(message)

    return send_after_flush


async def _unavailable(send: Send) -> None:
    body = b'{"error":"audit log unavailable; decision not made"}'
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"5"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class MiddlewareArgs(MiddlewareOptions, LoggerOptions, total=False):
    """Every keyword argument the middleware takes besides ``logger`` and the extractors:
    its own options, and those of the :class:`PredictionLogger` it makes."""

    sinks: Sequence[Sink] | None
    audit: Any
    feature_names: Sequence[str]
    extractor: Callable[[bytes], Mapping[str, Any]]
    error_log_interval_s: float


#: Every keyword the middleware takes in ``**options``.
_OPTION_NAMES: Final = frozenset(MiddlewareArgs.__optional_keys__)
_OWN: Final = setting_names(MiddlewareSettings)
#: Keywords of PredictionLogger that are objects, not settings.
_LOGGER_OBJECTS: Final = frozenset(_OPTION_NAMES - _OWN - setting_names(Settings))


def _split(
    options: Mapping[str, Any], *, shared_logger: bool
) -> tuple[MiddlewareSettings, dict[str, Any]]:
    """The middleware's own settings, and the options left for a new logger."""
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise ConfigError(unknown[0], f"unknown option (known: {', '.join(sorted(_OPTION_NAMES))})")
    settings = resolve_middleware({k: v for k, v in options.items() if k in _OWN})
    logger_options = {k: v for k, v in options.items() if k not in _OWN}
    if shared_logger and logger_options:
        name = sorted(logger_options)[0]
        raise ConfigError(name, "configures a new logger; with logger= set it on that logger")
    return settings, logger_options


class PredictionLogMiddleware:
    """Pure ASGI middleware that logs every prediction request on the configured paths.

    Options (each also read from a ``PREDLOG_*`` environment variable):
    ``paths`` (prefixes; default all), ``exclude_paths`` (health and metrics by
    default), ``methods`` (``POST``), ``request_id_header`` (``X-Request-ID``),
    ``max_body_bytes`` (1 MiB), ``features_field``, ``score_field`` and
    ``decision_field`` (dotted paths into the JSON bodies). ``request_extractor``
    and ``response_extractor`` replace body decoding with your own callables.

    Pass ``logger=`` to share a :class:`PredictionLogger`; otherwise every other
    keyword argument (``model_name``, ``model_version``, ``data_dir``,
    ``sample_rate``...) configures a new one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        logger: PredictionLogger | None = None,
        request_extractor: RequestExtractor | None = None,
        response_extractor: ResponseExtractor | None = None,
        **options: Unpack[MiddlewareArgs],
    ) -> None:
        self.app = app
        self.settings, logger_options = _split(options, shared_logger=logger is not None)
        # PREDLOG_ENABLED=false: a pass-through that starts nothing (no logger, no thread).
        self._pass_through = not self.settings.enabled
        self.logger: PredictionLogger | None = None
        if self._pass_through:
            if logger is None:
                # Nothing starts, but a bad value must not wait for predlog to be enabled.
                resolve({k: v for k, v in logger_options.items() if k not in _LOGGER_OBJECTS})
            return
        self.logger = logger if logger is not None else PredictionLogger(**logger_options)
        # This middleware's decoding options travel with each of its captures, so apps
        # with different options can share one logger.
        self._decoder = ExchangeDecoder(
            features_field=self.settings.features_field,
            score_field=self.settings.score_field,
            decision_field=self.settings.decision_field,
            request_extractor=request_extractor,
            response_extractor=response_extractor,
        )
        self._submit = handoff(self.logger)
        # Built once: per request these are set lookups and a tuple append.
        self._methods = frozenset(self.settings.methods)
        self._include = tuple(self.settings.paths)
        self._exclude = tuple(self.settings.exclude_paths)
        self._header = self.settings.request_id_header.lower().encode("latin-1")
        self._header_attribute = _tracing.header_attribute(self.settings.request_id_header)
        self._cap = self.settings.max_body_bytes
        self._model_name = self.logger.settings.model_name
        self._model_version = self.logger.settings.model_version
        self._audit = self.logger.audit

    @staticmethod
    def check(
        *,
        logger: PredictionLogger | None = None,
        request_extractor: RequestExtractor | None = None,
        response_extractor: ResponseExtractor | None = None,
        **options: Unpack[MiddlewareArgs],
    ) -> MiddlewareSettings:
        """Raise :class:`~predlog.ConfigError` for any option or ``PREDLOG_*`` variable
        this middleware would refuse, without starting anything; return its own settings.

        Servers build their middleware lazily, when the first request or lifespan event
        arrives; :func:`instrument` calls this first so that an error stops the server
        at start-up instead of failing every request.
        """
        del request_extractor, response_extractor  # any callable will do
        own, logger_options = _split(options, shared_logger=logger is not None)
        if logger is None:
            settings = {k: v for k, v in logger_options.items() if k not in _LOGGER_OBJECTS}
            if own.enabled:
                preflight(settings, default_sink=logger_options.get("sinks") is None)
            else:
                # Disabled, every value is still checked (switching predlog back on must
                # not reveal a bad one), but nothing is touched: no data_dir is made.
                resolve(settings)
        return own

    def _logged(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] not in self._methods:
            return False
        path: str = scope["path"]
        if path.startswith(self._exclude):
            return False
        return not self._include or path.startswith(self._include)

    async def __call__(  # noqa: PLR0912, PLR0915  # one request top to bottom; splits cost
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if self._pass_through or not self._logged(scope):
            if scope["type"] == "lifespan" and self.logger is not None:
                send = _flushing_at_shutdown(send, self.logger)
            await self.app(scope, receive, send)
            return
        audit = self._audit
        if audit is not None and not audit.accepting:
            # Fail closed: while the audit store is failing under the "reject" policy, no
            # decision is made that could not be audited.
            await _unavailable(send)
            return

        started_ns = time_ns()
        started = perf_counter_ns()
        # A recycled exchange when the flusher has handed one back (predlog._exchange).
        exchange = Exchange.take(scope["method"], scope["path"], self._decoder)
        request_id: str | None = None
        seen_id = False
        for name, value in scope["headers"]:
            if name == self._header:
                if seen_id:
                    # The first one counts, as for Starlette's Headers.get and the handler.
                    exchange.request_id_repeated = True
                elif _valid_request_id(value):
                    request_id = value.decode("ascii")
                else:
                    exchange.invalid_request_id = value.decode("latin-1")
                seen_id = True
            elif name == b"content-type" and exchange.request_content_type is None:
                exchange.request_content_type = value
        if request_id is None:
            request_id = _new_request_id()
        echo = (self._header, request_id.encode("ascii"))
        cap = self._cap
        fields = exchange.fields  # the exchange's own dict: predlog.record() fills it
        fields_token = bind_fields(fields)
        # structlog's own variables, set directly (bind_contextvars is a Python loop).
        log_request_id = LOG_REQUEST_ID.set(request_id)
        log_model_version = LOG_MODEL_VERSION.set(self._model_version)
        trace_token, span, own_span = _tracing.enter(
            request_id,
            self._model_name,
            self._model_version,
            exchange.method,
            # The header's own attribute only when the id is what the client sent.
            header=(
                self._header_attribute if seen_id and exchange.invalid_request_id is None else None
            ),
        )
        trace_id, span_id = _tracing.ids(span)
        # Without an SDK (or with the span sampled out) nothing can be annotated: the
        # last body message then skips the call. A span never starts recording later.
        recording = span.is_recording()

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                if body:
                    kept = exchange.request_size
                    exchange.request_size = kept + len(body)
                    if kept < cap:
                        # A reference, unless this chunk crosses the cap.
                        exchange.request_chunks.append(
                            body if kept + len(body) <= cap else body[: cap - kept]
                        )
            return message

        def send_and_keep(message: Message) -> Awaitable[None]:
            # Not a coroutine: it returns the server's own awaitable for the app to
            # await, so each send runs one frame fewer (and one await fewer).
            kind = message["type"]
            if kind == "http.response.start":
                exchange.status = message["status"]
                headers = message.get("headers")
                if type(headers) is not list:
                    headers = message["headers"] = list(headers or ())
                sized = False
                ours = -1
                for i, (name, value) in enumerate(headers):
                    if name == b"content-type":
                        exchange.response_content_type = value
                    elif name == b"content-length":
                        sized = True
                    elif name == echo[0]:
                        ours = i
                # A sized body may still arrive in pieces (BentoML ends with an empty
                # one); only an unsized, multi-part body is a stream.
                exchange.streamed = not sized
                # In place, as Starlette's own middlewares do: no copy of the message.
                if ours >= 0:
                    headers[ours] = echo
                else:
                    headers.append(echo)
            elif kind == "http.response.body":
                if recording and not message.get("more_body", False):
                    _tracing.annotate(span, fields)
                body = message.get("body", b"")
                if body:
                    exchange.response_parts += 1
                    kept = exchange.response_size
                    exchange.response_size = kept + len(body)
                    if kept < cap:
                        exchange.response_chunks.append(
                            body if kept + len(body) <= cap else body[: cap - kept]
                        )
            return send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_keep)
        except BaseException:
            exchange.handler_failed = True
            if not exchange.status:
                exchange.status = 500
            raise
        finally:
            if own_span is not None:
                _tracing.annotate(own_span, fields)
            _tracing.leave(trace_token, own_span, scope, exchange.status)
            LOG_MODEL_VERSION.reset(log_model_version)
            LOG_REQUEST_ID.reset(log_request_id)
            unbind_fields(fields_token)
            # The capture layout of predlog._capture: everything between the exchange
            # and total_ms is decoded from the exchange in the flusher.
            self._submit(
                (
                    started_ns,
                    request_id,
                    exchange,
                    *_DECODED_LATER,
                    (perf_counter_ns() - started) / 1e6,
                    None,
                    trace_id or None,
                    span_id or None,
                    None,
                )
            )


def instrument(
    target: Any,
    /,
    *,
    logger: PredictionLogger | None = None,
    request_extractor: RequestExtractor | None = None,
    response_extractor: ResponseExtractor | None = None,
    **options: Unpack[MiddlewareArgs],
) -> None:
    """Log every prediction of a BentoML service or a Starlette/FastAPI app: the one line.

        predlog.instrument(FraudService, model_name="fraud", model_version="v2.1.0")
        predlog.instrument(app, model_name="fraud")   # FastAPI / Starlette

    It checks every option and ``PREDLOG_*`` variable now, so a configuration error
    stops ``bentoml serve`` or ``uvicorn`` at start-up with the message in one line
    (:func:`~predlog.errors.report_in_one_line`), then adds
    :class:`PredictionLogMiddleware` with these options. (``add_asgi_middleware`` and
    ``add_middleware`` with the class work too, but a server builds middleware only
    when the first request or lifespan event arrives, and uvicorn serves on after a
    lifespan error: each request would then fail.)

    On an ASGI app with the OpenTelemetry variables set and no tracer provider yet, it
    also sets up the SDK's (:mod:`predlog._otel_setup`); BentoML traces by its own
    configuration.
    """
    kwargs: dict[str, Any] = {
        "logger": logger,
        "request_extractor": request_extractor,
        "response_extractor": response_extractor,
        **options,
    }
    try:
        enabled = PredictionLogMiddleware.check(**kwargs).enabled
        if isinstance(getattr(target, "config", None), dict):
            # A BentoML service: BentoML makes its monitor only in the first request, so
            # predlog's monitor options are checked here, at start-up.
            from predlog.bentoml_monitor import check_service  # noqa: PLC0415  # needs bentoml

            check_service(target)
        elif enabled:
            _otel_setup.install_from_environment()
    except ConfigError as error:
        report_in_one_line(error)
        raise
    for method in ("add_asgi_middleware", "add_middleware"):  # BentoML, then Starlette
        add = getattr(target, method, None)
        if callable(add):
            add(PredictionLogMiddleware, **kwargs)
            return
    raise TypeError(
        "instrument() takes a BentoML service or a Starlette/FastAPI app, not "
        f"{type(target).__name__}; wrap any other ASGI app as PredictionLogMiddleware(app, ...)"
    )
