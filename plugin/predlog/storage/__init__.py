"""Storage: getting bytes onto a disk or into an object store without losing them.

Every writer in predlog (the Parquet layout, the Iceberg sink, the Kafka spool, the
audit store, compaction) and every reader of the layout goes through these names:

* :func:`append_whole` and :func:`fsync_dir`: durable appends and renames;
* :class:`Spool`: the checksummed, size-capped segment log a sink falls back on;
* :class:`Location` (:func:`locate`, :func:`probe`): a path or ``s3://``/``gs://``/
  ``file://`` URL as one pyarrow filesystem;
* :class:`Uploads`: complete files staged on local disk and published whole to a
  :class:`Destination` (a :class:`LocationDestination`, or a table's), in the
  background, with retry and backoff; :func:`abandoned` tells a dead writer's staged
  files, named with :func:`host_tag` and its pid, so that the next process adopts them.

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
from predlog.storage._staging import (
    Destination,
    LocationDestination,
    Staged,
    Uploads,
    abandoned,
    host_tag,
)

__all__ = [
    "LOCK_FILE",
    "Destination",
    "Location",
    "LocationDestination",
    "Spool",
    "SpoolFullError",
    "SpoolLockedError",
    "Staged",
    "UnreachableError",
    "Uploads",
    "abandoned",
    "adoptable",
    "append_whole",
    "claim",
    "fsync_dir",
    "host_tag",
    "locate",
    "newest_first",
    "probe",
]
