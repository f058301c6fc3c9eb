"""Tamper-evident audit log for regulated decisions (RFC 9162 Merkle tree, Ed25519 checkpoints).

from predlog.audit import AuditLog, signing_key, verify

# The key `predlog audit keygen` wrote, named by PREDLOG_AUDIT_SIGNING_KEY
log = AuditLog("./audit", signing_key=signing_key())
index = log.append({"request_id": "req-1", "decision": "declined", ...})
log.checkpoint()
verify("./audit", public_key=public_key).ok
"""

from __future__ import annotations

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
