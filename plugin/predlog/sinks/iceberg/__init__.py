"""The Apache Iceberg sink: prediction records in an Iceberg table.

Workers write Parquet data files into the table's data location and leave a small
pending note beside them; one committer adds the noted files to the table in one
commit per interval. ``_catalog`` finds and opens the table (the embedded SQLite
catalog under the data directory, or any pyiceberg catalog configured by name).

Everything here needs pyiceberg: ``pip install 'predlog[iceberg]'``.
"""

from __future__ import annotations
