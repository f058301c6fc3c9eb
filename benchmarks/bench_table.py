"""The flusher's batch building and Parquet writing: the extension's path against pyarrow's.

The same captures are built into a batch and written by a ParquetSink twice per round,
once with ``native_decode`` on (the extension builds the Arrow columns and writes the
file; no pyarrow in the process) and once off (the Python decoder and pyarrow, the
reference), alternating, so that machine drift falls on both. Two kinds of capture:

* ``log()``: a plain dict of features and the other keyword arguments;
* ``middleware``: a ``bentoml serve``-style exchange, 15 features in the request body
  and a score and decision in the response, decoded by the flusher.

Printed per kind: µs per record to build and to write, records/s for both together,
and native/pyarrow as a ratio with its range over rounds (< 1 is faster). The records
written are counted against the captures: none may be lost.

Usage: python benchmarks/bench_table.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from predlog import ParquetSink
from predlog.flush import BatchBuilder, ExchangeDecoder
from predlog.testing import CAPTURE_FIELDS, ErrorReporter, Exchange, resolve

AT_NS = 1_767_225_600_000_000_000
FEATURES = {f"f{k}": (k * 1.5 if k % 3 else f"cat{k}") for k in range(15)}
BODY = json.dumps({"input": FEATURES}).encode()
RESPONSE = b'{"score": 0.25, "decision": "approve"}'


def log_captures(n: int, _: ExchangeDecoder) -> list[tuple]:
    values = {
        "features": dict(FEATURES),
        "score": 0.25,
        "decision": "approve",
        "threshold": 0.5,
        "channel": "web",
    }
    return [
        tuple(
            {**values, "timestamp_ns": AT_NS + i, "request_id": f"req-{i}"}.get(name)
            for name in CAPTURE_FIELDS
        )
        for i in range(n)
    ]


def middleware_captures(n: int, decoder: ExchangeDecoder) -> list[tuple]:
    out = []
    for i in range(n):
        ex = Exchange("POST", "/predict", decoder)
        ex.request_chunks = [BODY]
        ex.request_size = len(BODY)
        ex.request_content_type = b"application/json"
        ex.response_chunks = [RESPONSE]
        ex.response_size = len(RESPONSE)
        ex.response_parts = 1
        ex.response_content_type = b"application/json"
        ex.status = 200
        values = {
            "timestamp_ns": AT_NS + i,
            "request_id": f"req-{i}",
            "features": ex,
            "total_ms": 1.5,
            "trace_id": "a" * 32,
            "span_id": "b" * 16,
        }
        out.append(tuple(values.get(name) for name in CAPTURE_FIELDS))
    return out


def run(
    make: Callable[[int, ExchangeDecoder], list[tuple]], *, native: bool, records: int
) -> tuple[float, float]:
    """µs per record to build and to write ``records`` captures in batches of 5,000."""
    settings = resolve({"model_name": "m", "model_version": "v", "native_decode": native})
    builder = BatchBuilder.from_settings(settings, reporter=ErrorReporter())
    decoder = ExchangeDecoder()
    directory = Path(tempfile.mkdtemp(prefix="predlog-bench-table-"))
    sink = ParquetSink(directory)
    build = write = 0.0
    for _ in range(records // 5000):
        captures = make(5000, decoder)
        start = time.perf_counter()
        result = builder.build(captures)
        built = time.perf_counter()
        sink.export(result.batch)
        write += time.perf_counter() - built
        build += built - start
    sink.close()
    written = sum(pq.ParquetFile(p).metadata.num_rows for p in directory.rglob("*.parquet"))
    if written != records // 5000 * 5000:
        raise SystemExit(f"records lost: {written} written of {records}")
    return build / records * 1e6, write / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.records} records per run, {args.rounds} alternating rounds; median [range]")
    for kind, make in (("log()", log_captures), ("middleware", middleware_captures)):
        runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        ratios = []
        for r in range(args.rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            for native in order:
                runs[native].append(run(make, native=native, records=args.records))
            ratios.append(sum(runs[True][-1]) / sum(runs[False][-1]))
        for native, label in ((False, "pyarrow"), (True, "native")):
            build = statistics.median(b for b, _ in runs[native])
            write = statistics.median(w for _, w in runs[native])
            rate = statistics.median(1e6 / (b + w) for b, w in runs[native])
            print(
                f"{kind:10s} {label:8s} build {build:5.2f} us | write {write:5.2f} us | "
                f"{rate:9,.0f} records/s"
            )
        print(
            f"{kind:10s} native/pyarrow time per record {statistics.median(ratios):.3f} "
            f"[{min(ratios):.3f}-{max(ratios):.3f}]; records lost 0"
        )


if __name__ == "__main__":
    main()
