"""dbt models as Dagster assets; groups, owners and asset keys come from dbt `meta`."""

import json

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from orchestration.defs.dbt.project import dbt_project
from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.metadata import per_partition, table_metadata
from orchestration.defs.partitions import (
    FullRefreshConfig,
    IncrementalConfig,
    daily_event_partitions,
    partition_window,
    single_run,
)
from orchestration.defs.resources import SettingsResource, WarehouseResource, retry_when_locked
from orchestration.lib.dbt_subprocess import AFTER_IDENTITY_GRAPH, AFTER_ML, dbt_target, run_vars

translator = DagsterDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True)
)


def _build_args(landing: LandingZoneResource, settings: SettingsResource, extra_vars: dict | None = None) -> list[str]:
    """`dbt build` with the run's vars; dbt's target follows TESSERA_ENGINE (profiles.yml). dbt's unit
    tests check the SQL, not the data, so runs leave them out, as dbt advises: `make test` runs them
    (tests/defs/test_segments_pipeline.py). dbt-spark cannot run them anyway (dbt-labs/dbt-adapters#481)."""
    return [
        "build",
        "--vars",
        json.dumps(run_vars(landing.config(), settings.as_of) | (extra_vars or {})),
        "--exclude-resource-type",
        "unit_test",
    ]


def _require_a_feature_date(
    warehouse: WarehouseResource, landing: LandingZoneResource, settings: SettingsResource
) -> None:
    """int_feature_dates dates the run by its latest event, order or CRM record; with none loaded and no
    TESSERA_AS_OF there is no date, and dbt would only report a failed not_null test."""
    if settings.as_of is not None:
        return
    with warehouse.connect(read_only=True) as con:
        dated = con.execute(
            "SELECT (SELECT count(*) FROM raw.events) + (SELECT count(*) FROM raw.order_lines) "
            "+ (SELECT count(*) FROM raw.crm_customers)"
        ).fetchone()[0]
    if not dated:
        raise dg.Failure(
            description=(
                "Nothing dates this run: no event, order or CRM record has loaded (see raw.quarantine for records "
                f"refused, and the files under {landing.root} or the sources config), so there is no date to compute "
                "features and segments as of. Add event, order or CRM files, or set TESSERA_AS_OF=YYYY-MM-DD."
            ),
            allow_retries=False,
        )


def _incremental_args(context: dg.AssetExecutionContext, config: FullRefreshConfig | None) -> tuple[dict, list[str]]:
    """For the partitioned event models, the partition window as vars for macros/event_window.sql
    ('' is an open end); `--full-refresh` when the run config asks for it."""
    if config is None:
        return {}, []
    dbt_vars = {}
    if isinstance(config, IncrementalConfig):
        window = partition_window(context)
        dbt_vars = {
            "tessera__partition_start": window.start.isoformat() if window.start else "",
            "tessera__partition_end": window.end.isoformat() if window.end else "",
            "tessera__lookback_days": config.lookback_days,
        }
    return dbt_vars, ["--full-refresh"] if config.full_refresh else []


def _build(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    landing: LandingZoneResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
    config: FullRefreshConfig | None = None,
):
    """`dbt build`, then each model's row count and a preview without personal data. dbt holds
    DuckDB's write lock until it exits, so the events wait for it. On Spark the built tables are
    mirrored into the DuckDB file first, for the steps that read them there."""
    extra_vars, flags = _incremental_args(context, config)
    try:
        with dbt_target(context.op_execution_context.op.name, warehouse.path) as target_path:
            events = list(
                dbt.cli(
                    _build_args(landing, settings, extra_vars) + flags, context=context, target_path=target_path
                ).stream()
            )
    except DagsterDbtCliRuntimeError as exc:  # dbt lost DuckDB's lock to a process outside Dagster
        retry_when_locked(exc)
        raise

    keys = {e.output_name: context.asset_key_for_output(e.output_name) for e in events if isinstance(e, dg.Output)}
    built = [".".join(key.path) for key in keys.values()]
    readable = set(warehouse.mirror(built) if warehouse.on_spark else built)
    with warehouse.connect(read_only=True) as con:
        for event in events:
            if isinstance(event, dg.Output) and (table := ".".join(keys[event.output_name].path)) in readable:
                spec_schema = context.assets_def.specs_by_key[keys[event.output_name]].metadata.get(
                    "dagster/column_schema"
                )
                described = {c.name: c.description for c in spec_schema.columns} if spec_schema else {}
                invocation = event.metadata.get("invocation_id")
                metadata, observations = per_partition(
                    context,
                    keys[event.output_name],
                    {
                        **event.metadata,
                        **table_metadata(con, table, described, invocation.value if invocation else None),
                    },
                )
                yield event.with_metadata(metadata)
                yield from observations
            else:
                yield event


# Around the Python steps that sit between dbt models, the selections AFTER_IDENTITY_GRAPH and
# AFTER_ML (orchestration/lib/dbt_subprocess.py). The event models are partitioned by day, so they
# are a selection of their own.
DAILY_EVENTS = "stg_segment__events stg_segment__user_agents int_segment__events"


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    select=DAILY_EVENTS,
    name="dbt_daily_events",
    pool="duckdb",
    partitions_def=daily_event_partitions,
    backfill_policy=single_run,
)
def dbt_daily_events(
    context: dg.AssetExecutionContext,
    config: IncrementalConfig,
    dbt: DbtCliResource,
    landing: LandingZoneResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
):
    """The event models, incremental by day: the partition window and lookback go to dbt as vars."""
    yield from _build(context, dbt, landing, warehouse, settings, config)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    exclude=f"{DAILY_EVENTS} {AFTER_IDENTITY_GRAPH} {AFTER_ML}",
    name="dbt_before_identity_graph",
    pool="duckdb",
)
def dbt_before_identity_graph(
    context: dg.AssetExecutionContext,
    config: FullRefreshConfig,
    dbt: DbtCliResource,
    landing: LandingZoneResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
):
    """The identity evidence and the sources of the snapshots. int_segment__event_days is incremental on
    DuckDB: each run sums again only the event days that changed; `full_refresh` rebuilds it."""
    _require_a_feature_date(warehouse, landing, settings)
    yield from _build(context, dbt, landing, warehouse, settings, config)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    select=AFTER_IDENTITY_GRAPH,
    exclude=AFTER_ML,
    name="dbt_after_identity_graph",
    pool="duckdb",
)
def dbt_after_identity_graph(
    context: dg.AssetExecutionContext,
    config: FullRefreshConfig,
    dbt: DbtCliResource,
    landing: LandingZoneResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
):
    """The models over persons. int_person_events and int_session_days are incremental on DuckDB:
    each run changes only the events and devices that changed; `full_refresh` rebuilds them."""
    yield from _build(context, dbt, landing, warehouse, settings, config)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    select=AFTER_ML,
    name="dbt_after_ml",
    pool="duckdb",
)
def dbt_after_ml(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    landing: LandingZoneResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
):
    yield from _build(context, dbt, landing, warehouse, settings)


tessera_dbt_models = [dbt_daily_events, dbt_before_identity_graph, dbt_after_identity_graph, dbt_after_ml]
