"""The single Dagster code location: `dagster dev -m orchestration.definitions`."""

import datetime as dt

import dagster as dg

from ml.tracking import ensure_store
from orchestration.defs.dbt import definitions as dbt_domain
from orchestration.defs.experiments import definitions as experiments_domain
from orchestration.defs.exports import definitions as exports_domain
from orchestration.defs.identity import definitions as identity_domain
from orchestration.defs.ingest import definitions as ingest_domain
from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.ml import definitions as ml_domain
from orchestration.defs.privacy import definitions as privacy_domain
from orchestration.defs.quality import definitions as quality_domain
from orchestration.defs.realtime import definitions as realtime_domain
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.defs.segments import definitions as segments_domain
from orchestration.lib.settings import export_for_subprocesses, load_settings

# Read once, when the code location loads; the assets get them through the resources below.
settings = load_settings()
export_for_subprocesses(settings)
ensure_store(settings.mlflow_tracking_uri)

# Every run executes in one process, named jobs and ad-hoc materialisations alike: the warehouse
# steps take turns anyway (DuckDB allows one writer per file), and the multiprocess executor would
# load this code location again for each step (9 to 11 s each here).
# The real-time group follows the stream, which a batch run neither needs nor starts.
BATCH = dg.AssetSelection.all() - dg.AssetSelection.groups("realtime")
materialize_all = dg.define_asset_job(
    "materialize_all",
    selection=BATCH,
    description="Ingest every landing folder and build every downstream asset, in one process.",
)


daily_refresh_job = dg.define_asset_job(
    "daily_refresh_job",
    selection=BATCH - ml_domain.training_assets,
    description="One day's events (and the lookback before it), the snapshot sources, and everything downstream, "
    "scored with the @champion models: training is weekly (train_models).",
)
train_models = dg.define_asset_job(
    "train_models",
    selection=ml_domain.training_assets.downstream(),
    description="Retrain the clustering and propensity models, then rescore and rebuild what follows them.",
)


@dg.schedule(
    job=daily_refresh_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def daily_refresh(context: dg.ScheduleEvaluationContext):
    """Every day at 03:00 UTC: yesterday's event partition (and the lookback before it), the
    snapshot sources, and everything downstream but model training. Start it in the UI
    (Automation) once collectors feed the landing zone."""
    day = (context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    return dg.RunRequest(partition_key=day, run_key=day)


weekly_model_training = dg.ScheduleDefinition(
    name="weekly_model_training",
    job=train_models,
    cron_schedule="0 4 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Mondays at 04:00 UTC, after the daily refresh: retrain, register, promote when better, rescore.",
)


# Declarative automation: when the sensor has ingested new days, or a run has reloaded a snapshot
# source, everything downstream of ingestion follows, one warehouse step at a time (the pool).
# Without the missing-dependency guard: today's event partition, or a day without data, is never
# materialised, and would hold everything back forever. Assets with a condition of their own
# (model training, on a weekly cron) keep it.
EAGER = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
downstream_of_ingestion = dg.AssetSelection.all() - dg.AssetSelection.groups("ingest")
eager_downstream = dg.AutomationConditionSensorDefinition(
    "eager_downstream",
    target=downstream_of_ingestion,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Materialises identity, features, models, segments and exports after new data is ingested.",
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
    experiments_domain.defs,
    realtime_domain.defs,
    dg.Definitions(
        executor=dg.in_process_executor,
        jobs=[materialize_all, daily_refresh_job, train_models],
        schedules=[daily_refresh, weekly_model_training],
        sensors=[eager_downstream],
        resources={
            "warehouse": WarehouseResource(path=str(settings.warehouse), engine=settings.engine),
            "landing": LandingZoneResource(
                root=str(settings.landing_dir),
                sources_config=(str(settings.sources_config) if settings.sources_config else None),
            ),
            "settings": SettingsResource.from_settings(settings),
        },
    ),
).map_asset_specs(
    func=lambda spec: spec
    if spec.group_name == "ingest" or spec.automation_condition
    else spec.replace_attributes(automation_condition=EAGER)
)
