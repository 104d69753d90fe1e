"""The single Dagster code location: `dagster dev -m orchestration.definitions`."""

import dagster as dg

from orchestration.defs.dbt import definitions as dbt_domain
from orchestration.defs.exports import definitions as exports_domain
from orchestration.defs.identity import definitions as identity_domain
from orchestration.defs.ingest import definitions as ingest_domain
from orchestration.defs.ml import definitions as ml_domain
from orchestration.defs.privacy import definitions as privacy_domain
from orchestration.defs.quality import definitions as quality_domain
from orchestration.defs.resources import LandingZoneResource, WarehouseResource
from orchestration.defs.segments import definitions as segments_domain
from orchestration.lib.settings import export_for_subprocesses, load_settings

settings = load_settings()
export_for_subprocesses(settings)

# Everything in one process: DuckDB allows one writer per file, and in-process is faster here.
materialize_all = dg.define_asset_job(
    "materialize_all",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="Ingest every landing folder and build every downstream asset, in one process.",
)

daily_refresh = dg.ScheduleDefinition(
    name="daily_refresh", job=materialize_all, cron_schedule="0 3 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every day at 03:00 UTC: ingest what has landed and rebuild everything downstream. Start it in the "
                "UI (Automation) once the landing zone is fed by your collectors.",
)

defs = dg.Definitions.merge(
    ingest_domain.defs,
    dbt_domain.defs,
    identity_domain.defs,
    quality_domain.defs,
    ml_domain.defs,
    segments_domain.defs,
    privacy_domain.defs,
    exports_domain.defs,
    dg.Definitions(
        jobs=[materialize_all],
        schedules=[daily_refresh],
        resources={
            "warehouse": WarehouseResource(path=str(settings.warehouse)),
            "landing": LandingZoneResource(root=str(settings.landing_dir), sources_config=(
                str(settings.sources_config) if settings.sources_config else None)),
        },
    ),
)
