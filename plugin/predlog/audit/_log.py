"""AuditLog: an append-only, tamper-evident log of regulated decisions.

Every entry becomes a leaf of an RFC 9162 Merkle tree. Checkpoints (tree size, root
hash, time) are signed with Ed25519. Anyone with the public key and the files can
recompute the tree and check every checkpoint: an edited, deleted, reordered or
truncated entry, or a replaced checkpoint, no longer matches. Anyone who kept an
earlier checkpoint can also ask for a consistency proof that the log only grew.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predlog.audit import _merkle
from predlog.audit._canonical import canonical
from predlog.audit._store import LocalStore, UnreadableError
from predlog.errors import ConfigError

CHECKPOINT_FORMAT = "predlog-audit-checkpoint/v1"


def _keys() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    return ed25519


def load_private_key(key: Any) -> Any:
    """An Ed25519 private key from a key object, 32 raw bytes, or a PEM file path."""
    ed25519 = _keys()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, bytes) and len(key) == 32:
        return ed25519.Ed25519PrivateKey.from_private_bytes(key)
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    data = Path(key).read_bytes() if not isinstance(key, bytes) else key
    loaded = serialization.load_pem_private_key(data, password=None)
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise ValueError("signing_key: must be an Ed25519 key")
    return loaded


def load_public_key(key: Any) -> Any:
    """An Ed25519 public key from a key object, 32 raw bytes, hex, or a PEM file path."""
    ed25519 = _keys()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, bytes) and len(key) == 32:
        return ed25519.Ed25519PublicKey.from_public_bytes(key)
    if isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key):
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(key))
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    loaded = serialization.load_pem_public_key(Path(key).read_bytes())
    if not isinstance(loaded, ed25519.Ed25519PublicKey):
        raise ValueError("public_key: must be an Ed25519 key")
    return loaded


def _public_hex(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return str(raw.hex())


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the log had ``size`` entries with this root at ``timestamp``."""

    size: int
    root: bytes
    timestamp: str
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        return (f"{CHECKPOINT_FORMAT}\n{self.size}\n{self.root.hex()}\n{self.timestamp}\n").encode()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "size": self.size,
            "root": self.root.hex(),
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(
            size=int(data["size"]),
            root=bytes.fromhex(data["root"]),
            timestamp=str(data["timestamp"]),
            key_id=str(data["key_id"]),
            signature=base64.b64decode(data["signature"]),
        )

    def verify(self, public_key: Any) -> bool:
        try:
            public_key.verify(self.signature, self.message())
        except Exception:  # noqa: BLE001  # any failure means: not signed by this key
            return False
        return True


class AuditLog:
    """Append-only audit log in a directory; one writer at a time."""

    def __init__(
        self,
        path: str | Path,
        *,
        signing_key: Any,
        checkpoint_every: int = 1000,
        archive: Any = None,
    ) -> None:
        self._key = load_private_key(signing_key)
        self.key_id = _public_hex(self._key.public_key())[:16]
        self._store = LocalStore(path)
        self.path = self._store.path
        self._writer_lock = _lock_writer(self.path)
        self._every = checkpoint_every
        #: An S3Archive: sealed copies of entries and checkpoints on write-once storage.
        self.archive = archive
        self._archived = archive.uploaded_until() if archive is not None else 0
        self._lock = threading.Lock()
        self._leaves: list[bytes] = []
        self._by_request: dict[str, list[int]] = {}
        for record in self._store.records():
            self._remember(record.leaf_hash, record.data)
        (self.path / "public_key.hex").write_text(_public_hex(self._key.public_key()) + "\n")

    def _remember(self, leaf: bytes, data: bytes) -> None:
        index = len(self._leaves)
        self._leaves.append(leaf)
        request_id = json.loads(data).get("request_id")
        if request_id:
            self._by_request.setdefault(str(request_id), []).append(index)

    @property
    def size(self) -> int:
        return len(self._leaves)

    def append(self, entry: Mapping[str, Any]) -> int:
        """Add one entry; returns its index once it is on disk (fsynced)."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[Mapping[str, Any]]) -> list[int]:
        """Add entries with one fsync; returns their indexes once they are durable."""
        with self._lock:
            start = len(self._leaves)
            records = []
            for offset, entry in enumerate(entries):
                body = dict(entry)
                body.setdefault("audit_id", str(uuid.uuid4()))
                data = canonical(body)
                records.append((start + offset, _merkle.leaf_hash(data), data))
            self._store.append(records)
            for _, leaf, data in records:
                self._remember(leaf, data)
            indexes = [index for index, _, _ in records]
            last = self._checkpoints_size()
            if self._every and len(self._leaves) - last >= self._every:
                self._checkpoint_locked()
            return indexes

    def _checkpoints_size(self) -> int:
        lines = self._store.checkpoint_lines()
        return int(json.loads(lines[-1])["size"]) if lines else 0

    def checkpoint(self) -> Checkpoint:
        """Sign and store the current tree head."""
        with self._lock:
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> Checkpoint:
        size = len(self._leaves)
        root = _merkle.root(self._leaves)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        unsigned = Checkpoint(size, root, stamp, self.key_id, b"")
        signed = Checkpoint(size, root, stamp, self.key_id, self._key.sign(unsigned.message()))
        line = json.dumps(signed.to_json()).encode()
        self._store.append_checkpoint(line)
        if self.archive is not None:
            self._archive_until(size, line)
        return signed

    def _archive_until(self, size: int, checkpoint_line: bytes) -> None:
        """Seal the entries not yet archived, then the checkpoint that covers them."""
        if size > self._archived:
            records = [
                (r.index, r.leaf_hash, r.data)
                for r in self._store.records()
                if self._archived <= r.position < size
            ]
            self.archive.put_segment(self._archived, records)
            self._archived = size
        self.archive.put_checkpoint(size, checkpoint_line)

    def checkpoints(self) -> list[Checkpoint]:
        return [Checkpoint.from_json(json.loads(line)) for line in self._store.checkpoint_lines()]

    def latest_checkpoint(self) -> Checkpoint | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def entry(self, index: int) -> dict[str, Any]:
        for record in self._store.records():
            if record.position == index:
                parsed: dict[str, Any] = json.loads(record.data)
                return parsed
        raise IndexError(index)

    def find(self, request_id: str) -> list[int]:
        return list(self._by_request.get(request_id, ()))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        n = len(self._leaves) if size is None else size
        return _merkle.inclusion_proof(index, self._leaves[:n])

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        n = len(self._leaves) if new_size is None else new_size
        return _merkle.consistency_proof(old_size, self._leaves[:n])

    def leaf_hash(self, index: int) -> bytes:
        return self._leaves[index]

    def close(self) -> None:
        """Release the writer lock (entries are already durable). Safe to call twice."""
        handle, self._writer_lock = self._writer_lock, None
        if handle is not None:
            handle.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock_writer(path: Path) -> Any:
    """Hold an exclusive lock on the directory: two writers would fork the tree."""
    import fcntl  # noqa: PLC0415  # POSIX only, and only for writers

    handle = (path / "writer.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(
            "audit_dir", f"another process is writing the audit log in {path}"
        ) from None
    return handle


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found. ``ok`` is False at the first problem, which is named."""

    ok: bool
    entries: int
    checkpoints: int
    problem: str | None = None
    entry: int | None = None
    checkpoint: int | None = None


def _source(path: str | Path, s3_client: Any) -> Any:
    if str(path).startswith("s3://"):
        from predlog.audit._s3 import S3Archive  # noqa: PLC0415

        return S3Archive.from_url(str(path), client=s3_client)
    store = LocalStore.__new__(LocalStore)  # read only: no recovery, no directories made
    store.path = Path(path)
    store.entries_dir = store.path / "entries"
    store.checkpoints_path = store.path / "checkpoints.jsonl"
    return store


def verify(path: str | Path, *, public_key: Any, s3_client: Any = None) -> VerifyReport:
    """Recompute the tree from the files (or ``s3://bucket/prefix``) and check every
    checkpoint against it."""
    key = load_public_key(public_key)
    store = _source(path, s3_client)
    leaves: list[bytes] = []
    try:
        for record in store.records():
            if record.index != record.position:
                return VerifyReport(
                    False,
                    len(leaves),
                    0,
                    f"entry {record.position}: found entry {record.index} here "
                    "(an entry was deleted, inserted or moved)",
                    entry=record.position,
                )
            if _merkle.leaf_hash(record.data) != record.leaf_hash:
                return VerifyReport(
                    False,
                    len(leaves),
                    0,
                    f"entry {record.position}: its content no longer matches its hash (edited)",
                    entry=record.position,
                )
            leaves.append(record.leaf_hash)
    except UnreadableError as exc:
        return VerifyReport(False, len(leaves), 0, str(exc), entry=exc.position)

    checkpoints = []
    for number, line in enumerate(store.checkpoint_lines()):
        try:
            checkpoints.append(Checkpoint.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            return VerifyReport(
                False, len(leaves), number, f"checkpoint {number}: unreadable", checkpoint=number
            )
    previous: Checkpoint | None = None
    for number, cp in enumerate(checkpoints):
        if not cp.verify(key):
            return VerifyReport(
                False,
                len(leaves),
                len(checkpoints),
                f"checkpoint {number}: signature does not verify",
                checkpoint=number,
            )
        if previous is not None and cp.size < previous.size:
            return VerifyReport(
                False,
                len(leaves),
                len(checkpoints),
                f"checkpoint {number}: size {cp.size} is smaller than the previous {previous.size}",
                checkpoint=number,
            )
        if cp.size > len(leaves):
            return VerifyReport(
                False,
                len(leaves),
                len(checkpoints),
                f"checkpoint {number} covers {cp.size} entries but only "
                f"{len(leaves)} remain (the log was truncated)",
                entry=len(leaves),
                checkpoint=number,
            )
        if _merkle.root(leaves[: cp.size]) != cp.root:
            return VerifyReport(
                False,
                len(leaves),
                len(checkpoints),
                f"checkpoint {number}: root does not match entries 0..{cp.size - 1}",
                checkpoint=number,
            )
        if previous is not None and previous.size:
            proof = _merkle.consistency_proof(previous.size, leaves[: cp.size])
            if not _merkle.verify_consistency(
                previous.size, cp.size, previous.root, cp.root, proof
            ):
                return VerifyReport(
                    False,
                    len(leaves),
                    len(checkpoints),
                    f"checkpoint {number} is not consistent with checkpoint {number - 1}",
                    checkpoint=number,
                )
        previous = cp
    return VerifyReport(True, len(leaves), len(checkpoints))
