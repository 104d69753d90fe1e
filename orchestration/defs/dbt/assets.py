"""dbt models as Dagster assets; groups, owners and asset keys come from dbt `meta`."""


import json

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from orchestration.defs.dbt.project import dbt_project
from orchestration.defs.metadata import table_metadata
from orchestration.defs.partitions import IncrementalConfig, daily_event_partitions, partition_window, single_run
from orchestration.defs.resources import LandingZoneResource, WarehouseResource, retry_when_locked
from orchestration.lib.settings import load_settings

translator = DagsterDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True)
)


def _build_args(landing: LandingZoneResource, extra_vars: dict | None = None) -> list[str]:
    """`dbt build`, with the feature date from TESSERA_AS_OF when it is set and the event taxonomy
    of the sources config (both read at run time)."""
    as_of = load_settings().as_of
    dbt_vars = landing.config().taxonomy.dbt_vars() | ({"as_of": as_of.isoformat()} if as_of else {})
    return ["build", "--vars", json.dumps(dbt_vars | (extra_vars or {}))]


def _partition_args(context: dg.AssetExecutionContext, config: IncrementalConfig) -> tuple[dict, list[str]]:
    """The partition window as vars for macros/event_window.sql ('' is an open end), and
    `--full-refresh` when the run config asks for it."""
    window = partition_window(context)
    dbt_vars = {"partition_start": window.start.isoformat() if window.start else "",
                "partition_end": window.end.isoformat() if window.end else "",
                "lookback_days": config.lookback_days}
    return dbt_vars, ["--full-refresh"] if config.full_refresh else []


def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource, landing: LandingZoneResource,
           warehouse: WarehouseResource, config: IncrementalConfig | None = None):
    """`dbt build`, then each model's row count and a preview without personal data. dbt holds
    DuckDB's write lock until it exits, so the events wait for it."""
    extra_vars, flags = _partition_args(context, config) if config else ({}, [])
    try:
        events = list(dbt.cli(_build_args(landing, extra_vars) + flags, context=context).stream())
    except DagsterDbtCliRuntimeError as exc:  # dbt lost DuckDB's lock to a process outside Dagster
        retry_when_locked(exc)
        raise
    with warehouse.connect(read_only=True) as con:
        for event in events:
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                spec_schema = context.assets_def.specs_by_key[key].metadata.get("dagster/column_schema")
                described = {c.name: c.description for c in spec_schema.columns} if spec_schema else {}
                event = event.with_metadata({**event.metadata,
                                             **table_metadata(con, ".".join(key.path), described)})
            yield event


# Selections around the Python steps that sit between dbt models (the identity graph, then the ML
# scores): dbt assets cannot depend on an asset that depends on them. The event models are
# partitioned by day, so they are a selection of their own.
DAILY_EVENTS = "stg_segment__events stg_segment__user_agents int_segment__events"
AFTER_IDENTITY_GRAPH = "stg_identity_graph__assignments+"
AFTER_ML = "stg_ml__cluster_assignments+ stg_ml__propensity_scores+"


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator,
            select=DAILY_EVENTS, name="dbt_daily_events", pool="duckdb", partitions_def=daily_event_partitions,
            backfill_policy=single_run)
def dbt_daily_events(context: dg.AssetExecutionContext, config: IncrementalConfig, dbt: DbtCliResource,
                     landing: LandingZoneResource, warehouse: WarehouseResource):
    """The event models, incremental by day: the partition window and lookback go to dbt as vars."""
    yield from _build(context, dbt, landing, warehouse, config)


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator,
            exclude=f"{DAILY_EVENTS} {AFTER_IDENTITY_GRAPH} {AFTER_ML}", name="dbt_before_identity_graph",
            pool="duckdb")
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


tessera_dbt_models = [dbt_daily_events, dbt_before_identity_graph, dbt_after_identity_graph, dbt_after_ml]
