"""Which features a drift report compares, and how: names and kinds from a sample.

Names and JSON types come from a sample of each range: the ``SAMPLE`` records whose
``prediction_id`` ends lowest. The ids are UUIDs (version 7: time first, random bits
last), so ordering by their last twelve characters picks records at random from the
whole range, and every engine picks the same ones.

A feature is *numerical* when at least ``NUMERIC_SHARE`` of its sampled values are
numbers (or text that reads as one, ``"12.50"``); the rest read as nulls. One ``"n/a"``
among two thousand amounts does not make amounts text.

A feature is *identifier-like*, and compared by nobody, when it is text and at least
half of the sampled records of a range carry a value no other sampled record has
(``transaction_id``, a pseudonymised ``card_id``), or when it is a whole number that
nearly every sampled record holds alone (a numeric customer id). Category shares of
an identifier only say which ids came by: every new id "drifts".
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from predlog.tools.analytics.engine import Engine, literal

SAMPLE: Final = 20_000
#: Text: share of sampled values that are distinct at which a feature is an identifier.
TEXT_DISTINCT: Final = 0.5
#: Whole numbers: the same share, and the fewest sampled values that can show it.
NUMBER_DISTINCT: Final = 0.99
NUMBER_MIN_SAMPLE: Final = 1_000
#: Fewest distinct values before uniqueness says anything (3 records, 3 values: no).
MIN_DISTINCT: Final = 20
#: Values of an id's last four hex digits.
_TAIL: Final = 1 << 16
#: Share of sampled values that must be numbers for a feature to be numerical.
NUMERIC_SHARE: Final = 0.9


@dataclass(frozen=True)
class Feature:
    name: str
    #: ``numerical``, ``categorical``, ``identifier`` or ``empty``.
    kind: str
    note: str | None = None


def sample(engine: Engine, range_filter: str) -> list[dict[str, Any]]:
    """Up to ``SAMPLE`` records' features, parsed, of the records ``range_filter`` keeps.

    A range of millions first keeps the records whose id ends in a hex number under a
    cut-off, about four times ``SAMPLE`` of them (the id alone is read for the rest),
    and orders only those.
    """
    where = f"{range_filter} AND features IS NOT NULL"
    (count,) = engine.rows(f"SELECT count(*) FROM predictions WHERE {where}")[0]
    cut = math.ceil(_TAIL * 4 * SAMPLE / count) if count else _TAIL
    if cut < _TAIL:
        where += f" AND right(prediction_id, 4) < {literal(f'{cut:04x}')}"
    rows = engine.rows(
        f"SELECT features FROM predictions WHERE {where} "
        f"ORDER BY right(prediction_id, 12), prediction_id LIMIT {SAMPLE}"
    )
    out = []
    for (text,) in rows:
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            continue  # a malformed record is flagged at capture; it has no features to compare
        if isinstance(value, dict):
            out.append(value)
    return out


def classify(samples: list[list[dict[str, Any]]]) -> list[Feature]:
    """Every feature name seen in the samples (sorted), with its kind."""
    names = sorted({k for records in samples for r in records for k in r})
    return [
        _classify(name, [[r.get(name) for r in records] for records in samples]) for name in names
    ]


def _is_number(value: Any) -> bool:
    """A JSON number, or text that reads as a finite one."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        try:
            return math.isfinite(float(value))
        except ValueError:
            return False
    return False


def _classify(name: str, values: list[list[Any]]) -> Feature:
    present = [[v for v in side if v is not None] for side in values]
    seen = [v for side in present for v in side]
    if not seen:
        return Feature(name, "empty")
    numeric = sum(map(_is_number, seen)) >= NUMERIC_SHARE * len(seen)
    for side in present:
        distinct = len(Counter(json.dumps(v, sort_keys=True) for v in side))
        if distinct < MIN_DISTINCT:
            continue
        share = distinct / len(side)
        if not numeric and share >= TEXT_DISTINCT:
            return Feature(name, "identifier", _why(distinct, len(side)))
        if numeric and len(side) >= NUMBER_MIN_SAMPLE and share >= NUMBER_DISTINCT:
            whole = all(float(v).is_integer() for v in side if _is_number(v))
            if whole:
                return Feature(name, "identifier", _why(distinct, len(side)))
    return Feature(name, "numerical" if numeric else "categorical")


def _why(distinct: int, n: int) -> str:
    return f"identifier-like: {distinct:,} distinct values in {n:,} sampled records; not compared"
