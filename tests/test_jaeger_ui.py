"""Jaeger's own UI shows the demo's declined prediction, from the trace link the demo prints.

The Jaeger is the one the project's scripts start (services/up.sh: the binary built from
the Go module proxy, its UI built from the vendored source, services/jaeger.yaml). The
page is rendered by headless Chromium, which runs the UI's scripts: they fetch the trace
from Jaeger's API and draw its spans, so the spans are in the DOM only if the UI works.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.services import jaeger_url
from tests.test_analytics import CHROMIUM_FLAGS, ink
from tests.test_demo import run_fraud_demo

pytestmark = pytest.mark.integration

#: The server span and the example's two child spans (scoring.py).
SPANS = ("POST /predict", "feature_fetch", "inference")
#: What a Jaeger built without the UI's assets serves at every page.
PLACEHOLDER = "This is not the Jaeger UI you are looking for"


def chromium(url: str, tmp_path: Path, *args: str) -> str:
    """What headless Chromium prints for ``url`` once the page's scripts have run: the
    virtual time budget lets the UI fetch the trace and render before the dump."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run the tests with `make test`")
    return subprocess.run(
        [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=20000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout


class TestJaegerUI:
    def test_printed_trace_link_shows_the_declined_prediction_spans(self, tmp_path):
        """The link the demo prints opens Jaeger's UI on the declined prediction's trace,
        with the server span and the example's spans drawn, not the placeholder page."""
        query, otlp = jaeger_url()
        proc = run_fraud_demo(tmp_path / "d", "--jaeger", query, "--otlp", otlp)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        trace_id = re.search(r"trace id  ([0-9a-f]{32})", proc.stdout)
        link = re.search(r"^  UI        (\S+)$", proc.stdout, re.MULTILINE)
        assert trace_id and link, proc.stdout
        assert link.group(1) == f"{query}/trace/{trace_id.group(1)}"

        dom = chromium(link.group(1), tmp_path, "--dump-dom")
        assert PLACEHOLDER not in dom
        # Each span's row on the timeline labels it with its operation's name.
        drawn = re.findall(r'<small class="endpoint-name">([^<]*)</small>', dom)
        for name in SPANS:
            assert name in drawn, (name, drawn)
        assert trace_id.group(1)[:7] in dom  # the UI shows the trace's short id

        shot = tmp_path / "jaeger-trace.png"
        chromium(link.group(1), tmp_path, f"--screenshot={shot}", "--window-size=1400,900")
        assert ink(shot) > 0.01, "the screenshot is blank"
        # Kept where a person can look at the last run's page: the test's tmp dir goes away.
        shutil.copy(shot, Path(tempfile.gettempdir()) / "predlog-jaeger-trace.png")
