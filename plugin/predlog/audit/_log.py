"""AuditLog: an append-only, tamper-evident log of regulated decisions.

Every entry becomes a leaf of an RFC 9162 Merkle tree. Checkpoints (tree size, root
hash, time, and since v2 their sequence number and the hash of the checkpoint line
before them) are signed with Ed25519. Anyone with the public key and the files can
recompute the tree and check every checkpoint: an edited, deleted, reordered or
truncated entry, or a deleted, reordered, duplicated or replaced checkpoint, no longer
matches (the chain is :mod:`predlog.audit._chain`'s). Anyone who kept an earlier
checkpoint can also ask for a consistency proof that the log only grew.

All of this holds only against a public key the verifier obtained apart from the log.
The writer leaves ``public_key.hex`` in the directory for convenience; ``verify`` never
reads it, since whoever can rewrite the log can rewrite that file and re-sign.

``verify`` only reads, so it may run while the writer appends. It reads the
checkpoint lines before the entries: the writer appends entries before the checkpoint
that covers them, so every checkpoint read is over entries already on disk, and one
written meanwhile is not mistaken for truncation.

A torn tail (a partial last record the writer has not finished or died in) is skipped,
counted in ``VerifyReport.torn_tail`` and does not fail verification; but only bytes
that could be the start of the next record count as one (the rule is in
:mod:`predlog.audit._store`). Anything else after the last whole entry is damage,
reported at that entry with ``ok`` False, and the writer will not open such a log.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predlog._settings import HEX_KEY
from predlog.audit import _merkle
from predlog.audit._canonical import canonical
from predlog.audit._chain import chain_problem, missing_guarantees, previous_of
from predlog.audit._store import LocalStore, ReadOnlyStore, Record, UnreadableError
from predlog.errors import ConfigError

if TYPE_CHECKING:
    from predlog.audit._s3 import S3Archive

#: The format of the checkpoints this version writes: chained (sequence and previous).
CHECKPOINT_FORMAT = "predlog-audit-checkpoint/v2"
#: Checkpoints written before the chain; still verified, with fewer guarantees.
CHECKPOINT_FORMAT_V1 = "predlog-audit-checkpoint/v1"


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


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the log had ``size`` entries with this root at ``timestamp``.

    A v2 checkpoint also signs its ``sequence`` (its line number in checkpoints.jsonl)
    and ``previous`` (SHA-256 of the line before it), so that a deleted, moved,
    duplicated or replaced checkpoint is found (see :mod:`predlog.audit._chain`). A v1
    checkpoint, from before the chain, has neither (both None).
    """

    size: int
    root: bytes
    timestamp: str
    key_id: str
    signature: bytes
    sequence: int | None = None
    previous: bytes | None = None

    @property
    def format(self) -> str:
        chained = self.sequence is not None and self.previous is not None
        return CHECKPOINT_FORMAT if chained else CHECKPOINT_FORMAT_V1

    def message(self) -> bytes:
        """The bytes signed. The format string comes first, so a v2 checkpoint cannot
        be passed off as a v1 one by dropping its chain fields."""
        if self.sequence is None or self.previous is None:
            return (
                f"{CHECKPOINT_FORMAT_V1}\n{self.size}\n{self.root.hex()}\n{self.timestamp}\n"
            ).encode()
        return (
            f"{CHECKPOINT_FORMAT}\n{self.sequence}\n{self.previous.hex()}\n"
            f"{self.size}\n{self.root.hex()}\n{self.timestamp}\n"
        ).encode()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": self.format}
        if self.sequence is not None and self.previous is not None:
            data["sequence"] = self.sequence
            data["previous"] = self.previous.hex()
        data.update(
            size=self.size,
            root=self.root.hex(),
            timestamp=self.timestamp,
            key_id=self.key_id,
            signature=base64.b64encode(self.signature).decode(),
        )
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        """A checkpoint line parsed; a v2 line without its chain fields, or a format
        this version does not know, is a ValueError or KeyError (unreadable)."""
        fmt = data.get("format", CHECKPOINT_FORMAT_V1)
        if fmt not in (CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_V1):
            raise ValueError(f"unknown checkpoint format {fmt!r}")
        chained = fmt == CHECKPOINT_FORMAT
        sequence = data["sequence"] if chained else None
        if chained and (isinstance(sequence, bool) or not isinstance(sequence, int)):
            raise ValueError(f"sequence must be an integer, got {sequence!r}")
        previous = bytes.fromhex(data["previous"]) if chained else None
        if previous is not None and len(previous) != 32:
            raise ValueError("previous must be a SHA-256 hash")
        return cls(
            size=int(data["size"]),
            root=bytes.fromhex(data["root"]),
            timestamp=str(data["timestamp"]),
            key_id=str(data["key_id"]),
            signature=base64.b64decode(data["signature"]),
            sequence=sequence,
            previous=previous,
        )

    def verify(self, public_key: Any) -> bool:
        try:
            public_key.verify(self.signature, self.message())
        except Exception:  # noqa: BLE001  # any failure means: not signed by this key
            return False
        return True


class AuditLog:
    """Append-only audit log in a directory; one writer at a time.

    In memory it keeps the tree's right edge (:class:`~predlog.audit._merkle.CompactRange`,
    O(log n) hashes), so appending and checkpointing cost the same at any size, plus
    the request-id index behind :meth:`find`. Leaf hashes stay in the store: the proof
    methods read them from there when asked, once per call.
    """

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
        # The store takes the writer lock before it cuts a torn tail or writes anything.
        self._store = LocalStore(path)
        self.path = self._store.path
        try:
            self._archived = archive.uploaded_until() if archive is not None else 0
            for record in self._store.records():
                self._remember(record.leaf_hash, record.data)
            (self.path / "public_key.hex").write_text(public_hex(self._key.public_key()) + "\n")
        except BaseException:
            self._store.close()
            raise

    def _remember(self, leaf: bytes, data: bytes) -> None:
        index = self._tree.size
        self._tree.append(leaf)
        request_id = json.loads(data).get("request_id")
        if request_id:
            self._by_request.setdefault(str(request_id), []).append(index)

    @property
    def size(self) -> int:
        return self._tree.size

    def append(self, entry: Mapping[str, Any]) -> int:
        """Add one entry; returns its index once it is on disk (fsynced)."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[Mapping[str, Any]]) -> list[int]:
        """Add entries with one fsync; returns their indexes once they are durable."""
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
                except OSError:
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
        return list(self._by_request.get(request_id, ()))

    def _stored_leaves(self, size: int | None) -> list[bytes]:
        """The first ``size`` leaf hashes (all when None), read from the store.

        The log keeps no leaf hashes in memory (that would grow with the log forever);
        a proof is rare and needs them all, so it pays the read. Under the lock, so
        that the leaves read are the ones ``size`` counted.
        """
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
        with self._lock:
            position = index + self._tree.size if index < 0 else index
            for record in self._store.records():
                if record.position == position:
                    return record.leaf_hash
        raise IndexError(index)

    def close(self) -> None:
        """Release the writer lock (entries are already durable). Safe to call twice."""
        self._store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found. ``ok`` is False at the first problem, which is named.

    ``entries`` and ``checkpoints`` count what the log holds, whatever is wrong with it:
    every whole entry (up to bytes that cannot be read as one, if any) and every line
    of the checkpoint file. ``entries_checked`` says how far verification got: the
    entries read in place with matching hashes before the first that was not (all of
    them when none is out of place or edited).

    ``torn_tail`` counts the bytes of a torn tail after a local log's last whole entry:
    a write in progress, or one a crash interrupted, never acknowledged and so not an
    entry. It does not make ``ok`` False: cutting it hides nothing a checkpoint
    covers (an entry under a checkpoint that is no longer whole is reported as
    truncated). The writer cuts it when it next opens the log. Bytes there that could
    not be the next record's start are not a torn tail: they make ``ok`` False at that
    entry, and ``torn_tail`` stays 0.

    ``legacy_checkpoints`` counts the v1 checkpoints (written before checkpoints were
    chained); ``missing_guarantees`` says, in words, what verifying them cannot show.
    Both are filled in whether or not ``ok``; a log with only v2 checkpoints has 0 and
    none.

    ``last_checkpoint`` is the log's last checkpoint line. Keep it, apart from the log,
    and pass it as ``kept`` to a later ``verify``: nothing in the files can show that
    their newest checkpoints were deleted with the entries after them, but a kept
    line that is gone shows exactly that. ``kept_found`` says whether the log still
    holds that very line (None when none was given), and ``kept`` says it in words;
    a kept line that is gone makes ``ok`` False.
    """

    ok: bool
    entries: int
    checkpoints: int
    problem: str | None = None
    entry: int | None = None
    checkpoint: int | None = None
    torn_tail: int = 0
    legacy_checkpoints: int = 0
    missing_guarantees: tuple[str, ...] = ()
    last_checkpoint: str | None = None
    entries_checked: int = 0
    kept: str | None = None
    kept_found: bool | None = None


def _source(path: str | Path, s3_client: Any) -> ReadOnlyStore | S3Archive:
    """What ``verify`` reads: an S3 archive, or a local directory opened read-only."""
    if str(path).startswith("s3://"):
        from predlog.audit._s3 import S3Archive  # noqa: PLC0415

        return S3Archive.from_url(str(path), client=s3_client)
    return ReadOnlyStore(path)


def verify(
    path: str | Path,
    *,
    public_key: Any,
    s3_client: Any = None,
    kept: str | bytes | None = None,
) -> VerifyReport:
    """Recompute the tree from the files (or ``s3://bucket/prefix``) and check every
    checkpoint against it. Only reads: a live log can be verified while it is written.

    ``public_key`` is the key the verifier trusts, obtained apart from the log: the
    ``public_key.hex`` the writer leaves in the directory is never read here, since
    whoever can rewrite the log can rewrite that file too. None is a ConfigError.

    A local path that is not a directory fails (``ok`` False, the problem says so)
    rather than passing as an empty log: a mistyped path must not look verified.

    ``kept`` is a checkpoint line kept from an earlier verify (its ``last_checkpoint``)
    or from a witness: the log must still hold that very line, or its newest part was
    cut away. A ``kept`` that is not a checkpoint signed by ``public_key`` is a
    ConfigError, since it is the verifier's own evidence.
    """
    if public_key is None:
        raise ConfigError(
            "public_key",
            "required: the Ed25519 public key you trust, obtained apart from the log",
        )
    key = load_public_key(public_key)
    source = _source(path, s3_client)
    if isinstance(source, ReadOnlyStore):
        missing = _missing_directory(source)
        if missing is not None:
            return missing
    expected = None if kept is None else _kept_checkpoint(kept, key)
    lines = source.checkpoint_lines()
    report = _verify_source(source, key, lines)
    if isinstance(source, ReadOnlyStore):
        report = replace(report, torn_tail=source.torn_tail())
    last = lines[-1].rstrip(b"\n").decode("utf-8", "replace") if lines else None
    report = replace(report, last_checkpoint=last)
    if expected is not None:
        report = _check_kept(report, expected, lines)
    return report


def _kept_checkpoint(kept: str | bytes, key: Any) -> tuple[bytes, Checkpoint]:
    """The kept line, stripped, and its checkpoint; a ConfigError if it is not one the
    trusted key signed."""
    line = (kept.encode() if isinstance(kept, str) else kept).strip()
    try:
        checkpoint = Checkpoint.from_json(json.loads(line))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("kept", f"not a checkpoint line: {exc}") from None
    if not checkpoint.verify(key):
        raise ConfigError("kept", "not signed by the trusted public key")
    return line, checkpoint


def _check_kept(
    report: VerifyReport, expected: tuple[bytes, Checkpoint], lines: list[bytes]
) -> VerifyReport:
    """``report`` saying whether the log still holds the kept checkpoint line; failed
    if it does not (unless it failed already, at an earlier problem)."""
    line, checkpoint = expected
    sequence = checkpoint.sequence
    at = "" if sequence is None else f" {sequence}"
    named = f"the kept checkpoint{at} (size {checkpoint.size})"
    if any(candidate.strip() == line for candidate in lines):
        return replace(report, kept=f"{named} is in the log, unchanged", kept_found=True)
    held = _count(len(lines), "checkpoint")
    if sequence is None:
        why = f"none of its {held} is that line: checkpoints were deleted or replaced"
    elif sequence < len(lines):
        why = f"its checkpoint {sequence} is another line: checkpoints were replaced"
    else:
        why = f"it holds {held}: it was cut back"
    said = f"{named} is not in the log ({why} since it was kept)"
    report = replace(report, kept=said, kept_found=False)
    if not report.ok:
        return report
    return replace(report, ok=False, problem=said, checkpoint=sequence)


def _count(n: int, thing: str) -> str:
    """``n`` things, in words: "1 checkpoint", "3 checkpoints"."""
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _missing_directory(store: ReadOnlyStore) -> VerifyReport | None:
    """A failed report when the store's path is not a directory, else None."""
    if store.path.is_dir():
        return None
    what = "is not a directory" if store.path.exists() else "does not exist"
    return VerifyReport(False, 0, 0, f"audit log directory {store.path} {what}")


def _verify_source(source: ReadOnlyStore | S3Archive, key: Any, lines: list[bytes]) -> VerifyReport:
    """Checkpoint lines first, then one pass over the entries (each in its place, each
    matching its hash, each fed to a compact range that notes the root at every size a
    checkpoint claims), then each checkpoint against those roots.

    The writer appends entries before the checkpoint that covers them, so reading in
    the other order could see a checkpoint written after the entries were read and
    call a live log truncated. The pass keeps O(log n) hashes for the tree and one
    root per checkpoint, never the leaves, so a log of any length verifies in memory
    that does not grow with it.
    """
    checkpoints, unreadable = _load_checkpoints(lines)
    entries, checked, roots, bad = _recompute_roots(source, {c.size for c in checkpoints})
    report: VerifyReport | None
    if bad is not None:
        problem, position = bad
        report = VerifyReport(False, entries, len(lines), problem, entry=position)
    elif unreadable is not None:
        message = f"checkpoint {unreadable}: unreadable"
        report = VerifyReport(False, entries, len(lines), message, checkpoint=unreadable)
    else:
        report = _check_checkpoints(checkpoints, lines, entries, roots, key)
    return replace(
        report or VerifyReport(True, entries, len(lines)),
        entries_checked=checked,
        legacy_checkpoints=sum(c.sequence is None for c in checkpoints),
        missing_guarantees=missing_guarantees(checkpoints),
    )


def _recompute_roots(
    source: ReadOnlyStore | S3Archive, sizes: set[int]
) -> tuple[int, int, dict[int, bytes], tuple[str, int] | None]:
    """In one pass: how many entries the log holds, how many were checked, the root of
    the tree at each of ``sizes`` they reach, and the first entry that is out of place,
    edited or unreadable (the problem and its position), if any.

    Entries after a problem are counted, not checked: the count says what the log
    holds. Bytes that cannot be read as an entry end the count, since nothing after
    them can be framed.
    """
    tree = _merkle.CompactRange()
    roots: dict[int, bytes] = {0: tree.root()} if 0 in sizes else {}
    held = 0
    bad: tuple[str, int] | None = None
    try:
        for record in source.records():
            held += 1
            if bad is not None:
                continue
            problem = _entry_problem(record)
            if problem is not None:
                bad = (problem, record.position)
                continue
            tree.append(record.leaf_hash)
            if tree.size in sizes:
                roots[tree.size] = tree.root()
    except UnreadableError as exc:
        bad = bad or (str(exc), exc.position)
    return held, tree.size, roots, bad


def _entry_problem(record: Record) -> str | None:
    """Why this record is not the entry that belongs at its position, or None."""
    if record.index != record.position:
        return (
            f"entry {record.position}: found entry {record.index} here "
            "(an entry was deleted, inserted or moved)"
        )
    if _merkle.leaf_hash(record.data) != record.leaf_hash:
        return f"entry {record.position}: its content no longer matches its hash (edited)"
    return None


def _load_checkpoints(lines: list[bytes]) -> tuple[list[Checkpoint], int | None]:
    """The checkpoints up to the first line that is not one, and that line's number
    (None when every line is one)."""
    checkpoints: list[Checkpoint] = []
    for number, line in enumerate(lines):
        try:
            checkpoints.append(Checkpoint.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            return checkpoints, number
    return checkpoints, None


def _check_checkpoints(
    checkpoints: list[Checkpoint],
    lines: list[bytes],
    entries: int,
    roots: Mapping[int, bytes],
    key: Any,
) -> VerifyReport | None:
    """The first checkpoint that does not hold for these entries, reported; else None.

    Each is checked in file order: its signature first (a forgery is named as one),
    then its place in the chain, then its tree head against the recomputed roots.
    """
    previous: Checkpoint | None = None
    for number, checkpoint in enumerate(checkpoints):
        named: tuple[str, int] | None = None
        entry: int | None = None
        if not checkpoint.verify(key):
            named = (f"checkpoint {number}: signature does not verify", number)
        if named is None:
            named = chain_problem(number, checkpoints, lines)
        if named is None:
            found = _checkpoint_problem(number, checkpoint, previous, entries, roots)
            if found is not None:
                named, entry = (found[0], number), found[1]
        if named is not None:
            message, which = named
            return VerifyReport(False, entries, len(lines), message, entry=entry, checkpoint=which)
        previous = checkpoint
    return None


def _checkpoint_problem(
    number: int,
    checkpoint: Checkpoint,
    previous: Checkpoint | None,
    entries: int,
    roots: Mapping[int, bytes],
) -> tuple[str, int | None] | None:
    """Why checkpoint ``number``'s tree head does not hold, and the entry concerned if
    one is; or None.

    It must cover no fewer entries than the one before, cover only entries that
    exist, and match their root. That it extends the one before then needs no RFC
    9162 consistency proof: checkpoints are checked in order, so the one before has
    already matched the root of entries ``0..m-1`` and this one matches the root of
    entries ``0..n-1`` of the same files, with ``m <= n``. Both roots are of one leaf
    sequence and its prefix, so the larger tree is the smaller with entries only
    added, and the proof built from these leaves would verify against these two
    roots by construction. A forked or rewritten history cannot pass this way
    without a SHA-256 collision: it changes the leaves under one of the two roots,
    and that root no longer matches. A consistency proof is for a party that holds
    only two roots; a verifier holding every entry checks something stronger.
    """
    size = checkpoint.size
    if previous is not None and size < previous.size:
        return (
            f"checkpoint {number}: size {size} is smaller than the previous {previous.size}",
            None,
        )
    if size > entries:
        return (
            f"checkpoint {number} covers {size} entries but only "
            f"{entries} remain (the log was truncated)",
            entries,
        )
    if roots.get(size) != checkpoint.root:
        return f"checkpoint {number}: root does not match entries 0..{size - 1}", None
    return None
