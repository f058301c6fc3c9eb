"""How soon a user sees the first record: from a service's first answer to the moment
``predlog investigate`` finds it, on embedded defaults.

The service is ``tests/decide_service.py``, a FastAPI app unlike predlog's examples
(``POST /v1/decide``, ``probability`` and a three-way ``label``), served by uvicorn with
predlog's one line and no ``PREDLOG_*`` setting but the data directory. Each round starts
a fresh server, sends one request, then reads: the time the record's Parquet file
appeared (what the Parquet layout promises), and the time ``predlog investigate`` first
printed it (what a person waits for, one ``investigate`` run included).

Usage: python benchmarks/first_record.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BODY = {
    "applicant": {
        "income": 33440,
        "age": 29,
        "debt_ratio": 0.41,
        "employment": "self_employed",
        "months_at_address": 7,
    }
}


def one_round(port: int, data: Path) -> tuple[float, float, str]:
    """Seconds from the answer to the file, and to investigate's answer; what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREDLOG_", "OTEL_"))}
    env.update(PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}", PREDLOG_DATA_DIR=str(data))
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.decide_service:app", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        answer = httpx.post(f"{base}/v1/decide", json=BODY, headers={"X-Request-ID": "first"})
        answer.raise_for_status()
        answered = time.monotonic()
        while not list(data.glob("predictions/**/*.parquet")):
            if time.monotonic() - answered > 600:
                raise SystemExit("no record after 600 s")
            time.sleep(0.05)
        to_file = time.monotonic() - answered
        while True:
            shown = subprocess.run(
                [sys.executable, "-m", "predlog", "investigate", "first", "--data", str(data)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if shown.returncode == 0:
                return to_file, time.monotonic() - answered, shown.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18175)
    args = parser.parse_args()
    files, shown, printed = [], [], ""
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="predlog-first-") as tmp:
            to_file, to_shown, printed = one_round(args.port, Path(tmp) / "predlog-data")
        files.append(to_file)
        shown.append(to_shown)
        print(f"round {number + 1}: file {to_file:.2f} s, investigate {to_shown:.2f} s")
    print(
        f"answer to first record, median of {args.rounds}: Parquet file "
        f"{statistics.median(files):.2f} s [{min(files):.2f}-{max(files):.2f}], "
        f"predlog investigate {statistics.median(shown):.2f} s "
        f"[{min(shown):.2f}-{max(shown):.2f}]"
    )
    print(printed, end="")


if __name__ == "__main__":
    main()
