"""A checkpoint: the signed tree head shared by the writer, the verifier and the reader,
its two formats, and the chain that ties each checkpoint to the one before.

A v2 checkpoint (``predlog-audit-checkpoint/v2``) signs, besides the tree head, its
``sequence`` (its 0-based line number in ``checkpoints.jsonl``) and ``previous``: the
SHA-256 of the exact bytes of the line before it in that file, without the newline
(32 zero bytes for the first line). Each checkpoint thus fixes its own place and the
whole history of checkpoints before it, v1 lines included, and anyone can tell which
line of the file was deleted, reordered, duplicated or replaced.

A v1 checkpoint (written before the chain existed) has neither: it still verifies
against the key and the entries, and :func:`missing_guarantees` says what verifying it
cannot show. A log may start with v1 lines and continue with v2 after an upgrade; a v1
line after a v2 one is never written, so it is reported.

The chain checks here never check signatures or roots: the verifier does that first,
so that a forged checkpoint is named as such and not as a break in the chain. Nothing
here reads or writes a file.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The format of the checkpoints this version writes: chained (sequence and previous).
CHECKPOINT_FORMAT = "predlog-audit-checkpoint/v2"
#: Checkpoints written before the chain; still verified, with fewer guarantees.
CHECKPOINT_FORMAT_V1 = "predlog-audit-checkpoint/v1"
#: ``previous`` of the first checkpoint in a log.
GENESIS = bytes(32)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the log had ``size`` entries with this root at ``timestamp``.

    A v2 checkpoint also signs its ``sequence`` (its line number in checkpoints.jsonl)
    and ``previous`` (SHA-256 of the line before it), so that a deleted, moved,
    duplicated or replaced checkpoint is found (:func:`chain_problem`). A v1
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


def line_hash(line: bytes) -> bytes:
    """What the next checkpoint's ``previous`` holds: SHA-256 of the stored line."""
    return hashlib.sha256(line.rstrip(b"\n")).digest()


def previous_of(lines: Sequence[bytes]) -> bytes:
    """``previous`` for a checkpoint appended after ``lines``."""
    return line_hash(lines[-1]) if lines else GENESIS


def chain_problem(
    number: int, checkpoints: Sequence[Checkpoint], lines: Sequence[bytes]
) -> tuple[str, int] | None:
    """Why checkpoint ``number`` is not where the chain puts it, and which checkpoint
    (by position) to name; None when it is."""
    here = checkpoints[number]
    if here.sequence is None:
        if any(c.sequence is not None for c in checkpoints[:number]):
            return (
                f"checkpoint {number} is a v1 checkpoint after v2 ones "
                "(inserted, or replayed from before the upgrade)",
                number,
            )
        return None
    if here.sequence != number:
        return _misplaced(number, here.sequence, checkpoints), number
    if here.previous == previous_of(lines[:number]):
        return None
    return _replaced(number, checkpoints, lines)


def _misplaced(number: int, sequence: int, checkpoints: Sequence[Checkpoint]) -> str:
    """Checkpoint ``number`` carries another sequence: a duplicate, a move or a gap."""
    earlier = [p for p in range(number) if checkpoints[p].sequence == sequence]
    if earlier:
        return (
            f"checkpoint {number} duplicates checkpoint {earlier[0]} "
            f"(both carry sequence {sequence})"
        )
    later = [c.sequence for c in checkpoints[number + 1 :]]
    if sequence < number or number in later:
        return f"checkpoint {number} carries sequence {sequence}: checkpoints were reordered"
    if sequence == number + 1:
        return f"checkpoint {number} carries sequence {sequence}: checkpoint {number} was deleted"
    return (
        f"checkpoint {number} carries sequence {sequence}: checkpoints "
        f"{number}..{sequence - 1} were deleted"
    )


def _replaced(
    number: int, checkpoints: Sequence[Checkpoint], lines: Sequence[bytes]
) -> tuple[str, int]:
    """Checkpoint ``number`` is in its place but was signed after another line than the
    one before it: that line, or this one, was replaced. The next checkpoint tells
    which: if it does not chain to this one either, this one is the stranger."""
    following = checkpoints[number + 1] if number + 1 < len(checkpoints) else None
    if number == 0:
        return "checkpoint 0 names a predecessor although it is the first (replaced)", 0
    if following is None:
        return (
            f"checkpoint {number - 1} was replaced, or checkpoint {number} was (the last: "
            f"nothing after it tells which): checkpoint {number} does not follow "
            f"checkpoint {number - 1}",
            number - 1,
        )
    if following.sequence == number + 1 and following.previous != line_hash(lines[number]):
        return (
            f"checkpoint {number} was replaced: it does not follow checkpoint "
            f"{number - 1}, and checkpoint {number + 1} does not follow it",
            number,
        )
    return (
        f"checkpoint {number - 1} was replaced or altered: checkpoint {number} "
        "was signed after a different line",
        number - 1,
    )


def missing_guarantees(checkpoints: Sequence[Checkpoint]) -> tuple[str, ...]:
    """What verification cannot show for the v1 checkpoints among ``checkpoints``."""
    legacy = [p for p, c in enumerate(checkpoints) if c.sequence is None]
    if not legacy:
        return ()
    if len(legacy) == 1:
        which = f"checkpoint {legacy[0]} (v1) carries"
    else:
        which = f"checkpoints {legacy[0]}..{legacy[-1]} (v1) carry"
    return (
        f"checkpoint sequence: {which} no sequence number, so a v1 checkpoint deleted, "
        "duplicated or reordered is found only if its size or root betrays it",
        f"checkpoint chain: {which} no hash of the checkpoint before, so a v1 checkpoint "
        "replaced by another the same key signed is not found",
    )
