"""Drift on a stratified sample estimates the drift of the population it was drawn from.

predlog keeps every high-risk and near-threshold record and a fraction of the rest,
each kept record weighted by the inverse of its chance of being kept. A drift metric
that ignores ``sample_weight`` measures the kept strata instead of the traffic.

Here a known population (two weeks of POPULATION_SIZE records each) goes through
the logger's own batch builder, with its sampler (every score >= HIGH_RISK kept with
weight 1, SAMPLE_RATE of the rest with weight 1 / SAMPLE_RATE), into the Parquet
layout through the logger's own sink. Each metric of ``drift()`` on that sample is
compared with the same metric computed with numpy and scipy on the whole population.

The population is built so that ignoring the weights shows: every feature depends on
the score, and what changes between the weeks changes mostly below HIGH_RISK, in the
stratum the sample thins out. For each metric the test also checks that the
unweighted value on the same sample misses the population's value by more than the
tolerance, and that a weighted reference computed here with numpy meets it: the test
can fail, and a correct weighted implementation passes it.

Tolerances (TOLERANCE) are five standard errors of the weighted estimator, measured
on 400 simulated samples of this population: whichever records the sampler's hash
happens to keep, a correct implementation passes, and an unweighted one misses by
more than twice the tolerance.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from predlog.sinks import ParquetSink
from predlog.testing import build_batch
from predlog.tools.analytics import drift

Floats = npt.NDArray[np.float64]

#: Records in each week of the population.
POPULATION_SIZE: Final = 200_000
#: Scores at or above this are all kept (weight 1); the sampler's high_risk rule.
HIGH_RISK: Final = 0.4
#: The share of the other records kept (weight 1 / SAMPLE_RATE); the base-rate rule.
SAMPLE_RATE: Final = 0.05
#: The decision threshold: its near-threshold band (0.4-0.6) lies inside the high-risk
#: stratum, so the two kept strata are one, score >= HIGH_RISK.
THRESHOLD: Final = 0.5
WEEKS: Final = (
    datetime(2026, 10, 1, tzinfo=timezone.utc),
    datetime(2026, 10, 8, tzinfo=timezone.utc),
)
BASELINE: Final = "2026-10-01..2026-10-08"
CURRENT: Final = "2026-10-08..2026-10-15"
CATEGORIES: Final = ("electronics", "fuel", "gift_cards", "grocery", "travel")
SEED: Final = 20261001

#: How far a weighted estimate from the sample may be from the population's value:
#: |bias| + 5 standard errors of the weighted estimator, rounded up. Both were measured
#: on 400 samples of this population (base-rate records drawn at SAMPLE_RATE, as the
#: sampler's hash does), where the largest error seen was 2.5 to 3.5 standard errors.
#: About 9,000 base-rate records a range carry 90% of the weight, so shares move by
#: ~0.002, means by 0.2-0.4% and PSI by ~0.015 from one sample to the next. Per metric:
#: standard error, largest simulated error, and the smallest unweighted error seen.
TOLERANCE: Final[dict[str, float]] = {
    "amount.ks": 0.032,  # sd 0.0059, max 0.016, unweighted >= 0.15
    "amount.mean.baseline": 1.7,  # sd 0.32, max 1.0, unweighted >= 34
    "amount.mean.current": 2.1,  # sd 0.40, max 1.3, unweighted >= 20
    "amount.psi": 0.08,  # sd 0.016, max 0.042, unweighted >= 0.27
    "merchant_category.null_rate.baseline": 0.0067,  # sd 0.0013, max 0.0041, unweighted >= 0.11
    "merchant_category.null_rate.current": 0.0067,  # sd 0.0013, max 0.0040, unweighted >= 0.11
    "merchant_category.psi": 0.071,  # sd 0.014, max 0.044, unweighted >= 0.20
    "score.ks": 0.031,  # sd 0.0057, max 0.018, unweighted >= 0.13
    "score.mean.baseline": 0.0048,  # sd 0.00093, max 0.0032, unweighted >= 0.17
    "score.mean.current": 0.0043,  # sd 0.00083, max 0.0027, unweighted >= 0.14
    "score.psi": 0.078,  # sd 0.015, max 0.044, unweighted >= 0.21
    "utilization.ks": 0.033,  # sd 0.0060, max 0.019, unweighted >= 0.14
    "utilization.mean.baseline": 0.0097,  # sd 0.0019, max 0.0055, unweighted >= 0.060
    "utilization.mean.current": 0.0095,  # sd 0.0019, max 0.0058, unweighted >= 0.13
    "utilization.null_rate.baseline": 0.009,  # sd 0.0018, max 0.0059, unweighted >= 0.15
    "utilization.null_rate.current": 0.014,  # sd 0.0027, max 0.0074, unweighted >= 0.12
    "utilization.psi": 0.078,  # sd 0.015, max 0.048, unweighted >= 0.24
}


@dataclass(frozen=True)
class Week:
    """One week of records, column by column. NaN (numbers) or None (category) is a
    feature without a value; ``absent`` says which of those have no key at all rather
    than a JSON null."""

    score: Floats
    amount: Floats
    utilization: Floats
    category: npt.NDArray[np.object_]
    absent: npt.NDArray[np.bool_]

    def take(self, index: npt.NDArray[np.intp]) -> Week:
        return Week(
            self.score[index],
            self.amount[index],
            self.utilization[index],
            self.category[index],
            self.absent[index],
        )


def population_week(week: int, rng: np.random.Generator, size: int = POPULATION_SIZE) -> Week:
    """A week of traffic. In week 1, below HIGH_RISK only, scores move up toward it,
    amounts grow, utilization falls and goes missing more often, and merchants move
    from groceries to electronics and gift cards. Above HIGH_RISK nothing changes, and
    the share of records there stays the same."""
    score = rng.beta(2.0, 7.0, size)
    low = score < HIGH_RISK
    if week:
        score[low] = HIGH_RISK * (score[low] / HIGH_RISK) ** 0.65
    shift = np.where(low, float(week), 0.0)
    log_amount = 3.4 + 2.5 * score + 0.25 * shift + 0.5 * rng.standard_normal(size)
    amount = np.round(np.exp(log_amount)).astype(np.float64)
    utilization = np.round(rng.beta((2.0 + 6.0 * score) * (1.0 - 0.45 * shift), 3.0), 3)
    null = rng.random(size) < np.where(low, 0.04 + 0.05 * week, 0.30)
    utilization[null] = np.nan
    absent = null & (rng.random(size) < 0.5)
    mix_low = (0.10 + 0.10 * week, 0.25, 0.05 + 0.10 * week, 0.40 - 0.20 * week, 0.20)
    mix_high = (0.35, 0.10, 0.30, 0.10, 0.15)
    category = np.empty(size, dtype=object)
    for stratum, mix in ((low, mix_low), (~low, mix_high)):
        category[stratum] = rng.choice(CATEGORIES, size=int(stratum.sum()), p=mix)
    category[rng.random(size) < np.where(low, 0.02, 0.20)] = None
    return Week(score, amount, utilization, category, absent)


def records(prefix: str, week: Week, start: datetime) -> Iterator[dict[str, Any]]:
    """``log()`` arguments for each record of ``week``, spread evenly over its 7 days."""
    step = 7 * 86_400 / len(week.score)
    for i in range(len(week.score)):
        features: dict[str, Any] = {"amount": float(week.amount[i])}
        value = week.utilization[i]
        if not week.absent[i]:
            features["utilization"] = None if np.isnan(value) else float(value)
        if week.category[i] is not None:
            features["merchant_category"] = week.category[i]
        score = float(week.score[i])
        yield {
            "request_id": f"{prefix}-{i}",
            "features": features,
            "score": score,
            "decision": "decline" if score >= THRESHOLD else "approve",
            "threshold": THRESHOLD,
            "timestamp": start + timedelta(seconds=i * step),
        }


def write_sample(data_dir: Path, weeks: tuple[Week, Week]) -> list[tuple[Week, Floats]]:
    """Sample both weeks with the logger's sampler and write what it keeps with the
    logger's Parquet sink; per week, the kept records and their weights."""
    sink = ParquetSink(data_dir)
    kept = []
    for number, (week, start) in enumerate(zip(weeks, WEEKS, strict=True)):
        batch = build_batch(
            records(f"w{number}", week, start),
            model_name="fraud",
            model_version="v1",
            sample_rate=SAMPLE_RATE,
            high_risk_score=HIGH_RISK,
            new_version_window_s=0,
            decision_threshold=THRESHOLD,
        )
        sink.export(batch)
        index = np.array(
            [int(str(r).rsplit("-", 1)[1]) for r in batch.column("request_id").to_pylist()],
            dtype=np.intp,
        )
        weights = batch.column("sample_weight").to_numpy()
        kept.append((week.take(index), weights))
    sink.close()
    return kept


# -- the metrics, written out with numpy ---------------------------------------------


def weighted_quantile_edges(values: Floats, weights: Floats, bins: int = 10) -> Floats:
    """Bin edges: the minimum, the k/bins weighted quantiles (the smallest value whose
    cumulative weight share reaches k/bins), the maximum; repeated edges dropped."""
    order = np.argsort(values, kind="stable")
    ordered, cumulative = values[order], np.cumsum(weights[order])
    total = cumulative[-1]
    inner = [
        ordered[np.searchsorted(cumulative * bins, k * total, side="left")] for k in range(1, bins)
    ]
    return np.unique(np.array([ordered[0], *inner, ordered[-1]]))


def binned(values: Floats, weights: Floats, edges: Floats) -> Floats:
    """Weighted counts per bin; bin i is [edges[i], edges[i+1]), the first bin takes
    everything below edges[1] and the last everything from edges[-2] up."""
    index = np.searchsorted(edges[1:-1], values, side="right")
    counts = np.bincount(index, weights=weights, minlength=len(edges) - 1)
    return counts.astype(np.float64)


def psi_of(base: Floats, current: Floats) -> float:
    """PSI of two weighted counts over the same bins (shares floored at 1e-6)."""
    p = np.maximum(base / base.sum(), 1e-6)
    q = np.maximum(current / current.sum(), 1e-6)
    return float(((q - p) * np.log(q / p)).sum())


def numeric_psi(b: Floats, bw: Floats, c: Floats, cw: Floats) -> float:
    edges = weighted_quantile_edges(b, bw)
    return psi_of(binned(b, bw, edges), binned(c, cw, edges))


def weighted_ks(b: Floats, bw: Floats, c: Floats, cw: Floats) -> float:
    """The largest gap between the two weighted empirical CDFs, taken at every value."""
    points = np.union1d(b, c)

    def cdf(values: Floats, weights: Floats) -> Floats:
        order = np.argsort(values, kind="stable")
        cumulative = np.concatenate([[0.0], np.cumsum(weights[order])])
        at = cumulative[np.searchsorted(values[order], points, side="right")]
        return np.asarray(at / cumulative[-1], dtype=np.float64)

    return float(np.abs(cdf(b, bw) - cdf(c, cw)).max())


def metrics(base: Week, bw: Floats, current: Week, cw: Floats) -> dict[str, float]:
    """Every metric TOLERANCE names, with each record weighted by ``bw`` / ``cw``."""
    out: dict[str, float] = {}
    pairs = {"baseline": (base, bw), "current": (current, cw)}
    for name in ("amount", "utilization", "score"):
        columns = {view: (getattr(week, name), w) for view, (week, w) in pairs.items()}
        present = {view: ~np.isnan(v) for view, (v, _) in columns.items()}
        (b, b_w), (c, c_w) = ((v[present[k]], w[present[k]]) for k, (v, w) in columns.items())
        out[f"{name}.psi"] = numeric_psi(b, b_w, c, c_w)
        out[f"{name}.ks"] = weighted_ks(b, b_w, c, c_w)
        for view, (v, w) in (("baseline", (b, b_w)), ("current", (c, c_w))):
            out[f"{name}.mean.{view}"] = float(np.average(v, weights=w))
        if name == "utilization":
            for view, (_, w) in columns.items():
                out[f"{name}.null_rate.{view}"] = float(w[~present[view]].sum() / w.sum())
    shares = {}
    for view, (week, w) in pairs.items():
        null = np.array([c is None for c in week.category])
        out[f"merchant_category.null_rate.{view}"] = float(w[null].sum() / w.sum())
        shares[view] = np.array([w[week.category == k].sum() for k in CATEGORIES])
    out["merchant_category.psi"] = psi_of(shares["baseline"], shares["current"])
    return out


def reported(report: dict[str, Any], metric: str) -> float:
    """The value ``drift()`` reports for ``metric`` (``feature.key[.sub]``)."""
    name, key, *sub = metric.split(".")
    entry = report["score"] if name == "score" else report["features"][name]
    value = entry[key]
    if key == "ks":
        value = value["statistic"]
    elif sub:
        value = value[sub[0]]
    return float(value)


# -- the test ------------------------------------------------------------------------


def ones(week: Week) -> Floats:
    return np.ones(len(week.score))


@dataclass(frozen=True, repr=False)  # a failure shows its metric, not every array
class Case:
    """The population's metrics, the sample's (weighted and not) written out here, and
    the sample itself: per range its records' weights, and drift()'s report on it."""

    population: dict[str, float]
    weighted: dict[str, float]
    unweighted: dict[str, float]
    weights: dict[str, Floats]
    report: dict[str, Any]


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    rng = np.random.default_rng(SEED)
    weeks = (population_week(0, rng), population_week(1, rng))
    data_dir = tmp_path_factory.mktemp("drift-weights") / "data"
    (base, bw), (current, cw) = write_sample(data_dir, weeks)
    return Case(
        population=metrics(weeks[0], ones(weeks[0]), weeks[1], ones(weeks[1])),
        weighted=metrics(base, bw, current, cw),
        unweighted=metrics(base, ones(base), current, ones(current)),
        weights={"baseline": bw, "current": cw},
        report=drift(baseline=BASELINE, current=CURRENT, data_dir=data_dir),
    )


class TestStratifiedSample:
    def test_the_sample_is_stratified_as_predlog_samples(self, case: Case) -> None:
        """Under a fifth of the records are kept, over half of them high-risk, and their
        weights add up to the population."""
        for weights in case.weights.values():
            assert len(weights) < POPULATION_SIZE * 0.2
            assert (weights == 1).mean() > 0.5
            assert set(np.unique(weights)) == {1.0, 1 / SAMPLE_RATE}
            assert abs(weights.sum() - POPULATION_SIZE) < POPULATION_SIZE * 0.02

    def test_drift_counts_the_records_and_their_weights(self, case: Case) -> None:
        for view, weights in case.weights.items():
            assert case.report[view]["n"] == len(weights)
            assert case.report[view]["weighted_n"] == pytest.approx(weights.sum())

    def test_features_are_compared_by_their_kind(self, case: Case) -> None:
        """Amounts (whole numbers, ~500 distinct) and utilization (3 decimals) are
        numbers, not identifiers; merchants are categories."""
        kinds = {name: entry["kind"] for name, entry in case.report["features"].items()}
        assert kinds == {
            "amount": "numerical",
            "utilization": "numerical",
            "merchant_category": "categorical",
        }

    def test_population_ks_is_scipys(self) -> None:
        """The KS written out here is scipy's two-sample statistic, ties included."""
        rng = np.random.default_rng(5)
        a, b = np.round(rng.normal(0, 1, 5000), 1), np.round(rng.normal(0.1, 1, 4000), 1)
        expected = stats.ks_2samp(a, b).statistic
        assert weighted_ks(a, np.ones(len(a)), b, np.ones(len(b))) == pytest.approx(expected)

    @pytest.mark.parametrize("metric", sorted(TOLERANCE))
    def test_reference_weighted_estimate_meets_the_tolerance(self, case: Case, metric: str) -> None:
        """The weighted metric written out here, on this sample, is within tolerance:
        the tolerance can be met."""
        error = abs(case.weighted[metric] - case.population[metric])
        assert error <= TOLERANCE[metric], (
            f"{metric}: {case.weighted[metric]} vs {case.population[metric]}"
        )

    @pytest.mark.parametrize("metric", sorted(TOLERANCE))
    def test_unweighted_estimate_misses_the_tolerance(self, case: Case, metric: str) -> None:
        """Ignoring the weights misses the population's value by more than the
        tolerance: the test below can tell the two apart."""
        error = abs(case.unweighted[metric] - case.population[metric])
        assert error > 2 * TOLERANCE[metric], (
            f"{metric}: unweighted {case.unweighted[metric]} vs {case.population[metric]}"
        )

    @pytest.mark.parametrize("metric", sorted(TOLERANCE))
    def test_drift_estimates_the_population(self, case: Case, metric: str) -> None:
        """drift() on the weighted sample reports the population's value, within tolerance."""
        value = reported(case.report, metric)
        population = case.population[metric]
        assert abs(value - population) <= TOLERANCE[metric], (
            f"{metric}: drift() reports {value}, the population has {population} "
            f"(unweighted sample: {case.unweighted[metric]}, tolerance {TOLERANCE[metric]})"
        )
