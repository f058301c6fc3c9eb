"""The flusher's side of the pipeline: everything between the ring and the sinks.

``_flusher`` drains the ring on a background thread; ``_batch`` turns a drained list
of captures into one Arrow record batch, with ``_exchange`` (HTTP bodies), ``_native``
(the same, in batches outside the GIL, by the Rust extension ``_rust`` when it was
built), ``_decode`` (features and values), ``_pii`` (keyed pseudonyms), the weighted
``_sampling`` decision and UUIDv7 ``_ids``. None of it ever runs on the request path,
and none of it is imported by users directly.
"""

from __future__ import annotations

from predlog.flush._batch import BatchBuilder, BuildResult
from predlog.flush._exchange import ExchangeDecoder
from predlog.flush._flusher import Flusher, SinkState
from predlog.flush._ids import UUID7Factory, format_ids, ids_as_text
from predlog.flush._pii import Pseudonymiser, default_key_id
from predlog.flush._sampling import REASONS, Sampler, sampling_hash

__all__ = [
    "REASONS",
    "BatchBuilder",
    "BuildResult",
    "ExchangeDecoder",
    "Flusher",
    "Pseudonymiser",
    "Sampler",
    "SinkState",
    "UUID7Factory",
    "default_key_id",
    "format_ids",
    "ids_as_text",
    "sampling_hash",
]
