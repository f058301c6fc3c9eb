"""Where the prediction data lives: a data directory turned into a pyarrow filesystem.

``data_dir`` is a local path, a ``file://`` URL, or an object store URL (``s3://bucket/
prefix``, ``gs://bucket/prefix``). Everything that reads or writes the Parquet layout
(the sink, the analytics, compaction, the Iceberg catalog) resolves it here, once, so
that a URL means the same store with the same credentials everywhere.

pyarrow's S3 filesystem reads the access keys and the region (``AWS_REGION`` or
``AWS_DEFAULT_REGION``) itself, through the AWS SDK's default chain; it does not read
``AWS_ENDPOINT_URL``, which every other AWS tool honours and which is how MinIO, moto
and other S3-compatible stores are reached. That gap is filled here, and the region is
passed explicitly, so that building the filesystem never asks the network which region
a bucket is in (``FileSystem.from_uri`` would, and fail at start-up when the store is
down).

pyarrow is imported by the functions that build or use a filesystem, not by this
module: the spool and the logger's start-up checks import :mod:`predlog.storage` in
processes that never touch a store (BentoML's supervisor imports the service too).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from predlog._settings import local_path, url_scheme

if TYPE_CHECKING:
    import pyarrow.fs as pafs

#: Errors in a store's answer that mean "this configuration cannot work" (missing
#: bucket, refused credentials), as opposed to a store that is down for now.
_REFUSALS: Final = (
    "ACCESS_DENIED",
    "AccessDenied",
    "NoSuchBucket",
    "NO_SUCH_BUCKET",
    "InvalidAccessKeyId",
    "INVALID_ACCESS_KEY_ID",
    "SignatureDoesNotMatch",
    "SIGNATURE_DOES_NOT_MATCH",
    "HTTP response code: 403",
    "HTTP response code: 401",
    "PERMISSION_DENIED",
)


class UnreachableError(Exception):
    """The store did not answer (network, timeout, 5xx): records can wait for it."""


@dataclass(frozen=True)
class Location:
    """A data directory resolved: a filesystem and the base path inside it.

    ``base`` has no trailing slash; for an object store it starts with the bucket.
    """

    url: str
    #: The store's filesystem; None for this machine's, made on first use.
    store: pafs.FileSystem | None
    base: str
    scheme: str | None

    @functools.cached_property
    def filesystem(self) -> pafs.FileSystem:
        """The filesystem to read and write through. A local one is made when first
        asked for: a server writing the Parquet layout to a local directory with the
        extension never needs it, nor pyarrow."""
        if self.store is not None:
            return self.store
        import pyarrow.fs as pafs  # noqa: PLC0415  # see the module docstring

        return pafs.LocalFileSystem()

    @property
    def is_local(self) -> bool:
        """Whether files here are on this machine (a plain path or ``file://``)."""
        return self.scheme in (None, "file")

    @property
    def local_path(self) -> Path:
        """The base as a local directory; only for a local location."""
        if not self.is_local:
            raise ValueError(f"{self.url!r} is not a local directory")
        return Path(self.base)

    @property
    def bucket(self) -> str | None:
        """The bucket of an object store location, None for a local one."""
        return None if self.is_local else self.base.split("/", 1)[0]

    def join(self, *parts: str) -> str:
        """A path under the base, in the filesystem's own terms (``/``-separated)."""
        return "/".join([self.base.rstrip("/"), *(p.strip("/") for p in parts if p)])

    def uri(self, path: str) -> str:
        """A path of this filesystem as a URL a person can paste (``s3://b/k``)."""
        return path if self.is_local else f"{self.scheme}://{path}"

    def files(self, under: str, *, recursive: bool = True) -> list[pafs.FileInfo]:
        """The files under a path of this filesystem (none if it does not exist)."""
        import pyarrow.fs as pafs  # noqa: PLC0415  # see the module docstring

        selector = pafs.FileSelector(under, allow_not_found=True, recursive=recursive)
        return [info for info in self.filesystem.get_file_info(selector) if info.is_file]

    def directories(self, under: str) -> list[pafs.FileInfo]:
        """The directories directly under a path (none if it does not exist)."""
        import pyarrow.fs as pafs  # noqa: PLC0415  # see the module docstring

        selector = pafs.FileSelector(under, allow_not_found=True, recursive=False)
        infos = self.filesystem.get_file_info(selector)
        return [info for info in infos if info.type == pafs.FileType.Directory]

    def put_file(self, local: Path, path: str) -> None:
        """Upload a complete local file to ``path`` in one call.

        The object appears only when the upload completes: a small file is one PUT,
        a large one a multipart upload that exists for readers only once completed,
        which happens in ``close()``. A failed part fails ``close()`` instead of
        completing it, and a process killed mid-upload leaves an incomplete upload
        no listing shows. The bytes are mapped before the stream opens, so no local
        read can fail half-way through (pyarrow has no abort: a stream dropped after
        a partial write would be completed by its destructor).
        """
        import pyarrow as pa  # noqa: PLC0415  # see the module docstring

        with pa.memory_map(str(local)) as source:
            data = source.read_buffer()
        out = self.filesystem.open_output_stream(path)
        out.write(data)
        out.close()


def _s3(environ: Mapping[str, str]) -> pafs.S3FileSystem:
    """An S3 filesystem configured from the standard AWS variables (see the module)."""
    import pyarrow.fs as pafs  # noqa: PLC0415  # see the module docstring

    options: dict[str, Any] = {}
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        options["scheme"] = parts.scheme or "https"
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    options["region"] = region or "us-east-1"
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        options["access_key"] = key
        options["secret_key"] = secret
        token = environ.get("AWS_SESSION_TOKEN")
        if token:
            options["session_token"] = token
    return pafs.S3FileSystem(**options)


def _gcs(environ: Mapping[str, str]) -> pafs.FileSystem:
    """Google Cloud Storage; credentials from Google's default chain
    (``GOOGLE_APPLICATION_CREDENTIALS``, the metadata server). An emulator is reached
    through ``STORAGE_EMULATOR_HOST``, as Google's own clients do."""
    import pyarrow.fs as pafs  # noqa: PLC0415  # see the module docstring

    options: dict[str, Any] = {}
    emulator = environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        parts = urlsplit(emulator if "://" in emulator else f"http://{emulator}")
        options["endpoint_override"] = parts.netloc
        options["scheme"] = parts.scheme or "http"
        options["anonymous"] = True
    return pafs.GcsFileSystem(**options)


def locate(data_dir: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Location:
    """Resolve a data directory (path or URL) to its filesystem and base path.

    Builds the filesystem without touching the network; :func:`probe` asks the store.
    A scheme predlog cannot write raises ValueError (the settings refuse it earlier).
    """
    env = os.environ if environ is None else environ
    text = os.fspath(data_dir)
    scheme = url_scheme(text)
    if scheme is None:
        return Location(text, None, str(Path(text)), None)
    rest = text.split("://", 1)[1]
    if scheme == "file":
        return Location(text, None, str(local_path(text)), "file")
    base = rest.strip("/")
    if scheme == "s3":
        return Location(text, _s3(env), base, scheme)
    if scheme == "gs":
        return Location(text, _gcs(env), base, scheme)
    raise ValueError(f"cannot write to {text!r}: no filesystem for {scheme}://")


def probe(location: Location) -> str | None:
    """Why the store refuses this location (missing bucket, denied access), or None.

    A store that does not answer is not a refusal (:class:`UnreachableError` is raised):
    records wait for it, so it must not stop a service from starting. Only the bucket
    is asked (one HEAD); permission to write objects shows at the first upload.
    """
    if location.is_local:
        return None
    import pyarrow.fs as pafs  # noqa: PLC0415  # see the module docstring

    bucket = location.bucket or ""
    try:
        info = location.filesystem.get_file_info(bucket)
    except OSError as exc:
        text = str(exc)
        if any(marker in text for marker in _REFUSALS):
            return f"{location.scheme}://{bucket} refused access: {text}"
        raise UnreachableError(text) from exc
    if info.type == pafs.FileType.NotFound:
        return f"bucket {location.scheme}://{bucket} does not exist"
    return None


def newest_first(location: Location, under: str) -> Iterator[pafs.FileInfo]:
    """The Parquet files in ``<under>/date=*/``, newest date partition first and,
    within one, newest modification first; hidden (temporary) names are skipped.

    One listing per partition, so a reader that needs only the latest files never
    lists a year of them.
    """
    partitions = sorted(
        (d for d in location.directories(under) if d.base_name.startswith("date=")),
        key=lambda d: d.base_name,
        reverse=True,
    )
    for partition in partitions:
        infos = [
            info
            for info in location.files(partition.path, recursive=False)
            if info.base_name.endswith(".parquet") and not info.base_name.startswith(".")
        ]
        infos.sort(key=lambda i: (i.mtime_ns or 0, i.base_name), reverse=True)
        yield from infos
