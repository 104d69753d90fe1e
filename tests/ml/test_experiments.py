"""The experiment statistics against simulations with a known truth: intervals cover a planted
uplift about 95% of the time, A/A tests peeked at daily reject about 5% of the time with the
always-valid test (and far more often with the naive one), CUPED narrows the interval without
moving it, a broken split is caught, and Thompson sampling moves traffic to the better arm."""

from __future__ import annotations

import numpy as np
import pytest

from ml.experiments import assign, bucket, compare, cuped, sample_ratio_p, thompson_allocation

SIMULATIONS = 400
# With 400 simulations, a true rate of 95% falls in [0.925, 0.97] 99% of the time (binomial).
COVERAGE = (0.925, 0.97)


def test_assignment_is_sticky_uniform_and_follows_the_split():
    persons = [f"p{i}" for i in range(20000)]
    first = [assign("exp-1", p, {"control": 0.5, "a": 0.3, "b": 0.2}) for p in persons]
    again = [assign("exp-1", p, {"control": 0.5, "a": 0.3, "b": 0.2}) for p in persons]
    assert first == again
    shares = {v: first.count(v) / len(first) for v in ("control", "a", "b")}
    assert abs(shares["control"] - 0.5) < 0.015 and abs(shares["a"] - 0.3) < 0.015
    other = [assign("exp-2", p, {"control": 0.5, "a": 0.5}) for p in persons]
    # another salt: independent of this one (half of each variant lands in each of the other's)
    control = [o for f, o in zip(first, other, strict=True) if f == "control"]
    assert abs(control.count("a") / len(control) - 0.5) < 0.02
    assert 0 <= min(bucket("s", p) for p in persons[:100]) and max(bucket("s", p) for p in persons[:100]) < 1


def _conversions(rng, n, rate):
    return (rng.random(n) < rate).astype(float)


def test_the_interval_covers_a_planted_uplift_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    fixed = sequence = 0
    for _ in range(SIMULATIONS):
        result = compare(_conversions(rng, 2000, 0.10), _conversions(rng, 2000, 0.13))
        fixed += result.ci_low <= 0.03 <= result.ci_high
        sequence += result.sequence_low <= 0.03 <= result.sequence_high
    assert COVERAGE[0] <= fixed / SIMULATIONS <= COVERAGE[1], fixed
    assert sequence / SIMULATIONS >= COVERAGE[0]  # a confidence sequence is wider: at least as often


def test_aa_tests_peeked_at_daily_reject_about_5_percent_with_the_always_valid_test():
    rng = np.random.default_rng(2)
    naive = valid = 0
    for _ in range(SIMULATIONS):
        control, treatment = _conversions(rng, 3000, 0.1), _conversions(rng, 3000, 0.1)
        looks = [compare(control[:n], treatment[:n]) for n in range(100, 3001, 100)]  # 30 daily looks
        naive += any(c.p_value < 0.05 for c in looks)
        valid += min(c.always_valid_p for c in looks) < 0.05
    assert valid / SIMULATIONS <= 0.07, valid
    assert naive / SIMULATIONS > 0.15, naive  # what peeking does to the fixed-horizon test


def test_cuped_narrows_the_interval_and_keeps_it_on_the_truth():
    rng = np.random.default_rng(3)
    covered, ratio = 0, []
    for _ in range(200):
        pre = rng.gamma(2.0, 20.0, 4000)  # revenue before assignment
        effect = np.r_[np.zeros(2000), np.full(2000, 5.0)]
        y = 0.8 * pre + rng.normal(0, 15, 4000) + effect
        adjusted, theta = cuped(y, pre)
        plain = compare(y[:2000], y[2000:])
        reduced = compare(adjusted[:2000], adjusted[2000:])
        covered += reduced.ci_low <= 5.0 <= reduced.ci_high
        ratio.append((reduced.ci_high - reduced.ci_low) / (plain.ci_high - plain.ci_low))
        assert abs(theta - 0.8) < 0.1
    assert 0.9 <= covered / 200 <= 0.99
    assert np.mean(ratio) < 0.8


def test_a_broken_split_is_flagged_and_a_sound_one_is_not():
    assert sample_ratio_p({"control": 5000, "a": 5000}, {"control": 0.5, "a": 0.5}) > 0.5
    assert sample_ratio_p({"control": 5200, "a": 4800}, {"control": 0.5, "a": 0.5}) < 0.001


def test_thompson_sampling_moves_traffic_to_the_better_arm_and_keeps_the_floor():
    shares = thompson_allocation({"a": 100, "b": 150}, {"a": 1000, "b": 1000}, floor=0.1)
    assert shares["b"] > 0.85 and shares["a"] >= 0.1 and sum(shares.values()) == pytest.approx(1)
    even = thompson_allocation({"a": 0, "b": 0}, {"a": 0, "b": 0}, floor=0.1)
    assert abs(even["a"] - 0.5) < 0.02
