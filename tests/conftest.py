"""Shared fixtures: every test starts with no PREDLOG_* environment and its own data dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees configuration from the machine it runs on."""
    for name in list(os.environ):
        if name.startswith("PREDLOG_") or name == "PREDICTION_LOG_SAMPLE_RATE":
            monkeypatch.delenv(name)
    return


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "predlog-data"
