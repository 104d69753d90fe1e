"""Experiments on segments: sticky assignment, the analysis, and Thompson sampling.

- Assignment is a salted hash of the person: the same person, salt and split give the same variant
  on every run and every machine, with no state to keep.
- The analysis compares each variant with the control on the primary metric (a conversion or a
  revenue per person, one value per person), with a 95% interval, and with an always-valid test:
  the mixture sequential probability ratio test of Johari, Koomen, Pekelis and Walsh ("Always valid
  inference", 2017/2022), so that looking every day does not inflate false positives. Its
  confidence sequence holds at every look at once.
- CUPED (Deng, Xu, Kohavi and Walker, 2013) removes the part of the metric that the same metric
  before assignment predicts: the same expected difference, a narrower interval.
- A sample-ratio-mismatch test (chi-square against the planned split) says when assignment or
  logging is broken, and then no other figure can be trusted.
- Thompson sampling re-allocates the traffic of a bandit daily: each arm gets the posterior
  probability that it is best (Beta posteriors on conversions), never less than a floor.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
from scipy import stats

ALPHA = 0.05
SRM_ALPHA = 0.001  # a mismatch this unlikely under the planned split means broken assignment, not chance


def bucket(salt: str, person_id: str) -> float:
    """A uniform number in [0, 1) fixed by the salt and the person."""
    digest = hashlib.sha256(f"{salt}:{person_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(salt: str, person_id: str, split: dict[str, float]) -> str:
    """The variant of `person_id`: the split's shares laid end to end over [0, 1)."""
    total = sum(split.values())
    at, edge = bucket(salt, person_id) * total, 0.0
    for variant, share in split.items():
        edge += share
        if at < edge:
            return variant
    return next(reversed(split))


def sample_ratio_p(counts: dict[str, int], split: dict[str, float]) -> float:
    """The chi-square p-value of the observed counts against the planned split."""
    variants = [v for v in split if split[v] > 0]
    observed = np.array([counts.get(v, 0) for v in variants], dtype=float)
    if observed.sum() == 0 or len(variants) < 2:
        return 1.0
    expected = np.array([split[v] for v in variants], dtype=float)
    expected = expected / expected.sum() * observed.sum()
    return float(stats.chisquare(observed, expected).pvalue)


def cuped(y: np.ndarray, pre: np.ndarray) -> tuple[np.ndarray, float]:
    """(y adjusted by the pre-period covariate, theta). theta is pooled over every arm, so the
    adjustment is the same for all and the expected difference does not change."""
    var = float(np.var(pre))
    if var == 0 or len(y) < 2:
        return y.astype(float), 0.0
    theta = float(np.cov(y, pre, ddof=0)[0, 1] / var)
    return y - theta * (pre - pre.mean()), theta


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A variant against the control on one metric: the difference of means (treatment - control)."""

    n_control: int
    n_treatment: int
    mean_control: float
    mean_treatment: float
    difference: float
    ci_low: float  # the fixed-horizon 95% interval (Welch)
    ci_high: float
    p_value: float
    sequence_low: float  # the always-valid 95% confidence sequence at this look
    sequence_high: float
    always_valid_p: float  # of the mixture SPRT, at this look (take the running minimum over looks)

    @property
    def relative_lift(self) -> float:
        return self.difference / self.mean_control if self.mean_control else math.nan


def compare(control: np.ndarray, treatment: np.ndarray, tau: float | None = None, alpha: float = ALPHA) -> Comparison:
    """Treatment against control. `tau` is the mixing scale of the sequential test, the size of
    difference it detects soonest; by default a tenth of the metric's pooled standard deviation."""
    control, treatment = np.asarray(control, float), np.asarray(treatment, float)
    nc, nt = len(control), len(treatment)
    mc = float(control.mean()) if nc else math.nan
    mt = float(treatment.mean()) if nt else math.nan
    if nc < 2 or nt < 2:
        nan = math.nan
        return Comparison(nc, nt, mc, mt, mt - mc, nan, nan, nan, nan, nan, 1.0)
    v = float(control.var(ddof=1) / nc + treatment.var(ddof=1) / nt)
    d = mt - mc
    if v == 0:
        return Comparison(nc, nt, mc, mt, d, d, d, 1.0 if d == 0 else 0.0, d, d, 1.0 if d == 0 else 0.0)
    z = stats.norm.ppf(1 - alpha / 2)
    p = float(2 * stats.norm.sf(abs(d) / math.sqrt(v)))
    sd = math.sqrt(float(np.concatenate([control, treatment]).var(ddof=1)))
    tau2 = (tau if tau is not None else max(0.1 * sd, 1e-9)) ** 2
    # Normal mixture SPRT: the likelihood ratio of "difference ~ N(0, tau2)" against "no difference".
    log_lr = 0.5 * math.log(v / (v + tau2)) + d * d * tau2 / (2 * v * (v + tau2))
    always_valid_p = float(min(1.0, math.exp(-log_lr)))
    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((v + tau2) / v)))
    return Comparison(
        nc, nt, mc, mt, d, d - z * math.sqrt(v), d + z * math.sqrt(v), p, d - half, d + half, always_valid_p
    )


def thompson_allocation(
    conversions: dict[str, int], trials: dict[str, int], floor: float, draws: int = 20000, seed: int = 0
) -> dict[str, float]:
    """Tomorrow's share of new persons per arm: the posterior probability that the arm converts
    best (Beta(1 + conversions, 1 + failures)), at least `floor` each, summing to 1."""
    arms = list(trials)
    rng = np.random.default_rng(seed)
    samples = np.column_stack(
        [rng.beta(1 + conversions.get(a, 0), 1 + trials[a] - conversions.get(a, 0), draws) for a in arms]
    )
    best = np.bincount(samples.argmax(axis=1), minlength=len(arms)) / draws
    floor = min(floor, 1 / len(arms))
    shares = floor + (1 - floor * len(arms)) * best
    return {a: float(s) for a, s in zip(arms, shares, strict=True)}
