"""S3 archive of an audit log, on write-once storage (S3 Object Lock, COMPLIANCE mode).

At every checkpoint the entries appended since the last upload are written as one
sealed object, ``<prefix>entries/<first>-<last>.seg`` (the local record framing, so
the same verifier reads it), and the checkpoint as
``<prefix>checkpoints/<size>-<sequence>.json`` (``<size>.json`` for a v1 checkpoint,
written before checkpoints carried a sequence).
Both carry COMPLIANCE retention, 7 years by default: in that mode nobody, the root
account included, can delete a version or shorten its retention before it expires.
An overwrite only adds a newer version; the locked original stays readable, and
``verify`` on the archive reports the overwritten object as tampered.

The bucket must be created with Object Lock enabled. boto3 finds credentials and
the endpoint (``AWS_ENDPOINT_URL``) the usual way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from predlog.audit._store import HEAD, Record, parse_records
from predlog.errors import ConfigError

DEFAULT_RETENTION_DAYS = 7 * 365


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix ending in / or empty)."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


class S3Archive:
    """Sealed audit segments and checkpoints in an Object Lock bucket.

    A missing bucket or a retention that is not a positive number of days is a
    ConfigError at construction, before any request is made.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        client: Any = None,
    ) -> None:
        if not isinstance(bucket, str) or not bucket:
            raise ConfigError("bucket", f"must name an S3 bucket, got {bucket!r}")
        if (
            isinstance(retention_days, bool)
            or not isinstance(retention_days, int)
            or retention_days <= 0
        ):
            raise ConfigError(
                "retention_days", f"must be a positive number of days, got {retention_days!r}"
            )
        if client is None:
            import boto3  # noqa: PLC0415  # the audit extra

            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.retention_days = retention_days

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Archive:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **kwargs)

    def _lock(self) -> dict[str, Any]:
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=self.retention_days)
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}

    def _keys(self, folder: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}{folder}/"):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def uploaded_until(self) -> int:
        """Number of entries already archived (they are archived in order)."""
        ends = [int(key.rsplit("-", 1)[1].split(".")[0]) + 1 for key in self._keys("entries")]
        return max(ends, default=0)

    def put_segment(self, first: int, records: list[tuple[int, bytes, bytes]]) -> str:
        blob = bytearray()
        for index, leaf, data in records:
            blob += HEAD.pack(len(data), index, leaf)
            blob += data
        last = first + len(records) - 1
        key = f"{self.prefix}entries/{first:012d}-{last:012d}.seg"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(blob), **self._lock())
        return key

    def put_checkpoint(self, size: int, line: bytes, *, sequence: int | None = None) -> str:
        """Seal one checkpoint line. With its ``sequence`` in the name, two checkpoints
        over the same size are two objects, not an overwrite the chain would report as
        a deleted checkpoint."""
        name = f"{size:012d}" if sequence is None else f"{size:012d}-{sequence:012d}"
        key = f"{self.prefix}checkpoints/{name}.json"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=line, **self._lock())
        return key

    # -- the reading side, shaped like ReadOnlyStore for verify() ----------------

    def records(self) -> Iterator[Record]:
        """Every archived record in order.

        Objects are stored whole, so unlike a local log's last segment there is no
        torn tail to skip: broken framing anywhere, the end included, raises
        UnreadableError.
        """
        position = 0
        for key in sorted(self._keys("entries")):
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            for record in parse_records(data, position, key):
                yield record
                position += 1

    def checkpoint_lines(self) -> list[bytes]:
        """The checkpoint lines in the order they were written: by size, then by
        sequence, the unsequenced (v1) name of a size first."""
        return [
            self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read().strip()
            for key in sorted(self._keys("checkpoints"), key=_checkpoint_order)
        ]


def _checkpoint_order(key: str) -> tuple[int, int]:
    """``.../<size>.json`` -> (size, -1); ``.../<size>-<sequence>.json`` -> (size, sequence)."""
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    size, _, sequence = name.partition("-")
    try:
        return int(size), int(sequence) if sequence else -1
    except ValueError:
        return -1, -1  # not a name the writer gives: read first, reported as unreadable
