"""Behavioural clusters discovered from the model-ready features.

Candidates (KMeans and Gaussian mixtures over a range of k, Ward on a sample, HDBSCAN with noise)
run on the model-ready features that count each behaviour once (ml.features.clustering_columns),
each standardised with its skew taken out by Yeo-Johnson, with optional PCA. Every candidate is
scored on one fixed-size sample by silhouette, Davies-Bouldin and Calinski-Harabasz.

Selection rule: among *eligible* candidates (between k_min and k_max clusters, no cluster smaller
than `min_cluster_share` of the sample, at most `max_noise_share` noise) whose silhouette is a
peak over k (at least its neighbours') and within `silhouette_tolerance` (20%) of the best, the
one with the most clusters that is also stable: the mean ARI of refits on bootstrap resamples
against its own labels is at least `min_stability`, as promotion requires. Silhouette's maximum
sits at few, coarse clusters when behaviour groups overlap and differ in size; a second peak at a
larger k that is nearly as well separated is structure, where splitting a real group only lowers
the silhouette (benchmarks/cluster_selection.py and planted_behaviour.py; docs/models.md). On
small or noisy data a fine split that refits do not reproduce gives way to a coarser one.
Davies-Bouldin, Calinski-Harabasz and the KMeans elbow are logged for review, not used to choose.

The chosen model is tested feature by feature (Kruskal-Wallis), named from its centroid profile
(ml.naming), and relabelled so that its clusters keep the ids of the previous champion's nearest
centroids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PowerTransformer, StandardScaler

from ml.features import clustering_columns, numeric_matrix
from ml.naming import name_clusters

NOISE = -1
ALGORITHMS = ("kmeans", "gmm", "ward", "hdbscan")


@dataclass(frozen=True)
class ClusteringConfig:
    k_min: int = 3
    k_max: int = 10
    algorithms: tuple[str, ...] = ALGORITHMS
    pca_variance: float | None = None  # e.g. 0.95 keeps the components explaining 95% of variance
    # Yeo-Johnson per feature before clustering, instead of scaling alone: with the selection rule it
    # did best on the generated and the planted event data (benchmarks/cluster_selection.py).
    unskew: bool = True
    silhouette_tolerance: float = 0.2  # the most clusters whose silhouette is within this share of the best
    # Promotion's minimums (ml.workflows.CLUSTERING_POLICY); the rule skips candidates below them.
    min_silhouette: float = 0.10
    min_stability: float = 0.60  # mean ARI of bootstrap refits against the candidate's own labels
    sample_size: int = 5000  # silhouette, Ward, HDBSCAN and the bootstrap run on this many rows
    fit_rows: int = 50_000  # KMeans and GMM fit on at most this many rows, then predict the rest
    min_cluster_share: float = 0.02
    max_noise_share: float = 0.25
    bootstrap_resamples: int = 5
    significance_alpha: float = 0.01  # Bonferroni-corrected across features
    min_effect_size: float = 0.01  # Kruskal-Wallis epsilon squared below this does not separate
    seed: int = 42

    def __post_init__(self):
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError(f"k range {self.k_min}..{self.k_max} is empty; need 2 <= k_min <= k_max.")
        unknown = set(self.algorithms) - set(ALGORITHMS)
        if unknown:
            raise ValueError(f"Unknown clustering algorithms {sorted(unknown)}; choose from {list(ALGORITHMS)}.")


@dataclass
class Candidate:
    algorithm: str
    k: int
    labels: np.ndarray  # on the evaluation sample
    estimator: object  # fitted; for ward/hdbscan on the sample only
    silhouette: float = float("nan")
    davies_bouldin: float = float("nan")
    calinski_harabasz: float = float("nan")
    noise_share: float = 0.0
    smallest_cluster_share: float = 0.0
    inertia: float | None = None
    eligible: bool = False
    why_not: str = ""

    @property
    def name(self) -> str:
        return f"{self.algorithm}_k{self.k}"

    def as_row(self) -> dict:
        return {
            "candidate": self.name,
            "algorithm": self.algorithm,
            "k": self.k,
            "silhouette": self.silhouette,
            "davies_bouldin": self.davies_bouldin,
            "calinski_harabasz": self.calinski_harabasz,
            "noise_share": self.noise_share,
            "smallest_cluster_share": self.smallest_cluster_share,
            "inertia": self.inertia,
            "eligible": self.eligible,
            "why_not": self.why_not,
        }


class ClusterModel(BaseEstimator, ClusterMixin):
    """A fitted clustering as one estimator: model-ready features in, stable cluster ids out.

    `preprocess` scales (and optionally projects); `assigner` predicts the raw cluster of a row
    (the model itself, or a nearest-neighbour classifier for methods without `predict`); `id_map`
    renames raw clusters to stable ids. `centroids` hold the feature means per stable id, in
    model-ready units, so that a later model can match its clusters to these. Plain lists and
    dicts only, so that the model serialises with skops.
    """

    def __init__(self, features, preprocess, assigner, id_map, names, centroid_ids, centroids):
        self.features = features
        self.preprocess = preprocess
        self.assigner = assigner
        self.id_map = id_map  # {str(raw cluster): stable id}
        self.names = names  # {str(stable id): name}
        self.centroid_ids = centroid_ids
        self.centroids = centroids  # rows aligned with centroid_ids, columns with features

    def fit(self, X, y=None):  # fitted at construction; present for the sklearn API
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        raw = self.assigner.predict(self.preprocess.transform(numeric_matrix(X, self.features)))
        return np.array([self.id_map.get(str(int(r)), NOISE) for r in raw], dtype="int64")

    def distance_to_centroid(self, X: pd.DataFrame, cluster_ids: np.ndarray) -> np.ndarray:
        """Euclidean distance, in the model's scaled space, from each row to its cluster's centroid
        (NaN for noise)."""
        z = self.preprocess.transform(numeric_matrix(X, self.features))
        centres = self.preprocess.transform(self.centroid_frame())
        row_of = {int(c): i for i, c in enumerate(self.centroid_ids)}
        out = np.full(len(z), np.nan)
        for i, cid in enumerate(cluster_ids):
            if int(cid) in row_of:
                out[i] = float(np.linalg.norm(z[i] - centres[row_of[int(cid)]]))
        return out

    def name_of(self, cluster_id: int) -> str:
        return self.names.get(str(int(cluster_id)), str(cluster_id))

    def centroid_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.centroids, index=self.centroid_ids, columns=self.features)


@dataclass
class ClusteringResult:
    model: ClusterModel
    chosen: Candidate
    candidates: list[Candidate]
    labels: np.ndarray  # stable ids for every input row
    sample_index: np.ndarray
    stability_ari: list[float]
    significance: pd.DataFrame  # feature, statistic, p_value, epsilon_squared, separates
    profile: pd.DataFrame  # per cluster: name, size, share, feature means
    z_scores: pd.DataFrame  # per cluster and feature
    elbow: pd.DataFrame  # k, inertia (KMeans)

    @property
    def names(self) -> dict[int, str]:
        return {int(k): v for k, v in self.model.names.items()}

    @property
    def metrics(self) -> dict[str, float]:
        c = self.chosen
        return {
            "silhouette": c.silhouette,
            "davies_bouldin": c.davies_bouldin,
            "calinski_harabasz": c.calinski_harabasz,
            "noise_share": c.noise_share,
            "k": c.k,
            "stability_ari_mean": float(np.mean(self.stability_ari)) if self.stability_ari else float("nan"),
            "stability_ari_min": float(np.min(self.stability_ari)) if self.stability_ari else float("nan"),
            "features_not_separating": int((~self.significance["separates"]).sum()),
        }


def _preprocessor(config: ClusteringConfig) -> Pipeline:
    steps = [("scale", PowerTransformer(method="yeo-johnson") if config.unskew else StandardScaler())]
    if config.pca_variance:
        steps.append(("pca", PCA(n_components=config.pca_variance, random_state=config.seed)))
    return Pipeline(steps)


def _score(candidate: Candidate, z_sample: np.ndarray, config: ClusteringConfig) -> Candidate:
    labels = candidate.labels
    clustered = labels != NOISE
    candidate.noise_share = float(1 - clustered.mean())
    found = np.unique(labels[clustered])
    candidate.k = len(found)
    if len(found) < 2:
        candidate.why_not = "fewer than 2 clusters"
        return candidate
    sizes = pd.Series(labels[clustered]).value_counts()
    candidate.smallest_cluster_share = float(sizes.min() / len(labels))
    zc, lc = z_sample[clustered], labels[clustered]
    candidate.silhouette = float(silhouette_score(zc, lc))
    candidate.davies_bouldin = float(davies_bouldin_score(zc, lc))
    candidate.calinski_harabasz = float(calinski_harabasz_score(zc, lc))
    if not config.k_min <= candidate.k <= config.k_max:
        candidate.why_not = f"{candidate.k} clusters, outside {config.k_min}..{config.k_max}"
    elif candidate.smallest_cluster_share < config.min_cluster_share:
        candidate.why_not = f"smallest cluster {candidate.smallest_cluster_share:.1%} < {config.min_cluster_share:.0%}"
    elif candidate.noise_share > config.max_noise_share:
        candidate.why_not = f"noise {candidate.noise_share:.1%} > {config.max_noise_share:.0%}"
    else:
        candidate.eligible = True
    return candidate


def _fit_one(algorithm: str, k: int, z_fit: np.ndarray, z_sample: np.ndarray, seed: int, min_cluster_size: int):
    """(fitted estimator, labels on z_sample)."""
    if algorithm == "kmeans":
        est = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z_fit)
        return est, est.predict(z_sample)
    if algorithm == "gmm":
        est = GaussianMixture(n_components=k, covariance_type="diag", n_init=2, random_state=seed).fit(z_fit)
        return est, est.predict(z_sample)
    if algorithm == "ward":
        est = AgglomerativeClustering(n_clusters=k, linkage="ward").fit(z_sample)
        return est, est.labels_
    est = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit(z_sample)
    return est, est.labels_


def _assigner(candidate: Candidate, z_sample: np.ndarray, seed: int):
    """Something with predict() for every row: the model, or k-NN on its sample labels."""
    if candidate.algorithm in ("kmeans", "gmm"):
        return candidate.estimator
    return KNeighborsClassifier(n_neighbors=15).fit(z_sample, candidate.labels)


def _bootstrap_ari(chosen: Candidate, z_fit: np.ndarray, z_sample: np.ndarray, config: ClusteringConfig) -> list[float]:
    rng = np.random.default_rng(config.seed)
    min_size = max(5, int(config.min_cluster_share * len(z_sample)))
    scores = []
    for b in range(config.bootstrap_resamples):
        if chosen.algorithm in ("kmeans", "gmm"):
            boot = z_fit[rng.integers(0, len(z_fit), len(z_fit))]
            _, labels = _fit_one(chosen.algorithm, chosen.k, boot, z_sample, config.seed + b + 1, min_size)
        else:
            idx = rng.integers(0, len(z_sample), len(z_sample))
            est, boot_labels = _fit_one(
                chosen.algorithm, chosen.k, z_sample[idx], z_sample[idx], config.seed + b + 1, min_size
            )
            labels = KNeighborsClassifier(n_neighbors=15).fit(z_sample[idx], boot_labels).predict(z_sample)
        scores.append(float(adjusted_rand_score(chosen.labels, labels)))
    return scores


def _first_stable(
    ranked: list[Candidate], z_fit: np.ndarray, z_sample: np.ndarray, config: ClusteringConfig
) -> tuple[Candidate, list[float]]:
    """The first candidate in the rule's order that is stable and separated enough to be promoted;
    when none is, the best-separated one (which promotion will then refuse, saying why)."""
    measured: dict[int, list[float]] = {}  # by position in `ranked`: a bootstrap costs as much as the fits
    for i, candidate in enumerate(ranked):
        if candidate.silhouette < config.min_silhouette:
            continue
        measured[i] = _bootstrap_ari(candidate, z_fit, z_sample, config)
        if not measured[i] or np.mean(measured[i]) >= config.min_stability:
            return candidate, measured[i]
    best = max(range(len(ranked)), key=lambda i: (ranked[i].silhouette, -ranked[i].k))
    if best not in measured:
        measured[best] = _bootstrap_ari(ranked[best], z_fit, z_sample, config)
    return ranked[best], measured[best]


def significance_by_feature(X: pd.DataFrame, labels: np.ndarray, config: ClusteringConfig) -> pd.DataFrame:
    """Kruskal-Wallis per feature across clusters (noise left out), with epsilon squared as effect size.

    With many rows almost every p-value is tiny, so a feature separates clusters only when it is
    significant after Bonferroni correction *and* its effect size reaches `min_effect_size`.
    """
    keep = labels != NOISE
    groups = np.unique(labels[keep])
    n, rows = int(keep.sum()), []
    for col in X.columns:
        values = X[col].to_numpy()[keep]
        samples = [values[labels[keep] == g] for g in groups]
        if np.ptp(values) == 0:
            h, p = 0.0, 1.0
        else:
            h, p = stats.kruskal(*samples)
        eps = float(h / (n - 1)) if n > 1 else 0.0
        rows.append({"feature": col, "statistic": float(h), "p_value": float(p), "epsilon_squared": eps})
    out = pd.DataFrame(rows)
    alpha = config.significance_alpha / max(1, len(X.columns))
    out["separates"] = (out["p_value"] < alpha) & (out["epsilon_squared"] >= config.min_effect_size)
    return out.sort_values("epsilon_squared", ascending=False).reset_index(drop=True)


def match_to_previous(centroids: pd.DataFrame, previous: pd.DataFrame | None, scaler: StandardScaler) -> dict[int, int]:
    """Stable ids: each new cluster takes the id of the previous champion centroid nearest to it.

    Centroids are feature means (rows: cluster ids) in model-ready units; distances are measured
    in the current scaler's units over the features both share, and the assignment is optimal
    overall (Hungarian). Clusters with no previous partner get fresh ids above the previous maximum.
    """
    new_ids = sorted(int(c) for c in centroids.index if c != NOISE)
    if previous is None or previous.empty:
        return {c: i for i, c in enumerate(new_ids)} | {NOISE: NOISE}
    prev = previous.drop(index=NOISE, errors="ignore")
    scale = pd.Series(scaler.scale_, index=scaler.feature_names_in_)
    cols = [c for c in scale.index if c in prev.columns and c in centroids.columns]
    a = centroids.loc[new_ids, cols].to_numpy() / scale[cols].to_numpy()
    b = prev[cols].to_numpy() / scale[cols].to_numpy()
    rows, matched = linear_sum_assignment(np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2))
    mapping = {new_ids[r]: int(prev.index[c]) for r, c in zip(rows, matched, strict=True)}
    fresh = max(int(i) for i in prev.index) + 1
    for c in new_ids:
        if c not in mapping:
            mapping[c], fresh = fresh, fresh + 1
    return mapping | {NOISE: NOISE}


def profile_z_scores(X: pd.DataFrame, labels) -> pd.DataFrame:
    """Per cluster (rows) and feature (columns): the cluster mean as a z-score against all persons.
    Noise (-1) is left out."""
    overall_mean, overall_std = X.mean(), X.std(ddof=0).replace(0, 1.0)
    centroids = X.groupby(np.asarray(labels)).mean()
    return ((centroids - overall_mean) / overall_std).drop(index=NOISE, errors="ignore")


class NotClusterableError(ValueError):
    """The data, not the settings, stops clustering: too few persons, or no structure the rule accepts."""


class TooFewPersonsError(NotClusterableError):
    """The data has too few persons to cluster."""


class NoEligibleCandidateError(NotClusterableError):
    """Every candidate broke the selection rule (for example, features that barely vary split people in two)."""


def silhouette_peaks(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates whose silhouette is at least that of their neighbours in k (k - 1 and
    k + 1 of the same algorithm). Splitting a real group lowers the silhouette; a peak at a larger k
    means the data has structure there."""
    peaks = []
    for algorithm in dict.fromkeys(c.algorithm for c in candidates):
        curve = [c for c in candidates if c.algorithm == algorithm]
        for i, c in enumerate(curve):
            neighbours = curve[max(i - 1, 0) : i] + curve[i + 1 : i + 2]
            if all(not c.silhouette < n.silhouette for n in neighbours):
                peaks.append(c)
    return peaks


def preference(candidates: list[Candidate], tolerance: float, peaks_only: bool = True) -> list[Candidate]:
    """The selection rule's order: the eligible candidates whose silhouette is within `tolerance` of
    the best and, with `peaks_only`, at a silhouette peak, most clusters first (ties: the higher
    silhouette). The best eligible candidate always qualifies, even when an ineligible neighbour
    outscores it."""
    eligible = [c for c in candidates if c.eligible]
    best = max(eligible, key=lambda c: (c.silhouette, -c.k))
    peaks = {id(c) for c in silhouette_peaks(candidates)} if peaks_only else {id(c) for c in eligible}
    floor = best.silhouette - tolerance * abs(best.silhouette)
    near = [c for c in eligible if c is best or (c.silhouette >= floor and id(c) in peaks)]
    return sorted(near, key=lambda c: (c.k, c.silhouette), reverse=True)


def select(candidates: list[Candidate], tolerance: float, peaks_only: bool = True) -> Candidate:
    """The first candidate in the rule's `preference`, before the stability gate."""
    return preference(candidates, tolerance, peaks_only)[0]


def train_clustering(
    frame: pd.DataFrame, config: ClusteringConfig = ClusteringConfig(), previous_centroids: pd.DataFrame | None = None
) -> ClusteringResult:
    """Fit every candidate on `frame` (model-ready features, one row per person) and keep the best."""
    features = clustering_columns(frame)
    if len(frame) < max(50, 5 * config.k_max):
        raise TooFewPersonsError(
            f"Clustering needs at least {max(50, 5 * config.k_max)} persons; the feature table has {len(frame)}."
        )
    X = numeric_matrix(frame, features)
    rng = np.random.default_rng(config.seed)
    preprocess = _preprocessor(config).fit(X)
    Z = preprocess.transform(X)
    sample_index = np.sort(rng.choice(len(Z), size=min(len(Z), config.sample_size), replace=False))
    z_sample = Z[sample_index]
    fit_index = rng.choice(len(Z), size=min(len(Z), config.fit_rows), replace=False)
    z_fit = Z[fit_index]
    min_size = max(5, int(config.min_cluster_share * len(z_sample)))

    candidates: list[Candidate] = []
    elbow = []
    for algorithm in config.algorithms:
        ks = [0] if algorithm == "hdbscan" else range(config.k_min, config.k_max + 1)
        for k in ks:
            est, labels = _fit_one(algorithm, k, z_fit, z_sample, config.seed, min_size)
            cand = _score(Candidate(algorithm, k, np.asarray(labels), est), z_sample, config)
            if algorithm == "kmeans":
                cand.inertia = float(est.inertia_)
                elbow.append({"k": k, "inertia": cand.inertia})
            candidates.append(cand)
    eligible = [c for c in candidates if c.eligible]
    if not eligible:
        reasons = "; ".join(dict.fromkeys(f"{c.name}: {c.why_not}" for c in candidates))
        raise NoEligibleCandidateError(
            f"No clustering candidate met the selection rule. {reasons}. Widen the k range or add behavioural data."
        )
    chosen, stability = _first_stable(preference(candidates, config.silhouette_tolerance), z_fit, z_sample, config)

    assigner = _assigner(chosen, z_sample, config.seed)
    raw_labels = assigner.predict(Z)
    raw_centroids = X.groupby(raw_labels).mean()
    id_map = match_to_previous(raw_centroids, previous_centroids, StandardScaler().fit(X))
    labels = np.array([id_map.get(int(r), NOISE) for r in raw_labels], dtype="int64")
    centroids = X.groupby(labels).mean()

    z_scores = profile_z_scores(X, labels)
    names = name_clusters(z_scores)
    if NOISE in centroids.index:
        names[NOISE] = "Unclustered (noise)"
    sizes = pd.Series(labels).value_counts()
    profile = centroids.copy()
    profile.insert(0, "share", (sizes / len(labels)).reindex(profile.index).round(4))
    profile.insert(0, "size", sizes.reindex(profile.index).astype("int64"))
    profile.insert(0, "cluster_name", [names[int(i)] for i in profile.index])
    profile.index.name = "cluster_id"

    model = ClusterModel(
        features=features,
        preprocess=preprocess,
        assigner=assigner,
        id_map={str(k): int(v) for k, v in id_map.items()},
        names={str(k): v for k, v in names.items()},
        centroid_ids=[int(i) for i in centroids.index],
        centroids=centroids.to_numpy().tolist(),
    )
    return ClusteringResult(
        model=model,
        chosen=chosen,
        candidates=candidates,
        labels=labels,
        sample_index=sample_index,
        stability_ari=stability,
        significance=significance_by_feature(X, labels, config),
        profile=profile,
        z_scores=z_scores,
        elbow=pd.DataFrame(elbow),
    )


def top_categories(person_ids, labels: np.ndarray, person_categories: pd.DataFrame, n: int = 3) -> pd.Series:
    """The `n` categories with most events per cluster; person_categories: person_id, category, events."""
    members = pd.DataFrame({"person_id": np.asarray(person_ids), "cluster_id": labels})
    joined = person_categories.merge(members, on="person_id")
    totals = joined.groupby(["cluster_id", "category"])["events"].sum().reset_index()
    totals = totals.sort_values(["cluster_id", "events", "category"], ascending=[True, False, True])
    return totals.groupby("cluster_id")["category"].apply(lambda c: ", ".join(c.head(n)))


def silhouette_of(model: ClusterModel, frame: pd.DataFrame, sample_size: int = 5000, seed: int = 42) -> float:
    """A fitted model's silhouette on `frame`, in that model's own feature space (for champion vs challenger)."""
    X = numeric_matrix(frame, model.features)
    idx = np.random.default_rng(seed).choice(len(X), size=min(len(X), sample_size), replace=False)
    labels = model.predict(frame.iloc[idx])
    z = model.preprocess.transform(X.iloc[idx])
    keep = labels != NOISE
    if len(np.unique(labels[keep])) < 2:
        return float("nan")
    return float(silhouette_score(z[keep], labels[keep]))
