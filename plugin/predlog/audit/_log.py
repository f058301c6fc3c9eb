"""AuditLog: an append-only, tamper-evident log of regulated decisions.

Every entry becomes a leaf of an RFC 9162 Merkle tree. Checkpoints (tree size, root
hash, time, and since v2 their sequence number and the hash of the checkpoint line
before them) are signed with Ed25519. Anyone with the public key and the files can
recompute the tree and check every checkpoint: an edited, deleted, reordered or
truncated entry, or a deleted, reordered, duplicated or replaced checkpoint, no longer
matches (the checkpoint and its chain are :mod:`predlog.audit._checkpoint`'s, the
check :mod:`predlog.audit._verify`'s). Anyone who kept an earlier checkpoint can also
ask for a consistency proof that the log only grew.

The constructor only checks its arguments (and loads its key); ``open()`` takes the
directory's writer lock, cuts a torn tail, reads the tree and leaves
``public_key.hex``, once. A log used on its own (``with AuditLog(...)``, or a first
append, checkpoint or read) opens itself; :class:`~predlog.audit.AuditSink` opens it
when the logger opens its sinks. ``close()`` is safe twice, and a log opened and
dropped without it warns with :class:`ResourceWarning`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from predlog._settings import HEX_KEY
from predlog.audit import _merkle
from predlog.audit._canonical import canonical
from predlog.audit._checkpoint import Checkpoint, previous_of
from predlog.audit._store import LocalStore
from predlog.errors import ConfigError


def _keys() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    return ed25519


def _unloadable(exc: Exception) -> str:
    """Why a key did not load, without repeating the value given: a string meant as a
    path may be the key itself, and must not end up in a log."""
    if isinstance(exc, OSError):
        return f"cannot read the key file ({exc.strerror or type(exc).__name__})"
    return f"not a key ({exc})"


def _key_errors() -> tuple[type[Exception], ...]:
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415

    return (OSError, ValueError, TypeError, UnsupportedAlgorithm)


def load_private_key(key: Any) -> Any:
    """An Ed25519 private key from a key object, 32 raw bytes, PEM bytes, or a PEM file
    path. Anything else is a ConfigError naming ``signing_key``."""
    if key is None:
        # signing_key() is None when PREDLOG_AUDIT_SIGNING_KEY is unset.
        raise ConfigError(
            "signing_key",
            "required: an Ed25519 private key, e.g. signing_key() with "
            "PREDLOG_AUDIT_SIGNING_KEY naming the file `predlog audit keygen` wrote",
        )
    ed25519 = _keys()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    try:
        if isinstance(key, bytes) and len(key) == 32:
            return ed25519.Ed25519PrivateKey.from_private_bytes(key)
        data = key if isinstance(key, bytes) else Path(key).read_bytes()
        loaded = serialization.load_pem_private_key(data, password=None)
    except _key_errors() as exc:
        raise ConfigError("signing_key", _unloadable(exc)) from None
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise ConfigError("signing_key", "must be an Ed25519 key")
    return loaded


def load_public_key(key: Any) -> Any:
    """An Ed25519 public key from a key object, 32 raw bytes, hex, or the path of a file
    holding it in PEM or in hex.
    Anything else is a ConfigError naming ``public_key``."""
    ed25519 = _keys()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    try:
        if isinstance(key, bytes) and len(key) == 32:
            return ed25519.Ed25519PublicKey.from_public_bytes(key)
        if isinstance(key, str) and HEX_KEY.match(key):
            return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(key))
        data = Path(key).read_bytes()
        text = data.strip().decode("ascii", "replace")
        if HEX_KEY.match(text):
            # A file holding the hex form: the log's own public_key.hex, keygen's output.
            return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
        loaded = serialization.load_pem_public_key(data)
    except OSError as exc:
        if not isinstance(key, str):
            raise ConfigError("public_key", _unloadable(exc)) from None
        # A string is either form: say that it is neither, not only that no such file.
        raise ConfigError(
            "public_key",
            f"neither an Ed25519 public key in 64 hex characters (got {len(key)} "
            f"characters) nor a readable key file ({exc.strerror or type(exc).__name__})",
        ) from None
    except _key_errors() as exc:
        raise ConfigError("public_key", _unloadable(exc)) from None
    if not isinstance(loaded, ed25519.Ed25519PublicKey):
        raise ConfigError("public_key", "must be an Ed25519 key")
    return loaded


def public_hex(public_key: Any) -> str:
    """An Ed25519 public key as 64 hex characters, as ``verify`` takes it."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return str(raw.hex())


class AuditLog:
    """Append-only audit log in a directory; one writer at a time.

    In memory it keeps the tree's right edge (:class:`~predlog.audit._merkle.CompactRange`,
    O(log n) hashes), so appending and checkpointing cost the same at any size, plus
    the request-id index behind :meth:`find`. Leaf hashes stay in the store: the proof
    methods read them from there when asked, once per call.
    """

    # Class-level, so that __del__ of an instance whose constructor refused reads them.
    _local: LocalStore | None = None
    _closed = False

    def __init__(
        self,
        path: str | Path,
        *,
        signing_key: Any,
        checkpoint_every: int = 1000,
        archive: Any = None,
    ) -> None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int):
            raise ConfigError("checkpoint_every", f"must be an integer, got {checkpoint_every!r}")
        if checkpoint_every < 0:
            raise ConfigError(
                "checkpoint_every",
                f"must be 0 (only when asked) or a number of entries, got {checkpoint_every}",
            )
        self._key = load_private_key(signing_key)
        self.key_id = public_hex(self._key.public_key())[:16]
        self._every = checkpoint_every
        #: Checkpoints an append could not write after its entries were durable.
        self.checkpoint_failures = 0
        #: An S3Archive: sealed copies of entries and checkpoints on write-once storage.
        self.archive = archive
        self._lock = threading.Lock()
        #: The tree's right edge: enough to sign a checkpoint without the leaves.
        self._tree = _merkle.CompactRange()
        self._by_request: dict[str, list[int]] = {}
        self.path = Path(path)
        #: Entries already in the archive: asked of it at the first checkpoint, so that
        #: opening never waits on the network.
        self._archived: int | None = None if archive is not None else 0
        self._opening = threading.Lock()

    def open(self) -> None:
        """Take the writer lock, cut a torn tail, read the tree, leave ``public_key.hex``;
        once. A log another process writes is a ConfigError naming ``audit_dir``;
        damage after the last whole entry is an UnreadableError, and nothing is cut."""
        with self._opening:
            if self._local is not None:
                return
            # The store takes the writer lock before it cuts a torn tail or writes anything.
            store = LocalStore(self.path)
            try:
                for record in store.records():
                    self._remember(record.leaf_hash, record.data)
                public = public_hex(self._key.public_key())
                (self.path / "public_key.hex").write_text(public + "\n")
            except BaseException:
                store.close()
                self._tree = _merkle.CompactRange()
                self._by_request = {}
                raise
            self._local = store

    @property
    def _store(self) -> LocalStore:
        """The writer's store, opened on first use."""
        self.open()
        assert self._local is not None  # open() sets it or raises
        return self._local

    def _remember(self, leaf: bytes, data: bytes) -> None:
        index = self._tree.size
        self._tree.append(leaf)
        request_id = json.loads(data).get("request_id")
        if request_id:
            self._by_request.setdefault(str(request_id), []).append(index)

    @property
    def size(self) -> int:
        self.open()
        return self._tree.size

    def append(self, entry: Mapping[str, Any]) -> int:
        """Add one entry; returns its index once it is on disk (fsynced)."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[Mapping[str, Any]]) -> list[int]:
        """Add entries with one fsync; returns their indexes once they are durable."""
        self.open()  # before the tree's size is read
        with self._lock:
            start = self._tree.size
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
            if self._every and self._tree.size - last >= self._every:
                try:
                    self._checkpoint_locked()
                except Exception:  # noqa: BLE001  # a disk or an archive (botocore) error
                    # The entries are durable: raising would have the caller write them
                    # again. The checkpoint is signed at the next append or checkpoint.
                    self.checkpoint_failures += 1
            return indexes

    def _checkpoints_size(self) -> int:
        lines = self._store.checkpoint_lines()
        return int(json.loads(lines[-1])["size"]) if lines else 0

    def checkpoint(self) -> Checkpoint:
        """Sign and store the current tree head."""
        with self._lock:
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> Checkpoint:
        """Sign the tree head chained to the last line of checkpoints.jsonl.

        The root comes from the compact range in O(log n) hashes, so the lock is held
        for a signature and a write, not for a pass over every leaf.
        """
        lines = self._store.checkpoint_lines()
        size = self._tree.size
        unsigned = Checkpoint(
            size,
            self._tree.root(),
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            self.key_id,
            b"",
            sequence=len(lines),
            previous=previous_of(lines),
        )
        signed = replace(unsigned, signature=self._key.sign(unsigned.message()))
        line = json.dumps(signed.to_json()).encode()
        self._store.append_checkpoint(line)
        if self.archive is not None:
            self._archive_until(size, line, len(lines))
        return signed

    def _archive_until(self, size: int, checkpoint_line: bytes, sequence: int) -> None:
        """Seal the entries not yet archived, then the checkpoint that covers them."""
        if self._archived is None:
            self._archived = int(self.archive.uploaded_until())
        if size > self._archived:
            records = [
                (r.index, r.leaf_hash, r.data)
                for r in self._store.records()
                if self._archived <= r.position < size
            ]
            self.archive.put_segment(self._archived, records)
            self._archived = size
        self.archive.put_checkpoint(size, checkpoint_line, sequence=sequence)

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
        self.open()
        return list(self._by_request.get(request_id, ()))

    def _stored_leaves(self, size: int | None) -> list[bytes]:
        """The first ``size`` leaf hashes (all when None), read from the store.

        The log keeps no leaf hashes in memory (that would grow with the log forever);
        a proof is rare and needs them all, so it pays the read. Under the lock, so
        that the leaves read are the ones ``size`` counted.
        """
        self.open()  # before the tree's size is read
        with self._lock:
            n = self._tree.size if size is None else size
            leaves: list[bytes] = []
            for record in self._store.records():
                if record.position >= n:
                    break
                leaves.append(record.leaf_hash)
            return leaves

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 PATH for entry ``index`` in the tree of ``size`` (default: all)."""
        return _merkle.inclusion_proof(index, self._stored_leaves(size))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 PROOF that the tree of ``new_size`` (default: all) extends ``old_size``."""
        return _merkle.consistency_proof(old_size, self._stored_leaves(new_size))

    def leaf_hash(self, index: int) -> bytes:
        """Entry ``index``'s leaf hash, read from its record in the store."""
        self.open()  # before the tree's size is read
        with self._lock:
            position = index + self._tree.size if index < 0 else index
            for record in self._store.records():
                if record.position == position:
                    return record.leaf_hash
        raise IndexError(index)

    def close(self) -> None:
        """Release the writer lock (entries are already durable). Safe to call twice,
        and on a log never opened."""
        self._closed = True
        if self._local is not None:
            self._local.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if self._local is not None and not self._closed:
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)

    def __enter__(self) -> AuditLog:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
