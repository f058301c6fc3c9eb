"""Pseudonymising personal data before it reaches any sink or log line.

A value under a key named as PII is replaced by::

    hmac-sha256:<key id>:<hex of HMAC-SHA256(key, value as UTF-8 text)>

Strings are hashed as they are; other values as their JSON text. The same value
always gives the same pseudonym under one key, so you can still count, join and
look up ("which predictions involved this email?") by hashing the value yourself,
but the value cannot be read back. The key id travels in every pseudonym, so a
key can be rotated and old and new records told apart.

A key matches a PII field when it equals the field or ends with ``.field``, so
``email`` also covers ``customer.email`` in a flattened body. In allowlist mode
only the named features are kept at all. This runs in the flusher, never on the
request path.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from predlog._settings import Settings


def default_key_id(key: str) -> str:
    """A short, non-secret name for a key: the first 8 hex digits of SHA-256(key)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


class Pseudonymiser:
    """Replaces PII values with keyed hashes and applies the feature allowlist."""

    __slots__ = ("_allow", "_fields", "_key", "key_id")

    def __init__(
        self,
        *,
        key: str | None,
        key_id: str | None,
        pii_fields: Iterable[str],
        allowlist: Iterable[str] = (),
    ) -> None:
        self._fields = frozenset(pii_fields)
        self._allow = frozenset(allowlist)
        self._key = key.encode("utf-8") if key else b""
        self.key_id = key_id or (default_key_id(key) if key else "")
        if self._fields and not self._key:
            raise ValueError("pii_fields need a pseudonymisation key")

    @classmethod
    def from_settings(cls, settings: Settings) -> Pseudonymiser:
        """The pseudonymiser a logger with these settings applies."""
        return cls(
            key=settings.pseudonym_key,
            key_id=settings.pseudonym_key_id,
            pii_fields=settings.pii_fields,
            allowlist=settings.feature_allowlist,
        )

    @property
    def active(self) -> bool:
        return bool(self._fields or self._allow)

    def is_pii(self, name: str) -> bool:
        if name in self._fields:
            return True
        _, _, leaf = name.rpartition(".")
        return bool(leaf) and leaf in self._fields

    def _allowed(self, name: str) -> bool:
        if not self._allow:
            return True
        _, _, leaf = name.rpartition(".")
        return name in self._allow or leaf in self._allow

    def pseudonym(self, value: Any) -> str:
        data = value.encode("utf-8") if isinstance(value, str) else orjson.dumps(value)
        digest = hmac.new(self._key, data, hashlib.sha256).hexdigest()
        return f"hmac-sha256:{self.key_id}:{digest}"

    def apply(self, mapping: Mapping[Any, Any]) -> dict[Any, Any]:
        """A copy of ``mapping`` with PII pseudonymised and non-allowed keys removed."""
        out: dict[Any, Any] = {}
        for name, value in mapping.items():
            key = str(name)
            if not self._allowed(key):
                continue
            out[name] = self.pseudonym(value) if value is not None and self.is_pii(key) else value
        return out

    def apply_extra(self, mapping: Mapping[Any, Any]) -> dict[Any, Any]:
        """Pseudonymise PII in the ``extra`` map (the allowlist is for features only)."""
        return {
            name: self.pseudonym(value) if value is not None and self.is_pii(str(name)) else value
            for name, value in mapping.items()
        }
