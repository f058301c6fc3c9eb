"""Tamper-evident audit log for regulated decisions (RFC 9162 Merkle tree, Ed25519 checkpoints).

from predlog.audit import AuditLog, signing_key, verify

# The key `predlog audit keygen` wrote, named by PREDLOG_AUDIT_SIGNING_KEY
log = AuditLog("./audit", signing_key=signing_key())
index = log.append({"request_id": "req-1", "decision": "declined", ...})
log.checkpoint()
verify("./audit", public_key=public_key).ok
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from predlog._lazy import attach

if TYPE_CHECKING:
    from predlog.audit._canonical import CanonicalError, canonical
    from predlog.audit._checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_V1, Checkpoint
    from predlog.audit._keys import signing_key, write_signing_key
    from predlog.audit._log import AuditLog, public_hex
    from predlog.audit._merkle import leaf_hash, verify_consistency, verify_inclusion
    from predlog.audit._reader import AuditReader
    from predlog.audit._reasons import ReasonTable
    from predlog.audit._s3 import S3Archive
    from predlog.audit._sink import AuditSink
    from predlog.audit._verify import VerifyReport, verify

#: Where each name lives, imported on first use (PEP 562). A service module names the
#: audit sink and its key at import, in every process BentoML starts; the writing side
#: and its dependencies load only where entries are written.
_HOMES = {
    "CanonicalError": "predlog.audit._canonical",
    "canonical": "predlog.audit._canonical",
    "CHECKPOINT_FORMAT": "predlog.audit._checkpoint",
    "CHECKPOINT_FORMAT_V1": "predlog.audit._checkpoint",
    "Checkpoint": "predlog.audit._checkpoint",
    "signing_key": "predlog.audit._keys",
    "write_signing_key": "predlog.audit._keys",
    "AuditLog": "predlog.audit._log",
    "public_hex": "predlog.audit._log",
    "leaf_hash": "predlog.audit._merkle",
    "verify_consistency": "predlog.audit._merkle",
    "verify_inclusion": "predlog.audit._merkle",
    "AuditReader": "predlog.audit._reader",
    "ReasonTable": "predlog.audit._reasons",
    "S3Archive": "predlog.audit._s3",
    "AuditSink": "predlog.audit._sink",
    "VerifyReport": "predlog.audit._verify",
    "verify": "predlog.audit._verify",
}


__getattr__, __dir__ = attach(__name__, globals(), _HOMES)


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_V1",
    "AuditLog",
    "AuditReader",
    "AuditSink",
    "CanonicalError",
    "Checkpoint",
    "ReasonTable",
    "S3Archive",
    "VerifyReport",
    "canonical",
    "leaf_hash",
    "public_hex",
    "signing_key",
    "verify",
    "verify_consistency",
    "verify_inclusion",
    "write_signing_key",
]
