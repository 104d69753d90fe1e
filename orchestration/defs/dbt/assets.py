"""dbt models as Dagster assets; groups, owners and asset keys come from dbt `meta`."""


import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from orchestration.defs.dbt.project import dbt_project

translator = DagsterDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True)
)


# Two selections around the Python identity graph, which sits between intermediate and marts
# models: dbt assets cannot depend on an asset that depends on them.
AFTER_IDENTITY_GRAPH = "stg_identity_graph__assignments+"


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator,
            exclude=AFTER_IDENTITY_GRAPH, name="dbt_before_identity_graph", pool="duckdb")
def dbt_before_identity_graph(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator,
            select=AFTER_IDENTITY_GRAPH, name="dbt_after_identity_graph", pool="duckdb")
def dbt_after_identity_graph(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


tessera_dbt_models = [dbt_before_identity_graph, dbt_after_identity_graph]
