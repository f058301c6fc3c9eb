"""One HTTP exchange, captured by reference on the request path, decoded in the flusher.

The middleware fills an :class:`Exchange` with references to the body chunks it
saw go by, the status, and the handler's ``predlog.record()`` fields, and puts it
in the ring inside an ordinary capture tuple. The exchange carries the decoder of
the middleware that made it (a :class:`BodyDecoder`), so two apps sharing one logger
each decode their own bodies their own way. Nothing here parses anything: the request
never pays for decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from predlog._capture import Capture

#: Counts and logs an error: (kind, message, exception).
Report = Callable[[str, str, BaseException | None], None]


class BodyDecoder(Protocol):
    """How the flusher turns an exchange into a record. The middleware picks it (its
    options), the exchange carries it, the flusher calls it; the request path never
    does. The flusher's ``ExchangeDecoder`` is the one predlog ships."""

    @property
    def native_options(self) -> tuple[str | None, str | None, str | None] | None:
        """The features, score and decision paths with which the native decoder gives
        what :meth:`resolve` would, or None when only :meth:`resolve` can."""

    def resolve(self, capture: Capture, report: Report) -> Capture:
        """The capture with its exchange decoded into features, score, decision and extra."""


class Exchange:
    """References to one request and response; filled by the middleware."""

    __slots__ = (
        "decoder",
        "fields",
        "handler_failed",
        "invalid_request_id",
        "method",
        "path",
        "request_chunks",
        "request_content_type",
        "request_id_repeated",
        "request_size",
        "response_chunks",
        "response_content_type",
        "response_parts",
        "response_size",
        "status",
        "streamed",
    )

    def __init__(self, method: str, path: str, decoder: BodyDecoder) -> None:
        self.method = method
        self.path = path
        #: How the flusher turns this exchange into a record: the middleware's options.
        self.decoder = decoder
        self.request_chunks: list[bytes] = []
        self.request_size = 0
        self.request_content_type: bytes | None = None
        self.response_chunks: list[bytes] = []
        self.response_size = 0
        self.response_parts = 0
        self.response_content_type: bytes | None = None
        self.status = 0
        self.streamed = False
        self.handler_failed = False
        self.invalid_request_id: str | None = None
        #: The request id header came more than once; the first was taken.
        self.request_id_repeated = False
        self.fields: dict[str, Any] = {}
