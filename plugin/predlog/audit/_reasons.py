"""Explanations and adverse-action reasons.

An explanation is each feature's contribution to the model's score (SHAP values, or
the exact coefficient x value terms of a linear model). predlog records the method,
the top features that pushed the score up and those that pushed it down, and, for
adverse decisions, the plain-English reasons an applicant is owed (ECOA / Regulation
B style): the features that pushed the score furthest *towards the adverse decision*,
mapped through a reason table the compliance team owns.

Sign convention: contributions are to the score as the model outputs it. With a risk
score (higher means worse for the applicant, as for fraud and default probability),
the adverse reasons are the largest positive contributions; for a score where higher
is better (an approval probability), pass ``adverse_when="decreases_score"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from predlog.errors import ConfigError


class ReasonTable:
    """Feature name -> plain-English reason. Refuses to start with a feature unmapped."""

    def __init__(
        self,
        reasons: Mapping[str, str],
        *,
        features: Iterable[str],
        adverse_when: str = "increases_score",
        top: int = 3,
    ) -> None:
        if adverse_when not in ("increases_score", "decreases_score"):
            raise ConfigError(
                "adverse_when", f"must be increases_score or decreases_score, got {adverse_when!r}"
            )
        missing = sorted(set(features) - set(reasons))
        if missing:
            raise ConfigError(
                "reason_table",
                "every feature that can be a top adverse reason needs a plain-English reason; "
                f"missing: {', '.join(missing)}",
            )
        blank = sorted(name for name, text in reasons.items() if not str(text).strip())
        if blank:
            raise ConfigError("reason_table", f"empty reason for: {', '.join(blank)}")
        self._reasons = dict(reasons)
        self._sign = 1.0 if adverse_when == "increases_score" else -1.0
        self._top = top

    def explanation(
        self, contributions: Mapping[str, float], *, method: str, top: int | None = None
    ) -> dict[str, Any]:
        """The record's explanation: method, and the top features each way."""
        k = top or self._top
        ranked = sorted(contributions.items(), key=lambda kv: kv[1], reverse=True)
        return {
            "method": method,
            "top_positive": [
                {"feature": f, "contribution": round(float(c), 6)} for f, c in ranked[:k] if c > 0
            ],
            "top_negative": [
                {"feature": f, "contribution": round(float(c), 6)}
                for f, c in reversed(ranked[-k:])
                if c < 0
            ],
        }

    def adverse_reasons(self, contributions: Mapping[str, float]) -> list[str]:
        """The top features against the applicant, as reasons (at most ``top``)."""
        against = sorted(
            ((name, self._sign * float(value)) for name, value in contributions.items()),
            key=lambda kv: kv[1],
            reverse=True,
        )
        reasons: list[str] = []
        for name, value in against:
            if value <= 0 or len(reasons) == self._top:
                break
            text = self._reasons.get(name)
            if text is None:
                raise KeyError(f"no reason for feature {name!r}")
            if text not in reasons:
                reasons.append(text)
        return reasons
