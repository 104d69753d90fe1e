"""Clustering recovers planted groups, keeps ids across retraining and reports useless features."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from ml.clustering import ClusteringConfig, match_to_previous, train_clustering

CONFIG = ClusteringConfig(k_min=2, k_max=6, sample_size=1500, bootstrap_resamples=5)


def planted(seed: int, n_per_group: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    """Four groups in five informative features (centres 4 sd apart) plus one pure-noise feature."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0, 0], [4, 0, 4, 0, 0], [0, 4, 0, 4, 0], [4, 4, 0, 0, 4]], dtype=float)
    truth = np.repeat(np.arange(4), n_per_group)
    X = centres[truth] + rng.normal(0, 1, (len(truth), 5))
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    frame["noise"] = rng.normal(0, 1, len(truth))
    frame.insert(0, "person_id", [f"p{i}" for i in range(len(truth))])
    return frame, truth


def test_recovers_planted_groups():
    # Centres 4 sd apart in at least two dimensions overlap for well under 1% of points, so any
    # sound method should reach ARI near 1; 0.9 leaves room for those boundary points only.
    frame, truth = planted(1)
    result = train_clustering(frame, CONFIG)
    assert result.chosen.k == 4
    assert adjusted_rand_score(truth, result.labels) > 0.9
    assert result.metrics["stability_ari_mean"] > 0.9
    assert {c.algorithm for c in result.candidates} == {"kmeans", "gmm", "ward", "hdbscan"}
    assert result.elbow["k"].tolist() == list(range(2, 7))


def test_a_feature_that_does_not_separate_clusters_is_reported():
    frame, _ = planted(2)
    significance = train_clustering(frame, CONFIG).significance.set_index("feature")
    assert not significance.loc["noise", "separates"]
    assert significance.drop(index="noise")["separates"].all()


def test_cluster_ids_stay_stable_when_retrained_on_new_data():
    first_frame, truth1 = planted(3)
    first = train_clustering(first_frame, CONFIG)
    # New data, rows in another order: the same groups must keep the ids they had.
    second_frame, truth2 = planted(4)
    order = np.random.default_rng(0).permutation(len(second_frame))
    second_frame, truth2 = second_frame.iloc[order].reset_index(drop=True), truth2[order]
    second = train_clustering(second_frame, CONFIG, previous_centroids=first.model.centroid_frame())
    id_of_group_first = pd.Series(first.labels).groupby(truth1).agg(lambda s: s.mode()[0])
    id_of_group_second = pd.Series(second.labels).groupby(truth2).agg(lambda s: s.mode()[0])
    assert id_of_group_first.to_dict() == id_of_group_second.to_dict()
    assert first.names == second.names


def test_a_new_cluster_gets_a_fresh_id():
    from sklearn.preprocessing import StandardScaler

    previous = pd.DataFrame({"a": [0.0, 10.0], "b": [0.0, 10.0]}, index=[0, 1])
    new = pd.DataFrame({"a": [10.2, 0.1, 50.0], "b": [9.9, -0.2, 50.0]}, index=[0, 1, 2])
    scaler = StandardScaler().fit(pd.DataFrame({"a": [0.0, 10.0, 50.0], "b": [0.0, 10.0, 50.0]}))
    assert match_to_previous(new, previous, scaler) == {0: 1, 1: 0, 2: 2, -1: -1}


def test_config_errors_say_what_to_change():
    with pytest.raises(ValueError, match="k range 5..3 is empty"):
        ClusteringConfig(k_min=5, k_max=3)
    with pytest.raises(ValueError, match="Unknown clustering algorithms"):
        ClusteringConfig(algorithms=("kmeans", "spectral"))


# The benchmark's K=6 datasets (benchmarks/cluster_selection.py: dataset i has K = 4 + i % 5, seed 1000 + i).
@pytest.mark.parametrize("seed", [1002, 1007, 1012, 1017, 1022])
def test_six_planted_groups_in_model_ready_features_are_not_collapsed(seed):
    """Six groups of unequal size, with noise columns, in features shaped as the model-ready view
    shapes counts and money (capped log1p): the default rule keeps at least four clusters and an
    ARI of 0.75 (the benchmark's worst K=6 set gives four clusters and 0.76)."""
    from benchmarks.cluster_selection import model_ready
    from benchmarks.cluster_selection import planted as planted_skewed

    frame, truth, _, skewed = planted_skewed(seed, 6, 3000)
    result = train_clustering(model_ready(frame, skewed), ClusteringConfig(seed=seed - 1000, bootstrap_resamples=1))
    assert result.chosen.k >= 4
    assert adjusted_rand_score(truth, result.labels) >= 0.75


def test_the_silhouette_tolerance_is_what_keeps_overlapping_groups_apart():
    """The benchmark's dataset 13 (seven groups): silhouette's maximum merges them into three (ARI
    0.77); the most clusters at a silhouette peak within 20% of it finds all seven (ARI 1.0)."""
    from benchmarks.cluster_selection import model_ready
    from benchmarks.cluster_selection import planted as planted_skewed

    frame, truth, _, skewed = planted_skewed(1013, 7, 3000)  # the benchmark's dataset 13
    frame = model_ready(frame, skewed)
    ruled = train_clustering(frame, ClusteringConfig(seed=13, bootstrap_resamples=1))
    strict = train_clustering(frame, ClusteringConfig(seed=13, bootstrap_resamples=1, silhouette_tolerance=0.0))
    assert ruled.chosen.k >= 7 and adjusted_rand_score(truth, ruled.labels) >= 0.85
    assert strict.chosen.k < ruled.chosen.k
    assert adjusted_rand_score(truth, strict.labels) < adjusted_rand_score(truth, ruled.labels) - 0.1


@pytest.mark.parametrize("seed, k, persons", [(2001, 5, 90), (2010, 3, 80)])
def test_a_split_that_refits_do_not_reproduce_gives_way_to_a_stable_one(seed, k, persons):
    """On a few dozen persons the rule's finest candidate can be noise: its bootstrap refits agree
    with it below promotion's minimum. The rule then takes the next candidate that is stable. Over 24
    small sets (seeds 2000-2011, k 3 and 5) the gate acted on three: these two, where it recovers
    the planted groups far better, and one where it cost 0.05 ARI."""
    from benchmarks.cluster_selection import model_ready
    from benchmarks.cluster_selection import planted as planted_skewed

    frame, truth, _, skewed = planted_skewed(seed, k, persons)
    frame = model_ready(frame, skewed)
    ungated = train_clustering(frame, ClusteringConfig(min_stability=0.0))
    gated = train_clustering(frame, ClusteringConfig())
    assert np.mean(ungated.stability_ari) < ClusteringConfig.min_stability <= np.mean(gated.stability_ari)
    assert adjusted_rand_score(truth, gated.labels) > adjusted_rand_score(truth, ungated.labels) + 0.2


def test_clustering_counts_each_behaviour_once():
    """Windowed and decayed activity, the R/F/M quintiles and the average order value restate other
    columns; clustering leaves them out, the propensity model does not."""
    from ml.features import clustering_columns, numeric_columns

    frame, _ = planted(5)
    restating = [
        "sessions_30d_log1p_capped",
        "events_90d_log1p_capped",
        "decayed_engagement_log1p_capped",
        "r_score",
        "m_score",
        "avg_order_value_log1p_capped",
    ]
    for i, col in enumerate(restating):
        frame[col] = frame[f"f{i % 5}"] * 2.0
    assert set(restating) <= set(numeric_columns(frame))
    assert clustering_columns(frame) == ["f0", "f1", "f2", "f3", "f4", "noise"]
    assert train_clustering(frame, CONFIG).model.features == clustering_columns(frame)


def test_the_rule_keeps_the_best_candidate_when_an_ineligible_neighbour_outscores_it():
    """k=4 is not a peak (k=5 scores higher but has a cluster under the minimum share), and no other
    candidate is near: the rule still has an answer, the best eligible one."""
    from ml.clustering import Candidate, select

    def cand(k, silhouette, eligible=True):
        return Candidate("kmeans", k, np.zeros(1), None, silhouette=silhouette, eligible=eligible)

    candidates = [cand(3, 0.10), cand(4, 0.30), cand(5, 0.35, eligible=False), cand(6, 0.12)]
    assert select(candidates, 0.2).k == 4
    # A peak at a larger k within the tolerance still wins over it.
    candidates = [
        cand(3, 0.10),
        cand(4, 0.30),
        cand(5, 0.35, eligible=False),
        cand(6, 0.20),
        cand(7, 0.26),
        cand(8, 0.20),
    ]
    assert select(candidates, 0.2).k == 7
