"""RFC 8785 JSON canonicalisation (JCS) for audit entries.

Objects with keys sorted by UTF-16 code units, no insignificant whitespace, strings
escaped as ECMAScript's JSON.stringify does, and numbers in ECMAScript's shortest
round-trip form (``1`` not ``1.0``, ``1e-7`` not ``1e-07``). The same entry therefore
always hashes the same, whoever serialises it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _number(value: float) -> str:
    """ECMAScript Number::toString (ECMA-262 7.1.12.1) from the shortest round-trip digits."""
    if not math.isfinite(value):
        raise ValueError("JSON has no NaN or infinity")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = 0.digits x 10^n, as the specification writes it
    n = len(whole.lstrip("0")) if whole.strip("0") else -(len(frac) - len(frac.lstrip("0")))
    n += int(exp) if exp else 0
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        text = (
            digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        ) + f"e{'+' if e > 0 else '-'}{abs(e)}"
    return sign + text


def canonical(value: Any) -> bytes:
    """The RFC 8785 canonical JSON of ``value`` (dicts, lists, str, int, float, bool, None)."""
    return _encode(value).encode("utf-8")


def _encode(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        items = sorted(
            ((str(k), v) for k, v in value.items()), key=lambda kv: kv[0].encode("utf-16-be")
        )
        return "{" + ",".join(f"{_string(k)}:{_encode(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"cannot canonicalise {type(value).__name__}")
