"""The native decoder, when it was built: middleware captures decoded in batches,
outside the GIL.

``predlog._rust`` is a Rust extension (``native/``), built by ``pip install`` when
a Rust toolchain is there and skipped when not. It does what
:meth:`ExchangeDecoder.resolve <predlog.flush._exchange.ExchangeDecoder.resolve>` and
the feature encoding after it do, for the captures it can reproduce exactly, and
declines the rest one by one: those are resolved in Python as before. Without the
extension, or with ``native_decode`` off, every capture is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import orjson

from predlog._capture import (
    CAPTURE_FIELDS,
    DECISION,
    EXTRA,
    FEATURES,
    FLAGS,
    POSITION,
    SCORE,
    SPAN_ID,
    TRACE_ID,
    Capture,
)
from predlog._exchange import Exchange
from predlog.flush._columns import NativeColumns
from predlog.flush._exchange import RECORD_POSITIONS

try:
    from predlog import _rust as _native
except ImportError:  # not built: no Rust toolchain where predlog was installed
    _native = None  # type: ignore[assignment]

#: Numbers and strings at the edges of orjson's formats. The extension writes features
#: as orjson does; should an orjson release write them otherwise, the extension is
#: left unused rather than let the two decoders disagree.
_PROBE: Final = {
    "big": 1e16,
    "small": 1.5e-7,
    "edge": 1e-5,
    "fixed": 123456789.0,
    "int": -(2**63),
    "text": 'q"\\\u2028\x1f\x7fé',
}
if _native is not None:
    _probe = orjson.dumps(_PROBE)
    if _native.request_features(_probe) != (_probe.decode(), 0):
        _native = None  # type: ignore[assignment]

#: Whether the extension is installed in this environment.
AVAILABLE: Final = _native is not None
#: The types of the extension's pre-encoded features and extra maps (None without it).
ENCODED_TYPE: Final[type | None] = _native.Encoded if _native is not None else None
ENCODED_EXTRA_TYPE: Final[type | None] = _native.EncodedExtra if _native is not None else None
_LAYOUT: Final = (len(CAPTURE_FIELDS), FEATURES, SCORE, DECISION, EXTRA, TRACE_ID, SPAN_ID, FLAGS)
#: What each capture position becomes in :func:`resolve_columns` (text unless named).
_KINDS: Final = {
    "timestamp_ns": "stamp",
    "features": "features",
    "extra": "extra",
    "flags": "flags",
    "trace_id": "hex32",
    "span_id": "hex16",
    "feature_timestamps": "absent",
    **dict.fromkeys(
        (
            "score",
            "threshold",
            "feature_freshness_max_age_seconds",
            "feature_fetch_ms",
            "inference_ms",
            "total_ms",
        ),
        "float",
    ),
}
_COLUMN_KINDS: Final = [_KINDS.get(name, "text") for name in POSITION]


def resolve(
    captures: Sequence[Capture], max_bytes: int, *, extra_maps: bool
) -> list[Capture | None]:
    """Each capture resolved natively, or None where Python must resolve it (not an
    exchange, or one the extension declined). Requires :data:`AVAILABLE`.

    The features come back as ``Encoded`` JSON text; the extra map as JSON text
    too unless ``extra_maps`` (an audit rule reads the maps) or the handler recorded
    fields that go there."""
    if _native is None:
        raise RuntimeError("predlog's native extension is not installed")
    result: list[Capture | None] = _native.resolve(
        captures if isinstance(captures, list) else list(captures),
        Exchange,
        _LAYOUT,
        RECORD_POSITIONS,
        max_bytes,
        extra_maps,
    )
    return result


def resolve_columns(captures: Sequence[Capture]) -> NativeColumns | None:
    """The whole batch resolved into columns, or None unless the extension takes every
    capture in it (each an exchange it decodes, each value one whose column form is
    certain). Requires :data:`AVAILABLE`."""
    if _native is None:
        raise RuntimeError("predlog's native extension is not installed")
    columns = _native.resolve_columns(
        captures if isinstance(captures, list) else list(captures),
        Exchange,
        _LAYOUT,
        RECORD_POSITIONS,
        _COLUMN_KINDS,
    )
    if columns is None:
        return None
    return NativeColumns(dict(zip(POSITION, columns, strict=True)), len(captures))


def cut_objects(text: bytes) -> tuple[bytes, bytes, bytes] | None:
    """orjson's text of a list of objects cut into an Arrow string column's buffers
    (texts end to end, int32 offsets) and each object's count of top-level nulls
    (int32); None if the text is anything else. Requires :data:`AVAILABLE`."""
    if _native is None:
        raise RuntimeError("predlog's native extension is not installed")
    return _native.cut_objects(text)


def request_features(body: bytes, features_field: str | None = None) -> tuple[str, int] | None:
    """One request body's features as the extension writes them (text, null count), or
    None where it defers to Python: what the differential tests compare."""
    if _native is None:
        raise RuntimeError("predlog's native extension is not installed")
    result: tuple[str, int] | None = _native.request_features(body, features_field)
    return result
