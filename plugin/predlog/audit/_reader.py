"""A read-only view of an audit directory, for ``predlog audit show/prove`` and investigate.

It must never change the log it reads: it opens a :class:`ReadOnlyStore`, so it takes
no lock, makes no directory and leaves a torn tail (a write the writer has not
finished) where it is, reading only the whole entries before it.

It reads the checkpoint lines before the entries, as ``verify`` does: the writer
appends entries before the checkpoint that covers them, so no checkpoint it loads is
over entries it has not loaded, and every proof it gives is against entries it holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from predlog.audit import _merkle
from predlog.audit._checkpoint import Checkpoint
from predlog.audit._store import ReadOnlyStore


class AuditReader:
    """Entries, leaf hashes and checkpoints of an audit log, loaded once."""

    def __init__(self, path: str | Path) -> None:
        store = ReadOnlyStore(path)
        lines = store.checkpoint_lines()
        records = list(store.records())
        self.entries: list[dict[str, Any]] = [json.loads(r.data) for r in records]
        self.leaves = [r.leaf_hash for r in records]
        self.checkpoints = [Checkpoint.from_json(json.loads(line)) for line in lines]

    def latest_covering(self, index: int) -> Checkpoint | None:
        covering = [c for c in self.checkpoints if c.size > index]
        return covering[-1] if covering else None

    def proof(self, index: int, size: int) -> list[bytes]:
        return _merkle.inclusion_proof(index, self.leaves[:size])
