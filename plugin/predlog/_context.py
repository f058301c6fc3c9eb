"""The current request, as a context variable: what ``predlog.record()`` writes to.

The middleware sets a fresh dict per request; ``record()`` updates it. Context
variables follow the request into ``await``-ed code and, because Starlette and
BentoML run sync handlers in a thread pool with a copy of the context, into those
threads too: the copy refers to the same dict, so the handler's fields reach the
middleware. Cost: one context variable read and one dict update.

It also holds structlog's context variables for the ids the middleware binds, so
that the handler's own structlog lines carry them (``merge_contextvars``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any, Final

from structlog.contextvars import bind_contextvars

_fields: ContextVar[dict[str, Any] | None] = ContextVar("predlog_record", default=None)


def record(**fields: Any) -> bool:
    """Add what only the handler knows to the current request's prediction record.

    Typical fields: ``features`` (what was actually fed to the model, after a
    feature-store fetch), ``score``, ``decision``, ``threshold``,
    ``feature_store_snapshot_id``, ``feature_timestamps``, ``user_segment``,
    ``channel``, ``geographic_region``, ``feature_fetch_ms``, ``inference_ms``.
    Any other field goes to the record's ``extra`` map (``feature_cache_hit=True``).

    Returns False, and does nothing, outside a request the middleware logs.
    Later calls override earlier ones field by field.
    """
    current = _fields.get()
    if current is None:
        return False
    current.update(fields)
    return True


def current_fields() -> dict[str, Any] | None:
    """The current request's recorded fields (the live dict), or None outside one."""
    return _fields.get()


#: Make a dict the current request's record (the middleware, once per request); returns
#: the token to undo it with. The context variable's own methods: no Python frame.
bind_fields: Final[Callable[[dict[str, Any]], Token[dict[str, Any] | None]]] = _fields.set
#: Undo :data:`bind_fields` when the request is over.
unbind_fields: Final[Callable[[Token[dict[str, Any] | None]], None]] = _fields.reset


def _structlog_variable(key: str) -> ContextVar[Any]:
    """structlog's own context variable for ``key``: the one ``bind_contextvars`` sets,
    ``unbind_contextvars`` clears and ``merge_contextvars`` reads.

    Found once through structlog's public API (each token it returns names its
    variable) and left as it was. Per request the middleware then sets and resets the
    variable itself: one C call each, where ``bind_contextvars`` and
    ``reset_contextvars`` run a Python loop that formats the variable's name per key.
    """
    token = bind_contextvars(**{key: ...})[key]  # structlog's "unset" value
    variable: ContextVar[Any] = token.var
    variable.reset(token)
    return variable


#: structlog's ``request_id``: the middleware binds the request's id here.
LOG_REQUEST_ID: Final = _structlog_variable("request_id")
#: structlog's ``model_version``: the middleware binds its model's version here.
LOG_MODEL_VERSION: Final = _structlog_variable("model_version")
