"""Train, log, register, promote and score: one function per model family.

Each training function runs one MLflow run in its family's experiment, logs parameters, metrics,
tables, figures and a markdown summary, registers the model as `challenger`, and promotes it to
`champion` when the policy allows. Scoring functions always use `@champion`.
"""

from __future__ import annotations

import dataclasses
import json
import math

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ml import clv, plots, recommendations, tracking
from ml.clustering import ClusteringConfig, silhouette_of, top_categories, train_clustering
from ml.features import numeric_matrix
from ml.propensity import PropensityConfig, model_inputs, score, top_contributions, train_propensity
from ml.tracking import PromotionPolicy

CLUSTERING_EXPERIMENT = "tessera-clustering"
CLUSTERING_MODEL = "tessera_clustering"
CLUSTERING_POLICY = PromotionPolicy(
    metric="silhouette",
    margin=0.01,
    minimums={"silhouette": ClusteringConfig.min_silhouette, "stability_ari_mean": ClusteringConfig.min_stability},
)
PROPENSITY_POLICY = PromotionPolicy(metric="roc_auc", margin=0.005, minimums={"roc_auc": 0.60})
CLV_EXPERIMENT = "tessera-clv"
CLV_MODEL = "tessera_clv"
# Promoted on the holdout's purchase error; expected purchases must rank who bought in the holdout.
CLV_POLICY = PromotionPolicy(
    metric="holdout_mae_purchases", margin=0.001, lower_is_better=True, minimums={"holdout_purchases_roc_auc": 0.60}
)


RECOMMENDER_EXPERIMENT = "tessera-recommendations"
RECOMMENDER_MODEL = "tessera_recommender"
# The hybrid must beat every baseline on the holdout to be worth serving (lift 1.0), and the
# champion on NDCG@10 to replace it.
RECOMMENDER_POLICY = PromotionPolicy(
    metric="ndcg_at_10", margin=0.002, minimums={"lift_over_best_baseline": 1.0, "persons_evaluated": 20}
)


def propensity_experiment(model_name: str) -> str:
    return f"tessera-propensity-{model_name}"


def propensity_registered_name(model_name: str) -> str:
    return f"tessera_{model_name}"


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Where a training run comes from, recorded as tags on every MLflow run."""

    as_of: str
    data_version: str
    engine: str = "duckdb"
    dagster_run_id: str | None = None

    def tags(self) -> dict[str, str]:
        return {
            "tessera.as_of": self.as_of,
            "tessera.data_version": self.data_version,
            "tessera.engine": self.engine,
            "dagster.run_id": self.dagster_run_id or "none",
        }


class NoChampionError(RuntimeError):
    """Scoring was asked for before any model of the family passed its promotion policy."""


def _no_champion(registered: str) -> NoChampionError:
    return NoChampionError(
        f"The registered model {registered} has no champion yet, so nothing can be scored. Train it first (the "
        "train_models job in Dagster, or `tessera run`); if it was trained, no run passed the promotion policy: "
        "see the latest run's promotion.reason tag in MLflow."
    )


def _figure(fig, path: str) -> None:
    mlflow.log_figure(fig, path)
    plots.close(fig)


def _finite(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and not math.isnan(float(v))}


def _promote(
    experiment: str,
    registered: str,
    purpose: str,
    policy: PromotionPolicy,
    metrics: dict,
    champion_metric: float | None,
    champion_version,
    version: str,
) -> tracking.PromotionDecision:
    """Decide on the challenger `version` by the policy, move the aliases, and describe the family."""
    decision = tracking.decide(
        policy,
        metrics,
        champion_metric,
        champion_version.version if champion_version else None,
        version,
        tracking.erasure_flag(champion_version),
    )
    tracking.apply(registered, decision)
    tracking.describe(experiment, registered, purpose, policy)
    return decision


def _outcome(run_id: str, version: str, decision, metrics: dict, summary: str, **extra) -> dict:
    """What a training function returns to its asset: the run, the version, the promotion and more."""
    return {
        "run_id": run_id,
        "model_version": version,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "metrics": _finite(metrics),
        "summary": summary,
        **extra,
    }


def _summary(lines: list[str]) -> str:
    text = "\n".join(lines) + "\n"
    mlflow.log_text(text, "summary.md")
    return text


def train_clustering_model(
    frame: pd.DataFrame,
    ctx: RunContext,
    config: ClusteringConfig = ClusteringConfig(),
    policy: PromotionPolicy = CLUSTERING_POLICY,
    person_categories: pd.DataFrame | None = None,
) -> dict:
    """Cluster `frame` (model-ready features at the scoring date), log everything, maybe promote.

    `person_categories` (person_id, category, events), when given, adds each cluster's top
    categories to the logged profile.
    """
    champion_version, champion_model = tracking.champion(CLUSTERING_MODEL)
    previous = champion_model.centroid_frame() if champion_model is not None else None
    result = train_clustering(frame, config, previous)
    tops = pd.Series(dtype=object)
    if person_categories is not None and len(person_categories):  # none without events (orders-only data)
        tops = top_categories(frame["person_id"], result.labels, person_categories)
    result.profile.insert(3, "top_categories", tops.reindex(result.profile.index).fillna(""))
    chosen, model = result.chosen, result.model
    description = (
        f"Behavioural clusters as of {ctx.as_of}: {chosen.algorithm} with {chosen.k} clusters, "
        f"chosen among {sum(c.eligible for c in result.candidates)} eligible candidates as the most clusters at a "
        f"silhouette peak within {config.silhouette_tolerance:.0%} of the best silhouette."
    )
    with tracking.run(CLUSTERING_EXPERIMENT, f"clustering {ctx.as_of}", description, ctx.tags()) as active:
        mlflow.log_params(
            {
                **dataclasses.asdict(config),
                "chosen_algorithm": chosen.algorithm,
                "chosen_k": chosen.k,
                "features": len(model.features),
                "persons": len(frame),
                "selection_rule": "most clusters at a silhouette peak within the tolerance of the best",
            }
        )
        mlflow.log_metrics(_finite(result.metrics))
        for i, ari in enumerate(result.stability_ari):
            mlflow.log_metric("stability_ari", ari, step=i)
        for row in result.elbow.itertuples():
            mlflow.log_metric("kmeans_inertia", row.inertia, step=int(row.k))
        mlflow.log_table(pd.DataFrame([c.as_row() for c in result.candidates]), "candidates.json")
        mlflow.log_table(result.profile.reset_index(), "cluster_profile.json")
        mlflow.log_table(result.significance, "feature_significance.json")
        mlflow.log_dict(model.names, "cluster_names.json")
        if len(result.elbow):
            _figure(plots.elbow(result.elbow, chosen.k if chosen.algorithm == "kmeans" else None), "elbow.png")
        _figure(plots.z_score_heatmap(result.z_scores, result.names), "cluster_profiles.png")
        example = tracking.synthetic_example(numeric_matrix(frame, model.features))  # floats, as the model reads them
        version = tracking.log_model(
            model, CLUSTERING_MODEL, example, model.predict(example), code_paths=[_ml_package_dir()]
        )
        challenger_metrics = {
            **result.metrics,
            "silhouette": silhouette_of(model, frame, config.sample_size, config.seed),
        }
        champion_metric = None
        if champion_model is not None:
            try:
                champion_metric = silhouette_of(champion_model, frame, config.sample_size, config.seed)
            except (KeyError, ValueError):
                champion_metric = float("nan")
        decision = _promote(
            CLUSTERING_EXPERIMENT,
            CLUSTERING_MODEL,
            "Behavioural clusters of persons, from marts.user_features_model_ready at the scoring date. "
            "The champion assigns marts.cluster_assignments and the cluster segments.",
            policy,
            challenger_metrics,
            champion_metric,
            champion_version,
            version,
        )
        not_separating = result.significance.loc[~result.significance["separates"], "feature"].tolist()
        summary = _summary(
            [
                f"# Clustering as of {ctx.as_of}",
                "",
                description,
                "",
                f"- silhouette {chosen.silhouette:.3f}, Davies-Bouldin {chosen.davies_bouldin:.3f}, "
                f"Calinski-Harabasz {chosen.calinski_harabasz:.0f}, noise {chosen.noise_share:.1%}",
                f"- bootstrap ARI over {len(result.stability_ari)} resamples: mean {result.metrics['stability_ari_mean']:.3f}, "
                f"min {result.metrics['stability_ari_min']:.3f}",
                f"- features that do not separate clusters: {', '.join(not_separating) or 'none'}",
                f"- promotion: {decision.reason}",
                "",
                "| cluster | name | persons | share | top categories |",
                "|---|---|---|---|---|",
                *[
                    f"| {cid} | {row['cluster_name']} | {row['size']:,} | {row['share']:.1%} | {row.get('top_categories', '')} |"
                    for cid, row in result.profile.iterrows()
                ],
            ]
        )
        run_id = active.info.run_id
    return _outcome(
        run_id,
        version,
        decision,
        result.metrics,
        summary,
        algorithm=chosen.algorithm,
        k=chosen.k,
        names=result.names,
        profile=result.profile,
        features_not_separating=not_separating,
    )


def assign_clusters(frame: pd.DataFrame) -> pd.DataFrame:
    """person_id, cluster_id, cluster_name, model_version for every row, from the champion."""
    version, model = tracking.champion(CLUSTERING_MODEL)
    if model is None:
        raise _no_champion(CLUSTERING_MODEL)
    ids = model.predict(frame[model.features])
    return pd.DataFrame(
        {
            "person_id": frame["person_id"].to_numpy(),
            "cluster_id": ids,
            "cluster_name": [model.name_of(i) for i in ids],
            "distance_to_centroid": np.round(model.distance_to_centroid(frame[model.features], ids), 6),
            "model_version": str(version.version),
        }
    )


def champion_calibration(model_name: str = "purchase_30d") -> pd.DataFrame | None:
    """The propensity champion's out-of-time calibration curve (mean_predicted, observed_rate), as
    logged with its training run; None without a champion."""
    version, _ = tracking.champion(propensity_registered_name(model_name))
    if version is None:
        return None
    table = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/calibration.json")  # written by log_table
    return pd.DataFrame(table["data"], columns=table["columns"])


def train_propensity_model(
    backtest: pd.DataFrame,
    training: pd.DataFrame,
    ctx: RunContext,
    config: PropensityConfig = PropensityConfig(),
    policy: PromotionPolicy = PROPENSITY_POLICY,
    label_column: str = "purchased_in_window",
) -> dict:
    """Choose and fit a propensity model out of time (see ml.propensity), log it, maybe promote it."""
    registered = propensity_registered_name(config.model_name)
    champion_version, champion_model = tracking.champion(registered)
    result = train_propensity(
        backtest.drop(columns=[label_column]),
        backtest[label_column],
        training.drop(columns=[label_column]),
        training[label_column],
        config,
    )
    val = result.chosen_validation
    description = (
        f"{config.model_name} as of {ctx.as_of}: {result.chosen} chosen by out-of-time ROC-AUC "
        f"(fitted on the backtest cutoff, evaluated on the training cutoff), then refitted on the "
        f"training cutoff's {len(training):,} persons."
    )
    with tracking.run(
        propensity_experiment(config.model_name), f"{config.model_name} {ctx.as_of}", description, ctx.tags()
    ) as active:
        mlflow.log_params(
            {
                **dataclasses.asdict(config),
                "chosen_model": result.chosen,
                "backtest_rows": len(backtest),
                "training_rows": len(training),
                "features": len(result.features),
            }
        )
        mlflow.log_metrics(_finite(val.metrics()))
        for name, ev in result.validation.items():
            mlflow.log_metrics(_finite(ev.metrics(prefix=f"{name}.")))
        mlflow.log_param("calibration_method", result.calibration_method)
        for method, ev in result.calibration.items():
            mlflow.log_metrics(_finite({f"calibrated_{method}.ece": ev.ece, f"calibrated_{method}.brier": ev.brier}))
        calibrated = result.calibration[result.calibration_method]
        mlflow.log_metrics(
            _finite(
                {
                    "calibrated_ece": calibrated.ece,
                    "calibrated_brier": calibrated.brier,
                    "uncalibrated_ece": val.ece,
                    "uncalibrated_brier": val.brier,
                }
            )
        )
        mlflow.log_table(val.by_group, "roc_auc_by_group.json")
        mlflow.log_table(calibrated.calibration, "calibration.json")
        mlflow.log_table(val.calibration, "calibration_uncalibrated.json")
        mlflow.log_dict(val.confusion, "confusion_matrix.json")
        _figure(
            plots.calibration(
                calibrated.calibration,
                f"{result.chosen} + {result.calibration_method}: reliability (out of time, persons held out)",
            ),
            "calibration.png",
        )
        _figure(
            plots.calibration(val.calibration, f"{result.chosen}: reliability before calibration"),
            "calibration_uncalibrated.png",
        )
        _figure(plots.confusion(val.confusion, val.threshold), "confusion_matrix.png")
        example = tracking.synthetic_example(model_inputs(training.drop(columns=[label_column])))
        version = tracking.log_model(
            result.model, registered, example, score(result.model, example), predict_fn="predict_proba"
        )
        champion_metric = _propensity_champion_metric(champion_version, champion_model, training, label_column, config)
        decision = _promote(
            propensity_experiment(config.model_name),
            registered,
            f"{config.model_name}: the probability that a person places a completed order in the "
            "label window after the scoring date (the model name says how many days). The champion "
            "scores marts.propensity_scores and the propensity segments.",
            policy,
            val.metrics(),
            champion_metric,
            champion_version,
            version,
        )
        groups = "; ".join(f"{r.group_column}={r.group}: {r.roc_auc:.3f}" for r in val.by_group.itertuples())
        summary = _summary(
            [
                f"# {config.model_name} as of {ctx.as_of}",
                "",
                description,
                "",
                "| model | ROC-AUC | PR-AUC | Brier (uncalibrated) |",
                "|---|---|---|---|",
                *[f"| {n} | {e.roc_auc:.4f} | {e.pr_auc:.4f} | {e.brier:.4f} |" for n, e in result.validation.items()],
                "",
                f"- calibration: {result.calibration_method} (by Brier on held-out persons); ECE "
                f"{val.ece:.4f} -> {calibrated.ece:.4f}, Brier {val.brier:.4f} -> {calibrated.brier:.4f}; "
                + ", ".join(f"{m}: ECE {e.ece:.4f}, Brier {e.brier:.4f}" for m, e in result.calibration.items()),
                f"- threshold {val.threshold:.3f} (best F1): {json.dumps(val.confusion)}",
                f"- ROC-AUC by group: {groups or 'no group large enough'}",
                f"- promotion: {decision.reason}",
            ]
        )
        run_id = active.info.run_id
    metrics = {**val.metrics(), "calibrated_ece": calibrated.ece, "calibrated_brier": calibrated.brier}
    return _outcome(
        run_id,
        version,
        decision,
        metrics,
        summary,
        chosen=result.chosen,
        calibration_method=result.calibration_method,
        candidates={n: round(e.roc_auc, 4) for n, e in result.validation.items()},
    )


def _propensity_champion_metric(
    version, model, training: pd.DataFrame, label_column: str, config: PropensityConfig
) -> float | None:
    """The champion's ROC-AUC, comparable with the challenger's out-of-time ROC-AUC.

    A champion trained on labels that end on or before the current training cutoff has never seen
    the current validation window, so it is scored on it, like the challenger. A newer champion
    has seen that window; its own out-of-time ROC-AUC, recorded at its run, stands instead.
    """
    if model is None:
        return None
    run = mlflow.get_run(version.run_id)
    champion_as_of = run.data.tags.get("tessera.as_of", "")
    cutoff = str(pd.Timestamp(training["as_of"].max()).date())
    if champion_as_of and champion_as_of > cutoff:
        return run.data.metrics.get("roc_auc", float("nan"))
    try:
        labels = training[label_column].astype(int).to_numpy()
        return float(roc_auc_score(labels, score(model, training.drop(columns=[label_column]))))
    except (KeyError, ValueError):
        return float("nan")


def score_propensity(
    frame: pd.DataFrame, model_name: str = "purchase_30d", previous: pd.DataFrame | None = None
) -> pd.DataFrame:
    """person_id, model_name, score, top_features (JSON), model_version for every row, from the champion.

    `previous` (person_id, score, top_features, model_version: the last scoring's rows) spares the
    explanations that did not change: a person whose score and model version are the same keeps
    their top features, and only the others are explained. A model explains against the typical
    row it learned (propensity.baseline), so a kept explanation is the one a new one would give.
    A model trained before it kept that row explains everyone."""
    registered = propensity_registered_name(model_name)
    version, model = tracking.champion(registered)
    if model is None:
        raise _no_champion(registered)
    scores = np.round(score(model, frame), 6)
    top = pd.Series(None, index=range(len(frame)), dtype="object")
    if previous is not None and len(previous) and getattr(model, "typical", None):
        same = previous[previous["model_version"] == str(version.version)].drop_duplicates("person_id")
        kept = pd.DataFrame({"person_id": frame["person_id"].to_numpy(), "score": scores}).merge(
            same[["person_id", "score", "top_features"]], on=["person_id", "score"], how="left"
        )
        top = kept["top_features"].astype("object")
    todo = np.flatnonzero(top.isna().to_numpy())
    if len(todo):
        top.iloc[todo] = [json.dumps(t) for t in top_contributions(model, frame.iloc[todo])]
    return pd.DataFrame(
        {
            "person_id": frame["person_id"].to_numpy(),
            "model_name": model_name,
            "score": scores,
            "top_features": top.to_numpy(),
            "model_version": str(version.version),
        }
    )


def train_clv_model(
    calibration: pd.DataFrame,
    scoring: pd.DataFrame,
    holdout_days: int,
    ctx: RunContext,
    config: clv.ClvConfig = clv.ClvConfig(),
    policy: PromotionPolicy = CLV_POLICY,
) -> dict:
    """Pareto/NBD + Gamma-Gamma: fitted on the buyers' summaries at the start of the holdout
    (`calibration`, with `holdout_purchases` and `holdout_value`: what each then did), validated on
    the holdout, refitted on the summaries at the scoring date, logged, maybe promoted.

    Frames hold person_id and clv.SUMMARY_COLUMNS, one row per person with a completed order."""
    registered = CLV_MODEL
    champion_version, champion_model = tracking.champion(registered)
    validated = clv.ClvModel(horizon_days=config.horizon_days).fit(calibration)
    check = clv.validate(
        validated,
        calibration,
        holdout_days,
        calibration["holdout_purchases"],
        calibration["holdout_value"],
        config.deciles,
    )
    model = clv.ClvModel(horizon_days=config.horizon_days).fit(scoring)
    description = (
        f"Lifetime value as of {ctx.as_of}: Pareto/NBD and Gamma-Gamma (pymc-marketing, MAP) on "
        f"{len(scoring):,} buyers; validated by fitting on the {len(calibration):,} buyers known "
        f"{holdout_days} days earlier and predicting those days."
    )
    with tracking.run(CLV_EXPERIMENT, f"clv {ctx.as_of}", description, ctx.tags()) as active:
        mlflow.log_params(
            {
                **dataclasses.asdict(config),
                "holdout_days": holdout_days,
                "calibration_buyers": len(calibration),
                "scoring_buyers": len(scoring),
                "purchase_model": model.kind,
                **{f"{model.kind}.{k}": round(v, 6) for k, v in model.purchases.items()},
                **{f"gamma_gamma.{k}": round(v, 6) for k, v in model.gamma_gamma.items()},
            }
        )
        mlflow.log_metrics(_finite(check.metrics()))
        mlflow.log_table(check.by_decile, "holdout_by_decile.json")
        _figure(
            plots.predicted_by_decile(check.by_decile, f"Holdout purchases by decile ({holdout_days} days)"),
            "holdout_by_decile.png",
        )
        example = tracking.synthetic_example(scoring[list(clv.SUMMARY_COLUMNS)].astype("float64"))
        version = tracking.log_model(model, registered, example, model.predict(example))
        champion_metric = None
        if champion_model is not None:
            champion_metric = clv.validate(
                champion_model,
                calibration,
                holdout_days,
                calibration["holdout_purchases"],
                calibration["holdout_value"],
                config.deciles,
            ).mae_purchases
        decision = _promote(
            CLV_EXPERIMENT,
            registered,
            "Lifetime value: per buyer, P(alive), expected purchases in 30 days and 12 months, and the "
            "expected 12-month value (Pareto/NBD + Gamma-Gamma). The champion scores "
            "marts.customer_lifetime_values and the churn segments.",
            policy,
            check.metrics(),
            champion_metric,
            champion_version,
            version,
        )
        summary = _summary(
            [
                f"# Lifetime value as of {ctx.as_of}",
                "",
                description,
                "",
                f"- holdout ({holdout_days} days): MAE {check.mae_purchases:.4f} purchase days and {check.mae_value:.2f} in "
                f"value per buyer; predicted {check.predicted_total:,.0f} purchase days against {check.actual_total:,.0f}; "
                f"ROC-AUC for who bought: expected purchases {check.purchases_auc:.4f}, P(alive) {check.p_alive_auc:.4f}",
                f"- {model.kind} {json.dumps({k: round(v, 4) for k, v in model.purchases.items()})}; Gamma-Gamma "
                f"{json.dumps({k: round(v, 4) for k, v in model.gamma_gamma.items()})}",
                f"- promotion: {decision.reason}",
                "",
                "| decile | buyers | predicted | actual |",
                "|---|---|---|---|",
                *[
                    f"| {r.decile} | {r.persons:,} | {r.predicted:.3f} | {r.actual:.3f} |"
                    for r in check.by_decile.itertuples()
                ],
            ]
        )
        run_id = active.info.run_id
    return _outcome(
        run_id,
        version,
        decision,
        check.metrics(),
        summary,
        by_decile=check.by_decile,
    )


def score_clv(frame: pd.DataFrame) -> pd.DataFrame:
    """person_id, p_alive, expected purchases (30 days, 12 months), expected 12-month value and
    model_version for every buyer in `frame`, from the champion."""
    version, model = tracking.champion(CLV_MODEL)
    if model is None:
        raise _no_champion(CLV_MODEL)
    out = model.predict(frame[list(clv.SUMMARY_COLUMNS)].astype("float64"))
    return pd.DataFrame(
        {
            "person_id": frame["person_id"].to_numpy(),
            "p_alive": np.round(out["p_alive"].to_numpy(), 6),
            "expected_purchases_30d": np.round(out["expected_purchases_30d"].to_numpy(), 6),
            "expected_purchases_12m": np.round(out["expected_purchases_horizon"].to_numpy(), 6),
            "expected_value_12m": np.round(out["expected_value_horizon"].to_numpy(), 2),
            "model_version": str(version.version),
        }
    )


def train_recommender(
    purchases: pd.DataFrame,
    until: pd.Timestamp,
    ctx: RunContext,
    horizon_days: int = 30,
    policy: PromotionPolicy = RECOMMENDER_POLICY,
) -> dict:
    """The hybrid recommender: judged on the last `horizon_days` before `until` (learnt on the
    windows before them) against the baselines and the champion, refitted up to `until`, logged,
    registered, maybe promoted. `purchases`: person_id, item_id, at, group (ml/recommendations.py)."""
    registered = RECOMMENDER_MODEL
    history, relevant = recommendations.holdout(purchases, until, horizon_days)
    if len(relevant) < policy.minimums.get("persons_evaluated", 1) or len(history.items) < 2:
        raise recommendations.NotEnoughPurchasesError(
            f"{len(relevant)} persons bought a product in the {horizon_days} days before {until.date()} after buying "
            "before them; recommendations need order lines with a product_id (docs/input_contract.md)."
        )
    judged = recommendations.HybridRecommender(horizon_days).fit(purchases, history.until)
    table = recommendations.evaluate(history, relevant, judged)
    best_baseline = max(recommendations.BASELINES, key=lambda name: table[name]["ndcg_at_10"])
    challenger = {
        **table["hybrid"],
        "lift_over_best_baseline": table["hybrid"]["ndcg_at_10"] / max(table[best_baseline]["ndcg_at_10"], 1e-9),
        "persons_evaluated": len(relevant),
    }
    champion_version, champion_model = tracking.champion(registered)
    champion_metric = None
    if champion_model is not None:
        judged_champion = recommendations.HybridRecommender(horizon_days)
        judged_champion.model = champion_model
        try:
            champion_metric = recommendations.evaluate(history, relevant, judged_champion)["hybrid"]["ndcg_at_10"]
        except ValueError:  # trained on other features: it cannot rank today's candidates
            champion_metric = float("nan")
    model = recommendations.HybridRecommender(horizon_days).fit(purchases, until)
    description = (
        f"Recommendations as of {ctx.as_of}: the hybrid (co-occurrence, truncated SVD, buy again and popularity "
        f"candidates ranked by gradient boosting) on {purchases['person_id'].nunique():,} buyers and "
        f"{purchases['item_id'].nunique():,} products; judged on the {horizon_days} days before {until.date()} "
        f"({len(relevant):,} buyers) against the baselines."
    )
    with tracking.run(RECOMMENDER_EXPERIMENT, f"recommender {ctx.as_of}", description, ctx.tags()) as active:
        mlflow.log_params(
            {
                "horizon_days": horizon_days,
                "training_windows": model.training["windows"],
                "training_candidates": model.training["candidates"],
                "training_positives": model.training["positives"],
                "features": ",".join(recommendations.FEATURES),
                "best_baseline": best_baseline,
            }
        )
        mlflow.log_metrics(_finite(challenger))
        for name in recommendations.BASELINES:
            mlflow.log_metrics({f"{name.replace(' ', '_')}.{k}": v for k, v in table[name].items()})
        by_method = pd.DataFrame([{"method": name, **figures} for name, figures in table.items()])
        mlflow.log_table(by_method, "holdout_by_method.json")
        example = tracking.synthetic_example(model.last_frame)
        version = tracking.log_model(
            model.model, registered, example, model.model.predict_proba(example), predict_fn="predict_proba"
        )
        decision = _promote(
            RECOMMENDER_EXPERIMENT,
            registered,
            "Recommendations: ten products per person, ranked by the chance they buy each within 30 days. The "
            "champion ranks marts.recommendations; persons without purchases get what is popular in their segment.",
            policy,
            challenger,
            champion_metric,
            champion_version,
            version,
        )
        summary = _summary(
            [
                f"# Recommendations as of {ctx.as_of}",
                "",
                description,
                "",
                f"- promotion: {decision.reason}",
                "",
                "| method | precision@10 | recall@10 | MAP@10 | NDCG@10 | coverage |",
                "|---|---|---|---|---|---|",
                *[
                    f"| {name} | {f['precision_at_10']:.4f} | {f['recall_at_10']:.4f} | {f['map_at_10']:.4f} | "
                    f"{f['ndcg_at_10']:.4f} | {f['coverage']:.4f} |"
                    for name, f in table.items()
                ],
            ]
        )
        run_id = active.info.run_id
    return _outcome(
        run_id,
        version,
        decision,
        challenger,
        summary,
        by_method=by_method,
    )


def recommend(purchases: pd.DataFrame, groups: dict[str, str | None], until: pd.Timestamp) -> pd.DataFrame:
    """Ten products for each person of `groups` (person -> segment or context), ranked by the
    champion (without one, by buy again); a person without purchases gets what is popular in their
    group (cold start)."""
    version, model = tracking.champion(RECOMMENDER_MODEL)
    recommender = recommendations.HybridRecommender()
    recommender.model = model
    history = recommendations.History(purchases, until)
    name = f"{RECOMMENDER_MODEL} v{version.version}" if version is not None else "none"
    return recommender.table(history, groups, name)


def _ml_package_dir() -> str:
    import ml

    return str(next(iter(ml.__path__)))
