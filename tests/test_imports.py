"""What predlog loads in a process that never logs, and what a logging one never loads.

BentoML's supervisor imports the service module as each worker does, and never logs a
record: numpy, pyarrow and pandas there cost it about 115 MiB of resident memory
(``benchmarks/bench_memory.py``). They load in the process that logs, when its logger
starts; pandas in none, since predlog never uses it.

Each check runs in a fresh interpreter: this one has loaded all three already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import child_env

HEAVY = ("numpy", "pyarrow", "pandas")
KAFKA = os.environ.get("PREDLOG_TEST_KAFKA")

#: A small BentoML service predlog's tests have not seen, in the shape the README gives.
SERVICE = """\
from __future__ import annotations

from typing import Any

import bentoml
{predlog_import}

@bentoml.service(name="imports_probe")
class ImportsProbe:
    @bentoml.api
    def predict(self, features: dict[str, Any]) -> dict[str, Any]:
        score = min(1.0, float(features.get("amount", 0.0)) / 1000.0)
        return {{"score": score, "decision": "declined" if score > 0.5 else "approved"}}

{predlog_line}
"""

#: Imports the service, then instruments a FastAPI and a Starlette app; prints which of
#: HEAVY are loaded after each step, as one JSON object on the last line.
SERVE_ONLY = """\
import json
import sys

HEAVY = {heavy!r}
seen = {{}}
sys.path.insert(0, {directory!r})
import {module}

seen["service"] = sorted(m for m in HEAVY if m in sys.modules)

from fastapi import FastAPI
from starlette.applications import Starlette

{instrument}
seen["apps"] = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps(seen))
"""

INSTRUMENT_APPS = """\
import predlog

for app in (FastAPI(), Starlette()):
    predlog.instrument(app, model_name="imports_probe", model_version="v1")
"""


def run_child(code: str, tmp_path: Path) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; the JSON object it printed last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env(
            PREDLOG_DATA_DIR=str(tmp_path / "data"),
            BENTOML_HOME=str(tmp_path / "bentoml"),
            BENTOML_DO_NOT_TRACK="true",
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


#: The README's audit example, as a factory (made in the process that serves).
AUDITED = """\
import predlog
from predlog.audit import AuditLog, AuditSink, ReasonTable, signing_key
"""
AUDIT_LINE = (
    'predlog.instrument(ImportsProbe, model_name="imports_probe", audit=lambda: AuditSink(\n'
    '    AuditLog("audit", signing_key=signing_key()),\n'
    '    reasons=ReasonTable({"amount": "Amount unusually high"}, features=["amount"]),\n'
    "))"
)
ONE_LINE = 'predlog.instrument(ImportsProbe, model_name="imports_probe", model_version="v1")'


def serve_only(
    tmp_path: Path, *, with_predlog: bool, audited: bool = False
) -> dict[str, list[str]]:
    """What of HEAVY a process that imports the service and instruments apps has loaded."""
    module = "probe_bare"
    predlog_import = predlog_line = ""
    if with_predlog:
        module = "probe_audited" if audited else "probe_with_predlog"
        predlog_import = AUDITED if audited else "import predlog"
        predlog_line = AUDIT_LINE if audited else ONE_LINE
    (tmp_path / f"{module}.py").write_text(
        SERVICE.format(predlog_import=predlog_import, predlog_line=predlog_line)
    )
    code = SERVE_ONLY.format(
        heavy=HEAVY,
        directory=str(tmp_path),
        module=module,
        instrument=INSTRUMENT_APPS if with_predlog else "",
    )
    return run_child(code, tmp_path)


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The same process without predlog: the service module without the line, the
    apps not instrumented."""
    return serve_only(tmp_path_factory.mktemp("bare"), with_predlog=False)


class TestServeOnly:
    def test_service_and_apps_load_nothing_heavy(self, tmp_path, bare):
        """Importing a service with predlog's line, then instrumenting a FastAPI and a
        Starlette app, loads none of numpy, pyarrow, pandas the bare process does not."""
        seen = serve_only(tmp_path, with_predlog=True)
        assert seen["service"] == bare["service"], "after import service"
        assert seen["apps"] == bare["apps"], "after instrument(FastAPI()), (Starlette())"

    def test_service_naming_the_audit_sink_loads_nothing_heavy(self, tmp_path, bare):
        """A service that imports the audit names and gives the line an audit sink (the
        README's example) loads nothing heavy either: the sink is made where it writes."""
        seen = serve_only(tmp_path, with_predlog=True, audited=True)
        assert seen["service"] == bare["service"], "after import service"

    def test_bare_process_loads_none_of_them(self, bare):
        """The comparison means something: without predlog, the service and the apps
        load none of the three."""
        assert bare == {"service": [], "apps": []}


#: Makes a logger with {options}, logs 200 records, flushes and closes it; prints its
#: stats and which of HEAVY are loaded, as one JSON object on the last line.
LOG = """\
import json
import sys

import predlog

{setup}
log = predlog.PredictionLogger(
    model_name="imports_probe", data_dir={data!r}, install_signal_handlers=False, {options}
)
for i in range(200):
    log.log(
        request_id=f"req-{{i}}",
        features={{"amount": float(i), "channel": "web"}},
        score=i / 200,
        decision="declined" if i > 100 else "approved",
        threshold=0.5,
        explanation={{"method": "exact", "contributions": {{"amount": 0.3}}}},
    )
assert log.flush(60.0)
log.close()
loaded = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"stats": log.stats(), "loaded": loaded}}))
"""

AUDIT_SINK = """\
from cryptography.hazmat.primitives.asymmetric import ed25519

from predlog.audit import AuditLog, AuditSink, ReasonTable

key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
audit = AuditSink(
    AuditLog({audit!r}, signing_key=key),
    reasons=ReasonTable({{"amount": "Amount unusually high"}}, features=["amount"]),
)
"""


def logged(tmp_path: Path, *, setup: str = "", options: str = "") -> dict[str, Any]:
    """What a process that logged 200 records with these options has loaded."""
    code = LOG.format(setup=setup, options=options, data=str(tmp_path / "data"), heavy=HEAVY)
    result = run_child(code, tmp_path)
    assert result["stats"]["delivered"] == 200, result["stats"]
    return result


class TestLogging:
    def test_logging_to_parquet_loads_neither_pyarrow_nor_pandas(self, tmp_path):
        """A logger that logs and flushes to a local Parquet layout, with the extension
        built (as here), loads numpy only: the extension builds the Arrow columns and
        writes the files."""
        result = logged(tmp_path, options="native_decode=True")
        assert list((tmp_path / "data" / "predictions").glob("date=*/*.parquet"))
        assert result["loaded"] == ["numpy"]

    def test_operational_log_never_loads_pandas(self, tmp_path):
        """With operational logs too (a sink given pyarrow batches), pandas stays out."""
        result = logged(tmp_path, options="operational_log=True")
        assert "pandas" not in result["loaded"]

    def test_audit_sink_never_loads_pandas(self, tmp_path):
        """With an audit sink, pandas stays out."""
        setup = AUDIT_SINK.format(audit=str(tmp_path / "audit"))
        result = logged(tmp_path, setup=setup, options="audit=audit")
        assert "pandas" not in result["loaded"]

    @pytest.mark.skipif(not KAFKA, reason="PREDLOG_TEST_KAFKA names no broker")
    def test_kafka_sink_never_loads_pandas(self, tmp_path):
        """With the Kafka sink, pandas stays out (tests/test_kafka_pandas.py sends records
        of every kind the encoding treats apart)."""
        topic = f"imports-{uuid.uuid4().hex[:8]}"
        options = f"kafka_bootstrap={KAFKA!r}, kafka_topic={topic!r}"
        result = logged(tmp_path, options=options)
        assert "pandas" not in result["loaded"]
