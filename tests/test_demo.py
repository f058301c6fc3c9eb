from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from PIL import Image
from services.bentoserve import free_port

from tests.helpers import ROOT, child_env, read_all
from tests.services import jaeger_url
from tests.test_analytics import ink, render

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


def run_fraud_demo(data_dir, *args):
    """``make demo`` as the Makefile runs it, stopping after the demo."""
    return subprocess.run(
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
            str(data_dir),
            *args,
        ],
        cwd=ROOT,
        env=child_env(PYTHONPATH=f"{ROOT / 'plugin'}:{ROOT}"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class TestFraudDemo:
    def test_make_demo_serves_traces_and_investigates(self, tmp_path):
        """`make demo` runs bentoml serve, logs every request, shows a declined one, and
        shows that prediction's trace, which Jaeger's API holds with the example's spans;
        `investigate --html` then draws that trace beside the record."""
        query, otlp = jaeger_url()
        proc = run_fraud_demo(tmp_path / "d", "--jaeger", query, "--otlp", otlp)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "as predlog recorded it" in proc.stdout
        table = read_all(tmp_path / "d")
        ids = sorted(table.column("request_id").to_pylist())
        assert ids == [f"demo-{i:04d}" for i in range(60)]
        log_lines = (tmp_path / "d" / "server.log").read_text().splitlines()
        assert sum('"event":"prediction_complete"' in line for line in log_lines) == 60

        shown = re.search(r"as predlog recorded it \((demo-\d+)\)", proc.stdout).group(1)
        printed = re.search(r"trace id  ([0-9a-f]{32})", proc.stdout)
        assert printed, proc.stdout
        trace_id = printed.group(1)
        (recorded,) = [r for r in table.to_pylist() if r["request_id"] == shown]
        assert recorded["decision"] == "declined"
        assert recorded["trace_id"] == trace_id
        assert f"UI        {query}/trace/{trace_id}" in proc.stdout
        (trace,) = httpx.get(f"{query}/api/traces/{trace_id}", timeout=10).json()["data"]
        names = {s["operationName"] for s in trace["spans"]}
        assert {"feature_fetch", "inference"} <= names

        # The waterfall command the demo prints, run as printed (predlog from this venv).
        printed_command = re.search(r"waterfall (.*)", proc.stdout).group(1)
        env_setting, program, *args = shlex.split(printed_command)
        assert program == "predlog" and env_setting == f"PREDLOG_JAEGER_URL={query}"
        assert args[-2:] == ["--html", "trace.html"]
        page = tmp_path / "investigate-trace.html"
        subprocess.run(
            [sys.executable, "-m", "predlog", *args[:-1], str(page)],
            env=child_env(PREDLOG_JAEGER_URL=query),
            check=True,
            capture_output=True,
            timeout=120,
        )
        dom, shot = render(page, tmp_path)
        waterfall = dom.split('<table class="waterfall">', 1)[1].split("</table>", 1)[0]
        for name in ("POST /predict", "feature_fetch", "inference"):
            assert f">{name}</td>" in waterfall, name
        assert "<td>predlog.prediction.decision</td><td>declined</td>" in dom
        assert f"<td>{shown}</td>" in dom
        assert ink(shot) > 0.01, "the screenshot is blank"
        colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
        assert any(c == (214, 39, 40) for _, c in colours), "no span bar drawn"
        # Kept where a person can look at the last run's page: the test's tmp dir goes away.
        shutil.copy(shot, Path(tempfile.gettempdir()) / "predlog-investigate-trace.png")

    def test_demo_without_jaeger_says_so_and_carries_on(self, tmp_path):
        """With no Jaeger at the given URL the demo says so in one line and still runs."""
        away = f"http://127.0.0.1:{free_port()}"
        proc = run_fraud_demo(tmp_path / "d", "--jaeger", away)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"traces: no Jaeger answers at {away}; carrying on without traces" in proc.stdout
        assert "as predlog recorded it" in proc.stdout
        assert "trace id" not in proc.stdout
        assert len(read_all(tmp_path / "d")) == 60
