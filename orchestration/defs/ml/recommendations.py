"""Recommendations: the hybrid recommender trained weekly beside the other models, and ten products
for every person who consented to personalisation, ranked by its @champion.

The work is in ml/recommendations.py and ml/workflows.py; these assets read what people bought
(marts.purchased_items) and their segment (marts.segment_attributes: the champion cluster, or the
country when they have none) and write marts.recommendations.
"""

import dataclasses

import dagster as dg
import pandas as pd

from ml import workflows
from ml.recommendations import NotEnoughPurchasesError
from orchestration.defs.metadata import frame_table, table_metadata
from orchestration.defs.ml.assets import OWNER, TRAINING, decision_metadata, lineage
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.lib.consent import personalisation_allowed_sql
from orchestration.lib.warehouse import table_from_frame, transaction

PURCHASED_ITEMS = dg.AssetKey(["marts", "purchased_items"])
ATTRIBUTES = dg.AssetKey(["marts", "segment_attributes"])
# A person's group for "popular in ...": their segment (cluster), else the context their country gives.
GROUP_SQL = "coalesce(a.cluster_name, 'country ' || a.country)"
COLUMNS = {
    "person_id": "string",
    "rank": "int64",
    "item_id": "string",
    "score": "float64",
    "model": "string",
    "reason": "string",
}


class RecommenderAssetConfig(dg.Config):
    horizon_days: int = 30
    promotion_margin: float = workflows.RECOMMENDER_POLICY.margin


def purchases_frame(warehouse: WarehouseResource) -> pd.DataFrame:
    """What the recommender learns from: person_id, item_id, at, and the person's group."""
    frame = warehouse.read_frame(
        f"""
        SELECT i.person_id, i.product_id AS item_id, i.ordered_at AS at, {GROUP_SQL} AS segment_group
        FROM marts.purchased_items i LEFT JOIN marts.segment_attributes a ON a.person_id = i.person_id
        ORDER BY i.person_id, i.ordered_at, i.product_id"""
    )
    frame = frame.rename(columns={"segment_group": "group"})  # Spark SQL takes no quoted names
    return frame.astype({"person_id": "string", "item_id": "string"}).assign(at=pd.to_datetime(frame["at"]))


def scoring_end(warehouse: WarehouseResource) -> pd.Timestamp:
    """The end of the scoring day: what was bought that day counts."""
    as_of = warehouse.read_frame("SELECT max(as_of) AS as_of FROM marts.segment_attributes")["as_of"].iloc[0]
    return pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)


@dg.asset(
    key=["ml", "recommendation_model"],
    deps=[PURCHASED_ITEMS, ATTRIBUTES],
    group_name="ml",
    owners=[OWNER],
    kinds={"python", "scikitlearn", "mlflow"},
    pool="duckdb",
    automation_condition=TRAINING,
    description="The hybrid recommender: co-occurrence, truncated SVD, buy-again and popularity candidates ranked by "
    "gradient boosting, judged on the last 30 days against global popularity, popularity in the segment and buy "
    "again; logged and registered; @champion only when it beats every baseline and the champion.",
)
def recommendation_model(
    context: dg.AssetExecutionContext,
    config: RecommenderAssetConfig,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    purchases = purchases_frame(warehouse)
    policy = dataclasses.replace(workflows.RECOMMENDER_POLICY, margin=config.promotion_margin)
    try:
        summary = workflows.train_recommender(
            purchases, scoring_end(warehouse), lineage(warehouse, purchases, context), config.horizon_days, policy
        )
    except NotEnoughPurchasesError as exc:
        context.log.warning(f"The recommender was not trained: {exc} The current champion, if any, keeps ranking.")
        return dg.MaterializeResult(metadata={"trained": False, "reason": str(exc), "purchases": len(purchases)})
    return dg.MaterializeResult(
        metadata={
            **decision_metadata(summary),
            "holdout_by_method": frame_table(summary["by_method"]),
            "purchases": len(purchases),
        }
    )


@dg.asset(
    key=["marts", "recommendations"],
    deps=[recommendation_model, PURCHASED_ITEMS, ATTRIBUTES],
    group_name="ml",
    owners=[OWNER],
    kinds={"duckdb", "mlflow"},
    pool="duckdb",
    description="Ten products per person who consented to personalisation, with a score, the model and a reason "
    '("bought before (3 times)", "bought with <product>", "popular in <segment>", "popular now"): the @champion '
    "recommender's ranking, or what is popular in their segment for a person without purchases (cold start).",
)
def recommendations(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: SettingsResource
) -> dg.MaterializeResult:
    allowed = personalisation_allowed_sql(settings.consent_default_allowed, "a.personalization_opt_in")
    people = warehouse.read_frame(
        f"SELECT a.person_id, {GROUP_SQL} AS segment_group, a.as_of FROM marts.segment_attributes a WHERE {allowed}"
    )
    groups = {
        p: (g if isinstance(g, str) else None)
        for p, g in zip(people["person_id"], people["segment_group"], strict=True)
    }
    try:
        table = workflows.recommend(purchases_frame(warehouse), groups, scoring_end(warehouse))
    except NotEnoughPurchasesError as exc:
        context.log.warning(
            f"{exc} Recommendations need order lines with a product_id (docs/input_contract.md): "
            "marts.recommendations is written empty."
        )
        table = pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})
    table = table.astype(COLUMNS)
    table["as_of"] = pd.Timestamp(people["as_of"].max()) if len(people) else pd.NaT
    with warehouse.connect() as con:
        with transaction(con):
            table_from_frame(con, "marts.recommendations", table)
        warehouse.publish(con, ["marts.recommendations"])
        metadata = table_metadata(con, "marts.recommendations")
    reasons = (
        table["reason"]
        .str.replace(r"^(bought before|bought with|popular in|popular now).*$", r"\1", regex=True)
        .value_counts()
        .rename_axis("reason")
        .reset_index(name="recommendations")
    )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "persons": int(table["person_id"].nunique()),
            "persons_left_out_for_consent": int(
                warehouse.read_frame("SELECT count(*) AS n FROM marts.segment_attributes")["n"].iloc[0]
            )
            - len(people),
            "cold_start_persons": int(table.loc[table["model"] == "popularity", "person_id"].nunique()),
            "distinct_products": int(table["item_id"].nunique()),
            "model": table["model"].mode().iloc[0] if len(table) else "",
            "recommendations_by_reason": frame_table(reasons),
        }
    )


recommendation_assets = [recommendation_model, recommendations]
