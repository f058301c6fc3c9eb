"""predlog bench: its statistics, the pass-through it compares against, and whole runs."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from predlog import PredictionLogMiddleware
from predlog.bench import read_bodies
from predlog.bench._html import cdf_svg
from predlog.bench._stats import cdf, percentile, ratio
from predlog.errors import ConfigError
from tests.helpers import ROOT, child_env

REQUESTS = ROOT / "benchmarks" / "fraud_requests.jsonl"
KEY = "bench-test-pseudonym-key-0123"


class TestStats:
    def test_percentiles_are_observed_values_by_nearest_rank(self):
        """p50, p99 and p99.9 of 1..1000 are 500, 990 and 999: samples, never blends."""
        values = [float(v) for v in range(1000, 0, -1)]
        assert percentile(values, 0.5) == 500
        assert percentile(values, 0.99) == 990
        assert percentile(values, 0.999) == 999
        assert percentile(values, 1.0) == 1000
        assert math.isnan(percentile([], 0.5))
        small = [float(v) for v in range(1, 11)]
        assert (percentile(small, 0.25), percentile(small, 0.99)) == (3.0, 10.0)

    def test_ratio_is_per_round_with_median_and_range(self):
        """Each round's predlog value over the same round's pass-through value."""
        r = ratio([110.0, 300.0, 105.0], [100.0, 200.0, 100.0])
        assert (r.median, r.low, r.high) == pytest.approx((1.1, 1.05, 1.5))
        assert "range 1.050-1.500" in str(r)

    def test_ratio_needs_one_value_per_round(self):
        """Mismatched rounds are an error, not a silently shorter zip."""
        with pytest.raises(ValueError, match="per round"):
            ratio([1.0, 2.0], [1.0])

    def test_cdf_is_monotone_and_keeps_the_slowest(self):
        """The CDF thins the samples but always ends at the slowest request, at 1."""
        values = [float(v) for v in range(1, 10_051)]
        points = cdf(values, points=100)
        assert len(points) <= 101
        assert points[-1] == (10_050.0, 1.0)
        assert all(a[0] <= b[0] and a[1] < b[1] for a, b in itertools.pairwise(points))


class TestReport:
    def test_one_cdf_series_per_variant(self):
        """The chart holds one polyline per variant, named by it."""
        svg = cdf_svg("open loop", {"predlog": [1.0, 2.0, 3.0], "pass-through": [1.0, 1.5]})
        assert re.findall(r'class="cdf" data-variant="([^"]+)"', svg) == [
            "predlog",
            "pass-through",
        ]


class TestRequestFile:
    def test_one_document_or_one_per_line(self, tmp_path: Path):
        """A pretty-printed JSON document is one body; JSON lines are several."""
        one = tmp_path / "one.json"
        one.write_text('{\n  "a": 1\n}\n')
        assert read_bodies(one) == [b'{\n  "a": 1\n}']
        many = tmp_path / "many.jsonl"
        many.write_text('{"a": 1}\n\n{"a": 2}\n')
        assert read_bodies(many) == [b'{"a": 1}', b'{"a": 2}']

    def test_a_line_that_is_not_json_is_named(self, tmp_path: Path):
        """The error names the file and the line."""
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"a": 1}\nnot json\n')
        with pytest.raises(click.BadParameter, match=r"bad.jsonl:2 is not JSON"):
            read_bodies(bad)


async def _answer(scope, receive, send):
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'{"score": 0.1}'})


def _post(app) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b'{"x": 1}', "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent


class TestPassThrough:
    def test_disabled_middleware_starts_nothing_and_changes_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        """PREDLOG_ENABLED=false: no logger, the response untouched, no file written."""
        monkeypatch.setenv("PREDLOG_ENABLED", "false")
        data = tmp_path / "data"
        middleware = PredictionLogMiddleware(_answer, data_dir=str(data), flush_interval_s=0.05)
        assert middleware.logger is None
        sent = _post(middleware)
        assert sent[0]["headers"] == []  # no X-Request-ID added
        assert sent[1]["body"] == b'{"score": 0.1}'
        assert not data.exists()

    def test_enabled_middleware_does_log(self, tmp_path: Path):
        """The same request through the enabled middleware is logged and echoed an id."""
        data = tmp_path / "data"
        middleware = PredictionLogMiddleware(_answer, data_dir=str(data), enabled=True)
        sent = _post(middleware)
        assert middleware.logger is not None
        middleware.logger.close()
        assert any(name == b"x-request-id" for name, _ in sent[0]["headers"])
        assert list((data / "predictions").rglob("*.parquet"))

    def test_disabled_still_checks_every_setting_but_touches_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        """A malformed setting fails at start-up even when disabled; no data dir is made."""
        monkeypatch.setenv("PREDLOG_ENABLED", "false")
        data = tmp_path / "data"
        monkeypatch.setenv("PREDLOG_SAMPLE_RATE", "1.5")
        with pytest.raises(ConfigError, match="PREDLOG_SAMPLE_RATE"):
            PredictionLogMiddleware.check(data_dir=str(data))
        monkeypatch.delenv("PREDLOG_SAMPLE_RATE")
        PredictionLogMiddleware.check(data_dir=str(data))
        assert not data.exists()

    def test_malformed_enabled_fails_naming_it(self, monkeypatch: pytest.MonkeyPatch):
        """PREDLOG_ENABLED=maybe is refused at start-up, by name."""
        monkeypatch.setenv("PREDLOG_ENABLED", "maybe")
        with pytest.raises(ConfigError, match="PREDLOG_ENABLED"):
            PredictionLogMiddleware.check()


def _bench(service: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    html = tmp_path / "report.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "predlog.bench",
            service,
            "--request",
            str(REQUESTS),
            "--duration",
            "12",
            "--rounds",
            "2",
            "--html",
            str(html),
        ],
        cwd=ROOT,
        env=child_env(
            PREDLOG_PSEUDONYM_KEY=KEY,
            BENTOML_HOME=str(tmp_path / "bentoml"),
            BENTOML_DO_NOT_TRACK="true",
            PYTHONPATH=f"{ROOT / 'plugin'}",
        ),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done, html


def _check_run(done: subprocess.CompletedProcess[str], html: Path) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for label in ("throughput req/s", "p50 ms", "p99 ms", "p99.9 ms"):
        assert re.search(rf"{re.escape(label)}\s+[\d.]+\s+[\d.]+\s+[\d.]+ \(range ", out), label
    assert re.search(r"CPU ms per request\s+[\d.]+\s+[\d.]+", out)
    answered = int(re.search(r"answered (\d+) requests", out).group(1))
    written = int(re.search(r"wrote (\d+) records; records lost 0$", out, re.M).group(1))
    assert answered > 50 and written >= answered
    assert "pass-through wrote 0 records" in out
    assert "its ceiling here:" in out
    page = html.read_text()
    series = re.findall(r'class="cdf" data-variant="([^"]+)"', page)
    assert series == ["predlog", "pass-through"] * 2  # closed loop, open loop


@pytest.mark.integration
class TestBenchRuns:
    def test_on_the_bentoml_fraud_service(self, tmp_path: Path):
        """The fraud example under bentoml serve: ratios, CPU, no record lost, CDFs."""
        done, html = _bench("examples.fraud_service.service:FraudService", tmp_path)
        _check_run(done, html)
        assert "BentoML service, POST /predict" in done.stdout

    def test_on_a_fastapi_app(self, tmp_path: Path):
        """The same service as a FastAPI app under uvicorn."""
        done, html = _bench("examples.fraud_service.fastapi_app:app", tmp_path)
        _check_run(done, html)
        assert "ASGI app, POST /predict" in done.stdout

    def test_a_service_that_cannot_start_is_one_message(self, tmp_path: Path):
        """Without the pseudonym key the fraud service refuses to start: said, no traceback."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "predlog.bench",
                "examples.fraud_service.fastapi_app:app",
                "--request",
                str(REQUESTS),
                "--duration",
                "4",
            ],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1
        assert "PREDLOG_PSEUDONYM_KEY" in done.stderr
        assert "Traceback" not in done.stderr
