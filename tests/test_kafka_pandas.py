"""The Kafka sink never makes the application's process import pandas.

Arrow's conversion of Python values imports pandas on first use where it is installed
(about 40 MiB, and 40,000 objects for the application's garbage collector to walk on
every full pass); the sink makes its Arrow scalars and arrays from bytes instead.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, child_env
from tests.services import fresh_topic, kafka_bootstrap

#: A process that sends records of every kind the encoding treats apart through a
#: KafkaSink, then prints whether pandas was imported and what the sink counted.
CHILD = """
import json, sys, tempfile
import predlog
from predlog import KafkaSink
from predlog.sinks.kafka import encode

class Encoding:
    "A sink that only encodes, as the spool does."
    count = 0
    def export(self, batch):
        self.count += len(encode(batch))
    def flush(self):
        pass
    def close(self):
        pass

bootstrap, topic = sys.argv[1], sys.argv[2]
encoding = Encoding()
with tempfile.TemporaryDirectory() as spool:
    sink = KafkaSink(bootstrap_servers=bootstrap, topic=topic, spool_dir=spool)
    log = predlog.PredictionLogger(sinks=[sink, encoding], install_signal_handlers=False)
    for i in range(40):
        trace = {"trace_id": f"{i + 1:032x}", "span_id": f"{i + 1:016x}"} if i % 2 else {}
        if i % 5 == 0:
            trace = {"trace_id": "0" * 32, "span_id": "1" * 16}
        log.log(
            request_id=None if i % 4 == 0 else ("" if i % 4 == 1 else f'r-"{i}"\\\\n'),
            features={"amount": i / 3, "text": "é\\u2028"},
            score=None if i % 7 == 0 else i / 7,
            decision=f"d{i % 3}",
            user_segment='quote " and \\\\ backslash' if i % 3 else None,
            extra={"i": i},
            **trace,
        )
    closed = log.close(timeout=60)
    stats = sink.stats()
print(json.dumps({
    "pandas": "pandas" in sys.modules,
    "closed": closed,
    "sent": stats["sent"],
    "spooled": stats["spooled"],
    "encoded": encoding.count,
}))
"""


@pytest.mark.integration
class TestNoPandas:
    def test_sending_and_encoding_records_never_imports_pandas(self):
        """Records with and without request ids, traces (valid, all-zero, none), text
        that JSON escapes, nulls and floats go to the broker and through encode() in a
        fresh process, and pandas is never imported there."""
        pytest.importorskip("pandas")  # where it is not installed, nothing could import it
        out = subprocess.run(
            [sys.executable, "-c", CHILD, kafka_bootstrap(), fresh_topic("pandas")],
            env=child_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        assert result == {
            "pandas": False,
            "closed": True,
            "sent": 40,
            "spooled": 0,
            "encoded": 40,
        }
