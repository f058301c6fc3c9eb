"""A writer that logs into an Iceberg table until it is killed.

``python tests/iceberg_staging_child.py TABLE DATA_DIR SPOOL_DIR``: a real
PredictionLogger logging records ``k-0``, ``k-1``, ... about 500 a second, with a short
commit interval so that files roll (and are staged) every half second. The test kills
it with SIGKILL while the store refuses connections; the catalog is configured by the
``PYICEBERG_CATALOG__*`` variables it inherits.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugin"))

import predlog


def main(table: str, data_dir: str, spool_dir: str) -> None:
    log = predlog.PredictionLogger(
        data_dir=data_dir,
        spool_dir=spool_dir,
        iceberg_table=table,
        iceberg_commit_interval_s=0.5,
        flush_interval_s=0.1,
        install_signal_handlers=False,
    )
    print("started", flush=True)
    i = 0
    while True:
        for _ in range(50):
            log.log(request_id=f"k-{i}", features={"i": i}, score=0.5)
            i += 1
        time.sleep(0.1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
