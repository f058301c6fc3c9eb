"""Storage: getting bytes onto a disk or into an object store without losing them.

Every writer in predlog (the Parquet layout, the Iceberg sink, the Kafka spool, the
audit store, compaction) and every reader of the layout goes through these names:

* :func:`append_whole` and :func:`fsync_dir`: durable appends and renames;
* :class:`Spool`: the checksummed, size-capped segment log a sink falls back on;
* :class:`Location` (:func:`locate`, :func:`probe`): a path or ``s3://``/``gs://``/
  ``file://`` URL as one pyarrow filesystem;
* :class:`Uploads`: complete files staged on local disk and uploaded whole, in the
  background, with retry, backoff and a byte bound.

Nothing here knows what a prediction record is.
"""

from __future__ import annotations

from predlog.storage._durable import append_whole, fsync_dir
from predlog.storage._location import (
    Location,
    UnreachableError,
    locate,
    newest_first,
    probe,
)
from predlog.storage._spool import (
    LOCK_FILE,
    Spool,
    SpoolFullError,
    SpoolLockedError,
    adoptable,
    claim,
)
from predlog.storage._staging import Uploads

__all__ = [
    "LOCK_FILE",
    "Location",
    "Spool",
    "SpoolFullError",
    "SpoolLockedError",
    "UnreachableError",
    "Uploads",
    "adoptable",
    "append_whole",
    "claim",
    "fsync_dir",
    "locate",
    "newest_first",
    "probe",
]
