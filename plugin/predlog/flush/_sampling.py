"""Which records the warehouse keeps, and with what weight.

Decisions are made in the flusher, a batch at a time, never on the request path.
The rules, in order:

1. ``new_model_version``: every record for ``new_version_window_s`` seconds after a
   (model_name, model_version) pair is first seen by this process. A new model is
   when you most need every decision.
2. ``near_threshold``: the confidence band is ``low`` (the score is within 0.1 of the
   threshold). These are the decisions that flip with a small change in the input.
3. ``high_risk``: the score is at or above ``high_risk_score``.
4. ``base_rate``: otherwise, keep with probability ``sample_rate``.

Before all of these, ``audit``: a record the audit log must have is always kept.

Records kept by rules 1-3 have probability 1 and weight 1; records kept by rule 4
have weight ``1 / sample_rate``. Weighting each kept record by its ``sample_weight``
therefore estimates totals and metrics over the unsampled stream without bias.

The base-rate decision is deterministic: it keeps a record iff::

    int.from_bytes(blake2b(request_id.encode("utf-8"), digest_size=8).digest(), "big")
        < sample_rate * 2**64

so every service that logs the same request id, in any language, makes the same
choice, and a request is either in the warehouse everywhere or nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Final

import numpy as np
import numpy.typing as npt

_TWO_64: Final = 1 << 64

#: Reason names, indexed by the codes in :attr:`SampleResult.reasons`.
REASONS: Final = ("new_model_version", "near_threshold", "high_risk", "base_rate", "audit")
NEW_MODEL_VERSION, NEAR_THRESHOLD, HIGH_RISK, BASE_RATE, AUDIT = range(5)
#: Code of a record the sample leaves out.
SAMPLED_OUT: Final = -1


def sampling_hash(key: str) -> int:
    """The 64-bit value the base-rate rule compares; see the module docstring."""
    return int.from_bytes(blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class SampleResult:
    """Per record: the rule that kept it (an index into :data:`REASONS`, or -1)."""

    reasons: npt.NDArray[np.int8]
    weights: npt.NDArray[np.float64]

    @property
    def kept(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.reasons != SAMPLED_OUT, dtype=np.bool_)


class Sampler:
    """Applies the sampling rules; one per flusher (it remembers model versions)."""

    __slots__ = ("_base_weight", "_cut", "_first_seen", "_high_risk", "_rate", "_window_s")

    def __init__(
        self, *, sample_rate: float, high_risk_score: float, new_version_window_s: float
    ) -> None:
        self._rate = sample_rate
        self._high_risk = high_risk_score
        self._window_s = new_version_window_s
        self._cut = int(sample_rate * _TWO_64)
        self._base_weight = 1.0 / sample_rate if sample_rate > 0 else 0.0
        self._first_seen: dict[tuple[str, str], float] = {}

    @property
    def sample_rate(self) -> float:
        return self._rate

    def first_seen(self, model_name: str, model_version: str, at: float) -> float:
        """When this process first saw the model version (seconds since the epoch)."""
        key = (model_name, model_version)
        seen = self._first_seen.get(key)
        if seen is None or at < seen:
            self._first_seen[key] = seen = at
        return seen

    def decide(
        self,
        *,
        key_of: Callable[[int], str],
        models: Sequence[tuple[str, str]] | tuple[str, str],
        at_s: npt.NDArray[np.float64],
        scores: npt.NDArray[np.float64],
        low_confidence: npt.NDArray[np.bool_],
        audited: npt.NDArray[np.bool_] | None = None,
    ) -> SampleResult:
        """Decide a whole batch. ``models`` is one pair for all, or one per record.

        ``key_of(i)`` gives record i's sampling key (its request id); it is called
        only for records that reach the base-rate rule. ``scores`` holds NaN where a
        record has no usable score.
        """
        n = len(at_s)
        reasons = np.full(n, SAMPLED_OUT, dtype=np.int8)
        if audited is not None:
            # Regulated decisions are kept whatever the rate: their own stratum, weight 1.
            reasons[audited] = AUDIT
        if self._window_s > 0:
            fresh = self._new_version(models, at_s)
            reasons[fresh & (reasons == SAMPLED_OUT)] = NEW_MODEL_VERSION
        open_ = reasons == SAMPLED_OUT
        reasons[open_ & low_confidence] = NEAR_THRESHOLD
        with np.errstate(invalid="ignore"):
            high = scores >= self._high_risk
        open_ = reasons == SAMPLED_OUT
        reasons[open_ & high] = HIGH_RISK
        open_ = reasons == SAMPLED_OUT
        if self._rate >= 1.0:
            reasons[open_] = BASE_RATE
        elif self._cut:
            cut = self._cut
            for i in np.flatnonzero(open_).tolist():
                if sampling_hash(key_of(i)) < cut:
                    reasons[i] = BASE_RATE
        weights = np.ones(n, dtype=np.float64)
        weights[reasons == BASE_RATE] = 1.0 if self._rate >= 1.0 else self._base_weight
        return SampleResult(reasons, weights)

    def _new_version(
        self,
        models: Sequence[tuple[str, str]] | tuple[str, str],
        at_s: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.bool_]:
        if isinstance(models, tuple) and len(models) == 2 and isinstance(models[0], str):
            name, version = models
            seen = self.first_seen(name, version, float(at_s.min()))
            return np.asarray(at_s - seen < self._window_s)
        mask = np.zeros(len(at_s), dtype=np.bool_)
        for i, (name, version) in enumerate(models):
            at = float(at_s[i])
            mask[i] = at - self.first_seen(name, version, at) < self._window_s
        return mask
