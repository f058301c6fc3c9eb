"""predlog bench: its statistics, the pass-through it compares against, the line it adds
to a service without one, its figures, and whole runs."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from starlette.middleware.cors import CORSMiddleware

from predlog import PredictionLogMiddleware, instrument
from predlog.errors import ConfigError
from predlog.testing import build_batch
from predlog.tools.bench import read_bodies
from predlog.tools.bench._html import cdf_svg
from predlog.tools.bench._load import Slice
from predlog.tools.bench._run import Outcome, Plan, Variant
from predlog.tools.bench._servers import Kind, Server
from predlog.tools.bench._stats import cdf, percentile, ratio
from predlog.tools.bench._summary import figures, plain, text
from predlog.tools.bench._target import add_line, expectation, find_line, must_keep
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


def _bento_service():
    import bentoml  # slow to import; only these tests need it

    class Plain:
        @bentoml.api
        def go(self, applicant: dict) -> dict:  # type: ignore[type-arg]
            return applicant

    return bentoml.service(name="plain")(Plain)


def _fastapi():
    from fastapi import FastAPI

    return FastAPI()


def _count_lines(target) -> int:
    """How many times predlog's middleware is on ``target`` (BentoML or Starlette)."""
    entries = [cls for cls, _ in getattr(target, "middlewares", ())]
    entries += [m.cls for m in getattr(target, "user_middleware", ())]
    return sum(1 for cls in entries if cls is PredictionLogMiddleware)


class TestLine:
    @pytest.fixture(autouse=True)
    def _disabled(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
        monkeypatch.setenv("PREDLOG_ENABLED", "false")  # no logger thread in this process
        monkeypatch.setenv("PREDLOG_DATA_DIR", str(tmp_path / "data"))

    def test_a_bentoml_service_without_the_line_gets_it_once(self):
        """Found absent, added with the options, then found present and never added twice."""
        service = _bento_service()
        assert find_line(service) is None
        assert add_line(service, {"model_name": "plain"}) is service
        assert find_line(service)["model_name"] == "plain"
        add_line(service, {"model_name": "again"})
        assert _count_lines(service) == 1

    def test_a_starlette_app_without_the_line_gets_it_once(self):
        """FastAPI: read from user_middleware; instrument() adds it, once."""
        app = _fastapi()
        assert find_line(app) is None
        add_line(app, {"model_name": "decide"})
        add_line(app, {})
        assert _count_lines(app) == 1
        assert find_line(app)["model_name"] == "decide"

    def test_an_app_with_the_line_is_found(self):
        """An app that called instrument() itself has the line, with its options."""
        app = _fastapi()
        instrument(app, model_name="own", sample_rate=0.5)
        line = find_line(app)
        assert (line["model_name"], line["sample_rate"]) == ("own", 0.5)
        assert expectation(line, "/predict")["sample_rate"] == 0.5

    def test_a_raw_asgi_app_is_wrapped_and_a_wrapped_one_found_under_others(self):
        """A plain ASGI callable is wrapped in the middleware; one already wrapped, even
        under another middleware, is found and served as it is."""
        wrapped = add_line(_answer, {"model_name": "raw"})
        assert isinstance(wrapped, PredictionLogMiddleware)
        assert wrapped.app is _answer
        outer = CORSMiddleware(wrapped, allow_origins=["*"])
        assert find_line(outer) is wrapped
        assert add_line(outer, {}) is outer
        assert find_line(CORSMiddleware(_answer, allow_origins=["*"])) is None


class TestExpectation:
    def test_requests_outside_the_lines_paths_or_methods_are_not_asked_for(self):
        """POST /v1/decide is logged by default, not when excluded or not POST."""
        assert expectation({}, "/v1/decide")["logged"]
        assert not expectation({"exclude_paths": ["/v1"]}, "/v1/decide")["logged"]
        assert not expectation({"paths": ["/score"]}, "/v1/decide")["logged"]
        assert not expectation({"methods": ["PUT"]}, "/v1/decide")["logged"]

    def test_where_the_records_go(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        """A local data dir is counted; Kafka, Iceberg and the line's own sinks are not."""
        monkeypatch.setenv("PREDLOG_DATA_DIR", str(tmp_path))
        found = expectation({"request_id_header": "X-Trace"}, "/p")
        assert (found["parquet"], found["elsewhere"], found["header"]) == (
            str(tmp_path),
            None,
            "X-Trace",
        )
        kafka = expectation({"kafka_bootstrap": "k:9092", "kafka_topic": "t"}, "/p")
        assert kafka["parquet"] is None
        assert "Kafka" in kafka["elsewhere"]
        assert expectation({"sinks": []}, "/p")["parquet"] is None

    def test_must_keep_is_what_the_sampler_keeps(self, monkeypatch: pytest.MonkeyPatch):
        """At sample_rate 0.3, with no other rule keeping a record, the logger's own
        sampler keeps exactly the ids must_keep names."""
        monkeypatch.setenv("PREDLOG_SAMPLE_RATE", "0.3")
        rate = expectation({}, "/p")["sample_rate"]
        ids = [f"run-c0-predlog-{n}" for n in range(400)]
        records = [{"request_id": i, "score": 0.1, "decision": "approve"} for i in ids]
        batch = build_batch(records, sample_rate=rate, new_version_window_s=0.0)
        kept = set(batch.column("request_id").to_pylist())
        assert kept == {i for i in ids if must_keep(i, rate)}
        assert 60 < len(kept) < 180


def _slices(counts: list[int], ms: float) -> list[Slice]:
    return [Slice(1.0, [ms * (1 + k / n) for k in range(n)]) for n in counts]


def _outcome(tmp_path: Path) -> Outcome:
    expect = {"logged": True, "header": "X-Request-ID", "sample_rate": 1.0}
    expect.update(parquet=str(tmp_path), elsewhere=None)
    kind = Kind("asgi", None, "predlog.instrument(app)", expect)
    plan = Plan("m:app", [b"{}"], "/p", 12.0, 3, 8, 0.5, tmp_path, {}, ["PREDLOG_X"])
    variants = {}
    for name, counts, ms in (
        ("predlog", [100, 300, 105], 2.0),
        ("pass-through", [100, 200, 100], 1.0),
    ):
        server = Server("m:app", kind, env={}, cwd=tmp_path, log=tmp_path / "log")
        v = Variant(name, server, tmp_path, _slices(counts, ms), _slices(counts, ms))
        v.ok_ids = [f"r-{n}" for n in range(50)]
        variants[name] = v
    variants["predlog"].asked, variants["predlog"].records = 50, 50
    return Outcome(plan, kind, "/p", 5000.0, 100.0, 1.0, variants)


class TestFigures:
    def test_pooled_columns_their_ratio_and_the_per_round_ratio(self, tmp_path: Path):
        """Throughput pooled over rounds is all requests over all seconds; the pooled
        ratio is those columns divided; the per-round ratio is the median of rounds."""
        row = figures(_outcome(tmp_path))["rows"][0]
        assert row["metric"] == "closed throughput req/s"
        assert (row["predlog"], row["pass_through"]) == pytest.approx((505 / 3, 400 / 3))
        assert row["pooled_ratio"] == pytest.approx(505 / 400)
        assert row["per_round_ratio"] == pytest.approx({"median": 1.05, "low": 1.0, "high": 1.5})

    def test_the_text_prints_the_same_figures(self, tmp_path: Path):
        """Every row of the JSON is a row of the table, with the same numbers."""
        found = figures(_outcome(tmp_path))
        printed = text(found)
        assert len(found["rows"]) == 7
        for row in found["rows"]:
            r = row["per_round_ratio"]
            line = (
                rf"{re.escape(row['label'])}\s+{row['predlog']:.2f}\s+{row['pass_through']:.2f}"
                rf"\s+{row['pooled_ratio']:.3f}\s+{r['median']:.3f} "
                rf"\(range {r['low']:.3f}-{r['high']:.3f}\)"
            )
            assert re.search(line, printed), row["label"]
        assert "pooled ratio" in printed
        assert "per-round ratio" in printed
        strict = json.loads(json.dumps(plain(found), allow_nan=False))
        assert strict["rows"] == found["rows"]
        assert strict["cpu_ms_per_request"]["ratio"] is None  # no CPU measured: no ratio

    def test_the_added_line_and_its_sources_are_said(self, tmp_path: Path):
        """The summary names the line the bench added and where its options came from."""
        printed = text(figures(_outcome(tmp_path)))
        assert "the service has none; bench added it" in printed
        assert "`predlog.instrument(app)` (options from PREDLOG_X)" in printed
        assert "records lost 0" in printed


def _bench(
    service: str,
    tmp_path: Path,
    *args: str,
    requests: Path = REQUESTS,
    duration: str = "12",
    rounds: str = "2",
    **env: str,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    html = tmp_path / "report.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "predlog",
            "bench",
            service,
            "--request",
            str(requests),
            "--duration",
            duration,
            "--rounds",
            rounds,
            "--html",
            str(html),
            *args,
        ],
        cwd=ROOT,
        env=child_env(
            BENTOML_HOME=str(tmp_path / "bentoml"),
            BENTOML_DO_NOT_TRACK="true",
            PYTHONPATH=f"{ROOT / 'plugin'}",
            **env,
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
        number = r"\s+[\d.]+"
        assert re.search(rf"{re.escape(label)}{number * 4} \(range ", out), label
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
        done, html = _bench(
            "examples.fraud_service.service:FraudService", tmp_path, PREDLOG_PSEUDONYM_KEY=KEY
        )
        _check_run(done, html)
        assert "BentoML service, POST /predict" in done.stdout

    def test_on_a_fastapi_app(self, tmp_path: Path):
        """The same service as a FastAPI app under uvicorn."""
        done, html = _bench(
            "examples.fraud_service.fastapi_app:app", tmp_path, PREDLOG_PSEUDONYM_KEY=KEY
        )
        _check_run(done, html)
        assert "ASGI app, POST /predict" in done.stdout

    def test_a_service_that_cannot_start_is_one_message(self, tmp_path: Path):
        """Without the pseudonym key the fraud service refuses to start: said, no traceback."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "predlog",
                "bench",
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


def _applicants(tmp_path: Path) -> Path:
    path = tmp_path / "applicants.jsonl"
    path.write_text(
        '{"applicant": {"income": 52000, "debt": 18000, "age": 41}}\n'
        '{"applicant": {"income": 30000, "debt": 45000, "age": 23}}\n'
    )
    return path


def _quick(service: str, tmp_path: Path, *args: str, **env: str):
    """A short run: one round, 4 s of load; the whole run well under a minute."""
    done, _ = _bench(
        service, tmp_path, *args, requests=_applicants(tmp_path), duration="4", rounds="1", **env
    )
    return done


@pytest.mark.integration
class TestBenchBeforeAdopting:
    def test_a_bentoml_service_without_the_line_gets_it(self, tmp_path: Path):
        """CreditBare has no predlog line: the bench adds it, says so, and every request
        predlog was asked to record has its record."""
        done = _quick("tests.bench_credit_service:CreditBare", tmp_path, "--model-name", "credit")
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert "BentoML service, POST /assess" in out
        assert "the service has none; bench added it" in out
        assert (
            "`predlog.instrument(CreditBare, model_name='credit')` (options from --model-name)"
            in out
        )
        answered = int(re.search(r"answered (\d+) requests", out).group(1))
        asked = int(re.search(r"was asked to record (\d+)", out).group(1))
        written = int(re.search(r"wrote (\d+) records; records lost 0$", out, re.M).group(1))
        assert answered > 20
        assert asked == answered
        assert written >= answered
        assert "pass-through wrote 0 records" in out

    def test_a_fastapi_app_without_the_line_as_json(self, tmp_path: Path):
        """A FastAPI app without the line, sampled at 0.5 by PREDLOG_SAMPLE_RATE: -o json
        parses, names the line and its options, and holds the table's figures."""
        done = _quick(
            "tests.bench_decide_app:app",
            tmp_path,
            "--path",
            "/v1/decide",
            "-o",
            "json",
            PREDLOG_SAMPLE_RATE="0.5",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        found = json.loads(done.stdout)
        assert (found["kind"], found["path"]) == ("asgi", "/v1/decide")
        assert found["line"] == {
            "added": "predlog.instrument(app)",
            "options_from": ["PREDLOG_SAMPLE_RATE"],
        }
        records = found["records"]
        assert records["sample_rate"] == 0.5
        assert 0 < records["asked"] < records["answered"]
        assert records["written"] >= records["asked"]
        assert records["lost"] == 0
        assert [row["metric"] for row in found["rows"]][:2] == [
            "closed throughput req/s",
            "closed p50 ms",
        ]
        for row in found["rows"]:
            assert row["predlog"] > 0
            assert row["pass_through"] > 0
            assert row["pooled_ratio"] == pytest.approx(row["predlog"] / row["pass_through"])
        assert found["cpu_ms_per_request"]["predlog"] > 0

    def test_an_app_with_the_line_is_measured_as_it_is(self, tmp_path: Path):
        """The app that calls instrument() itself is served as it is; its records counted."""
        done = _quick("tests.bench_decide_app:lined", tmp_path, "--path", "/v1/decide")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "predlog's line: the service has it; measured as it is" in done.stdout
        assert "bench added" not in done.stdout
        assert re.search(r"wrote [1-9]\d* records; records lost 0$", done.stdout, re.M)

    def test_options_for_a_line_the_service_already_has_are_refused(self, tmp_path: Path):
        """--model-name cannot be honoured on a service with its own line: one line, exit 1."""
        done = _quick("tests.bench_decide_app:lined", tmp_path, "--model-name", "x")
        assert done.returncode == 1
        assert "has predlog's line" in done.stderr
        assert "model_name applies only to a line the bench adds" in done.stderr
        assert "Traceback" not in done.stderr
