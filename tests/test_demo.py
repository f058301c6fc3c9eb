from __future__ import annotations

import subprocess
import sys

import pytest
from services.bentoserve import free_port

from tests.helpers import ROOT, child_env, read_all

pytestmark = pytest.mark.integration


class TestMinimalDemo:
    def test_demo_serves_logs_and_investigates(self, tmp_path):
        """The framework-free example answers every request and logs each one to Parquet."""
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples/minimal_service/serve.py"),
                "--exit-after-demo",
                "--port",
                str(free_port()),
                "--requests",
                "120",
            ],
            cwd=tmp_path,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "one prediction, investigated:" in proc.stdout
        table = read_all(tmp_path / "predlog-data")
        assert sorted(table.column("request_id").to_pylist()) == [
            f"demo-{i:04d}" for i in range(120)
        ]
        assert set(table.column("model_version").to_pylist()) == {"v2.1.0"}
        assert set(table.column("decision").to_pylist()) <= {"approved", "review", "declined"}


class TestFraudDemo:
    def test_make_demo_serves_and_investigates(self, tmp_path):
        """`make demo` runs bentoml serve, logs every request, and shows a declined one."""
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "examples.fraud_service.demo",
                "--exit-after-demo",
                "--port",
                str(free_port()),
                "--requests",
                "60",
                "--data",
                str(tmp_path / "d"),
            ],
            cwd=ROOT,
            env=child_env(PYTHONPATH=f"{ROOT / 'plugin'}:{ROOT}"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "as predlog recorded it" in proc.stdout
        table = read_all(tmp_path / "d")
        ids = sorted(table.column("request_id").to_pylist())
        assert ids == [f"demo-{i:04d}" for i in range(60)]
        log_lines = (tmp_path / "d" / "server.log").read_text().splitlines()
        assert sum('"event":"prediction_complete"' in line for line in log_lines) == 60
