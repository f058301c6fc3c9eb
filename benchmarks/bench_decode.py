"""Decoding middleware captures: the Python decoder, the native one, pyarrow's JSON reader.

The flusher's work per middleware capture is to parse the request and response JSON,
undo BentoML's wrapping, flatten, find score and decision, and write the features as
JSON text. Three ways to do it, over the same batch of ``bentoml serve``-style bodies:

* ``python``: ``ExchangeDecoder.resolve`` per capture, then orjson for the features
  (the reference);
* ``native``: ``predlog._rust.resolve`` over the whole batch, parsing with the GIL
  released;
* ``pyarrow``: ``pyarrow.json.read_json`` over the request bodies joined by newlines,
  and again over the responses: parsing only, into inferred Arrow columns. It does
  less than the others (no flattening into one text column, no per-record flags),
  so it is a lower bound for that approach; and what it gives is not what the Python
  decoder gives (a key's type is inferred for the whole batch, so an integer in one
  record and a float in another both come back as floats; a record whose value
  changes type fails the whole block).

Each is timed over the same batch, several rounds interleaved, and printed per record
and as a ratio to the Python decoder in the same run.

Usage: python benchmarks/bench_decode.py [--records N] [--rounds K]
"""

from __future__ import annotations

import argparse
import gc
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow.json as pj

from predlog._capture import CAPTURE_FIELDS, FEATURES
from predlog._exchange import Exchange
from predlog.flush import _native
from predlog.flush._exchange import ExchangeDecoder

FEATURES_15 = {
    "amount": 120.5,
    "merchant_category": "grocery",
    "hour": 13,
    "card_age_days": 412,
    "country": "FR",
    "is_foreign": False,
    "velocity_1h": 3,
    "velocity_24h": 11,
    "avg_amount_30d": 87.25,
    "device_trusted": True,
    "channel": "web",
    "distance_km": 4.2,
    "mcc": "5411",
    "prior_chargebacks": 0,
    "customer_tenure_months": 38,
}


def captures(n: int) -> list[tuple[Any, ...]]:
    decoder = ExchangeDecoder()
    out = []
    for i in range(n):
        ex = Exchange("POST", "/predict", decoder)
        body = orjson.dumps({"tx": {**FEATURES_15, "amount": 100 + i % 97 + 0.5}})
        ex.request_chunks = [body]
        ex.request_size = len(body)
        ex.request_content_type = b"application/json"
        response = orjson.dumps({"score": (i % 100) / 100 + 0.005, "decision": "approve"})
        ex.response_chunks = [response]
        ex.response_size = len(response)
        ex.response_parts = 1
        ex.response_content_type = b"application/json"
        ex.status = 200
        values = {"timestamp_ns": 1, "request_id": f"r{i}", "features": ex}
        out.append(tuple(values.get(name) for name in CAPTURE_FIELDS))
    return out


def python_decode(batch: list[tuple[Any, ...]]) -> None:
    def report(kind: str, message: str, exc: BaseException | None) -> None:
        raise AssertionError(message)

    for capture in batch:
        resolved = capture[FEATURES].decoder.resolve(capture, report)
        orjson.dumps(resolved[FEATURES])


def native_decode(batch: list[tuple[Any, ...]]) -> None:
    resolved = _native.resolve(batch, 1 << 20, extra_maps=False)
    assert all(r is not None for r in resolved)


def pyarrow_decode(batch: list[tuple[Any, ...]]) -> None:
    requests = b"\n".join(c[FEATURES].request_chunks[0] for c in batch)
    responses = b"\n".join(c[FEATURES].response_chunks[0] for c in batch)
    pj.read_json(io.BytesIO(requests))
    pj.read_json(io.BytesIO(responses))


def timed(fn: Callable[[list[tuple[Any, ...]]], None], n: int) -> float:
    batch = captures(n)  # fresh exchanges: untimed
    gc.collect()
    start = time.perf_counter()
    fn(batch)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if not _native.AVAILABLE:
        raise SystemExit("predlog._rust is not built: pip install -e . with cargo on PATH")
    ways = {"python": python_decode, "native": native_decode, "pyarrow": pyarrow_decode}
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, fn in ways.items():  # interleaved: drift hits all alike
            samples[name].append(timed(fn, args.records))
    base = statistics.median(samples["python"])
    print(f"{args.records} bentoml-style captures per batch, {args.rounds} rounds, medians")
    for name, values in samples.items():
        micros = statistics.median(values)
        print(
            f"{name:8s} {micros:6.2f} us/record | {1e6 / micros:>11,.0f} records/s | "
            f"python/{name} = {base / micros:5.2f}x"
        )


if __name__ == "__main__":
    main()
