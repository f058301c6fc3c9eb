from __future__ import annotations

import math
from hashlib import blake2b

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from predlog import sampling_hash
from predlog.flush import REASONS, Sampler

MODEL = ("fraud", "v1")


def decide(sampler, ids, *, scores=None, low=None, at=1_000.0, models=MODEL):
    n = len(ids)
    return sampler.decide(
        key_of=ids.__getitem__,
        models=models,
        at_s=np.full(n, at) if np.isscalar(at) else np.asarray(at, dtype=float),
        scores=np.full(n, 0.2) if scores is None else np.asarray(scores, dtype=float),
        low_confidence=np.zeros(n, dtype=bool) if low is None else np.asarray(low),
    )


def warehouse_sampler(rate):
    """A sampler past every new-version window, so only the base rate applies to 0.2."""
    sampler = Sampler(sample_rate=rate, high_risk_score=0.9, new_version_window_s=60)
    sampler.first_seen(*MODEL, at=0.0)
    return sampler


class TestSamplingHash:
    def test_matches_documented_formula(self):
        """The hash is blake2b-64 of the UTF-8 request id, big-endian, as documented."""
        rid = "req-éü-42"
        expected = int.from_bytes(blake2b(rid.encode(), digest_size=8).digest(), "big")
        assert sampling_hash(rid) == expected


class TestBaseRate:
    @settings(max_examples=40, derandomize=True)
    @given(rate=st.floats(min_value=0.01, max_value=0.99), prefix=st.text(max_size=8))
    def test_rate_within_statistical_bounds(self, rate, prefix):
        """The kept fraction of 20,000 distinct ids is within 4.5 sigma of the rate."""
        n = 20_000
        ids = [f"{prefix}-{i}" for i in range(n)]
        kept = int(decide(warehouse_sampler(rate), ids).kept.sum())
        sigma = math.sqrt(n * rate * (1 - rate))
        assert abs(kept - n * rate) <= 4.5 * sigma

    @given(
        rate=st.floats(min_value=0.0, max_value=1.0),
        ids=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=200),
    )
    def test_same_request_id_same_decision_everywhere(self, rate, ids):
        """Two independent samplers (two services) make the same choice per request id."""
        first = decide(warehouse_sampler(rate), ids)
        second = decide(warehouse_sampler(rate), list(reversed(ids)))
        assert first.kept.tolist() == list(reversed(second.kept.tolist()))

    @settings(max_examples=40, derandomize=True)
    @given(
        rate=st.floats(min_value=0.02, max_value=0.9),
        risky_share=st.floats(min_value=0.0, max_value=0.5),
        seed=st.integers(min_value=0, max_value=2**32 - 1),
    )
    def test_weights_estimate_the_true_count(self, rate, risky_share, seed):
        """Summing sample_weight over kept records estimates the stream size within 3 sigma."""
        n = 20_000
        rng = np.random.default_rng(seed)
        scores = np.where(rng.random(n) < risky_share, 0.95, 0.2)
        ids = [f"{seed}-{i}" for i in range(n)]
        result = decide(warehouse_sampler(rate), ids, scores=scores)
        estimate = float(result.weights[result.kept].sum())
        # Only the base-rate stratum is random: Var = m (1 - p) / p for m records.
        m = int((scores < 0.9).sum())
        sigma = math.sqrt(m * (1 - rate) / rate)
        assert abs(estimate - n) <= 3 * sigma + 1e-9

    def test_weight_is_inverse_probability(self):
        """A base-rate record kept at rate 0.25 weighs 4."""
        result = decide(warehouse_sampler(0.25), [f"r{i}" for i in range(400)])
        assert set(result.weights[result.kept].tolist()) == {4.0}
        assert {REASONS[c] for c in result.reasons[result.kept]} == {"base_rate"}

    def test_rate_zero_keeps_only_what_matters(self):
        """At rate 0 nothing ordinary is kept, but risky scores still are."""
        result = decide(warehouse_sampler(0.0), ["a", "b"], scores=[0.2, 0.95])
        assert result.kept.tolist() == [False, True]


class TestAlwaysKeep:
    def test_near_threshold_and_high_risk_always_kept(self):
        """Low-confidence and high-risk records are kept at weight 1 whatever the rate."""
        ids = [f"r{i}" for i in range(300)]
        scores = [0.95] * 100 + [0.45] * 100 + [0.2] * 100
        low = [False] * 100 + [True] * 100 + [False] * 100
        result = decide(warehouse_sampler(0.0), ids, scores=scores, low=low)
        reasons = [REASONS[c] if c >= 0 else None for c in result.reasons]
        assert reasons[:100] == ["high_risk"] * 100
        assert reasons[100:200] == ["near_threshold"] * 100
        assert reasons[200:] == [None] * 100
        assert set(result.weights[result.kept].tolist()) == {1.0}

    def test_new_model_version_window(self):
        """Everything is kept for the window after a version is first seen, then sampled."""
        sampler = Sampler(sample_rate=0.0, high_risk_score=0.9, new_version_window_s=3600)
        early = decide(sampler, ["a", "b"], at=[10_000.0, 12_000.0])
        assert [REASONS[c] for c in early.reasons] == ["new_model_version"] * 2
        late = decide(sampler, ["c"], at=10_000.0 + 3600)
        assert not late.kept.any()
        other = decide(sampler, ["d"], at=20_000.0, models=[("fraud", "v2")])
        assert [REASONS[c] for c in other.reasons] == ["new_model_version"]

    def test_window_zero_disables_the_rule(self):
        """With no window, a brand-new version is sampled like anything else."""
        sampler = Sampler(sample_rate=0.0, high_risk_score=0.9, new_version_window_s=0)
        assert not decide(sampler, ["a"]).kept.any()
