"""ML assets: clustering and purchase propensity, trained and registered in MLflow, scored by @champion.

The work itself is plain Python in `ml/`; these assets read the feature marts, pass the run's
context (as_of, data version, engine, Dagster run id) and write the scored marts.
"""

import math
from typing import Optional

import dagster as dg
import mlflow
import pandas as pd

from ml import workflows
from ml.clustering import ClusteringConfig, NotClusterableError
from ml.clv import ClvConfig, NotEnoughBuyersError
from ml.propensity import OneClassLabelsError, PropensityConfig
from ml.tracking import PromotionPolicy
from orchestration.defs.metadata import frame_table, table_metadata
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.lib.warehouse import table_exists, table_from_frame, transaction

OWNER = "team:data-science"
# Models retrain weekly (Mondays 04:00 UTC, after the daily refresh); scoring follows every feature
# update with the @champion. Retraining daily would cost more than the rest of a daily run.
TRAINING = dg.AutomationCondition.on_cron("0 4 * * 1", cron_timezone="UTC")
FEATURES = dg.AssetKey(["marts", "user_features"])
MODEL_READY = dg.AssetKey(["marts", "user_features_model_ready"])
LABELS = dg.AssetKey(["marts", "purchase_labels"])
PERSON_EVENTS = dg.AssetKey(["intermediate", "int_person_events"])


class ClusteringAssetConfig(dg.Config):
    k_min: int = ClusteringConfig.k_min
    k_max: int = ClusteringConfig.k_max
    algorithms: list[str] = list(ClusteringConfig.algorithms)
    pca_variance: Optional[float] = None  # noqa: UP045 (Dagster config needs Optional)
    sample_size: int = ClusteringConfig.sample_size
    bootstrap_resamples: int = ClusteringConfig.bootstrap_resamples
    promotion_margin: float = workflows.CLUSTERING_POLICY.margin


class PropensityAssetConfig(dg.Config):
    candidates: list[str] = list(PropensityConfig.candidates)
    max_train_rows: int = PropensityConfig.max_train_rows
    promotion_margin: float = workflows.PROPENSITY_POLICY.margin
    min_roc_auc: float = workflows.PROPENSITY_POLICY.minimums["roc_auc"]


class ClvAssetConfig(dg.Config):
    promotion_margin: float = workflows.CLV_POLICY.margin


def _buyers_sql(purpose: str, where: str = "true", select: str | None = None) -> str:
    """Each buyer's BTYD summary at the feature date of `purpose` (ml.clv's columns), in SQL both
    engines run; at a cutoff, also what they bought from then to the scoring date."""
    holdout = purpose != "scoring"
    columns = select or (
        "f.person_id, f.as_of, f.btyd_frequency AS frequency, f.btyd_recency_days AS recency, f.btyd_age_days AS T, "
        "coalesce(f.avg_order_value, 0) AS monetary_value"
        + (
            ", coalesce(s.btyd_frequency, f.btyd_frequency) - f.btyd_frequency AS holdout_purchases, "
            "coalesce(s.monetary_total, f.monetary_total) - f.monetary_total AS holdout_value"
            if holdout
            else ""
        )
    )
    later = (
        """
        LEFT JOIN (SELECT u.person_id, u.btyd_frequency, u.monetary_total FROM marts.user_features u
                   JOIN intermediate.int_feature_dates ds ON ds.as_of = u.as_of AND ds.purpose = 'scoring') s
            ON s.person_id = f.person_id"""
        if holdout
        else ""
    )
    return f"""
        SELECT {columns}
        FROM marts.user_features f
        JOIN intermediate.int_feature_dates d ON d.as_of = f.as_of AND d.purpose = '{purpose}'{later}
        WHERE f.btyd_frequency IS NOT NULL AND {where}"""


def _frame_sql(purpose: str, with_labels: bool, where: str = "true", select: str = "f.*") -> str:
    """Model-ready features at the feature date of `purpose` (scoring, training_cutoff, backtest_cutoff),
    in SQL that both engines run."""
    labels = ", l.purchased_in_window" if with_labels and select == "f.*" else ""
    join = "JOIN marts.purchase_labels l ON l.person_id = f.person_id AND l.as_of = f.as_of" if with_labels else ""
    return f"""
        SELECT {select}{labels}
        FROM marts.user_features_model_ready f
        JOIN intermediate.int_feature_dates d ON d.as_of = f.as_of AND d.purpose = '{purpose}'
        {join}
        WHERE {where}"""


def _hash_range(low: float, high: float) -> str:
    """The persons whose md5(person_id) falls in [low, high) of the hash space: the same persons on
    every engine, and on every run."""

    def bound(x: float) -> str:
        return f"'{min(int(x * 16**8), 16**8 - 1):08x}'"

    parts = ([f"substr(md5(f.person_id), 1, 8) >= {bound(low)}"] if low > 0 else []) + (
        [f"substr(md5(f.person_id), 1, 8) < {bound(high)}"] if high < 1 else []
    )
    return " AND ".join(parts) or "true"


def _read(warehouse: WarehouseResource, purpose: str, with_labels: bool, where: str) -> pd.DataFrame:
    return warehouse.read_frame(_frame_sql(purpose, with_labels, where) + " ORDER BY f.person_id")


def _rows(warehouse: WarehouseResource, purpose: str, with_labels: bool = False) -> int:
    return int(warehouse.read_frame(_frame_sql(purpose, with_labels, select="count(*) AS n"))["n"].iloc[0])


def _frame(
    warehouse: WarehouseResource,
    settings: SettingsResource,
    purpose: str,
    with_labels: bool = False,
    context: dg.AssetExecutionContext | None = None,
) -> pd.DataFrame:
    """The features of `purpose` from the engine that holds them; above TESSERA_ML_FRAME_ROWS rows, a
    fixed hash sample of persons of that size, computed by the engine."""
    rows, limit = _rows(warehouse, purpose, with_labels), settings.ml_frame_rows
    where = _hash_range(0, limit / rows) if rows > limit else "true"
    if rows > limit and context:
        context.log.info(
            f"{purpose}: {rows:,} rows on the {warehouse.engine} engine; training on a hash sample of "
            f"about {limit:,} (TESSERA_ML_FRAME_ROWS)"
        )
    return _read(warehouse, purpose, with_labels, where)


def _feature_dates(warehouse: WarehouseResource) -> dict[str, pd.Timestamp]:
    """purpose (scoring, training_cutoff, backtest_cutoff) -> its feature date."""
    dates = warehouse.read_frame("SELECT purpose, as_of FROM intermediate.int_feature_dates")
    return {row.purpose: pd.Timestamp(row.as_of) for row in dates.itertuples()}


def _days_before_scoring(warehouse: WarehouseResource, purpose: str) -> int:
    dates = _feature_dates(warehouse)
    return (dates["scoring"] - dates[purpose]).days


def lineage(
    warehouse: WarehouseResource, frame: pd.DataFrame, context: dg.AssetExecutionContext
) -> workflows.RunContext:
    """The run's lineage for MLflow: the scoring date, a digest of the frame the model learns from
    (rows and content), the engine, the Dagster run."""
    as_of = _feature_dates(warehouse).get("scoring")
    digest = int(pd.util.hash_pandas_object(frame, index=False).sum()) if len(frame) else 0
    return workflows.RunContext(
        as_of=str(as_of.date()) if as_of is not None else "unknown",
        data_version=f"{len(frame)}-{digest % 10**12:012d}",
        engine=warehouse.engine,
        dagster_run_id=context.run.run_id,
    )


def decision_metadata(summary: dict) -> dict:
    return {
        "mlflow_run_id": summary["run_id"],
        "model_version": summary["model_version"],
        "promoted": summary["promoted"],
        "promotion_reason": summary["reason"],
        "mlflow_tracking_uri": mlflow.get_tracking_uri(),
        "summary": dg.MetadataValue.md(summary["summary"]),
        **{f"metric/{k}": float(v) for k, v in summary["metrics"].items()},
    }


def _scoring_sql(where: str = "true", select: str = "f.*") -> str:
    return _frame_sql("scoring", False, where, select)


def _score_into(
    warehouse: WarehouseResource,
    settings: SettingsResource,
    table: str,
    score,
    when_no_champion: pd.DataFrame | None = None,
    context: dg.AssetExecutionContext | None = None,
    frame_sql=_scoring_sql,
) -> tuple[pd.DataFrame, dict]:
    """Score every person at the scoring date with a @champion (`score(frame)`), in chunks of at most
    TESSERA_ML_FRAME_ROWS persons read from the engine (`frame_sql(where, select)`, model-ready
    features by default), replace `table` with the result (published to the engine on Spark), and
    return it with the table's metadata. With no champion, `table` becomes `when_no_champion` (an
    empty frame of its columns) where one is given."""
    rows = int(warehouse.read_frame(frame_sql(select="count(*) AS n"))["n"].iloc[0])
    chunks = max(1, math.ceil(rows / settings.ml_frame_rows))
    scored = []
    for index in range(chunks):
        where = _hash_range(index / chunks, (index + 1) / chunks)
        frame = warehouse.read_frame(frame_sql(where) + " ORDER BY f.person_id")
        try:
            out = score(frame)
        except workflows.NoChampionError as exc:
            if when_no_champion is None:
                raise dg.Failure(description=str(exc)) from None
            context.log.warning(f"{exc} {table} is written empty: segments that read it stay empty.")
            scored = [when_no_champion]
            break
        out["as_of"] = frame["as_of"].to_numpy()
        scored.append(out)
    out = pd.concat(scored, ignore_index=True)
    with warehouse.connect() as con:
        with transaction(con):
            table_from_frame(con, table, out)
        warehouse.publish(con, [table])
        return out, table_metadata(con, table)


@dg.asset(
    key=["ml", "clustering_model"],
    deps=[FEATURES, MODEL_READY, PERSON_EVENTS],
    group_name="ml",
    owners=[OWNER],
    kinds={"python", "scikitlearn", "mlflow"},
    pool="duckdb",
    automation_condition=TRAINING,
    description="Behavioural clusters discovered from the model-ready features (KMeans, GMM, Ward, HDBSCAN), "
    "selected by silhouette, logged to MLflow and registered; promoted to @champion only when better.",
)
def clustering_model(
    context: dg.AssetExecutionContext,
    config: ClusteringAssetConfig,
    warehouse: WarehouseResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    frame = _frame(warehouse, settings, "scoring", context=context)
    categories = warehouse.read_frame("""
        SELECT e.person_id, e.category, count(*) AS events
        FROM intermediate.int_person_events e
        JOIN intermediate.int_feature_dates d ON d.purpose = 'scoring' AND e.event_date <= d.as_of
        WHERE e.category IS NOT NULL
        GROUP BY e.person_id, e.category""")
    run_context = lineage(warehouse, frame, context)
    policy = PromotionPolicy(
        workflows.CLUSTERING_POLICY.metric, config.promotion_margin, workflows.CLUSTERING_POLICY.minimums
    )
    try:
        cluster_config = ClusteringConfig(
            k_min=config.k_min,
            k_max=config.k_max,
            algorithms=tuple(config.algorithms),
            pca_variance=config.pca_variance,
            sample_size=config.sample_size,
            bootstrap_resamples=config.bootstrap_resamples,
        )
        summary = workflows.train_clustering_model(frame, run_context, cluster_config, policy, categories)
    except NotClusterableError as exc:  # as for propensity: data without clusters must not stop segments and exports
        context.log.warning(f"Clustering was not trained: {exc} The current champion, if any, keeps assigning.")
        return dg.MaterializeResult(metadata={"trained": False, "reason": str(exc), "persons": len(frame)})
    except ValueError as exc:
        raise dg.Failure(
            description=f"Clustering could not be trained: {exc} Change the clustering_model run "
            "config (k range, algorithms) or add data."
        ) from None
    profile = summary["profile"][["cluster_name", "size", "share", "top_categories"]].reset_index()
    return dg.MaterializeResult(
        metadata={
            **decision_metadata(summary),
            "algorithm": summary["algorithm"],
            "clusters": summary["k"],
            "persons": len(frame),
            "cluster_profile": frame_table(profile),
            "features_not_separating": ", ".join(summary["features_not_separating"]) or "none",
        }
    )


@dg.asset(
    key=["marts", "cluster_assignments"],
    deps=[clustering_model, MODEL_READY],
    group_name="ml",
    owners=[OWNER],
    kinds={"duckdb", "mlflow"},
    pool="duckdb",
    description="One row per person: the @champion clustering's stable cluster id and readable name at the scoring date.",
)
def cluster_assignments(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: SettingsResource
) -> dg.MaterializeResult:
    no_clusters = pd.DataFrame(
        {
            "person_id": pd.Series(dtype="string"),
            "cluster_id": pd.Series(dtype="int64"),
            "cluster_name": pd.Series(dtype="string"),
            "distance_to_centroid": pd.Series(dtype="float64"),
            "model_version": pd.Series(dtype="string"),
            "as_of": pd.Series(dtype="datetime64[us]"),
        }
    )
    assigned, metadata = _score_into(
        warehouse, settings, "marts.cluster_assignments", workflows.assign_clusters, no_clusters, context
    )
    sizes = assigned.groupby(["cluster_id", "cluster_name"]).size().rename("persons").reset_index()
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "model_version": assigned["model_version"].iloc[0] if len(assigned) else "",
            "cluster_sizes": frame_table(sizes),
        }
    )


@dg.asset(
    key=["ml", "purchase_30d_model"],
    deps=[FEATURES, MODEL_READY, LABELS],
    group_name="ml",
    owners=[OWNER],
    kinds={"python", "scikitlearn", "mlflow"},
    pool="duckdb",
    automation_condition=TRAINING,
    description="purchase_30d propensity: logistic regression, random forest and gradient boosting, each behind a "
    "BG/NBD step, compared out of time; the best calibrated on its out-of-time scores and refitted on the "
    "latest labels, logged and registered; @champion only when better.",
)
def purchase_30d_model(
    context: dg.AssetExecutionContext,
    config: PropensityAssetConfig,
    warehouse: WarehouseResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    backtest = _frame(warehouse, settings, "backtest_cutoff", with_labels=True, context=context)
    training = _frame(warehouse, settings, "training_cutoff", with_labels=True, context=context)
    run_context = lineage(warehouse, training, context)
    try:
        propensity_config = PropensityConfig(
            candidates=tuple(config.candidates),
            max_train_rows=config.max_train_rows,
            window_days=_days_before_scoring(warehouse, "training_cutoff"),
        )
        summary = workflows.train_propensity_model(
            backtest,
            training,
            run_context,
            propensity_config,
            PromotionPolicy("roc_auc", config.promotion_margin, {"roc_auc": config.min_roc_auc}),
        )
    except OneClassLabelsError as exc:
        # Data that cannot train a model must not stop segments, exports and erasure downstream:
        # the current @champion (if any) keeps scoring.
        context.log.warning(f"purchase_30d was not trained: {exc} The current champion, if any, keeps scoring.")
        return dg.MaterializeResult(
            metadata={
                "trained": False,
                "reason": str(exc),
                "backtest_rows": len(backtest),
                "training_rows": len(training),
            }
        )
    except ValueError as exc:
        raise dg.Failure(description=f"purchase_30d could not be trained: {exc}") from None
    return dg.MaterializeResult(
        metadata={
            **decision_metadata(summary),
            "chosen_model": summary["chosen"],
            "candidates_roc_auc": dg.MetadataValue.json(summary["candidates"]),
            "backtest_rows": len(backtest),
            "training_rows": len(training),
        }
    )


@dg.asset(
    key=["marts", "propensity_scores"],
    deps=[purchase_30d_model, MODEL_READY],
    group_name="ml",
    owners=[OWNER],
    kinds={"duckdb", "mlflow"},
    pool="duckdb",
    description="One row per person and model: the @champion purchase_30d probability at the scoring date.",
)
def propensity_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: SettingsResource
) -> dg.MaterializeResult:
    no_scores = pd.DataFrame(
        {
            "person_id": pd.Series(dtype="string"),
            "model_name": pd.Series(dtype="string"),
            "score": pd.Series(dtype="float64"),
            "top_features": pd.Series(dtype="string"),
            "model_version": pd.Series(dtype="string"),
            "as_of": pd.Series(dtype="datetime64[us]"),
        }
    )
    with warehouse.connect(read_only=True) as con:
        previous = (
            con.execute("SELECT person_id, score, top_features, model_version FROM marts.propensity_scores").df()
            if table_exists(con, "marts", "propensity_scores")
            else None
        )  # a person whose score did not change keeps their explanation (workflows.score_propensity)
    scores, metadata = _score_into(
        warehouse,
        settings,
        "marts.propensity_scores",
        lambda frame: workflows.score_propensity(frame, "purchase_30d", previous),
        no_scores,
        context,
    )
    deciles = pd.qcut(scores["score"].rank(method="first"), 10, labels=False) if len(scores) >= 10 else None
    meta = {
        **metadata,
        "model_version": scores["model_version"].iloc[0] if len(scores) else "",
        "mean_score": float(scores["score"].mean()) if len(scores) else 0.0,
    }
    if deciles is not None:
        meta["mean_score_by_decile"] = dg.MetadataValue.json(
            {int(d) + 1: round(float(v), 4) for d, v in scores["score"].groupby(deciles).mean().items()}
        )
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    key=["ml", "clv_model"],
    deps=[FEATURES],
    group_name="ml",
    owners=[OWNER],
    kinds={"python", "pymc", "mlflow"},
    pool="duckdb",
    automation_condition=TRAINING,
    description="Lifetime value: Pareto/NBD and Gamma-Gamma (pymc-marketing) fitted on the buyers' purchase histories, "
    "validated on a holdout (predicted against actual purchases), logged and registered; @champion only "
    "when its holdout error is lower.",
)
def clv_model(
    context: dg.AssetExecutionContext, config: ClvAssetConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    calibration = warehouse.read_frame(_buyers_sql("backtest_cutoff") + " ORDER BY f.person_id")
    scoring = warehouse.read_frame(_buyers_sql("scoring") + " ORDER BY f.person_id")
    for frame in (calibration, scoring):
        numbers = frame.columns.difference(["person_id", "as_of"])
        frame[numbers] = frame[numbers].astype("float64")
    holdout_days = _days_before_scoring(warehouse, "backtest_cutoff")
    run_context = lineage(warehouse, scoring, context)
    policy = PromotionPolicy(
        workflows.CLV_POLICY.metric, config.promotion_margin, workflows.CLV_POLICY.minimums, lower_is_better=True
    )
    try:
        summary = workflows.train_clv_model(calibration, scoring, holdout_days, run_context, ClvConfig(), policy)
    except NotEnoughBuyersError as exc:
        context.log.warning(f"Lifetime value was not trained: {exc}. The current champion, if any, keeps scoring.")
        return dg.MaterializeResult(
            metadata={"trained": False, "reason": str(exc), "buyers": len(scoring), "holdout_buyers": len(calibration)}
        )
    return dg.MaterializeResult(
        metadata={
            **decision_metadata(summary),
            "buyers": len(scoring),
            "holdout_buyers": len(calibration),
            "holdout_days": holdout_days,
            "holdout_by_decile": frame_table(summary["by_decile"]),
        }
    )


@dg.asset(
    key=["marts", "customer_lifetime_values"],
    deps=[clv_model, FEATURES],
    group_name="ml",
    owners=[OWNER],
    kinds={"duckdb", "mlflow"},
    pool="duckdb",
    description="One row per buyer: the @champion lifetime-value model's P(alive), expected purchases in 30 days "
    "and 12 months, and expected 12-month value at the scoring date.",
)
def customer_lifetime_values(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: SettingsResource
) -> dg.MaterializeResult:
    no_values = pd.DataFrame(
        {
            "person_id": pd.Series(dtype="string"),
            "p_alive": pd.Series(dtype="float64"),
            "expected_purchases_30d": pd.Series(dtype="float64"),
            "expected_purchases_12m": pd.Series(dtype="float64"),
            "expected_value_12m": pd.Series(dtype="float64"),
            "model_version": pd.Series(dtype="string"),
            "as_of": pd.Series(dtype="datetime64[us]"),
        }
    )

    values, metadata = _score_into(
        warehouse,
        settings,
        "marts.customer_lifetime_values",
        workflows.score_clv,
        no_values,
        context,
        frame_sql=lambda where="true", select=None: _buyers_sql("scoring", where, select),
    )
    meta = {**metadata, "model_version": values["model_version"].iloc[0] if len(values) else ""}
    if len(values):
        meta.update(
            {
                "mean_p_alive": float(values["p_alive"].mean()),
                "expected_value_12m_total": float(values["expected_value_12m"].sum()),
                "buyers_p_alive_below_half": int((values["p_alive"] < 0.5).sum()),
            }
        )
    return dg.MaterializeResult(metadata=meta)


ml_assets = [
    clustering_model,
    cluster_assignments,
    purchase_30d_model,
    propensity_scores,
    clv_model,
    customer_lifetime_values,
]
