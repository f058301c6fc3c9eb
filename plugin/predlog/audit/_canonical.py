"""RFC 8785 JSON canonicalisation (JCS) for audit entries, by the ``rfc8785`` package.

The bytes of an entry are what its leaf hash covers, so they must be the same whoever
serialises it: objects with keys sorted by UTF-16 code units, no insignificant
whitespace, strings escaped as ECMAScript's JSON.stringify does, and numbers in
ECMAScript's shortest round-trip form (``1`` not ``1.0``, ``1e-7`` not ``1e-07``).
The serialisation itself is the ``rfc8785`` package's; this module only checks the
value first so that a value JCS cannot represent is refused with the path of the key
that holds it.

Refused, never converted (a conversion would make the stored entry say something
other than what the caller gave):

* integers outside -(2**53 - 1) .. 2**53 - 1: JSON numbers are IEEE 754 doubles, and
  a verifier in another language would read a different number (pass such ids as
  strings);
* object keys that are not strings (``{1: "x"}``): JSON has only string keys, and
  ``str(key)`` could make two keys one;
* NaN and the infinities, which JSON cannot express;
* strings that are not valid Unicode (lone surrogates), and types JSON has no form
  for (bytes, sets, dates: convert them first).

Verification never re-canonicalises: it rehashes the bytes stored with each entry, so
entries written before these checks (by the earlier, hand-written encoder) still verify.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from predlog.errors import PredlogError

#: The largest magnitude of an integer a JSON number (an IEEE 754 double) holds exactly.
MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalError(PredlogError, ValueError):
    """A value has no RFC 8785 form; ``path`` names where (``$`` is the entry itself,
    ``$.features.card`` a key in it, ``$.reasons[2]`` an item of a list)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


def canonical(value: Any) -> bytes:
    """The RFC 8785 canonical JSON of ``value`` (mappings, lists, tuples, str, int,
    float, bool, None); CanonicalError, naming the key path, for anything else."""
    import rfc8785  # noqa: PLC0415  # the audit extra; readers of a log never need it

    plain = _plain(value, "$")
    try:
        return rfc8785.dumps(plain)
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalError("$", str(exc)) from None


def _plain(value: Any, path: str) -> Any:
    """``value`` as the dicts and lists ``rfc8785`` takes, checked all the way down."""
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str):
            _check_text(value, path)
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalError(
                path,
                f"integer {value} is outside +-(2**53 - 1), which a JSON number holds "
                "exactly; pass it as a string",
            )
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalError(path, f"{value!r} (NaN or infinity) has no JSON form")
        return float(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(
                    f"{path}[{key!r}]",
                    f"object keys must be strings, got {type(key).__name__}",
                )
            _check_text(key, f"{path}[{key!r}]")
            out[key] = _plain(item, f"{path}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise CanonicalError(path, f"{type(value).__name__} has no JSON form; convert it first")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalError(path, "string is not valid Unicode (a lone surrogate)") from None
