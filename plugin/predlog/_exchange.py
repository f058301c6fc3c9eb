"""One HTTP exchange, captured by reference on the request path, decoded in the flusher.

The middleware fills an :class:`Exchange` with references to the body chunks it
saw go by, the status, and the handler's ``predlog.record()`` fields, and puts it
in the ring inside an ordinary capture tuple. The exchange carries the decoder of
the middleware that made it (a :class:`BodyDecoder`), so two apps sharing one logger
each decode their own bodies their own way. Nothing here parses anything: the request
never pays for decoding.
"""

from __future__ import annotations

import sys
import sysconfig
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, Protocol

from predlog._capture import FEATURES, Capture

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

    #: How many free exchanges the pool keeps at most; past that, the oldest are let go.
    POOL_BOUND: ClassVar[int] = 8192

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
        self.request_chunks: list[bytes] = []
        self.response_chunks: list[bytes] = []
        self.reset(method, path, decoder)

    def reset(self, method: str, path: str, decoder: BodyDecoder) -> None:
        """Everything but the chunk lists, as a new exchange has it (the lists are
        emptied when the exchange is recycled)."""
        self.method = method
        self.path = path
        #: How the flusher turns this exchange into a record: the middleware's options.
        self.decoder = decoder
        self.request_size = 0
        self.request_content_type: bytes | None = None
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

    @classmethod
    def take(cls, method: str, path: str, decoder: BodyDecoder) -> Exchange:
        """An exchange for a new request: a recycled one when there is one, else a new one."""
        try:
            exchange = _free.pop()
        except IndexError:
            return cls(method, path, decoder)
        exchange.reset(method, path, decoder)
        return exchange

    @staticmethod
    def recycle(captures: Sequence[Any]) -> None:
        """Hand back the exchanges of captures the flusher has finished with.

        Only an exchange that nothing else can reach is kept for another request: its
        capture and the exchange itself must be held by ``captures`` alone (counted
        references), so that a capture a sink, a test or an error report kept never sees
        its exchange change. A chunk list someone else holds is replaced, not emptied.
        Call it before ``captures`` is cleared, from the one thread that owns them.
        """
        if not _POOLING:
            return
        refs = sys.getrefcount
        keep = _free.append
        for capture in captures:
            if type(capture) is not tuple or len(capture) <= FEATURES:
                continue
            exchange = capture[FEATURES]
            if (
                type(exchange) is not Exchange
                or refs(capture) > _CAPTURE_ALONE
                or refs(exchange) > _EXCHANGE_ALONE
            ):
                continue
            if refs(exchange.request_chunks) > _LIST_ALONE:
                exchange.request_chunks = []
            else:
                exchange.request_chunks.clear()
            if refs(exchange.response_chunks) > _LIST_ALONE:
                exchange.response_chunks = []
            else:
                exchange.response_chunks.clear()
            # Nothing of the last request stays reachable from a free exchange.
            exchange.fields = _NO_FIELDS
            exchange.invalid_request_id = None
            exchange.path = exchange.method = ""
            exchange.request_content_type = exchange.response_content_type = None
            keep(exchange)

    @staticmethod
    def pooled() -> int:
        """Free exchanges waiting for a request (a snapshot)."""
        return len(_free)


#: Exchanges no capture holds any more, waiting for a request.
_free: Final[deque[Exchange]] = deque(maxlen=Exchange.POOL_BOUND)
#: What a free exchange holds for fields: never a request's own dict (reset() makes one).
_NO_FIELDS: Final[dict[str, Any]] = {}


def _references(captures: Sequence[Any]) -> tuple[int, int, int]:
    """The references :meth:`Exchange.recycle` sees to a capture only a list holds, to an
    exchange only that capture holds, and to a chunk list only that exchange holds:
    counted by the same kind of loop, so that they hold for this interpreter's way of
    counting."""
    refs = sys.getrefcount
    for capture in captures:
        exchange = capture[FEATURES]
        return refs(capture), refs(exchange), refs(exchange.request_chunks)
    raise AssertionError("no capture")  # pragma: no cover


#: Reference counts decide what is free only where they are exact and nothing runs
#: beside the flusher: on a build with the GIL, before 3.14 (which counts references
#: differently: some reads no longer add one).
_POOLING: Final = sys.version_info < (3, 14) and not sysconfig.get_config_var("Py_GIL_DISABLED")
_PROBE: tuple[Any, ...] = (None,) * FEATURES
_CAPTURE_ALONE, _EXCHANGE_ALONE, _LIST_ALONE = _references(
    [(*_PROBE, Exchange("", "", None))]  # type: ignore[arg-type]  # a probe; never decoded
)
