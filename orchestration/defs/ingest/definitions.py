import dagster as dg

from orchestration.defs.ingest.assets import ingest_assets
from orchestration.defs.ingest.checks import quarantine_checks

defs = dg.Definitions(assets=ingest_assets, asset_checks=quarantine_checks)
