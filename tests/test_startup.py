"""A configuration error stops the server at start-up, with the message.

Servers build middleware lazily, on the first request or lifespan event, and uvicorn
serves on after a lifespan error: a server that looks up and fails every prediction.
``predlog.instrument`` checks when the middleware is added, so these servers must exit.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from services.bentoserve import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import predlog
from predlog import ConfigError, PredictionLogMiddleware
from predlog.testing import MemorySink
from tests.helpers import ROOT, bento_env, child_env, start_python

_KEY = "0123456789abcdef0123"
#: Long enough for a server that does start to be listening: the test then fails.
_EXIT_WITHIN_S = 90


def _app() -> Starlette:
    async def predict(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"score": float(body.get("amount", 0)) / 1000})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


# -- the check itself -------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "options", "named"),
    [
        ({"PREDLOG_SAMPLE_RATE": "abc"}, {}, "PREDLOG_SAMPLE_RATE"),
        ({}, {"sample_rate": 2.0}, "sample_rate"),
        ({}, {"pii_fields": ["card_id"]}, "PREDLOG_PSEUDONYM_KEY"),
        ({}, {"data_dir": "hdfs://namenode/predictions"}, "data_dir"),
        ({"PREDLOG_DATA_DIR": "https://bucket/p"}, {}, "PREDLOG_DATA_DIR"),
        ({}, {"paths": ["predict"]}, "paths"),
        ({}, {"sampel_rate": 0.5}, "sampel_rate"),
        ({"PREDLOG_KAFKA_TOPIC": "t"}, {}, "PREDLOG_KAFKA_BOOTSTRAP"),
    ],
)
def test_check_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], options: dict[str, object], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        PredictionLogMiddleware.check(**options)  # type: ignore[arg-type]
    assert caught.value.setting == named
    assert str(caught.value).startswith(f"{named}: ")


def test_disabled_middleware_still_refuses_a_bad_setting() -> None:
    """PREDLOG_ENABLED=false starts nothing, but a bad value must not wait until predlog
    is switched back on to be found."""
    with pytest.raises(ConfigError, match=r"^sample_rate: "):
        PredictionLogMiddleware(_app(), enabled=False, sample_rate=5.0)
    passing = PredictionLogMiddleware(_app(), enabled=False, sample_rate=0.5)
    assert passing.logger is None


def test_data_dir_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"^data_dir: Parquet files cannot go there"):
        PredictionLogMiddleware.check(data_dir=str(occupied / "predlog"))
    # With sinks of its own, the logger writes nothing under data_dir: nothing to refuse.
    PredictionLogMiddleware.check(data_dir=str(occupied / "predlog"), sinks=[MemorySink()])


def test_check_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "d"
    PredictionLogMiddleware.check(data_dir=str(data_dir), model_name="fraud")
    assert list(data_dir.iterdir()) == []  # made and probed, nothing left behind


def test_instrument_adds_the_middleware() -> None:
    app = _app()
    sink = MemorySink()
    predlog.instrument(app, model_name="fraud", sinks=[sink], flush_interval_s=0.05)
    with TestClient(app) as client:
        answer = client.post("/predict", json={"amount": 500}, headers={"X-Request-ID": "r-1"})
        assert answer.headers["x-request-id"] == "r-1"
    deadline = time.monotonic() + 10
    while not sink.records and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r["request_id"] for r in sink.records] == ["r-1"]
    assert sink.records[0]["raw_score"] == 0.5


def test_instrument_refuses_before_adding(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app()
    monkeypatch.setenv("PREDLOG_OVERFLOW", "explode")
    with pytest.raises(ConfigError, match=r"^PREDLOG_OVERFLOW: "):
        predlog.instrument(app, model_name="fraud")
    assert app.user_middleware == []


class TestOneLine:
    """A setting's error that ends the process prints its one line, not a traceback."""

    def test_uncaught_it_prints_one_line_and_exits_1(self, tmp_path: Path) -> None:
        """instrument()'s ConfigError, left uncaught, is one line on stderr and status 1."""
        proc = start_python(
            """
            from starlette.applications import Starlette
            import predlog
            predlog.instrument(Starlette(), model_name="credit")
            """,
            PREDLOG_SAMPLE_RATE="2",
            PREDLOG_DATA_DIR=str(tmp_path / "d"),
        )
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1
        assert err.splitlines() == [
            "predlog.errors.ConfigError: PREDLOG_SAMPLE_RATE: must be between 0 and 1, got 2.0"
        ]

    @pytest.mark.parametrize(
        ("raised", "last"),
        [
            ("RuntimeError('own failure')", "RuntimeError: own failure"),
            (
                "ConfigError('my_setting', 'not ours')",
                "predlog.errors.ConfigError: my_setting: not ours",
            ),
        ],
    )
    def test_every_other_exception_keeps_its_traceback(
        self, tmp_path: Path, raised: str, last: str
    ) -> None:
        """Once instrument() has refused a setting, any other exception, a ConfigError
        from elsewhere too, still prints its whole traceback."""
        proc = start_python(
            f"""
            from starlette.applications import Starlette
            import predlog
            from predlog import ConfigError
            try:
                predlog.instrument(Starlette(), model_name="credit")
            except ConfigError:
                pass  # caught: the application chose to carry on
            raise {raised}
            """,
            PREDLOG_SAMPLE_RATE="2",
            PREDLOG_DATA_DIR=str(tmp_path / "d"),
        )
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1
        assert err.startswith("Traceback (most recent call last):"), err
        assert err.splitlines()[-1] == last


def test_instrument_takes_only_apps() -> None:
    with pytest.raises(TypeError, match="BentoML service or a Starlette/FastAPI app, not dict"):
        predlog.instrument({}, model_name="fraud")


# -- real servers -----------------------------------------------------------------


def _must_exit(command: list[str], env: dict[str, str], named: str) -> None:
    """``command`` exits with an error naming ``named``, without serving a request."""
    try:
        done = subprocess.run(
            command,
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=_EXIT_WITHIN_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{command[0]} kept running with a bad setting:\n{exc.stderr!s:.2000}")
    assert done.returncode == 1, done.stderr[-3000:]
    # The error's one line, last, with none of the servers' frames above it.
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"predlog.errors.ConfigError: {named}: "), done.stderr[-3000:]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "PREDLOG_PSEUDONYM_KEY"),  # the fraud example's PII needs a key
        ({"PREDLOG_PSEUDONYM_KEY": _KEY, "PREDLOG_SAMPLE_RATE": "abc"}, "PREDLOG_SAMPLE_RATE"),
        ({"PREDLOG_PSEUDONYM_KEY": _KEY, "PREDLOG_SAMPLE_RATE": "2"}, "PREDLOG_SAMPLE_RATE"),
    ],
)
def test_bentoml_serve_does_not_start(tmp_path: Path, env: dict[str, str], named: str) -> None:
    bentoml = str(Path(sys.executable).parent / "bentoml")
    command = [bentoml, "serve", "examples.fraud_service.service:FraudService"]
    command += ["--host", "127.0.0.1", "--port", str(free_port())]
    _must_exit(command, bento_env(tmp_path / "data", tmp_path / "bentoml", **env), named)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "PREDLOG_PSEUDONYM_KEY"),
        ({"PREDLOG_PSEUDONYM_KEY": _KEY, "PREDLOG_DATA_DIR": "ftp://b/p"}, "PREDLOG_DATA_DIR"),
        ({"PREDLOG_PSEUDONYM_KEY": _KEY, "PREDLOG_SAMPLE_RATE": "2.0"}, "PREDLOG_SAMPLE_RATE"),
    ],
)
def test_uvicorn_does_not_start(tmp_path: Path, env: dict[str, str], named: str) -> None:
    command = [sys.executable, "-m", "uvicorn", "examples.fraud_service.fastapi_app:app"]
    command += ["--host", "127.0.0.1", "--port", str(free_port())]
    extra = {"PREDLOG_DATA_DIR": str(tmp_path / "data"), **env}
    _must_exit(command, child_env(PYTHONPATH=f"{ROOT / 'plugin'}:{ROOT}", **extra), named)
