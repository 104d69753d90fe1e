"""dbt models as Dagster assets; groups, owners and asset keys come from dbt `meta`."""


import json

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from orchestration.defs.dbt.project import dbt_project
from orchestration.defs.metadata import table_metadata
from orchestration.defs.resources import LandingZoneResource, WarehouseResource
from orchestration.lib.settings import load_settings

translator = DagsterDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True)
)


def _build_args(landing: LandingZoneResource) -> list[str]:
    """`dbt build`, with the feature date from TESSERA_AS_OF when it is set and the event taxonomy
    of the sources config (both read at run time)."""
    as_of = load_settings().as_of
    dbt_vars = landing.config().taxonomy.dbt_vars() | ({"as_of": as_of.isoformat()} if as_of else {})
    return ["build", "--vars", json.dumps(dbt_vars)]


def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource, landing: LandingZoneResource,
           warehouse: WarehouseResource):
    """`dbt build`, then each model's row count and a preview without personal data. dbt holds
    DuckDB's write lock until it exits, so the events wait for it."""
    events = list(dbt.cli(_build_args(landing), context=context).stream())
    with warehouse.connect(read_only=True) as con:
        for event in events:
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                spec_schema = context.assets_def.specs_by_key[key].metadata.get("dagster/column_schema")
                described = {c.name: c.description for c in spec_schema.columns} if spec_schema else {}
                event = event.with_metadata({**event.metadata,
                                             **table_metadata(con, ".".join(key.path), described)})
            yield event


# Three selections around the Python steps that sit between dbt models (the identity graph, then
# the ML scores): dbt assets cannot depend on an asset that depends on them.
AFTER_IDENTITY_GRAPH = "stg_identity_graph__assignments+"
AFTER_ML = "stg_ml__cluster_assignments+ stg_ml__propensity_scores+"


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator,
            exclude=f"{AFTER_IDENTITY_GRAPH} {AFTER_ML}", name="dbt_before_identity_graph", pool="duckdb")
def dbt_before_identity_graph(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                              landing: LandingZoneResource, warehouse: WarehouseResource):
    yield from _build(context, dbt, landing, warehouse)


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator,
            select=AFTER_IDENTITY_GRAPH, exclude=AFTER_ML, name="dbt_after_identity_graph", pool="duckdb")
def dbt_after_identity_graph(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                             landing: LandingZoneResource, warehouse: WarehouseResource):
    yield from _build(context, dbt, landing, warehouse)


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator,
            select=AFTER_ML, name="dbt_after_ml", pool="duckdb")
def dbt_after_ml(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                 landing: LandingZoneResource, warehouse: WarehouseResource):
    yield from _build(context, dbt, landing, warehouse)


tessera_dbt_models = [dbt_before_identity_graph, dbt_after_identity_graph, dbt_after_ml]
