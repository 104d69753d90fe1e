"""Which rule picks the number of clusters that is there (issue #31, first step): selection criteria
compared on many planted datasets whose number of groups, sizes, overlap and noise vary per seed.

    .venv/bin/python benchmarks/cluster_selection.py --datasets 25

Each dataset plants K groups (4 to 8, every K represented) of unequal sizes in a space shaped like
Tessera's per-person features: informative columns (some skewed as counts and money are, by an
exponential), columns of pure noise, and groups that overlap more or less. `ml.clustering`
fits its candidates as the pipeline does (KMeans and diagonal Gaussian mixtures for k in 3..10,
Ward, HDBSCAN; the same eligibility rule, minimum cluster size included); each criterion then
picks among the eligible candidates, and the pick is scored by its adjusted Rand index against the
planted groups on the evaluation sample. Criteria: the highest silhouette; the most clusters whose
silhouette is within 10% or 20% of the highest; the same among silhouette peaks over k (peaks
within 20% is the pipeline's rule, ml.clustering.select);
Calinski-Harabasz, Davies-Bouldin, BIC (mixtures only), and bootstrap stability (mean ARI of
refits; KMeans only).
Results: per criterion, mean and minimum ARI overall and per K, and how often it chose K itself,
in benchmarks/results/cluster_selection.json, for each feature space (FEATURE_SPACES).

This is feature-level: the planted groups are in the features, not in events, so identity and
feature engineering are not part of what it measures.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._pipeline import save_result  # noqa: E402

# Feature spaces: (the columns as planted, or as marts.user_features_model_ready shapes them:
# counts and money capped at their 95th percentile and log1p'd), then how ml.clustering prepares
# them (ClusteringConfig.unskew): standard scaling alone, or each column's skew taken out first
# (Yeo-Johnson, which also takes zeros and negatives). The pipeline clusters the model-ready columns.
FEATURE_SPACES = {
    "scaled": (False, False),
    "yeo_johnson": (False, True),
    "model_ready_scaled": (True, False),
    "model_ready_yeo_johnson": (True, True),
}


def model_ready(frame: pd.DataFrame, skewed: list[str]) -> pd.DataFrame:
    """The skewed columns as user_features_model_ready.sql shapes counts and amounts."""
    out = frame.copy()
    for col in skewed:
        out[col] = np.log1p(np.minimum(out[col], out[col].quantile(0.95)))
    return out


def planted(seed: int, k: int, persons: int) -> tuple[pd.DataFrame, np.ndarray, dict, list[str]]:
    """A frame of per-person features with `k` planted groups, the group of each row, the dataset's
    shape and its skewed columns."""
    rng = np.random.default_rng(seed)
    informative, noise = int(rng.integers(8, 17)), int(rng.integers(2, 9))
    shares = rng.dirichlet(np.full(k, 2.0))
    shares = np.maximum(shares, 0.04)
    shares /= shares.sum()
    groups = rng.choice(k, size=persons, p=shares)
    separation = float(rng.uniform(1.6, 3.0))  # distance of group means in within-group sds
    means = rng.normal(0.0, separation, size=(k, informative))
    spread = rng.uniform(0.7, 1.3, size=(k, 1))
    x = means[groups] + rng.normal(size=(persons, informative)) * spread[groups]
    skewed = rng.random(informative) < 0.5  # counts and money: long right tails
    x[:, skewed] = np.expm1(np.clip(x[:, skewed], -5, 5) * 0.6)
    frame = pd.DataFrame(
        np.hstack([x, rng.normal(size=(persons, noise))]),
        columns=[f"f{i}" for i in range(informative)] + [f"noise{i}" for i in range(noise)],
    )
    return (
        frame,
        groups,
        {
            "informative": informative,
            "noise": noise,
            "separation": round(separation, 2),
            "smallest_share": round(float(shares.min()), 3),
        },
        [f"f{i}" for i in np.flatnonzero(skewed)],
    )


def picks(frame: pd.DataFrame, seed: int, unskew: bool) -> tuple[dict, np.ndarray]:
    """The candidate each criterion picks, and the evaluation sample's row index."""
    from ml.clustering import ClusteringConfig, _bootstrap_ari, select, train_clustering

    config = ClusteringConfig(seed=seed, bootstrap_resamples=1, unskew=unskew)
    stability = ClusteringConfig(seed=seed, bootstrap_resamples=4, unskew=unskew)
    result = train_clustering(frame, config)
    eligible = [c for c in result.candidates if c.eligible]
    z = result.model.preprocess.transform(frame)  # the space the candidates were fitted in
    z_sample = z[result.sample_index]
    chosen = {
        "silhouette": max(eligible, key=lambda c: (c.silhouette, -c.k)),
        # The most clusters whose silhouette is within 10% / 20% of the best, and the same among
        # silhouette peaks over k (peaks within 20% is the pipeline's rule).
        "silhouette_within_10pct": select(result.candidates, 0.1, peaks_only=False),
        "silhouette_within_20pct": select(result.candidates, 0.2, peaks_only=False),
        "silhouette_peak_within_10pct": select(result.candidates, 0.1),
        "silhouette_peak_within_20pct": select(result.candidates, 0.2),
        "calinski_harabasz": max(eligible, key=lambda c: c.calinski_harabasz),
        "davies_bouldin": min(eligible, key=lambda c: c.davies_bouldin),
    }
    mixtures = [c for c in eligible if c.algorithm == "gmm"]
    if mixtures:
        chosen["bic"] = min(mixtures, key=lambda c: c.estimator.bic(z_sample))
    kmeans = [c for c in eligible if c.algorithm == "kmeans"]
    if kmeans:
        chosen["stability"] = max(
            kmeans, key=lambda c: (round(float(np.mean(_bootstrap_ari(c, z, z_sample, stability))), 2), c.k)
        )
    return chosen, result.sample_index


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=int, default=25)
    ap.add_argument("--persons", type=int, default=3000)
    ap.add_argument("--spaces", nargs="+", choices=list(FEATURE_SPACES), default=list(FEATURE_SPACES))
    args = ap.parse_args()
    from sklearn.metrics import adjusted_rand_score

    rows = []
    started = time.perf_counter()
    for i in range(args.datasets):
        k = 4 + i % 5
        frame, truth, shape, skewed = planted(1000 + i, k, args.persons)
        for space, (shaped, unskew) in FEATURE_SPACES.items():
            if space not in args.spaces:
                continue
            chosen, sample = picks(model_ready(frame, skewed) if shaped else frame, seed=i, unskew=unskew)
            for criterion, cand in chosen.items():
                rows.append(
                    {
                        "dataset": i,
                        "k_planted": k,
                        **shape,
                        "space": space,
                        "criterion": criterion,
                        "candidate": f"{cand.algorithm}_k{cand.k}",
                        "k_chosen": cand.k,
                        "ari": round(float(adjusted_rand_score(truth[sample], cand.labels)), 4),
                    }
                )
        print(
            f"dataset {i} (K={k}): "
            + ", ".join(
                f"{r['space']}/{r['criterion']} {r['candidate']} {r['ari']:.2f}" for r in rows if r["dataset"] == i
            ),
            flush=True,
        )
    table = pd.DataFrame(rows)
    summary: dict = defaultdict(dict)
    for (space, criterion), part in table.groupby(["space", "criterion"]):
        summary[f"{space}/{criterion}"] = {
            "mean_ari": round(float(part["ari"].mean()), 3),
            "min_ari": round(float(part["ari"].min()), 3),
            "k_right_share": round(float((part["k_chosen"] == part["k_planted"]).mean()), 3),
            "per_k": {
                int(k): {
                    "mean_ari": round(float(g["ari"].mean()), 3),
                    "min_ari": round(float(g["ari"].min()), 3),
                    "mean_k_chosen": round(float(g["k_chosen"].mean()), 2),
                }
                for k, g in part.groupby("k_planted")
            },
        }
    save_result(
        "cluster_selection",
        {
            "datasets": args.datasets,
            "persons": args.persons,
            "seconds": round(time.perf_counter() - started, 1),
            "criteria": summary,
            "rows": rows,
        },
    )
    ks = sorted(table["k_planted"].unique())
    print(f"\n{'space/criterion':<40}{'mean':>7}{'min':>7}{'K right':>9}" + "".join(f"{'K=' + str(k):>12}" for k in ks))
    for name, row in summary.items():
        print(
            f"{name:<40}{row['mean_ari']:>7.3f}{row['min_ari']:>7.3f}{row['k_right_share']:>9.2f}"
            + "".join(f"{row['per_k'][k]['mean_ari']:>6.2f}/{row['per_k'][k]['min_ari']:<5.2f}" for k in ks)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
