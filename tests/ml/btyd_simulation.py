"""Customers who follow BG/NBD exactly, with known parameters: ground truth for ml.clv and the
propensity model's BG/NBD step."""

from __future__ import annotations

import numpy as np
import pandas as pd

TRUTH = {"r": 0.6, "alpha": 12.0, "a": 0.8, "b": 3.0}  # a purchase every ~20 days; ~1 in 4 drop after a purchase
SPEND = {"p": 6.0, "q": 4.0, "v": 15.0}  # Gamma-Gamma: mean spend v * p / (q - 1) = 30


def simulate(n: int, seed: int, observed_days: int = 180, holdout_days: int = 30) -> pd.DataFrame:
    """One row per customer: the BTYD summary at day `observed_days` (first purchases spread over
    the period) and the purchase days in the `holdout_days` after it."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(TRUTH["r"], 1 / TRUTH["alpha"], n)
    dropout = rng.beta(TRUTH["a"], TRUTH["b"], n)
    mean_spend = SPEND["p"] / rng.gamma(SPEND["q"], 1 / SPEND["v"], n)
    rows = []
    for i in range(n):
        first = float(rng.uniform(0, observed_days - 1))
        times = [first]
        while True:
            t = times[-1] + rng.exponential(1 / rate[i])
            if t > observed_days + holdout_days:
                break
            times.append(t)
            if rng.random() < dropout[i]:  # inactive after this purchase
                break
        days = np.unique(np.floor(times).astype(int))
        seen = days[days <= observed_days]
        later = days[days > observed_days]
        spends = rng.gamma(SPEND["p"], mean_spend[i] / SPEND["p"], len(seen))
        rows.append(
            {
                "person_id": f"c{seed}-{i}",
                "frequency": len(seen) - 1,
                "recency": int(seen[-1] - seen[0]),
                "T": int(observed_days - seen[0]),
                "monetary_value": float(spends[1:].mean()) if len(seen) > 1 else 0.0,
                "holdout_purchases": len(later),
                "holdout_value": float(rng.gamma(SPEND["p"], mean_spend[i] / SPEND["p"], len(later)).sum()),
            }
        )
    return pd.DataFrame(rows)
