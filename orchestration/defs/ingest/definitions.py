import dagster as dg

from orchestration.defs.ingest.assets import ingest_assets
from orchestration.defs.ingest.checks import quarantine_checks
from orchestration.defs.ingest.sensors import ingest_daily_events, landing_events_sensor
from orchestration.defs.ingest.sources_config import sources_config

# Validate TESSERA_SOURCES_CONFIG when the code location loads: a bad mapping stops it with the
# file, the key and a fix, instead of failing a run later.
sources_config()

defs = dg.Definitions(
    assets=ingest_assets, asset_checks=quarantine_checks, jobs=[ingest_daily_events], sensors=[landing_events_sensor]
)
