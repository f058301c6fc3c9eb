"""Tamper-evident audit log for regulated decisions (RFC 9162 Merkle tree, Ed25519 checkpoints).

from predlog.audit import AuditLog, verify

log = AuditLog("./audit", signing_key=private_key)
index = log.append({"request_id": "req-1", "decision": "declined", ...})
log.checkpoint()
verify("./audit", public_key=public_key).ok
"""

from __future__ import annotations

from predlog.audit._canonical import canonical
from predlog.audit._log import AuditLog, Checkpoint, VerifyReport, verify
from predlog.audit._merkle import leaf_hash, verify_consistency, verify_inclusion

__all__ = [
    "AuditLog",
    "Checkpoint",
    "VerifyReport",
    "canonical",
    "leaf_hash",
    "verify",
    "verify_consistency",
    "verify_inclusion",
]
