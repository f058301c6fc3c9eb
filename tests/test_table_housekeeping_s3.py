"""Orphan removal on a table whose warehouse is an object store (moto's S3 server): the
store's listing and the table's file locations name the same objects.

A local warehouse (``test_compact.py``) cannot show this: there a path is a path. On an
object store the listing says ``bucket/key`` and the table ``s3://bucket/key``, and a
mismatch would take every committed file for an orphan.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from predlog.testing import build_batch
from tests.services import CREDENTIALS, Moto

pytest.importorskip("pyiceberg")
pytestmark = pytest.mark.integration


@pytest.fixture
def table(moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A table in a SQL catalog on SQLite, its warehouse in a fresh bucket."""
    from predlog.sinks.iceberg import open_table

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    for name, value in {
        **CREDENTIALS,
        "PYICEBERG_CATALOG__LAKE__URI": f"sqlite:///{tmp_path / 'catalog.db'}",
        "PYICEBERG_CATALOG__LAKE__WAREHOUSE": f"s3://{bucket}/warehouse",
        "PYICEBERG_CATALOG__LAKE__S3__ENDPOINT": moto.url,
        "PYICEBERG_CATALOG__LAKE__S3__REGION": CREDENTIALS["AWS_DEFAULT_REGION"],
        "PYICEBERG_CATALOG__LAKE__S3__ACCESS_KEY_ID": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "PYICEBERG_CATALOG__LAKE__S3__SECRET_ACCESS_KEY": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }.items():
        monkeypatch.setenv(name, value)
    return open_table("lake.preds.kept", data_dir=tmp_path / "data")


def test_only_the_file_nothing_names_is_removed(table: Any) -> None:
    """With no age window: the committed file and the noted one stay, the other goes."""
    from predlog.sinks.iceberg import FileWriter, Notes, filesystem
    from predlog.tools.compact import remove_orphan_files

    writer = FileWriter(table)
    rows = build_batch([{"request_id": "r", "score": 0.5, "features": {}}], model_name="m")
    today = int(time.time()) // 86_400
    committed, noted, orphan = (writer.write(today, "m", rows) for _ in range(3))
    table.add_files([committed.location])
    Notes(table).write(noted, writer="a writer that has not committed yet")

    assert remove_orphan_files(table, older_than=timedelta(0)) == 1

    def there(location: str) -> bool:
        fs, path = filesystem(table, location)
        return bool(fs.get_file_info(path).type == pafs.FileType.File)

    assert there(committed.location) and there(noted.location)
    assert not there(orphan.location)
