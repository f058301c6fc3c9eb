"""A drained batch as the builder reads it: capture tuples, or columns resolved natively.

The batch builder (:mod:`predlog.flush._batch`) asks a batch for whole columns: the
numbers as float64 with their flags, the texts, the given flags. A batch of capture
tuples (``log()``'s, or middleware captures resolved one by one) answers from
``zip(*captures)``; a batch the extension resolved into columns
(:func:`predlog.flush._native.resolve_columns`) answers from the Arrow buffers it
wrote, so its strings never become Python objects. Both answer the same questions
the same way, and everything after them (sampling, ids, bands, the columns' specs)
is one code.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import is_
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from predlog._capture import CAPTURE_FIELDS, Capture
from predlog._table import Spec
from predlog.flush import _decode

Flags = dict[int, list[str]]
FloatArray = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]

_TEXT: Final = frozenset({str, type(None)})
_NUMBERS: Final = frozenset({float, int, type(None)})


def flag(flags: Flags, index: int, name: str) -> None:
    flags.setdefault(index, []).append(name)


def has_none(column: Sequence[Any]) -> bool:
    """Whether a value is None, by identity: ``tuple.count`` compares with ``==``, which a
    numpy array (a score given as ``predict_proba``'s row) answers with an array."""
    return any(map(is_, column, repeat(None)))


def all_none(column: Sequence[Any]) -> bool:
    return all(map(is_, column, repeat(None)))


def texts(column: Sequence[Any]) -> list[str | None]:
    """A string column's values as the stored text: str and None as they are, anything
    else (and a str with lone surrogates) as :func:`~predlog.flush._decode.optional_str`
    makes it."""
    if set(map(type, column)) <= _TEXT:
        try:
            "".join(filter(None, column)).encode()
        except UnicodeEncodeError:
            pass
        else:
            return list(column)
    return [_decode.optional_str(v) for v in column]


def _as_floats(column: Sequence[Any]) -> FloatArray | None:
    """The column as float64 in one numpy call (None as NaN), or None where a value is
    not a plain number (numpy would take a string or a nested list its own way)."""
    if not set(map(type, column)) <= _NUMBERS:
        return None
    try:
        return np.array(column, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # an int past the float range
        return None


def checked(
    values: FloatArray,
    absent: npt.NDArray[np.bool_] | None,
    flags: Flags,
    *,
    missing: str | None,
    invalid: str,
    nan: str,
    inf: str,
) -> FloatArray:
    """A float column (NaN where absent or unusable) with a flag for each absent value
    (when ``missing`` names one) and each NaN or infinity, NaN in their place. A value
    already flagged ``invalid`` is not flagged again. Each value gets one flag at most."""
    if missing is not None and absent is not None:
        for i in np.flatnonzero(absent).tolist():
            flag(flags, i, missing)
    finite = np.isfinite(values)
    if not finite.all():
        given = ~finite if absent is None else ~finite & ~absent
        for i in np.flatnonzero(given).tolist():
            if i not in flags or invalid not in flags[i]:
                flag(flags, i, nan if values[i] != values[i] else inf)
        values = np.where(finite, values, np.nan)
    return values


def floats(
    column: Sequence[Any], flags: Flags, *, missing: str | None, invalid: str, nan: str, inf: str
) -> FloatArray:
    """A column of Python values as float64, NaN where unusable, with a flag per unusable
    value (see :func:`checked`)."""
    parsed = _as_floats(column)
    if parsed is None:
        values: list[float] = []
        for i, raw in enumerate(column):
            if raw is None:
                values.append(np.nan)
                continue
            try:
                values.append(float(raw))
            except (TypeError, ValueError, OverflowError):
                flag(flags, i, invalid)
                values.append(np.nan)
        parsed = np.array(values, dtype=np.float64)
    if missing is None and np.isfinite(parsed).all():
        return parsed  # nothing to flag: the usual case, without a pass over the values
    absent = (
        np.fromiter(map(is_, column, repeat(None)), np.bool_, len(column))
        if has_none(column)
        else None
    )
    return checked(
        parsed,
        absent,
        flags,
        missing=missing,
        invalid=invalid,
        nan=nan,
        inf=inf,
    )


class Tuples:
    """A batch of capture tuples, transposed into named columns (``zip(*captures)``,
    in C; raises for a capture of another length)."""

    __slots__ = ("columns", "n")

    def __init__(self, captures: Sequence[Capture]) -> None:
        self.columns = dict(zip(CAPTURE_FIELDS, zip(*captures, strict=True), strict=True))
        self.n = len(captures)

    def __getitem__(self, name: str) -> tuple[Any, ...]:
        return self.columns[name]

    def given_flags(self) -> Flags:
        """The flags captures arrived with (the middleware's), as mutable lists."""
        flags: Flags = {}
        column = self.columns["flags"]
        if not all_none(column):
            for i, given in enumerate(column):
                if given:
                    flags[i] = list(given)
        return flags

    def all_none(self, name: str) -> bool:
        return all_none(self.columns[name])

    def texts(self, name: str) -> list[str | None]:
        return texts(self.columns[name])

    def stamps(self) -> npt.NDArray[np.int64]:
        return np.fromiter(self.columns["timestamp_ns"], dtype=np.int64, count=self.n)

    def floats(
        self, name: str, flags: Flags, *, missing: str | None, invalid: str, nan: str, inf: str
    ) -> FloatArray:
        return floats(self.columns[name], flags, missing=missing, invalid=invalid, nan=nan, inf=inf)

    def strings(self, name: str, positions: list[int]) -> Spec:
        """The column's values at ``positions``, as a string column's spec."""
        column = self.columns[name]
        if len(positions) == self.n:
            return ("strings", column)
        return ("strings", [column[i] for i in positions])


class NativeColumns:
    """A batch the extension resolved into columns (one per capture position, in the
    forms :func:`predlog.flush._native.resolve_columns` documents)."""

    __slots__ = ("_columns", "n")

    def __init__(self, columns: dict[str, Any], n: int) -> None:
        self._columns = columns
        self.n = n

    def given_flags(self) -> Flags:
        return {i: list(given) for i, given in self._columns["flags"]}

    def _valid(self, name: str) -> npt.NDArray[np.bool_] | None:
        valid = self._columns[name][2]
        return None if valid is None else np.frombuffer(valid, dtype=np.bool_)

    def all_none(self, name: str) -> bool:
        column = self._columns[name]
        if column is None:  # a position that is None in every record
            return True
        if len(column) == 2:  # a number column: (values, absent)
            absent = column[1]
            return absent is not None and bool(np.frombuffer(absent, dtype=np.bool_).all())
        valid = self._valid(name)
        return valid is not None and not valid.any()

    def texts(self, name: str) -> list[str | None]:
        offsets, data, _ = self._columns[name]
        bounds = np.frombuffer(offsets, dtype=np.int32).tolist()
        valid = self._valid(name)
        return [
            data[bounds[i] : bounds[i + 1]].decode() if valid is None or valid[i] else None
            for i in range(self.n)
        ]

    def stamps(self) -> npt.NDArray[np.int64]:
        return np.frombuffer(self._columns["timestamp_ns"], dtype=np.int64)

    def floats(
        self, name: str, flags: Flags, *, missing: str | None, invalid: str, nan: str, inf: str
    ) -> FloatArray:
        values, absent = self._columns[name]
        return checked(
            np.frombuffer(values, dtype=np.float64).copy(),
            None if absent is None else np.frombuffer(absent, dtype=np.bool_),
            flags,
            missing=missing,
            invalid=invalid,
            nan=nan,
            inf=inf,
        )

    def text(
        self, name: str, positions: list[int], drop: npt.NDArray[np.bool_] | None = None
    ) -> Spec:
        """The column at ``positions`` as a ``text`` spec; ``drop`` marks (over the whole
        batch) values stored as null even though their text is there."""
        offsets, data, _ = self._columns[name][:3]
        bounds = np.frombuffer(offsets, dtype=np.int32)
        valid = self._valid(name)
        if drop is not None and drop.any():
            valid = ~drop if valid is None else valid & ~drop
        if len(positions) == self.n:
            return ("text", bounds, data, valid)
        index = np.asarray(positions, dtype=np.intp)
        starts = bounds[index]
        lengths = bounds[index + 1] - starts
        taken = np.zeros(len(index) + 1, dtype=np.int32)
        np.cumsum(lengths, out=taken[1:])
        at = np.repeat(starts - taken[:-1], lengths) + np.arange(taken[-1], dtype=np.int64)
        picked = np.frombuffer(data, dtype=np.uint8)[at].tobytes()
        return ("text", taken, picked, None if valid is None else valid[index])

    def strings(self, name: str, positions: list[int]) -> Spec:
        return self.text(name, positions)

    def features(self, positions: list[int], flags: Flags, max_bytes: int) -> tuple[Spec, Spec]:
        """The features column and their null counts at ``positions``: a record without
        features flagged ``features_missing``, one past ``max_bytes`` ``features_oversize``
        and stored as null, as the Python encoder does."""
        offsets, _, valid, nulls = self._columns["features"]
        missing = (
            np.zeros(self.n, dtype=np.bool_)
            if valid is None
            else ~np.frombuffer(valid, dtype=np.bool_)
        )
        oversize = (np.diff(np.frombuffer(offsets, dtype=np.int32)) > max_bytes) & ~missing
        index = np.asarray(positions, dtype=np.intp)
        for k in np.flatnonzero((missing | oversize)[index]).tolist():
            i = positions[k]
            flag(flags, i, "features_missing" if missing[i] else "features_oversize")
        counts = np.frombuffer(nulls, dtype=np.int32)[index]
        if missing.any():
            absent = missing[index].tolist()
            counted = counts.tolist()
            null_spec: Spec = (
                "int32",
                [None if a else c for a, c in zip(absent, counted, strict=True)],
            )
        else:
            null_spec = ("int32s", counts)
        return self.text("features", positions, oversize), null_spec


#: A batch as the builder reads it.
Source = Tuples | NativeColumns
