"""``verify``: recompute an audit log's tree from its files and check every checkpoint.

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

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predlog.audit import _merkle
from predlog.audit._checkpoint import Checkpoint, chain_problem, missing_guarantees
from predlog.audit._log import load_public_key
from predlog.audit._store import ReadOnlyStore, Record, UnreadableError
from predlog.errors import ConfigError

if TYPE_CHECKING:
    from predlog.audit._s3 import S3Archive


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
