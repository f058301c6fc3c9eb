"""Shared fixtures: every test starts with no PREDLOG_* environment and its own data dir."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import settings

from tests.services import Moto

settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees configuration from the machine it runs on."""
    for name in list(os.environ):
        if name.startswith("PREDLOG_TEST_") or name == "PREDLOG_CRASH_SEED":
            continue  # where the services are, and the crash tests' replay seed: not settings
        if name.startswith("PREDLOG_") or name == "PREDICTION_LOG_SAMPLE_RATE":
            monkeypatch.delenv(name)
    if os.environ.get("PREDLOG_TEST_PYTHON_DECODER"):
        # `make test` runs the decoding tests once more on the pure-Python decoder.
        monkeypatch.setenv("PREDLOG_NATIVE_DECODE", "false")
    return


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """configure_logging() changes process-wide state; undo it after every test."""
    yield
    structlog.reset_defaults()
    stdlib = logging.getLogger("predlog")
    for handler in list(stdlib.handlers):
        stdlib.removeHandler(handler)
    stdlib.propagate = True


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "predlog-data"


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """moto's S3 server, one per test module (it keeps objects in memory)."""
    server = Moto()
    server.start()
    yield server
    server.stop()
