"""The flusher's side of the pipeline: everything between the ring and the sinks.

``_flusher`` drains the ring on a background thread; ``_batch`` turns a drained list
of captures into one Arrow record batch, with ``_exchange`` (HTTP bodies), ``_native``
(the same, in batches outside the GIL, by the Rust extension ``_rust`` when it was
built), ``_decode`` (features and values), ``_pii`` (keyed pseudonyms), the weighted
``_sampling`` decision and UUIDv7 ``_ids``. None of it ever runs on the request path,
and none of it is imported by users directly.

Each name is imported on first use (PEP 562): the middleware needs ``_exchange`` and
``_decode`` in every process that loads the service, and the batch builder, ids and
sampling bring numpy and pyarrow, which only the process that logs should pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from predlog._lazy import attach

if TYPE_CHECKING:
    from predlog._table import (
        Batch,
        as_arrow,
        as_native,
        by_day,
        has_record_schema,
        is_native,
        native_parquet_file,
    )
    from predlog.flush._batch import BatchBuilder, BuildResult
    from predlog.flush._exchange import ExchangeDecoder
    from predlog.flush._flusher import Flusher, SinkState
    from predlog.flush._ids import UUID7Factory, format_ids, ids_as_text
    from predlog.flush._pii import Pseudonymiser, default_key_id
    from predlog.flush._sampling import REASONS, Sampler, sampling_hash

#: Where each name lives, imported when first asked for.
_HOMES = {
    "BatchBuilder": "predlog.flush._batch",
    "BuildResult": "predlog.flush._batch",
    "ExchangeDecoder": "predlog.flush._exchange",
    "Flusher": "predlog.flush._flusher",
    "SinkState": "predlog.flush._flusher",
    "UUID7Factory": "predlog.flush._ids",
    "format_ids": "predlog.flush._ids",
    "ids_as_text": "predlog.flush._ids",
    "Pseudonymiser": "predlog.flush._pii",
    "default_key_id": "predlog.flush._pii",
    "REASONS": "predlog.flush._sampling",
    "Sampler": "predlog.flush._sampling",
    "sampling_hash": "predlog.flush._sampling",
    "Batch": "predlog._table",
    "as_arrow": "predlog._table",
    "as_native": "predlog._table",
    "by_day": "predlog._table",
    "has_record_schema": "predlog._table",
    "is_native": "predlog._table",
    "native_parquet_file": "predlog._table",
}


__getattr__, __dir__ = attach(__name__, globals(), _HOMES)


__all__ = [
    "REASONS",
    "Batch",
    "BatchBuilder",
    "BuildResult",
    "ExchangeDecoder",
    "Flusher",
    "Pseudonymiser",
    "Sampler",
    "SinkState",
    "UUID7Factory",
    "as_arrow",
    "as_native",
    "by_day",
    "default_key_id",
    "format_ids",
    "has_record_schema",
    "ids_as_text",
    "is_native",
    "native_parquet_file",
    "sampling_hash",
]
